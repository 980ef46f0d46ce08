//! Where the daemon keeps its socket, pid file and ledger.
//!
//! Root uses the paths of `warden.conf`. Anyone else uses them when their directories are
//! writable (or can be created), and otherwise falls back, deterministically, to per-user
//! places: `$XDG_RUNTIME_DIR/warden` (else `/tmp/warden-$UID`) for the socket and pid file,
//! `--data-dir`, else `$XDG_DATA_HOME/warden` (else `~/.local/share/warden`) for the
//! ledger. The client applies the same rule ([`client_socket`]), so `warden status` finds
//! a daemon that a normal user started from the README's quick start.

use std::path::{Path, PathBuf};

use crate::config::DaemonSettings;

/// The paths the daemon uses, and why they differ from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimePaths {
    pub socket: PathBuf,
    pub pidfile: PathBuf,
    pub dbfile: PathBuf,
    /// One sentence per path that fell back, for a warning at start.
    pub fallbacks: Vec<String>,
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The per-user directory for the socket and pid file.
pub fn user_runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d).join("warden"),
        None => PathBuf::from(format!("/tmp/warden-{}", nix::unistd::geteuid().as_raw())),
    }
}

/// The per-user directory for the ledger.
pub fn user_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(d).join("warden");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(h) => PathBuf::from(h).join(".local/share/warden"),
        None => user_runtime_dir(),
    }
}

/// Whether files can be created in `dir`: it is a writable directory, or it does not
/// exist and its nearest existing ancestor is writable.
pub fn dir_usable(dir: &Path) -> bool {
    use nix::unistd::{AccessFlags, access};
    let mut d = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    loop {
        if d.exists() {
            return d.is_dir() && access(d, AccessFlags::W_OK | AccessFlags::X_OK).is_ok();
        }
        match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => d = p,
            _ => return false,
        }
    }
}

fn file_name(p: &Path, default: &str) -> PathBuf {
    p.file_name()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

/// The daemon's paths: `socket` overrides the configured socket (`--socket`); `data_dir`
/// is the fallback directory for the ledger (`--data-dir`).
pub fn resolve(
    settings: &DaemonSettings,
    socket: Option<&Path>,
    data_dir: Option<&Path>,
) -> RuntimePaths {
    let mut out = RuntimePaths {
        socket: socket.unwrap_or(&settings.socket).to_path_buf(),
        pidfile: settings.pidfile.clone(),
        dbfile: settings.dbfile.clone(),
        fallbacks: Vec::new(),
    };
    if is_root() {
        return out;
    }
    let parent = |p: &Path| p.parent().map(Path::to_path_buf).unwrap_or_default();
    let runtime = user_runtime_dir();
    if socket.is_none() && !dir_usable(&parent(&out.socket)) {
        let to = runtime.join(file_name(&out.socket, "warden.sock"));
        out.fallbacks.push(format!(
            "socket {} is not writable by this user; using {}",
            out.socket.display(),
            to.display()
        ));
        out.socket = to;
    }
    if !dir_usable(&parent(&out.pidfile)) {
        let to = runtime.join(file_name(&out.pidfile, "warden.pid"));
        out.fallbacks.push(format!(
            "pidfile {} is not writable by this user; using {}",
            out.pidfile.display(),
            to.display()
        ));
        out.pidfile = to;
    }
    if !dir_usable(&parent(&out.dbfile)) {
        let dir = data_dir
            .map(Path::to_path_buf)
            .unwrap_or_else(user_data_dir);
        let to = dir.join(file_name(&out.dbfile, "warden.sqlite3"));
        out.fallbacks.push(format!(
            "dbfile {} is not writable by this user; using {}",
            out.dbfile.display(),
            to.display()
        ));
        out.dbfile = to;
    }
    out
}

/// The socket a client should talk to: what the daemon would choose when run by the same
/// user, preferring a socket that exists (a client run by another user than the daemon's
/// then still names the daemon's socket in its error).
pub fn client_socket(settings: &DaemonSettings) -> PathBuf {
    let configured = settings.socket.clone();
    if is_root() || configured.exists() {
        return configured;
    }
    let fallback = user_runtime_dir().join(file_name(&configured, "warden.sock"));
    if fallback.exists() {
        return fallback;
    }
    let parent = configured
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    if dir_usable(&parent) {
        configured
    } else {
        fallback
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path) -> DaemonSettings {
        DaemonSettings {
            loglevel: "INFO".into(),
            logtarget: "STDERR".into(),
            syslogsocket: "auto".into(),
            socket: dir.join("run/warden.sock"),
            pidfile: dir.join("run/warden.pid"),
            dbfile: dir.join("lib/warden.sqlite3"),
            dbpurgeage: 86400,
            dbmaxmatches: 10,
        }
    }

    #[test]
    fn writable_configured_paths_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let p = resolve(&s, None, None);
        assert_eq!(p.socket, s.socket);
        assert_eq!(p.dbfile, s.dbfile);
        assert!(p.fallbacks.is_empty());
        assert_eq!(client_socket(&s), s.socket);
        let over = dir.path().join("other.sock");
        assert_eq!(resolve(&s, Some(&over), None).socket, over);
    }

    #[test]
    fn usable_directories() {
        let dir = tempfile::tempdir().unwrap();
        assert!(dir_usable(dir.path()));
        assert!(dir_usable(&dir.path().join("a/b/c")), "creatable");
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        assert!(!dir_usable(&file));
        assert!(!dir_usable(&file.join("sub")), "below a file");
    }

    #[test]
    fn runtime_dir_follows_xdg() {
        // Only the shape is checked: the variable belongs to the test process.
        let d = user_runtime_dir();
        assert!(d.ends_with("warden") || d.to_string_lossy().starts_with("/tmp/warden-"));
    }
}
