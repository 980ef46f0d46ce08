//! One pfctl invocation: the parsed option flags, the captured stdout/stderr, lazily
//! read stdin, the clock, and the `err(3)`/`warnx(3)`/`usage()` conventions.

use std::io::Read;

use crate::os::Os;

/// Ends the invocation with this exit status (`exit(3)`, `err(3)`, `usage()`).
#[derive(Debug)]
pub struct Exit(pub i32);

pub type Res<T> = Result<T, Exit>;

/// The `PF_OPT_*` bits of pfctl that change behaviour.
#[derive(Debug, Default, Clone)]
pub struct Opts {
    pub quiet: bool,
    pub noaction: bool,
    /// `-n` with a readable `/dev/pf`: the kernel computes results without applying them.
    pub dummy: bool,
    pub verbose: u8,
    pub recurse: bool,
    pub nodns: bool,
    pub usedns: bool,
    pub killmatch: bool,
    pub debug: bool,
    pub numeric: bool,
    pub enable: bool,
    pub disable: bool,
}

impl Opts {
    pub fn v1(&self) -> bool {
        self.verbose >= 1
    }

    pub fn v2(&self) -> bool {
        self.verbose >= 2
    }

    /// Whether kernel calls happen at all (`RVTEST`): not in syntax-only mode.
    pub fn calls_kernel(&self) -> bool {
        !self.noaction || self.dummy
    }
}

pub struct Ctx {
    pub os: Os,
    pub now: i64,
    pub kill_bug: bool,
    pub deny: bool,
    pub opts: Opts,
    pub out: String,
    pub err: String,
    stdin: Option<String>,
}

impl Ctx {
    pub fn new(os: Os, now: i64, kill_bug: bool, deny: bool) -> Self {
        Ctx {
            os,
            now,
            kill_bug,
            deny,
            opts: Opts::default(),
            out: String::new(),
            err: String::new(),
            stdin: None,
        }
    }

    /// The text read from stdin, if the invocation read it.
    pub fn stdin_consumed(&self) -> Option<&str> {
        self.stdin.as_deref()
    }

    pub fn read_stdin(&mut self) -> String {
        if self.stdin.is_none() {
            let mut buf = Vec::new();
            // A closed or unreadable stdin reads as empty, like EOF.
            let _ = std::io::stdin().read_to_end(&mut buf);
            self.stdin = Some(String::from_utf8_lossy(&buf).into_owned());
        }
        self.stdin.clone().unwrap_or_default()
    }

    pub fn warnx(&mut self, msg: &str) {
        self.err.push_str("pfctl: ");
        self.err.push_str(msg);
        self.err.push('\n');
    }

    pub fn errx(&mut self, code: i32, msg: &str) -> Exit {
        self.warnx(msg);
        Exit(code)
    }

    pub fn usage(&mut self) -> Exit {
        let u = self.os.usage();
        self.err.push_str(u);
        Exit(1)
    }

    pub fn warnx_usage(&mut self, msg: &str) -> Exit {
        self.warnx(msg);
        self.usage()
    }

    /// `xprintf()` of pfctl_table.c: informational, silenced by `-q`, with the period or
    /// the `-n` suffix appended.
    pub fn xprintf(&mut self, msg: &str) {
        if self.opts.quiet {
            return;
        }
        self.err.push_str(msg);
        if self.opts.dummy {
            self.err.push_str(" (dummy).\n");
        } else if self.opts.noaction {
            self.err.push_str(" (syntax only).\n");
        } else {
            self.err.push_str(".\n");
        }
    }

    /// An informational `fprintf(stderr, …)` line guarded by `PF_OPT_QUIET`.
    pub fn info(&mut self, line: &str) {
        if !self.opts.quiet {
            self.err.push_str(line);
            self.err.push('\n');
        }
    }

    pub fn not_simulated(&mut self, what: &str) -> Exit {
        self.err
            .push_str(&format!("pfctl-sim: {what} is not simulated\n"));
        Exit(70)
    }
}

/// `strerror()` of an I/O error the way BSD libc words the common ones.
pub fn io_strerror(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(2) => "No such file or directory".into(),
        Some(13) => "Permission denied".into(),
        Some(20) => "Not a directory".into(),
        Some(21) => "Is a directory".into(),
        _ => match e.kind() {
            std::io::ErrorKind::NotFound => "No such file or directory".into(),
            std::io::ErrorKind::PermissionDenied => "Permission denied".into(),
            _ => e.to_string(),
        },
    }
}

/// Reads a `-f` argument: `-` is stdin; directories fail like `pfctl_fopen()`.
pub fn read_input(ctx: &mut Ctx, name: &str) -> Result<String, std::io::Error> {
    if name == "-" {
        return Ok(ctx.read_stdin());
    }
    if std::fs::metadata(name)?.is_dir() {
        return Err(std::io::Error::from_raw_os_error(21));
    }
    let bytes = std::fs::read(name)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// `ctime(3)` in UTC, including its newline.
pub fn ctime(t: i64) -> String {
    match jiff::Timestamp::from_second(t) {
        Ok(ts) => format!(
            "{}\n",
            ts.to_zoned(jiff::tz::TimeZone::UTC)
                .strftime("%a %b %e %H:%M:%S %Y")
        ),
        Err(_) => format!("{t}\n"),
    }
}
