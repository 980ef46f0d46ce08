//! Debian's fail2ban package, fetched at test time (never committed): its configuration
//! tree, its sample logs and its Python code, used as the compatibility oracle.
//!
//! `apt-get download fail2ban` runs once per target directory; the unpacked tree is kept
//! under `target/fail2ban-deb/`. Set `WARDEN_FAIL2BAN_DEB` to a local `.deb` to skip the
//! download.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;

/// The version the compatibility tests are written against.
pub const VERSION: &str = "1.0.2";

/// fail2ban's test conditions (`fail2ban/tests/utils.py`): "now" is fixed at this time
/// (2005-08-14 10:00 UTC) and decides the year of dates without one ...
pub const TEST_NOW: i64 = 1_124_013_600;
/// ... and local time is this POSIX zone.
pub const TEST_TZ: &str = "CET-01CEST-02,M3.5.0,M10.5.0";

/// [`TEST_TZ`] as a zone (passed explicitly; tests never set the process's TZ).
pub fn test_zone() -> TimeZone {
    TimeZone::posix(TEST_TZ).expect("fail2ban's test zone parses")
}

/// [`TEST_NOW`] as a timestamp.
pub fn test_now() -> Timestamp {
    Timestamp::from_second(TEST_NOW).expect("valid time")
}

/// A sample log's `time` annotation (`%Y-%m-%dT%H:%M:%S[.%f]`, local time in the test
/// zone) as the instant fail2ban's sample test compares with (`time.mktime`).
pub fn annotated_timestamp(text: &str) -> Timestamp {
    // Python's strptime takes one-digit fields too ("2005-03-7T02:09:33").
    let (main, frac) = text.split_once('.').unwrap_or((text, ""));
    let n: Vec<i64> = main
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse().unwrap_or_else(|e| panic!("{text}: {e}")))
        .collect();
    assert_eq!(n.len(), 6, "{text}");
    let dt = DateTime::new(
        n[0] as i16,
        n[1] as i8,
        n[2] as i8,
        n[3] as i8,
        n[4] as i8,
        n[5] as i8,
        0,
    )
    .unwrap_or_else(|e| panic!("{text}: {e}"));
    let ts = test_zone()
        .to_ambiguous_timestamp(dt)
        .compatible()
        .unwrap_or_else(|e| panic!("{text}: {e}"));
    // `%f`: up to six digits, read as microseconds.
    let micros: i64 = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().chain(std::iter::repeat('0')).take(6).collect();
        digits.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    };
    ts.checked_add(jiff::SignedDuration::from_micros(micros))
        .expect("in range")
}

/// [`annotated_timestamp`] as fractional seconds.
pub fn annotated_time(text: &str) -> f64 {
    let t = annotated_timestamp(text);
    t.as_nanosecond() as f64 / 1e9
}

/// Paths inside the unpacked package.
#[derive(Debug, Clone)]
pub struct Fail2banPackage {
    /// Root of the unpacked package (`dpkg -x` target).
    pub root: PathBuf,
}

impl Fail2banPackage {
    /// `etc/fail2ban`: jail.conf, filter.d, action.d.
    pub fn config_dir(&self) -> PathBuf {
        self.root.join("etc/fail2ban")
    }
    /// The Python package directory (put it on PYTHONPATH to run the tools).
    pub fn python_path(&self) -> PathBuf {
        self.root.join("usr/lib/python3/dist-packages")
    }
    /// `fail2ban/tests/files/logs`: the annotated sample logs.
    pub fn sample_logs(&self) -> PathBuf {
        self.python_path().join("fail2ban/tests/files/logs")
    }
    /// `fail2ban/tests/config`: extra test filters (`zzz-*`).
    pub fn test_config(&self) -> PathBuf {
        self.python_path().join("fail2ban/tests/config")
    }
    /// A command running one of the package's tools (`fail2ban-client`, `fail2ban-regex`)
    /// with python3 and the package on PYTHONPATH.
    pub fn tool(&self, name: &str) -> Command {
        let mut c = Command::new("python3");
        c.arg(self.root.join("usr/bin").join(name));
        c.env("PYTHONPATH", self.python_path());
        c
    }
}

/// The unpacked package; downloads and unpacks it on first use. Panics with a clear message
/// when it cannot (the tests that need it cannot run without it).
pub fn package() -> &'static Fail2banPackage {
    static PKG: OnceLock<Fail2banPackage> = OnceLock::new();
    PKG.get_or_init(|| fetch().unwrap_or_else(|e| panic!("fail2ban package unavailable: {e}")))
}

fn cache_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is target/tmp for integration tests.
    let base = option_env!("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("warden-test"));
    base.join("fail2ban-deb")
}

fn fetch() -> Result<Fail2banPackage, String> {
    let dir = cache_dir();
    let root = dir.join("root");
    let done = dir.join(".unpacked");
    if done.exists() {
        return Ok(Fail2banPackage { root });
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // Several test processes may race here; each unpacks into its own directory and the
    // first rename wins.
    let work = dir.join(format!("work-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let deb = match std::env::var_os("WARDEN_FAIL2BAN_DEB") {
        Some(p) => PathBuf::from(p),
        None => download(&work)?,
    };
    let unpack = work.join("root");
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(&unpack))?;
    let version =
        std::fs::read_to_string(unpack.join("usr/lib/python3/dist-packages/fail2ban/version.py"))
            .map_err(|e| format!("reading fail2ban/version.py: {e}"))?;
    if !version.contains(&format!("\"{VERSION}\"")) && !version.contains(&format!("'{VERSION}'")) {
        return Err(format!(
            "expected fail2ban {VERSION}, the package holds: {}",
            version
                .lines()
                .find(|l| l.contains("version"))
                .unwrap_or("?")
        ));
    }
    match std::fs::rename(&unpack, &root) {
        Ok(()) => {}
        Err(_) if root.exists() => {}
        Err(e) => return Err(format!("moving unpacked package into place: {e}")),
    }
    std::fs::write(&done, VERSION).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(Fail2banPackage { root })
}

fn download(work: &Path) -> Result<PathBuf, String> {
    run(Command::new("apt-get")
        .args(["download", "-q", &format!("fail2ban={VERSION}-2")])
        .current_dir(work))
    .or_else(|_| {
        run(Command::new("apt-get")
            .args(["download", "-q", "fail2ban"])
            .current_dir(work))
    })?;
    std::fs::read_dir(work)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| "apt-get download produced no .deb".to_string())
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
