//! A pfctl simulator environment for tests: a temporary directory with the state file,
//! the call log and an executable `pfctl` wrapper script that exports the `PFCTL_SIM_*`
//! settings and execs the simulator, so code under test (and daemons it spawns) only
//! needs a pfctl path. Settings changed here take effect at the next exec.
//!
//! Needs the `sim` feature (the simulator binary is built only then).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Which pfctl to imitate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Os {
    FreeBsd,
    OpenBsd,
}

impl Os {
    pub fn env_value(self) -> &'static str {
        match self {
            Os::FreeBsd => "freebsd",
            Os::OpenBsd => "openbsd",
        }
    }
}

/// One logged invocation (`PFCTL_SIM_LOG`); `argv` excludes the program name, `stdin`
/// is what the invocation read, if it read stdin.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Call {
    pub argv: Vec<String>,
    pub stdin: Option<String>,
    pub stdout: String,
    pub stderr: String,
    pub exit: i32,
}

/// What one invocation printed and returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    pub exit: i32,
}

/// A state to seed, in the simulator's JSON shape. `src`/`sport` is the initiator,
/// `dst`/`dport` the responder; `dir` is `in` or `out`.
#[derive(Debug, Clone, Serialize)]
pub struct State {
    pub id: String,
    pub creatorid: String,
    pub ifname: String,
    pub proto: String,
    pub dir: String,
    pub src: String,
    pub sport: u16,
    pub dst: String,
    pub dport: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_state: Option<String>,
    pub label: String,
    pub rule: i64,
    pub anchor: i64,
    pub age: u64,
    pub expires: u64,
    pub pkts: [u64; 2],
    pub bytes: [u64; 2],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rt_addr: Option<String>,
}

impl State {
    fn base(id: u64, proto: &str, dir: &str, src: &str, sport: u16, dst: &str, dport: u16) -> Self {
        State {
            id: format!("{id:016x}"),
            creatorid: "7a1c3e2f".into(),
            ifname: "all".into(),
            proto: proto.into(),
            dir: dir.into(),
            src: src.into(),
            sport,
            dst: dst.into(),
            dport,
            src_state: None,
            dst_state: None,
            label: String::new(),
            rule: 0,
            anchor: -1,
            age: 0,
            expires: 0,
            pkts: [0, 0],
            bytes: [0, 0],
            rt: None,
            rt_addr: None,
        }
    }

    /// A TCP connection from `remote:rport` to this host's `local:lport`.
    pub fn tcp_in(id: u64, remote: &str, rport: u16, local: &str, lport: u16) -> Self {
        Self::base(id, "tcp", "in", remote, rport, local, lport)
    }

    /// A TCP connection this host opened from `local:lport` to `remote:rport`.
    pub fn tcp_out(id: u64, local: &str, lport: u16, remote: &str, rport: u16) -> Self {
        Self::base(id, "tcp", "out", local, lport, remote, rport)
    }

    pub fn udp_in(id: u64, remote: &str, rport: u16, local: &str, lport: u16) -> Self {
        Self::base(id, "udp", "in", remote, rport, local, lport)
    }

    pub fn ifname(mut self, ifname: &str) -> Self {
        self.ifname = ifname.into();
        self
    }

    pub fn label(mut self, label: &str) -> Self {
        self.label = label.into();
        self
    }

    pub fn creator(mut self, creatorid: u32) -> Self {
        self.creatorid = format!("{creatorid:08x}");
        self
    }

    pub fn rule(mut self, rule: i64, anchor: i64) -> Self {
        self.rule = rule;
        self.anchor = anchor;
        self
    }

    pub fn peers(mut self, src_state: &str, dst_state: &str) -> Self {
        self.src_state = Some(src_state.into());
        self.dst_state = Some(dst_state.into());
        self
    }

    pub fn counters(mut self, age: u64, expires: u64, pkts: [u64; 2], bytes: [u64; 2]) -> Self {
        self.age = age;
        self.expires = expires;
        self.pkts = pkts;
        self.bytes = bytes;
        self
    }

    pub fn route_to(mut self, gateway: &str) -> Self {
        self.rt = Some("route-to".into());
        self.rt_addr = Some(gateway.into());
        self
    }
}

#[derive(Debug, Default, Clone)]
struct Settings {
    now: Option<i64>,
    kill_bug: bool,
    deny: bool,
    delay_ms: Option<u64>,
    fail: Vec<String>,
}

/// A simulator environment in its own temporary directory.
pub struct PfSim {
    dir: tempfile::TempDir,
    os: Os,
    settings: Settings,
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

impl PfSim {
    pub fn new(os: Os) -> PfSim {
        let dir = tempfile::Builder::new()
            .prefix("pfsim")
            .tempdir()
            .expect("create a temporary directory");
        let sim = PfSim {
            dir,
            os,
            settings: Settings::default(),
        };
        sim.write_wrapper();
        sim
    }

    pub fn freebsd() -> PfSim {
        PfSim::new(Os::FreeBsd)
    }

    pub fn openbsd() -> PfSim {
        PfSim::new(Os::OpenBsd)
    }

    /// The simulator binary itself.
    pub fn sim_binary() -> PathBuf {
        PathBuf::from(env!("CARGO_BIN_EXE_pfctl-sim"))
    }

    pub fn os(&self) -> Os {
        self.os
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The executable to configure as pfctl.
    pub fn pfctl_path(&self) -> PathBuf {
        self.dir().join("pfctl")
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir().join("state.json")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir().join("calls.jsonl")
    }

    /// The `PFCTL_SIM_*` variables the wrapper exports.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut v = vec![
            (
                "PFCTL_SIM_STATE".to_string(),
                self.state_path().display().to_string(),
            ),
            ("PFCTL_SIM_OS".to_string(), self.os.env_value().to_string()),
            (
                "PFCTL_SIM_LOG".to_string(),
                self.log_path().display().to_string(),
            ),
        ];
        let s = &self.settings;
        if let Some(now) = s.now {
            v.push(("PFCTL_SIM_NOW".into(), now.to_string()));
        }
        if s.kill_bug {
            v.push(("PFCTL_SIM_KILL_BUG".into(), "1".into()));
        }
        if s.deny {
            v.push(("PFCTL_SIM_DENY".into(), "1".into()));
        }
        if let Some(ms) = s.delay_ms {
            v.push(("PFCTL_SIM_DELAY_MS".into(), ms.to_string()));
        }
        if !s.fail.is_empty() {
            v.push(("PFCTL_SIM_FAIL".into(), s.fail.join("\n")));
        }
        v
    }

    fn write_wrapper(&self) {
        let mut text = String::from("#!/bin/sh\n");
        for name in [
            "PFCTL_SIM_NOW",
            "PFCTL_SIM_KILL_BUG",
            "PFCTL_SIM_DENY",
            "PFCTL_SIM_DELAY_MS",
            "PFCTL_SIM_FAIL",
        ] {
            text.push_str(&format!("unset {name}\n"));
        }
        for (k, v) in self.env() {
            text.push_str(&format!("{k}={}\nexport {k}\n", sh_quote(&v)));
        }
        text.push_str(&format!(
            "exec {} \"$@\"\n",
            sh_quote(&Self::sim_binary().display().to_string())
        ));
        // Written by a child process so that this (multi-threaded) test process never
        // holds a writable descriptor to the script: a descriptor inherited by a child
        // another thread forks at the wrong moment makes exec fail with ETXTBSY. The
        // rename keeps a concurrent exec from reading half a script.
        let tmp = self.dir().join(".pfctl.tmp");
        let mut child = Command::new("/bin/sh")
            .args([
                "-c",
                "cat > \"$1\" && chmod 755 \"$1\" && mv -f \"$1\" \"$2\"",
                "sh",
            ])
            .arg(&tmp)
            .arg(self.pfctl_path())
            .stdin(Stdio::piped())
            .spawn()
            .expect("run /bin/sh to install the pfctl wrapper");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write the pfctl wrapper");
        let status = child.wait().expect("wait for /bin/sh");
        assert!(status.success(), "installing the pfctl wrapper failed");
    }

    /// Fixes the clock (`PFCTL_SIM_NOW`, epoch seconds).
    pub fn set_now(&mut self, epoch: i64) {
        self.settings.now = Some(epoch);
        self.write_wrapper();
    }

    /// Reproduces the two-argument `-k`/`-K` bug.
    pub fn set_kill_bug(&mut self, on: bool) {
        self.settings.kill_bug = on;
        self.write_wrapper();
    }

    /// Makes `/dev/pf` unopenable.
    pub fn set_deny(&mut self, on: bool) {
        self.settings.deny = on;
        self.write_wrapper();
    }

    /// Makes every invocation sleep before acting.
    pub fn set_delay_ms(&mut self, ms: Option<u64>) {
        self.settings.delay_ms = ms;
        self.write_wrapper();
    }

    /// Adds a `PFCTL_SIM_FAIL` rule: `[{times=N,after,delay=MS}]REGEX=>EXIT[:STDERR]`.
    pub fn fail(&mut self, rule: &str) {
        self.settings.fail.push(rule.to_string());
        self.write_wrapper();
    }

    /// Removes all failure rules and forgets how often they fired.
    pub fn clear_fail(&mut self) {
        self.settings.fail.clear();
        let _ = std::fs::remove_file(self.dir().join("state.json.fail-counts"));
        self.write_wrapper();
    }

    fn sim_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(Self::sim_binary());
        c.args(args);
        for (k, v) in self.env() {
            c.env(k, v);
        }
        c
    }

    /// Merges JSON into the state (objects key by key, other values replaced).
    pub fn seed_json(&self, v: Value) {
        let mut c = self.sim_command(&["--sim-seed", "-"]);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("run pfctl-sim --sim-seed");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(v.to_string().as_bytes())
            .expect("write the seed");
        let out = child.wait_with_output().expect("wait for pfctl-sim");
        assert!(
            out.status.success(),
            "seeding failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Appends states to the state table.
    pub fn seed_states(&self, states: &[State]) {
        let mut all: Vec<Value> = self.states();
        all.extend(
            states
                .iter()
                .map(|s| serde_json::to_value(s).expect("serialise a state")),
        );
        self.seed_json(json!({ "states": all }));
    }

    /// The normalised state.
    pub fn state(&self) -> Value {
        let out = self
            .sim_command(&["--sim-dump"])
            .output()
            .expect("run pfctl-sim --sim-dump");
        assert!(
            out.status.success(),
            "dump failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("the dump is JSON")
    }

    /// The entries of an active table as `-T show` prints them, without its padding:
    /// `1.2.3.4`, `10.0.0.0/8`, `!10.1.0.0/16`. Empty when the table does not exist.
    pub fn table(&self, anchor: &str, table: &str) -> Vec<String> {
        let st = self.state();
        let t = &st["anchors"][anchor]["tables"][table];
        if t.is_null() || t["active"] == Value::Bool(false) {
            return Vec::new();
        }
        let mut rows: Vec<(u8, u128, std::cmp::Reverse<u8>, String)> = Vec::new();
        let empty = serde_json::Map::new();
        for (key, e) in t["entries"].as_object().unwrap_or(&empty) {
            let (a, p) = key.split_once('/').expect("normalised key");
            let ip: IpAddr = a.parse().expect("normalised address");
            let prefix: u8 = p.parse().expect("normalised prefix");
            let (fam, bits, host) = match ip {
                IpAddr::V4(v) => (0, u128::from(u32::from(v)), 32),
                IpAddr::V6(v) => (1, u128::from(v), 128),
            };
            let not = if e["not"] == Value::Bool(true) {
                "!"
            } else {
                ""
            };
            let shown = if prefix == host {
                format!("{not}{a}")
            } else {
                format!("{not}{key}")
            };
            rows.push((fam, bits, std::cmp::Reverse(prefix), shown));
        }
        rows.sort();
        rows.into_iter().map(|r| r.3).collect()
    }

    /// Whether an active table exists (what table commands can see).
    pub fn table_exists(&self, anchor: &str, table: &str) -> bool {
        let t = &self.state()["anchors"][anchor]["tables"][table];
        !t.is_null() && t["active"] != Value::Bool(false)
    }

    /// Table flags and metadata as stored (`persist`, `const`, `counters`, `tzero` …).
    pub fn table_json(&self, anchor: &str, table: &str) -> Value {
        self.state()["anchors"][anchor]["tables"][table].clone()
    }

    pub fn rules(&self, anchor: &str) -> Vec<String> {
        self.state()["anchors"][anchor]["rules"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| r.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Stored anchors (those with rules or tables).
    pub fn anchors(&self) -> Vec<String> {
        self.state()["anchors"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    pub fn states(&self) -> Vec<Value> {
        self.state()["states"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn state_ids(&self) -> Vec<String> {
        self.states()
            .iter()
            .filter_map(|s| s["id"].as_str().map(String::from))
            .collect()
    }

    pub fn src_nodes(&self) -> Vec<Value> {
        self.state()["src_nodes"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn enabled(&self) -> bool {
        self.state()["enabled"] != Value::Bool(false)
    }

    /// Every logged invocation, oldest first.
    pub fn calls(&self) -> Vec<Call> {
        match std::fs::read_to_string(self.log_path()) {
            Ok(text) => text
                .lines()
                .map(|l| serde_json::from_str(l).expect("a log line is a call"))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The argument vectors of the logged invocations.
    pub fn argvs(&self) -> Vec<Vec<String>> {
        self.calls().into_iter().map(|c| c.argv).collect()
    }

    pub fn clear_calls(&self) {
        let _ = std::fs::remove_file(self.log_path());
    }

    /// Runs the wrapper as code under test would.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, None)
    }

    pub fn run_stdin(&self, args: &[&str], stdin: &str) -> Output {
        self.run_with_stdin(args, Some(stdin))
    }

    fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut c = Command::new(self.pfctl_path());
        c.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("run the pfctl wrapper");
        let mut input = child.stdin.take().expect("stdin");
        if let Some(s) = stdin {
            // The simulator may exit without reading; a broken pipe is fine then.
            let _ = input.write_all(s.as_bytes());
        }
        drop(input);
        let out = child.wait_with_output().expect("wait for pfctl");
        Output {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            exit: out.status.code().unwrap_or(-1),
        }
    }

    /// Entries keyed as stored (`addr/prefix`) with their JSON, for tzero/counter checks.
    pub fn entries(&self, anchor: &str, table: &str) -> BTreeMap<String, Value> {
        self.state()["anchors"][anchor]["tables"][table]["entries"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }
}
