//! Running the real `warden` daemon in a temporary directory: a configuration (warden's
//! shipped filters and actions plus the test's jails), its socket, pid file, ledger and
//! log all under the directory, the log backend recording firewall calls to a file.
//!
//! ```ignore
//! let mut d = Daemon::new(r#"
//! [sshd]
//! enabled = true
//! filter = sshd
//! logpath = {logs}/auth.log
//! action = log[logfile="{fw}"]
//! "#);
//! d.start();
//! d.append("auth.log", &[sshd_failure("192.0.2.7")]);
//! d.wait_for("a ban", || d.fw_targets("ban").contains("192.0.2.7"));
//! ```
//!
//! `{logs}` (the directory for test logs), `{fw}` (the log backend's record file) and
//! `{dir}` (the temporary directory) are replaced in the configuration text. Helpers
//! never sleep a fixed time where a condition can be polled.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `warden` binary under test.
pub fn warden_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_warden"))
}

/// A syslog line of sshd reporting a failed password from `addr`, dated now.
pub fn sshd_failure(addr: &str) -> String {
    sshd_failure_at(addr, jiff::Zoned::now())
}

/// Like [`sshd_failure`], dated `at`.
pub fn sshd_failure_at(addr: &str, at: jiff::Zoned) -> String {
    format!(
        "{} host sshd[4242]: Failed password for root from {addr} port 22 ssh2",
        at.strftime("%b %e %H:%M:%S")
    )
}

/// A daemon in its own directory; killed when dropped.
pub struct Daemon {
    tmp: tempfile::TempDir,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub pidfile: PathBuf,
    pub db: PathBuf,
    pub logs: PathBuf,
    pub fw: PathBuf,
    pub stderr: PathBuf,
    child: Option<Child>,
    /// Extra arguments for `warden run` (after `run --foreground`).
    pub run_args: Vec<String>,
    /// Extra environment for the daemon.
    pub env: Vec<(String, String)>,
    /// A network namespace to run the daemon in (`ip netns exec NAME warden …`, which
    /// execs, so the child is the daemon itself); the client stays outside.
    pub netns: Option<String>,
}

impl Daemon {
    /// A daemon whose jail.conf is `jails` (with `{logs}`, `{fw}`, `{dir}` replaced),
    /// preceded by a `[DEFAULT]` section that ignores nobody and bans through the log
    /// backend. Not started.
    pub fn new(jails: &str) -> Daemon {
        let tmp = tempfile::Builder::new()
            .prefix("warden-daemon-")
            .tempdir()
            .expect("temporary directory");
        let root = tmp.path().to_path_buf();
        let config = root.join("config");
        let logs = root.join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        for (path, text) in warden::config::embedded_files() {
            if path.starts_with("jail.") || path.starts_with("jail.d") {
                continue;
            }
            let p = config.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let d = Daemon {
            socket: root.join("run/warden.sock"),
            pidfile: root.join("run/warden.pid"),
            db: root.join("lib/warden.sqlite3"),
            fw: root.join("firewall.jsonl"),
            stderr: root.join("daemon.log"),
            config,
            logs,
            tmp,
            child: None,
            run_args: Vec::new(),
            env: Vec::new(),
            netns: None,
        };
        d.write_config(
            "warden.local",
            &format!(
                "[Definition]\nloglevel = DEBUG\nlogtarget = STDERR\nsocket = {}\npidfile = {}\ndbfile = {}\n",
                d.socket.display(),
                d.pidfile.display(),
                d.db.display()
            ),
        );
        d.set_jails(jails);
        d
    }

    /// The temporary directory.
    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    fn expand(&self, text: &str) -> String {
        text.replace("{logs}", &self.logs.display().to_string())
            .replace("{fw}", &self.fw.display().to_string())
            .replace("{dir}", &self.dir().display().to_string())
    }

    /// Replaces jail.conf (for a reload test).
    pub fn set_jails(&self, jails: &str) {
        let text = format!(
            "[DEFAULT]\nignoreip =\nignoreself = false\nusedns = no\nfindtime = 10m\nmaxretry = 3\nbantime = 10m\nbackend = auto\n\n{}\n",
            self.expand(jails)
        );
        self.write_config("jail.conf", &text);
    }

    /// Writes a file of the configuration directory (`filter.d/x.conf`, ...).
    pub fn write_config(&self, rel: &str, text: &str) {
        let p = self.config.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, self.expand(text)).unwrap();
    }

    /// A test log's path.
    pub fn log(&self, name: &str) -> PathBuf {
        self.logs.join(name)
    }

    /// Appends lines to a test log (created if needed), in one write.
    pub fn append(&self, name: &str, lines: &[String]) {
        let mut text = String::new();
        for l in lines {
            text.push_str(l);
            text.push('\n');
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(name))
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    /// Starts the daemon and waits until it answers `ping`.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr)
            .unwrap();
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(warden_bin());
                c
            }
            None => Command::new(warden_bin()),
        };
        cmd.arg("--config")
            .arg(&self.config)
            .arg("run")
            .arg("--foreground")
            .args(&self.run_args)
            .env("RUST_LOG", "warden=debug")
            .envs(self.env.iter().map(|(k, v)| (k.clone(), v.clone())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err);
        self.child = Some(cmd.spawn().expect("start warden"));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.try_client(&["ping"]).status.success() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("warden exited at start ({status}):\n{}", self.daemon_log());
            }
            assert!(
                Instant::now() < deadline,
                "warden did not answer within 60 s:\n{}",
                self.daemon_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        wait_exit(&mut child, Duration::from_secs(60), &self.stderr)
    }

    /// Sends a signal (SIGHUP for a reload).
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), sig).unwrap();
    }

    /// Kills the daemon with SIGKILL (a crash).
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Runs `warden <args>` against this daemon.
    pub fn try_client(&self, args: &[&str]) -> Output {
        Command::new(warden_bin())
            .arg("--config")
            .arg(&self.config)
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run the client")
    }

    /// Runs `warden <args>`, asserting success; returns stdout.
    pub fn client(&self, args: &[&str]) -> String {
        let out = self.try_client(args);
        assert!(
            out.status.success(),
            "warden {args:?} failed ({}): {}{}\n--- daemon log ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.tail_log(60)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `warden <args> --json` and parses the answer.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.client(&a)).expect("JSON answer")
    }

    /// `(target, jail)` of every ban in force.
    pub fn banned(&self) -> BTreeSet<(String, String)> {
        let v = self.json(&["banned"]);
        v["bans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["target"].as_str().unwrap().to_string(),
                    b["jail"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// The status of one jail as JSON (`warden status JAIL --json`).
    pub fn jail_status(&self, jail: &str) -> Value {
        self.json(&["status", jail])
    }

    /// The log backend's records, one JSON object per firewall call.
    pub fn fw_records(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.fw)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("a log backend record"))
            .collect()
    }

    /// Targets of the records of one operation (`ban`, `unban`, `start`, `stop`, `kill`),
    /// optionally of one jail, in order.
    pub fn fw_targets(&self, op: &str, jail: Option<&str>) -> Vec<String> {
        self.fw_records()
            .iter()
            .filter(|r| r["op"] == op && jail.is_none_or(|j| r["jail"] == j))
            .flat_map(|r| {
                r["targets"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap().to_string())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The addresses the log backend holds now for a jail, replaying its records (the
    /// last `start` resets the set).
    pub fn fw_held(&self, jail: &str) -> BTreeSet<String> {
        let mut held = BTreeSet::new();
        for r in self.fw_records().iter().filter(|r| r["jail"] == jail) {
            let ts: Vec<String> = r["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_string())
                .collect();
            match r["op"].as_str().unwrap() {
                "start" => held = ts.into_iter().collect(),
                "ban" => held.extend(ts),
                "unban" => ts.iter().for_each(|t| {
                    held.remove(t);
                }),
                "stop" => held.clear(),
                _ => {}
            }
        }
        held
    }

    /// The daemon's own log so far.
    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The last `n` lines of the daemon's log.
    pub fn tail_log(&self, n: usize) -> String {
        let log = self.daemon_log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Polls `cond` every 20 ms until it holds; panics with the daemon's log after
    /// `timeout`. Returns how long it took.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut cond: impl FnMut() -> bool,
    ) -> Duration {
        let start = Instant::now();
        loop {
            if cond() {
                return start.elapsed();
            }
            if start.elapsed() > timeout {
                panic!(
                    "timed out after {timeout:?} waiting for {what}\n--- firewall records ---\n{}\n--- daemon log ---\n{}",
                    std::fs::read_to_string(&self.fw).unwrap_or_default(),
                    self.tail_log(80)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Lines read by a jail so far (from its status).
    pub fn lines_read(&self, jail: &str) -> u64 {
        self.jail_status(jail)["filter"]["lines_read"]
            .as_u64()
            .unwrap()
    }

    /// Failures counted by a jail so far.
    pub fn total_failed(&self, jail: &str) -> u64 {
        self.jail_status(jail)["filter"]["total_failed"]
            .as_u64()
            .unwrap()
    }
}

fn wait_exit(child: &mut Child, timeout: Duration, log: &Path) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "warden did not stop within {timeout:?}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
