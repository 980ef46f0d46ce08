//! The resolved configuration: what the loader produces and every other module consumes.
//!
//! Values here are final: `%(x)s` interpolation, `[INCLUDES]`, `.local` overrides and the
//! filter's own `<tag>` substitutions are done. What stays symbolic is what fail2ban also
//! leaves to run time: the `<HOST>`/`<F-*>` tags of regexes (the filter module expands
//! them) and the `<ip>`/`<name>`/... tags of action commands (rendered per ban).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

/// A place in a configuration file, for messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
pub struct Span {
    pub file: PathBuf,
    /// 1-based line number; 0 when the value has no single line (a default).
    pub line: u32,
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file.display())
        } else {
            write!(f, "{}:{}", self.file.display(), self.line)
        }
    }
}

/// Daemon settings from `warden.conf` (the keys of fail2ban.conf).
#[derive(Debug, Clone, Serialize)]
pub struct DaemonSettings {
    pub loglevel: String,
    /// A path, or STDOUT, STDERR, SYSOUT, SYSLOG, SYSTEMD-JOURNAL.
    pub logtarget: String,
    pub syslogsocket: String,
    pub socket: PathBuf,
    pub pidfile: PathBuf,
    pub dbfile: PathBuf,
    /// Seconds after which ended bans are purged from the history.
    pub dbpurgeage: i64,
    pub dbmaxmatches: u32,
}

/// How a jail reads its logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogBackend {
    /// inotify/kqueue wake-ups with a polling fallback.
    Auto,
    Polling,
    /// `pyinotify`, `inotify` or `kqueue` in the configuration.
    Notify,
    /// The systemd journal through `journalctl`; options such as `journalpath`.
    Systemd(BTreeMap<String, String>),
    /// PF's binary pcap log.
    Pflog,
    /// warden's own ban ledger: the jail's failures are the bans other jails record
    /// (the built-in recidive jail; no log is read).
    Ledger,
}

/// `usedns` (fail2ban semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UseDns {
    Yes,
    Warn,
    No,
    Raw,
}

/// `bantime.*` escalation settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Escalation {
    pub increment: bool,
    pub factor: f64,
    /// `bantime.multipliers`; empty means the exponential formula.
    pub multipliers: Vec<f64>,
    /// Seconds; None means no cap.
    pub maxtime: Option<i64>,
    /// Seconds of random extra time, None for none.
    pub rndtime: Option<i64>,
    pub overalljails: bool,
}

/// A filter definition after interpolation, with `<HOST>`-style tags still in the regexes.
#[derive(Debug, Clone, Serialize)]
pub struct FilterConfig {
    /// Name as written in the jail (`sshd`), or `(inline)` for jail-level regexes only.
    pub name: String,
    /// The `filter.d` file, None when the jail defines the regexes itself.
    pub file: Option<PathBuf>,
    /// Arguments given in the jail: `sshd[mode=aggressive]` gives `mode=aggressive`.
    pub args: BTreeMap<String, String>,
    pub prefregex: Option<String>,
    pub failregex: Vec<String>,
    pub ignoreregex: Vec<String>,
    pub maxlines: usize,
    /// None when unset (fail2ban's default templates).
    pub datepattern: Option<String>,
    /// Each alternative is a list of journalctl match terms (`+` separates alternatives).
    pub journalmatch: Vec<Vec<String>>,
    /// Every resolved key of the filter's [Definition]/[Init], for filter-specific options
    /// (e.g. pflog field filters, `unicode`).
    pub options: BTreeMap<String, String>,
    /// Where each failregex came from, same order as `failregex`.
    pub failregex_spans: Vec<Span>,
}

/// One action of a jail.
#[derive(Debug, Clone, Serialize)]
pub struct ActionConfig {
    /// `actname` (defaults to the action's file name).
    pub name: String,
    /// The `action.d` file name without extension (`iptables-multiport`, `pf`).
    pub kind: String,
    pub file: Option<PathBuf>,
    /// Arguments given in the jail.
    pub args: BTreeMap<String, String>,
    /// Every resolved key of the action's [Definition] and [Init] (actionban, timeout, ...),
    /// with the jail's arguments applied. Keys with a `?family=inet6` condition keep the
    /// suffix (`blocktype?family=inet6`).
    pub params: BTreeMap<String, String>,
    pub span: Span,
}

/// A jail, resolved.
#[derive(Debug, Clone, Serialize)]
pub struct JailConfig {
    pub name: String,
    pub enabled: bool,
    pub filter: FilterConfig,
    pub actions: Vec<ActionConfig>,
    pub backend: LogBackend,
    /// Glob patterns, as written (expanded at run time so later files are found), without
    /// the ` tail`/` head` suffix.
    pub logpath: Vec<String>,
    /// Per `logpath` entry: true when it carried the ` tail` suffix (start reading at the
    /// end of existing files rather than from the saved position or the start).
    pub logpath_tail: Vec<bool>,
    pub logencoding: String,
    pub logtimezone: Option<String>,
    pub findtime: i64,
    /// Seconds; -1 means permanent.
    pub bantime: i64,
    pub maxretry: u32,
    pub maxmatches: u32,
    pub ignoreip: Vec<String>,
    pub ignoreself: bool,
    pub ignorecommand: Option<String>,
    pub usedns: UseDns,
    pub escalation: Escalation,
    /// The raw `port` value (`ssh,sftp`, `0:65535`, `http,https`).
    pub port: String,
    pub protocol: String,
    /// Every resolved key of the jail section (after interpolation), for options that
    /// only some modules read (`kill_states`, `banaction`, `cidr`, ...).
    pub options: BTreeMap<String, String>,
    pub span: Span,
}

/// One problem found while loading, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub span: Span,
    /// The jail the problem disables, if any.
    pub jail: Option<String>,
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.jail {
            Some(j) => write!(f, "{}: [{}] {}", self.span, j, self.message),
            None => write!(f, "{}: {}", self.span, self.message),
        }
    }
}

/// The whole configuration directory, loaded.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// The directory, or `(embedded)` for the built-in default configuration.
    pub dir: PathBuf,
    pub daemon: DaemonSettings,
    /// Every jail that resolved without error, enabled or not.
    pub jails: Vec<JailConfig>,
    /// Errors: each names its file and line; a jail with an error is not in `jails`.
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

impl Config {
    /// The jails that are enabled.
    pub fn enabled_jails(&self) -> impl Iterator<Item = &JailConfig> {
        self.jails.iter().filter(|j| j.enabled)
    }
}
