//! Applying many bans through the nftables backend (one transaction per batch) against one
//! `nft add element` process per ban, as fail2ban's nftables action does, in a fresh
//! network namespace. Needs root. Run: `cargo bench --bench nft_batch [-- COUNT]`
//! (default 10000), or `bench/nft/run.sh`.

#[allow(dead_code)]
#[path = "../tests/support/netns.rs"]
mod netns;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use warden::firewall::nftables::NftAction;
use warden::firewall::{Action, Ban, JailSpec, KillScope, PortSpec};

fn bans(count: u32, jail: &str) -> Vec<Ban> {
    let now = warden::now_epoch();
    (0..count)
        .map(|i| {
            // 198.18.0.0/15 is reserved for benchmarks; it only exists inside the namespace.
            let addr = std::net::Ipv4Addr::from(u32::from_be_bytes([198, 18, 0, 0]) + i);
            Ban {
                jail: jail.into(),
                target: IpNet::from(std::net::IpAddr::V4(addr)),
                start: now,
                expires: Some(now + 3600),
                bantime: 3600,
                failures: 5,
                bancount: 1,
                matches: Vec::new(),
                fields: BTreeMap::new(),
                restored: false,
            }
        })
        .collect()
}

fn spec(jail: &str) -> JailSpec {
    JailSpec {
        jail: jail.into(),
        ports: PortSpec::parse("ssh").unwrap(),
        protocols: vec!["tcp".into()],
        kill_states: KillScope::None,
        params: BTreeMap::new(),
    }
}

fn count_elements(ns: &netns::Netns, table: &str, set: &str) -> usize {
    let v = ns.nft_json(&["list", "set", "inet", table, set]);
    v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|i| i.get("set"))
        .and_then(|s| s.get("elem"))
        .and_then(|e| e.as_array())
        .map_or(0, |a| a.len())
}

/// One `nft add element` process per ban into `table`/`set`; returns the elapsed time.
fn one_process_per_ban(ns: &netns::Netns, table: &str, set: &str, bans: &[Ban]) -> Duration {
    ns.run(|| {
        let t0 = Instant::now();
        for b in bans {
            let status = Command::new("nft")
                .args([
                    "add",
                    "element",
                    "inet",
                    table,
                    set,
                    &format!("{{ {} }}", b.target.addr()),
                ])
                .status()
                .expect("run nft");
            assert!(status.success());
        }
        t0.elapsed()
    })
}

fn report(label: &str, n: usize, d: Duration, base: Duration) {
    println!(
        "{label:<58} {n:>6} bans {:>10.3} s {:>9.1} µs/ban {:>9.1}x",
        d.as_secs_f64(),
        d.as_secs_f64() * 1e6 / n as f64,
        d.as_secs_f64() / base.as_secs_f64()
    );
}

fn main() {
    // `cargo test --all-targets` runs bench targets too; this one needs root and minutes.
    if !std::env::args().any(|a| a == "--bench") {
        println!("nft_batch: run with `cargo bench --bench nft_batch` (needs root)");
        return;
    }
    let count: u32 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(|a| a.parse().expect("COUNT must be a number"))
        .unwrap_or(10_000);
    println!(
        "nft: {}",
        String::from_utf8_lossy(
            &Command::new("nft")
                .arg("--version")
                .output()
                .unwrap()
                .stdout
        )
        .trim()
    );
    let batch = bans(count, "sshd");

    // Each method starts from an empty ruleset in its own namespace.
    // warden: one transaction for the whole batch.
    let ns = netns::Netns::new("batch");
    let mut action = NftAction::new(spec("sshd")).unwrap();
    let batched = ns.run(|| {
        action.start(&[]).unwrap();
        let t0 = Instant::now();
        action.ban(&batch).unwrap();
        t0.elapsed()
    });
    assert_eq!(count_elements(&ns, "warden", "ban4-sshd"), count as usize);
    // A re-ban of every address (each element rewritten with a new timeout), then an
    // unban of all of them.
    let mut longer = batch.clone();
    for b in &mut longer {
        b.expires = b.expires.map(|e| e + 3600);
    }
    let rebanned = ns.run(|| {
        let t0 = Instant::now();
        action.ban(&longer).unwrap();
        t0.elapsed()
    });
    assert_eq!(count_elements(&ns, "warden", "ban4-sshd"), count as usize);
    let unbanned = ns.run(|| {
        let t0 = Instant::now();
        action.unban(&longer).unwrap();
        t0.elapsed()
    });
    assert_eq!(count_elements(&ns, "warden", "ban4-sshd"), 0);
    drop(ns);

    // warden restoring the same bans at start (list + one transaction creating it all).
    let ns = netns::Netns::new("restore");
    let mut restore = NftAction::new(spec("sshd")).unwrap();
    let restored = ns.run(|| {
        let t0 = Instant::now();
        restore.start(&batch).unwrap();
        t0.elapsed()
    });
    assert_eq!(count_elements(&ns, "warden", "ban4-sshd"), count as usize);
    drop(ns);

    // fail2ban 1.0.2's nftables action: a plain set, one nft process per ban.
    let ns = netns::Netns::new("plain");
    ns.nft("table inet f2b-table {\n set addr-set-sshd { type ipv4_addr; }\n}\n");
    let per_ban_plain = one_process_per_ban(&ns, "f2b-table", "addr-set-sshd", &batch);
    assert_eq!(
        count_elements(&ns, "f2b-table", "addr-set-sshd"),
        count as usize
    );
    drop(ns);

    // The same into a set like warden's (interval, as fail2ban 1.1 configures it).
    let ns = netns::Netns::new("interval");
    ns.nft("table inet f2b-table {\n set addr-set-sshd { type ipv4_addr; flags interval, timeout; }\n}\n");
    let per_ban_interval = one_process_per_ban(&ns, "f2b-table", "addr-set-sshd", &batch);
    assert_eq!(
        count_elements(&ns, "f2b-table", "addr-set-sshd"),
        count as usize
    );
    drop(ns);

    println!(
        "{:<58} {:>11} {:>12} {:>15} {:>10}",
        "method", "", "total", "per ban", "vs batch"
    );
    let n = count as usize;
    report(
        "warden: one nft transaction (ban batch)",
        n,
        batched,
        batched,
    );
    report(
        "warden: re-ban extending every timeout (one transaction)",
        n,
        rebanned,
        batched,
    );
    report(
        "warden: unban batch (one transaction)",
        n,
        unbanned,
        batched,
    );
    report(
        "warden: start restoring the bans (list + transaction)",
        n,
        restored,
        batched,
    );
    report(
        "one nft process per ban, plain set (fail2ban 1.0)",
        n,
        per_ban_plain,
        batched,
    );
    report(
        "one nft process per ban, interval set (fail2ban 1.1)",
        n,
        per_ban_interval,
        batched,
    );
}
