//! The PF action's options, read from the action's parameters (fail2ban's `pf` action
//! names where they exist, so `action = pf[...]` from a fail2ban setup keeps its meaning),
//! and the anchor ruleset they produce.
//!
//! | parameter | default | meaning |
//! |---|---|---|
//! | `pfctl` | `/sbin/pfctl` | the program; fail2ban's form `pfctl -a f2b/<name>` is accepted: its first word is the program and the anchor's first part the anchor root |
//! | `anchor` | `warden` | anchor root; the jail's anchor is `<anchor>/<jail>` (`f2b` for fail2ban's layout) |
//! | `tablename` | the anchor root | table prefix; the table is `<tablename>-<jail>` |
//! | `block` | `block drop` | `block drop`, `block return` (fail2ban's `block quick` is read as `block drop`) |
//! | `log` | `yes` | whether the block rule logs to pflog |
//! | `actiontype` | from the ports | `allports` (`<allports>`) or `multiport` (`<multiport>`) |
//! | `protocol` | the jail's | `tcp`, `udp`, `tcp,udp`, `{ tcp, udp }` or `all` |
//! | `port` | the jail's | ports for `multiport` (names, `a:b` or `a-b` ranges) |
//! | `kill_states` | the jail's | `auto`, `all`, `ports`, `none` |
//! | `keep_on_stop` | `no` | leave the anchor and its table in place when warden stops |
//! | `timeout` | `60` | seconds (or `500ms`) one pfctl call may take |
//! | `batch_size` | `8192` | most addresses per table command |
//! | `os` | `auto` | `freebsd` or `openbsd`; `auto` is the build target, or asks pfctl |

use std::path::PathBuf;
use std::time::Duration;

use tracing::warn;

use crate::firewall::{FirewallError, JailSpec, KillScope, PortRange, PortSpec};

/// Which pfctl the action talks to; they differ in how they tell whether PF is enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PfOs {
    FreeBsd,
    OpenBsd,
}

impl PfOs {
    /// The system warden was built for, when it is a PF system.
    pub fn build_target() -> Option<PfOs> {
        if cfg!(target_os = "freebsd") {
            Some(PfOs::FreeBsd)
        } else if cfg!(target_os = "openbsd") {
            Some(PfOs::OpenBsd)
        } else {
            None
        }
    }
}

/// The resolved options of one jail's PF action.
#[derive(Debug, Clone)]
pub struct PfConfig {
    pub jail: String,
    pub pfctl: PathBuf,
    /// The anchor root (`warden`).
    pub root: String,
    /// The jail's anchor (`warden/sshd`).
    pub anchor: String,
    /// The jail's table (`warden-sshd`).
    pub table: String,
    /// `block drop` or `block return…`.
    pub block: String,
    pub log: bool,
    /// The ports the rule blocks (all for `allports`).
    pub ports: PortSpec,
    /// Protocols of the rule; empty means every protocol.
    pub protocols: Vec<String>,
    /// The resolved kill scope (never `Auto`).
    pub kill: KillScope,
    pub keep_on_stop: bool,
    pub timeout: Duration,
    pub batch_size: usize,
    /// None: detect.
    pub os: Option<PfOs>,
}

/// PF's limit for table names (`PF_TABLE_NAME_SIZE` minus the NUL).
const TABLE_NAME_MAX: usize = 31;

fn truthy(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Some(true),
        "0" | "no" | "false" | "off" | "" => Some(false),
        _ => None,
    }
}

/// Anchor and table name parts: what pfctl accepts without quoting trouble. A leading
/// `_` is refused because pfctl will not modify such anchors from the command line.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('_')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn parse_timeout(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Some(ms) = s.strip_suffix("ms") {
        return ms.trim().parse::<u64>().ok().map(Duration::from_millis);
    }
    if let Ok(f) = s.parse::<f64>() {
        return (f.is_finite() && f >= 0.0).then(|| Duration::from_secs_f64(f));
    }
    crate::config::parse_duration(s)
        .ok()
        .and_then(|n| u64::try_from(n).ok())
        .map(Duration::from_secs)
}

/// fail2ban's `block` values (`block`, `block quick`, `block drop`, `block return`, …)
/// reduced to the block policy; `in`, `log` and `quick` are the rule's business.
fn parse_block(s: &str) -> Option<String> {
    let mut policy: Option<&str> = None;
    for w in s.split_whitespace() {
        match w {
            "block" | "quick" | "in" | "log" => {}
            "drop" | "return" | "return-rst" | "return-icmp" | "return-icmp6" => {
                if policy.replace(w).is_some() {
                    return None;
                }
            }
            _ => return None,
        }
    }
    Some(format!("block {}", policy.unwrap_or("drop")))
}

fn parse_protocols(s: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for w in s.split(|c: char| c == ',' || c == '{' || c == '}' || c.is_whitespace()) {
        let w = w.trim().to_ascii_lowercase();
        if w.is_empty() {
            continue;
        }
        if w == "all" || w == "any" {
            return Ok(Vec::new());
        }
        if !w.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(format!("bad protocol {w:?}"));
        }
        if !out.contains(&w) {
            out.push(w);
        }
    }
    Ok(out)
}

/// PF's port syntax: `22`, `1000:2000`, or a list `{ 22, 80, 1000:2000 }`.
pub fn pf_ports(ranges: &[PortRange]) -> String {
    let items: Vec<String> = ranges
        .iter()
        .map(|r| {
            if r.start == r.end {
                r.start.to_string()
            } else {
                format!("{}:{}", r.start, r.end)
            }
        })
        .collect();
    if items.len() == 1 {
        items[0].clone()
    } else {
        format!("{{ {} }}", items.join(", "))
    }
}

impl PfConfig {
    /// Reads the options of `spec.params` on top of the jail's ports, protocols and
    /// kill scope.
    pub fn from_spec(spec: &JailSpec) -> Result<PfConfig, FirewallError> {
        let jail = &spec.jail;
        let bad = |what: String| FirewallError::Config(format!("pf action of jail {jail}: {what}"));
        let param = |k: &str| {
            spec.params
                .get(k)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
        };

        if !valid_name(jail) {
            return Err(bad(format!(
                "jail name {jail:?} cannot name a PF anchor (letters, digits, '-', '_', '.'; no leading '_')"
            )));
        }

        let mut pfctl = PathBuf::from("/sbin/pfctl");
        let mut root_from_pfctl = None;
        if let Some(v) = param("pfctl") {
            let words: Vec<&str> = v.split_whitespace().collect();
            pfctl = PathBuf::from(words[0]);
            let mut rest = words[1..].iter();
            while let Some(w) = rest.next() {
                let anchor = match *w {
                    "-a" => rest.next().copied(),
                    w if w.starts_with("-a") => Some(&w[2..]),
                    _ => None,
                };
                match anchor.and_then(|a| a.rsplit_once('/')) {
                    Some((root, _)) => root_from_pfctl = Some(root.to_string()),
                    None => warn!(jail = %jail, word = %w,
                        "Ignoring an argument of the pfctl parameter; warden builds its own pfctl arguments."),
                }
            }
        }

        let root = param("anchor")
            .map(str::to_string)
            .or(root_from_pfctl)
            .unwrap_or_else(|| "warden".to_string());
        let root = root.trim_matches('/').to_string();
        if root.is_empty() || !root.split('/').all(valid_name) {
            return Err(bad(format!("bad anchor root {root:?}")));
        }
        let anchor = format!("{root}/{jail}");

        let prefix = param("tablename")
            .map(str::to_string)
            .unwrap_or_else(|| root.replace('/', "-"));
        let table = format!("{prefix}-{jail}");
        if !valid_name(&table) || table.len() > TABLE_NAME_MAX {
            return Err(bad(format!(
                "table name {table:?} is not a valid PF table name (at most {TABLE_NAME_MAX} characters of letters, digits, '-', '_', '.')"
            )));
        }

        let block = match param("block") {
            Some(b) => parse_block(b)
                .ok_or_else(|| bad(format!("bad block {b:?} (block drop or block return)")))?,
            None => "block drop".to_string(),
        };
        let log = match param("log") {
            Some(v) => truthy(v).ok_or_else(|| bad(format!("bad log {v:?}")))?,
            None => true,
        };

        let jail_ports = match param("port") {
            Some(p) => PortSpec::parse(p).map_err(|e| bad(format!("port: {e}")))?,
            None => spec.ports.clone(),
        };
        let ports = match param("actiontype")
            .map(|a| a.trim_matches(['<', '>']).to_ascii_lowercase())
        {
            None => jail_ports,
            Some(a) if a == "allports" || a == "any" => PortSpec::All,
            Some(a) if a == "multiport" || a.starts_with("any port") => jail_ports,
            Some(a) => return Err(bad(format!("bad actiontype {a:?} (allports or multiport)"))),
        };

        let protocols = match param("protocol") {
            Some(p) => parse_protocols(p).map_err(bad)?,
            None => spec
                .protocols
                .iter()
                .map(|p| p.to_ascii_lowercase())
                .filter(|p| p != "all")
                .collect(),
        };
        if !ports.is_all()
            && let Some(p) = protocols
                .iter()
                .find(|p| !matches!(p.as_str(), "tcp" | "udp" | "sctp"))
        {
            return Err(bad(format!(
                "protocol {p} has no ports; use actiontype allports or tcp/udp"
            )));
        }

        let kill = match param("kill_states") {
            Some(k) => KillScope::parse(k).ok_or_else(|| bad(format!("bad kill_states {k:?}")))?,
            None => spec.kill_states,
        }
        .resolve(&ports);

        let keep_on_stop = match param("keep_on_stop") {
            Some(v) => truthy(v).ok_or_else(|| bad(format!("bad keep_on_stop {v:?}")))?,
            None => false,
        };
        let timeout = match param("timeout") {
            Some(t) => parse_timeout(t)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| bad(format!("bad timeout {t:?}")))?,
            None => Duration::from_secs(60),
        };
        let batch_size = match param("batch_size") {
            Some(n) => n
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad(format!("bad batch_size {n:?}")))?,
            None => 8192,
        };
        let os = match param("os").map(str::to_ascii_lowercase).as_deref() {
            None | Some("auto") => None,
            Some("freebsd") => Some(PfOs::FreeBsd),
            Some("openbsd") => Some(PfOs::OpenBsd),
            Some(o) => return Err(bad(format!("bad os {o:?} (auto, freebsd or openbsd)"))),
        };

        Ok(PfConfig {
            jail: jail.clone(),
            pfctl,
            root,
            anchor,
            table,
            block,
            log,
            ports,
            protocols,
            kill,
            keep_on_stop,
            timeout,
            batch_size,
            os,
        })
    }

    /// The block rule: the whole table, both address families, the jail's protocols and
    /// ports. `quick` so that no later rule of the main ruleset lets a banned address in.
    pub fn block_rule(&self) -> String {
        let mut r = format!("{} in", self.block);
        if self.log {
            r.push_str(" log");
        }
        r.push_str(" quick");
        let protos: Vec<&str> = if self.protocols.is_empty() && !self.ports.is_all() {
            // A port needs a protocol that has ports.
            vec!["tcp", "udp"]
        } else {
            self.protocols.iter().map(String::as_str).collect()
        };
        match protos.as_slice() {
            [] => {}
            [p] => r.push_str(&format!(" proto {p}")),
            ps => r.push_str(&format!(" proto {{ {} }}", ps.join(", "))),
        }
        r.push_str(&format!(" from <{}> to any", self.table));
        if let PortSpec::Ports(ranges) = &self.ports {
            r.push_str(&format!(" port {}", pf_ports(ranges)));
        }
        r
    }

    /// What `pfctl -a ANCHOR -f -` loads: the table (persistent, with per-address
    /// counters; a bare definition keeps the entries it has) and the block rule.
    pub fn ruleset(&self) -> String {
        format!(
            "table <{}> persist counters\n{}\n",
            self.table,
            self.block_rule()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(ports: &str, params: &[(&str, &str)]) -> JailSpec {
        crate::firewall::test_spec(ports, &["tcp"], params)
    }

    #[test]
    fn defaults() {
        let c = PfConfig::from_spec(&spec("ssh,80", &[])).unwrap();
        assert_eq!(c.pfctl, PathBuf::from("/sbin/pfctl"));
        assert_eq!(
            (c.anchor.as_str(), c.table.as_str()),
            ("warden/sshd", "warden-sshd")
        );
        assert_eq!(
            c.ruleset(),
            "table <warden-sshd> persist counters\nblock drop in log quick proto tcp from <warden-sshd> to any port { 22, 80 }\n"
        );
        assert_eq!(c.kill, KillScope::Ports);
        assert!(!c.keep_on_stop);
        assert_eq!(c.timeout, Duration::from_secs(60));
        assert_eq!(c.batch_size, 8192);
    }

    #[test]
    fn fail2ban_parameters_keep_their_meaning() {
        let c = PfConfig::from_spec(&spec(
            "ssh",
            &[
                ("pfctl", "/usr/local/sbin/pfctl -a f2b/sshd"),
                ("tablename", "f2b"),
                ("block", "block quick"),
                ("actiontype", "<allports>"),
                ("protocol", "udp"),
            ],
        ))
        .unwrap();
        assert_eq!(c.pfctl, PathBuf::from("/usr/local/sbin/pfctl"));
        assert_eq!(
            (c.anchor.as_str(), c.table.as_str()),
            ("f2b/sshd", "f2b-sshd")
        );
        assert_eq!(
            c.block_rule(),
            "block drop in log quick proto udp from <f2b-sshd> to any"
        );
        assert_eq!(c.kill, KillScope::All);
        let c = PfConfig::from_spec(&spec(
            "",
            &[
                ("anchor", "f2b"),
                ("block", "block return"),
                ("protocol", "all"),
                ("log", "no"),
            ],
        ))
        .unwrap();
        assert_eq!(
            c.block_rule(),
            "block return in quick from <f2b-sshd> to any"
        );
    }

    #[test]
    fn ranges_protocol_lists_and_multiport() {
        let c = PfConfig::from_spec(&spec(
            "1000:2000",
            &[("protocol", "{ tcp, udp }"), ("actiontype", "<multiport>")],
        ))
        .unwrap();
        assert_eq!(
            c.block_rule(),
            "block drop in log quick proto { tcp, udp } from <warden-sshd> to any port 1000:2000"
        );
        let c = PfConfig::from_spec(&spec("22,2222-2224", &[("protocol", "all")])).unwrap();
        assert_eq!(
            c.block_rule(),
            "block drop in log quick proto { tcp, udp } from <warden-sshd> to any port { 22, 2222:2224 }"
        );
        let c = PfConfig::from_spec(&spec("22", &[("port", "http,https")])).unwrap();
        assert!(c.block_rule().ends_with("port { 80, 443 }"));
    }

    #[test]
    fn bad_options_are_config_errors() {
        for (k, v) in [
            ("block", "pass"),
            ("actiontype", "sometimes"),
            ("protocol", "icmp"),
            ("timeout", "soon"),
            ("kill_states", "maybe"),
            ("keep_on_stop", "perhaps"),
            ("anchor", "_private"),
            ("tablename", "a-very-long-table-name-prefix-x"),
            ("os", "linux"),
            ("batch_size", "0"),
        ] {
            let err = PfConfig::from_spec(&spec("22", &[(k, v)])).unwrap_err();
            assert!(matches!(err, FirewallError::Config(_)), "{k}={v}: {err}");
            assert!(err.to_string().contains("jail sshd"), "{err}");
        }
        let mut s = spec("22", &[]);
        s.jail = "bad name".into();
        assert!(PfConfig::from_spec(&s).is_err());
    }

    #[test]
    fn options_and_timeouts() {
        let c = PfConfig::from_spec(&spec(
            "22",
            &[
                ("keep_on_stop", "yes"),
                ("timeout", "250ms"),
                ("kill_states", "all"),
                ("os", "openbsd"),
                ("batch_size", "100"),
            ],
        ))
        .unwrap();
        assert!(c.keep_on_stop);
        assert_eq!(c.timeout, Duration::from_millis(250));
        assert_eq!(c.kill, KillScope::All);
        assert_eq!(c.os, Some(PfOs::OpenBsd));
        assert_eq!(c.batch_size, 100);
        assert_eq!(parse_timeout("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_timeout("1.5"), Some(Duration::from_millis(1500)));
    }
}
