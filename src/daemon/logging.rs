//! The daemon's own log: `logtarget` and `loglevel` of `warden.conf`.
//!
//! Targets: `STDERR`, `STDOUT`, `SYSOUT` (stdout without timestamps), a file path (reopened
//! on SIGUSR1 so logrotate can move it away), `SYSLOG` (RFC 3164 datagrams to `/dev/log`,
//! or `syslogsocket`), and `SYSTEMD-JOURNAL` on Linux. `loglevel` takes fail2ban's names
//! (CRITICAL … HEAVYDEBUG) or numbers; `RUST_LOG`, when set, overrides it with any
//! tracing filter.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

/// A log target that cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("logtarget {}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("logtarget SYSTEMD-JOURNAL: {0}")]
    Journal(String),
    #[error("logtarget SYSTEMD-JOURNAL is only available on Linux")]
    NoJournal,
    #[error("a logger is already installed")]
    AlreadySet,
}

/// The tracing filter directive for a `loglevel` value.
pub fn level_directive(loglevel: &str) -> &'static str {
    let l = loglevel.trim().to_ascii_uppercase();
    if let Ok(n) = l.parse::<u32>() {
        return match n {
            40.. => "error",
            30..=39 => "warn",
            20..=29 => "info",
            10..=19 => "debug",
            _ => "trace",
        };
    }
    match l.as_str() {
        "CRITICAL" | "ERROR" => "error",
        "WARNING" | "WARN" => "warn",
        "NOTICE" | "INFO" => "info",
        "DEBUG" => "debug",
        _ => "trace",
    }
}

/// The installed logger: reopen its file, change its level.
pub struct Logging {
    filter: reload::Handle<EnvFilter, Registry>,
    file: Option<Arc<ReopenFile>>,
    env_override: bool,
    target: String,
}

impl std::fmt::Debug for Logging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logging")
            .field("target", &self.target)
            .finish()
    }
}

impl Logging {
    /// Reopens the log file (after logrotate moved it). Nothing for other targets.
    pub fn reopen(&self) {
        if let Some(f) = &self.file {
            match f.reopen() {
                Ok(()) => tracing::info!(path = %f.path.display(), "Reopened the log file."),
                Err(e) => eprintln!("warden: cannot reopen {}: {e}", f.path.display()),
            }
        }
    }

    /// Applies a new `loglevel` (a reload); ignored when `RUST_LOG` decides.
    pub fn set_level(&self, loglevel: &str) {
        if self.env_override {
            return;
        }
        let _ = self
            .filter
            .modify(|f| *f = EnvFilter::new(level_directive(loglevel)));
    }

    /// The `logtarget` in use.
    pub fn target(&self) -> &str {
        &self.target
    }
}

/// A file the log is appended to, reopened on request.
pub struct ReopenFile {
    path: PathBuf,
    file: Mutex<File>,
}

impl ReopenFile {
    fn open(path: &Path) -> std::io::Result<File> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        OpenOptions::new().create(true).append(true).open(path)
    }

    fn reopen(&self) -> std::io::Result<()> {
        let f = ReopenFile::open(&self.path)?;
        *self.file.lock().unwrap_or_else(|e| e.into_inner()) = f;
        Ok(())
    }
}

/// One log line for the file: written whole when dropped.
pub struct FileLine<'a> {
    file: &'a ReopenFile,
    buf: Vec<u8>,
}

impl Write for FileLine<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for FileLine<'_> {
    fn drop(&mut self) {
        let mut f = self.file.file.lock().unwrap_or_else(|e| e.into_inner());
        let _ = f.write_all(&self.buf);
    }
}

impl<'a> MakeWriter<'a> for ReopenFile {
    type Writer = FileLine<'a>;
    fn make_writer(&'a self) -> FileLine<'a> {
        FileLine {
            file: self,
            buf: Vec::with_capacity(256),
        }
    }
}

/// Facility `daemon` of syslog.
const FACILITY_DAEMON: u8 = 3;

/// Syslog over a Unix datagram socket, one datagram per event, RFC 3164 framing.
pub struct Syslog {
    path: PathBuf,
    sock: Mutex<Option<UnixDatagram>>,
    facility: u8,
}

impl Syslog {
    /// `syslogsocket`: a path, or `auto` for the first of `/dev/log`, `/var/run/log`,
    /// `/var/run/syslog` that exists.
    pub fn new(syslogsocket: &str, facility: u8) -> Syslog {
        let path = match syslogsocket.trim() {
            "" | "auto" => ["/dev/log", "/var/run/log", "/var/run/syslog"]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
                .unwrap_or_else(|| PathBuf::from("/dev/log")),
            p => PathBuf::from(p),
        };
        Syslog {
            path,
            sock: Mutex::new(None),
            facility,
        }
    }

    fn send(&self, msg: &[u8]) {
        let mut guard = self.sock.lock().unwrap_or_else(|e| e.into_inner());
        for _ in 0..2 {
            if guard.is_none() {
                *guard = UnixDatagram::unbound()
                    .and_then(|s| s.connect(&self.path).map(|_| s))
                    .ok();
            }
            match guard.as_ref().map(|s| s.send(msg)) {
                Some(Ok(_)) => return,
                // The syslog daemon restarted: connect again once.
                _ => *guard = None,
            }
        }
    }
}

/// RFC 3164 severity of a tracing level.
fn severity(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// One syslog message being formatted.
pub struct SyslogLine<'a> {
    sys: &'a Syslog,
    buf: Vec<u8>,
}

impl Write for SyslogLine<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogLine<'_> {
    fn drop(&mut self) {
        while self.buf.last() == Some(&b'\n') {
            self.buf.pop();
        }
        self.sys.send(&self.buf);
    }
}

/// The RFC 3164 header: `<PRI>Mmm dd hh:mm:ss warden[pid]: `.
pub fn syslog_header(facility: u8, severity: u8, now: &jiff::Zoned, pid: u32) -> String {
    format!(
        "<{}>{} warden[{pid}]: ",
        u32::from(facility) * 8 + u32::from(severity),
        now.strftime("%b %e %H:%M:%S")
    )
}

impl Syslog {
    fn line(&self, severity: u8) -> SyslogLine<'_> {
        let head = syslog_header(
            self.facility,
            severity,
            &jiff::Zoned::now(),
            std::process::id(),
        );
        SyslogLine {
            sys: self,
            buf: head.into_bytes(),
        }
    }
}

impl<'a> MakeWriter<'a> for Syslog {
    type Writer = SyslogLine<'a>;
    fn make_writer(&'a self) -> SyslogLine<'a> {
        self.line(6)
    }
    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> SyslogLine<'a> {
        self.line(severity(meta.level()))
    }
}

type Boxed = Box<
    dyn Layer<tracing_subscriber::layer::Layered<reload::Layer<EnvFilter, Registry>, Registry>>
        + Send
        + Sync,
>;

/// Installs the logger for `logtarget` at `loglevel`.
pub fn init(loglevel: &str, logtarget: &str, syslogsocket: &str) -> Result<Logging, LogError> {
    let env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let filter = match &env {
        Some(v) => EnvFilter::new(v),
        None => EnvFilter::new(level_directive(loglevel)),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let target = logtarget.trim();
    // `SYSLOG[facility=...]`-style options are accepted and, except the facility, ignored.
    let (kind, opts) = match target.split_once('[') {
        Some((k, rest)) => (k.trim(), rest.trim_end_matches(']')),
        None => (target, ""),
    };
    let mut file = None;
    let layer: Boxed = match kind.to_ascii_uppercase().as_str() {
        "STDERR" => Box::new(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(false),
        ),
        "STDOUT" => Box::new(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stdout)
                .with_ansi(false),
        ),
        "SYSOUT" => Box::new(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stdout)
                .with_ansi(false)
                .without_time(),
        ),
        "SYSLOG" => {
            let facility = opts
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| k.trim() == "facility")
                .and_then(|(_, v)| facility_code(v.trim()))
                .unwrap_or(FACILITY_DAEMON);
            Box::new(
                tracing_subscriber::fmt::layer()
                    .with_writer(Syslog::new(syslogsocket, facility))
                    .with_ansi(false)
                    .without_time()
                    .with_target(false),
            )
        }
        "SYSTEMD-JOURNAL" => journal_layer()?,
        _ => {
            let path = PathBuf::from(target);
            let f = ReopenFile::open(&path).map_err(|source| LogError::File {
                path: path.clone(),
                source,
            })?;
            let rf = Arc::new(ReopenFile {
                path,
                file: Mutex::new(f),
            });
            file = Some(rf.clone());
            Box::new(
                tracing_subscriber::fmt::layer()
                    .with_writer(SharedFile(rf))
                    .with_ansi(false),
            )
        }
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .try_init()
        .map_err(|_| LogError::AlreadySet)?;
    Ok(Logging {
        filter: handle,
        file,
        env_override: env.is_some(),
        target: target.to_string(),
    })
}

/// The file target, shared with [`Logging`] for reopening.
struct SharedFile(Arc<ReopenFile>);

impl<'a> MakeWriter<'a> for SharedFile {
    type Writer = FileLine<'a>;
    fn make_writer(&'a self) -> FileLine<'a> {
        self.0.make_writer()
    }
}

fn facility_code(name: &str) -> Option<u8> {
    Some(match name.to_ascii_lowercase().trim_start_matches("log_") {
        "kern" => 0,
        "user" => 1,
        "mail" => 2,
        "daemon" => 3,
        "auth" => 4,
        "syslog" => 5,
        "authpriv" => 10,
        "local0" => 16,
        "local1" => 17,
        "local2" => 18,
        "local3" => 19,
        "local4" => 20,
        "local5" => 21,
        "local6" => 22,
        "local7" => 23,
        n => n.parse().ok().filter(|v| *v < 24)?,
    })
}

#[cfg(target_os = "linux")]
fn journal_layer() -> Result<Boxed, LogError> {
    tracing_journald::layer()
        .map(|l| Box::new(l.with_syslog_identifier("warden".into())) as Boxed)
        .map_err(|e| LogError::Journal(e.to_string()))
}

#[cfg(not(target_os = "linux"))]
fn journal_layer() -> Result<Boxed, LogError> {
    Err(LogError::NoJournal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail2ban_levels_map_to_tracing_levels() {
        assert_eq!(level_directive("CRITICAL"), "error");
        assert_eq!(level_directive("warning"), "warn");
        assert_eq!(level_directive("NOTICE"), "info");
        assert_eq!(level_directive("DEBUG"), "debug");
        assert_eq!(level_directive("HEAVYDEBUG"), "trace");
        assert_eq!(level_directive("25"), "info");
        assert_eq!(level_directive("5"), "trace");
    }

    #[test]
    fn syslog_messages_are_rfc3164() {
        let now: jiff::Zoned = "2024-03-05T07:08:09+00:00[UTC]".parse().unwrap();
        assert_eq!(
            syslog_header(FACILITY_DAEMON, 4, &now, 42),
            "<28>Mar  5 07:08:09 warden[42]: "
        );
        assert_eq!(facility_code("authpriv"), Some(10));
        assert_eq!(facility_code("LOG_LOCAL3"), Some(19));
        assert_eq!(facility_code("nope"), None);
    }

    #[test]
    fn syslog_datagrams_reach_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let sys = Syslog::new(path.to_str().unwrap(), FACILITY_DAEMON);
        {
            let mut line = sys.make_writer();
            line.write_all(b"Ban 192.0.2.7\n").unwrap();
        }
        let mut buf = [0u8; 512];
        let n = server.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(text.starts_with("<30>"), "{text}");
        assert!(text.ends_with("]: Ban 192.0.2.7"), "{text}");
        assert!(!text.ends_with('\n'));
    }
}
