//! Per-OS differences of pfctl: option strings, sub-command word lists, usage texts, the
//! wording of kernel errors, getopt and resolver messages, and default limits.

/// Kernel error numbers the simulated ioctls can return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Errno {
    Esrch,
    Enoent,
    Einval,
    Enomem,
    Eperm,
}

impl Errno {
    pub fn strerror(self) -> &'static str {
        match self {
            Errno::Esrch => "No such process",
            Errno::Enoent => "No such file or directory",
            Errno::Einval => "Invalid argument",
            Errno::Enomem => "Cannot allocate memory",
            Errno::Eperm => "Operation not permitted",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Os {
    FreeBsd,
    OpenBsd,
}

const FREEBSD_USAGE: &str =
    "usage: pfctl [-AdeghMmNnOPqRSrvz] [-a anchor] [-D macro=value] [-F modifier]
\t[-f file] [-i interface] [-K host | network]
\t[-k host | network | gateway | label | id] [-o level] [-p device]
\t[-s modifier] [-t table -T command [address ...]] [-x level]
";

const OPENBSD_USAGE: &str =
    "usage: pfctl [-deghNnPqrvz] [-a anchor] [-D macro=value] [-F modifier] [-f file]
\t[-i interface] [-K key] [-k key] [-L statefile] [-o level]
\t[-p device] [-S statefile] [-s modifier [-R id]]
\t[-t table -T command [address ...]] [-V rdomain] [-x level]
";

impl Os {
    pub fn parse(name: Option<&str>) -> Result<Os, String> {
        match name {
            None | Some("") | Some("freebsd") => Ok(Os::FreeBsd),
            Some("openbsd") => Ok(Os::OpenBsd),
            Some(other) => Err(format!(
                "PFCTL_SIM_OS must be freebsd or openbsd, not '{other}'"
            )),
        }
    }

    pub fn optstring(self) -> &'static str {
        match self {
            Os::FreeBsd => "a:AdD:eqf:F:ghi:k:K:mMnNOo:Pp:rRs:St:T:vx:z",
            Os::OpenBsd => "a:dD:eqf:F:ghi:k:K:L:Nno:Pp:R:rS:s:t:T:vV:x:z",
        }
    }

    pub fn usage(self) -> &'static str {
        match self {
            Os::FreeBsd => FREEBSD_USAGE,
            Os::OpenBsd => OPENBSD_USAGE,
        }
    }

    pub fn table_commands(self) -> &'static [&'static str] {
        match self {
            Os::FreeBsd => &[
                "kill", "flush", "add", "delete", "load", "replace", "show", "test", "zero",
                "expire", "reset",
            ],
            Os::OpenBsd => &[
                "kill", "flush", "add", "delete", "replace", "show", "test", "zero", "expire",
            ],
        }
    }

    pub fn show_modifiers(self) -> &'static [&'static str] {
        match self {
            Os::FreeBsd => &[
                "ether",
                "nat",
                "queue",
                "rules",
                "Anchors",
                "Sources",
                "states",
                "info",
                "Interfaces",
                "labels",
                "timeouts",
                "memory",
                "Tables",
                "osfp",
                "Running",
                "all",
                "creatorids",
            ],
            Os::OpenBsd => &[
                "queue",
                "rules",
                "Anchors",
                "Sources",
                "states",
                "info",
                "Interfaces",
                "labels",
                "timeouts",
                "memory",
                "Tables",
                "osfp",
                "all",
            ],
        }
    }

    pub fn flush_modifiers(self) -> &'static [&'static str] {
        match self {
            Os::FreeBsd => &[
                "nat", "queue", "rules", "Sources", "states", "info", "Tables", "osfp", "all",
                "ethernet", "Reset",
            ],
            Os::OpenBsd => &[
                "rules", "Sources", "states", "info", "Tables", "osfp", "Reset", "all",
            ],
        }
    }

    pub fn debug_levels(self) -> &'static [&'static str] {
        match self {
            Os::FreeBsd => &["none", "urgent", "misc", "loud"],
            Os::OpenBsd => &[
                "debug", "info", "notice", "warning", "error", "crit", "alert", "emerg",
            ],
        }
    }

    /// The message getopt(3) prints for a letter outside the option string.
    pub fn getopt_unknown(self, c: char) -> String {
        match self {
            Os::FreeBsd => format!("pfctl: illegal option -- {c}\n"),
            Os::OpenBsd => format!("pfctl: unknown option -- {c}\n"),
        }
    }

    pub fn getopt_missing(self, c: char) -> String {
        format!("pfctl: option requires an argument -- {c}\n")
    }

    /// How a failing table ioctl is reported: FreeBSD `radix_perror()` appends a period
    /// and names ENOENT differently; OpenBSD goes through `pf_strerror()`, which maps
    /// EINVAL to "Anchor does not exist" too.
    pub fn table_error(self, e: Errno) -> String {
        match self {
            Os::FreeBsd => {
                let text = match e {
                    Errno::Esrch => "Table does not exist",
                    Errno::Enoent => "Anchor or Ruleset does not exist",
                    other => other.strerror(),
                };
                format!("pfctl: {text}.\n")
            }
            Os::OpenBsd => format!("pfctl: {}\n", pf_strerror(e)),
        }
    }

    /// `gai_strerror(EAI_NONAME)`: the simulator resolves numeric hosts only.
    pub fn gai_noname(self) -> &'static str {
        match self {
            Os::FreeBsd => "Name does not resolve",
            Os::OpenBsd => "no address associated with name",
        }
    }

    /// `strerror(0)`, printed when pfctl `warn()`s after a helper cleared errno.
    pub fn strerror_zero(self) -> &'static str {
        match self {
            Os::FreeBsd => "No error: 0",
            Os::OpenBsd => "Undefined error: 0",
        }
    }

    /// The limits `pfctl -s memory` lists, in order, with the kernel defaults.
    /// The values are the compiled-in `*_HIWAT` defaults [unverified on a live system].
    pub fn default_limits(self) -> &'static [(&'static str, u64)] {
        match self {
            Os::FreeBsd => &[
                ("states", 100_000),
                ("src-nodes", 100_000),
                ("frags", 5_000),
                ("table-entries", 200_000),
            ],
            Os::OpenBsd => &[
                ("states", 100_000),
                ("src-nodes", 10_000),
                ("frags", 65_536),
                ("tables", 1_000),
                ("table-entries", 200_000),
                ("pktdelay-pkts", 10_000),
                ("anchors", 512),
            ],
        }
    }
}

/// `pf_strerror()` of pfctl.c (both OSes): used by `warnx` for rule and anchor errors.
pub fn pf_strerror(e: Errno) -> &'static str {
    match e {
        Errno::Esrch => "Table does not exist",
        Errno::Einval | Errno::Enoent => "Anchor does not exist",
        other => other.strerror(),
    }
}
