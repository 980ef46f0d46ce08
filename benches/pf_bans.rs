//! 10,000 bans through the pfctl simulator: pfctl invocations and wall time of the PF
//! backend (batched table commands, one state listing per batch) against one invocation
//! per address (`pfctl -a f2b/<jail> -t f2b-<jail> -T add <ip>`, how fail2ban's `pf`
//! action bans), in the same run.
//!
//! `cargo bench -j2 --features sim --bench pf_bans [-- N]` (N defaults to 10000).
//! The simulator rewrites its JSON state on every call, so its per-call cost grows with
//! the table; the invocation counts are the portable result, the floor printed for an
//! empty call is the fork/exec cost a real pfctl also pays.

#[allow(dead_code)]
#[path = "../tests/support/pfctl.rs"]
mod pfctl;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde_json::json;
use warden::firewall::pf::PfAction;
use warden::firewall::{Action, Ban, JailSpec, KillScope, PortSpec};

use pfctl::{PfSim, State};

fn addr(i: u32) -> String {
    format!("10.{}.{}.{}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff)
}

fn ban(i: u32) -> Ban {
    Ban {
        jail: "sshd".into(),
        target: IpNet::from(addr(i).parse::<std::net::IpAddr>().unwrap()),
        start: 1_717_243_200,
        expires: Some(1_717_243_800),
        bantime: 600,
        failures: 5,
        bancount: 1,
        matches: Vec::new(),
        fields: BTreeMap::new(),
        restored: false,
    }
}

fn sim() -> PfSim {
    let mut s = PfSim::freebsd();
    s.set_now(1_717_243_200);
    s.seed_json(json!({"anchors": {"": {"rules": ["anchor \"warden/*\" all"]}}}));
    s
}

fn action(s: &PfSim) -> PfAction {
    let spec = JailSpec {
        jail: "sshd".into(),
        ports: PortSpec::parse("ssh").unwrap(),
        protocols: vec!["tcp".into()],
        kill_states: KillScope::Ports,
        params: [("pfctl".to_string(), s.pfctl_path().display().to_string())].into(),
    };
    PfAction::new(&spec).unwrap()
}

struct Run {
    calls: usize,
    wall: Duration,
}

/// Bans `n` addresses in batches of `batch`, each batch followed by its state kill.
fn warden(n: u32, batch: usize) -> Run {
    let s = sim();
    let mut a = action(&s);
    a.start(&[]).unwrap();
    // A few live states so the kill has work to do.
    s.seed_states(&[
        State::tcp_in(1, &addr(1), 50001, "192.0.2.10", 22),
        State::tcp_in(2, &addr(n / 2), 50002, "192.0.2.10", 22),
    ]);
    s.clear_calls();
    let bans: Vec<Ban> = (0..n).map(ban).collect();
    let started = Instant::now();
    let mut killed = 0;
    for chunk in bans.chunks(batch) {
        a.ban(chunk).unwrap();
        killed += a
            .kill_states(chunk)
            .unwrap()
            .iter()
            .map(|r| r.killed)
            .sum::<u64>();
    }
    let wall = started.elapsed();
    assert_eq!(s.table("warden/sshd", "warden-sshd").len(), n as usize);
    assert_eq!(killed, 2);
    Run {
        calls: s.calls().len(),
        wall,
    }
}

/// One pfctl process per address, as fail2ban's `pf` action runs them.
fn per_address(n: u32) -> Run {
    let s = sim();
    let pfctl = s.pfctl_path();
    let started = Instant::now();
    for i in 0..n {
        let status = Command::new(&pfctl)
            .args(["-a", "f2b/sshd", "-t", "f2b-sshd", "-T", "add", &addr(i)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    }
    let wall = started.elapsed();
    assert_eq!(s.table("f2b/sshd", "f2b-sshd").len(), n as usize);
    Run {
        calls: s.calls().len(),
        wall,
    }
}

/// The cost of one call that does nothing: the floor every invocation pays.
fn empty_call() -> Duration {
    let s = sim();
    let pfctl = s.pfctl_path();
    let rounds = 50;
    let started = Instant::now();
    for _ in 0..rounds {
        Command::new(&pfctl)
            .args(["-s", "Running"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
    }
    started.elapsed() / rounds
}

fn main() {
    let n: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000);
    println!("pf backend, {n} bans through the pfctl simulator (FreeBSD mode)");
    let floor = empty_call();
    println!("empty pfctl call: {:.2} ms", floor.as_secs_f64() * 1e3);
    let whole = warden(n, n as usize);
    println!(
        "warden, one batch of {n} + state kill: {} pfctl calls, {:.3} s",
        whole.calls,
        whole.wall.as_secs_f64()
    );
    let hundreds = warden(n, 100);
    println!(
        "warden, batches of 100 + state kill each: {} pfctl calls, {:.3} s",
        hundreds.calls,
        hundreds.wall.as_secs_f64()
    );
    let single = per_address(n);
    println!(
        "one pfctl per address (no state kill): {} pfctl calls, {:.3} s",
        single.calls,
        single.wall.as_secs_f64()
    );
    println!(
        "ratio per address / warden one batch: {:.0}x calls, {:.1}x wall",
        single.calls as f64 / whole.calls as f64,
        single.wall.as_secs_f64() / whole.wall.as_secs_f64()
    );
    println!(
        "ratio per address / warden batches of 100: {:.0}x calls, {:.1}x wall",
        single.calls as f64 / hundreds.calls as f64,
        single.wall.as_secs_f64() / hundreds.wall.as_secs_f64()
    );
    println!(
        "per-address calls at the empty-call floor alone: {:.3} s",
        floor.as_secs_f64() * f64::from(n)
    );
}
