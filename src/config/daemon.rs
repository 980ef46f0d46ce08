//! Daemon settings: `warden.conf` (`[Definition]`: loglevel, logtarget, syslogsocket,
//! socket, pidfile, dbfile, dbpurgeage, dbmaxmatches), with `warden.local` and
//! `warden.d/` over it. A fail2ban directory has `fail2ban.conf` instead; warden reads its
//! logging and database-retention settings but keeps its own socket, pid file, database
//! and log file, so it never writes into fail2ban's.

use std::path::{Path, PathBuf};

use super::diag::Problem;
use super::duration::parse_duration;
use super::interp::Vars;
use super::model::{DaemonSettings, Span};
use super::store::{Files, Store};

pub const DEFAULT_SOCKET: &str = "/run/warden/warden.sock";
pub const DEFAULT_PIDFILE: &str = "/run/warden/warden.pid";
pub const DEFAULT_DBFILE: &str = "/var/lib/warden/warden.sqlite3";

const LEVELS: [&str; 10] = [
    "CRITICAL",
    "ERROR",
    "WARNING",
    "WARN",
    "NOTICE",
    "INFO",
    "DEBUG",
    "TRACEDEBUG",
    "HEAVYDEBUG",
    "TRACE",
];

pub(crate) fn defaults() -> DaemonSettings {
    DaemonSettings {
        loglevel: "INFO".into(),
        logtarget: "STDERR".into(),
        syslogsocket: "auto".into(),
        socket: PathBuf::from(DEFAULT_SOCKET),
        pidfile: PathBuf::from(DEFAULT_PIDFILE),
        dbfile: PathBuf::from(DEFAULT_DBFILE),
        dbpurgeage: 86400,
        dbmaxmatches: 10,
    }
}

/// Reads the daemon settings, reporting problems into `errors` and `warnings`.
pub(crate) fn read(
    files: &Files,
    errors: &mut Vec<Problem>,
    warnings: &mut Vec<Problem>,
) -> DaemonSettings {
    let mut out = defaults();
    let (store, foreign) = match Store::read_base(files, Path::new("warden")) {
        Some(s) => (s, false),
        None => match Store::read_base(files, Path::new("fail2ban")) {
            Some(s) => (s, true),
            None => return out,
        },
    };
    let get = |key: &str, errors: &mut Vec<Problem>| -> Option<(String, Span)> {
        match store.get("Definition", key, &Vars::new(), None) {
            Ok(Some(v)) => Some((v.text.trim().to_string(), v.span)),
            Ok(None) => None,
            Err(p) => {
                errors.push(p);
                None
            }
        }
    };
    if let Some((v, span)) = get("loglevel", errors) {
        let upper = v.to_uppercase();
        if LEVELS.contains(&upper.as_str()) || upper.parse::<u32>().is_ok() {
            out.loglevel = upper;
        } else {
            errors.push(Problem::new(
                span,
                format!(
                    "loglevel `{v}` is not one of CRITICAL, ERROR, WARNING, NOTICE, INFO, DEBUG"
                ),
            ));
        }
    }
    if let Some((v, _)) = get("syslogsocket", errors) {
        out.syslogsocket = v;
    }
    let mut kept = Vec::new();
    if let Some((v, _)) = get("logtarget", errors) {
        let special = ["STDOUT", "STDERR", "SYSOUT", "SYSLOG", "SYSTEMD-JOURNAL"]
            .iter()
            .any(|s| v.to_uppercase().starts_with(s));
        if foreign && !special {
            kept.push(format!("logtarget {v}"));
        } else {
            out.logtarget = v;
        }
    }
    for (key, slot) in [
        ("socket", &mut out.socket),
        ("pidfile", &mut out.pidfile),
        ("dbfile", &mut out.dbfile),
    ] {
        if let Some((v, _)) = get(key, errors) {
            if foreign {
                kept.push(format!("{key} {v}"));
            } else {
                *slot = PathBuf::from(v);
            }
        }
    }
    if let Some((v, span)) = get("dbpurgeage", errors) {
        match parse_duration(&v) {
            Ok(n) => out.dbpurgeage = n,
            Err(e) => errors.push(Problem::new(span, format!("dbpurgeage: {e}"))),
        }
    }
    if let Some((v, span)) = get("dbmaxmatches", errors) {
        match v.parse::<u32>() {
            Ok(n) => out.dbmaxmatches = n,
            Err(_) => errors.push(Problem::new(
                span,
                format!("dbmaxmatches `{v}` is not a whole number"),
            )),
        }
    }
    if !kept.is_empty() {
        let file = store
            .files
            .first()
            .map(|f| files.source.display(f))
            .unwrap_or_default();
        warnings.push(Problem::new(
            Span { file, line: 0 },
            format!(
                "no warden.conf: read fail2ban.conf, but kept warden's own files instead of fail2ban's ({})",
                kept.join(", ")
            ),
        ));
    }
    out
}
