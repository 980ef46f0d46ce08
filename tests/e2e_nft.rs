//! The daemon end to end on nftables, in network namespaces the tests create: the real
//! `warden run` inside the server's namespace follows the log of a small TCP service
//! there, bans an attacker that keeps a connection open while guessing passwords, and
//! cuts that connection; the control case with the admin's ruleset jumping to warden's
//! chain after accepting established traffic; and bans that outlive a `kill -9` and
//! expire on their kernel timeouts.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::daemon::Daemon;
use crate::support::netns::{Client, Ended, Host, Lan, Netns, Service, wait_until};

const SEC: Duration = Duration::from_secs(1);
/// A connection attempt that a drop rule swallows fails after this long.
const SHORT: Duration = Duration::from_millis(300);
const PORT: u16 = 2222;

/// A jail on the service's log, banning port 2222 through the nftables action with the
/// given extra action parameters; `{kill}` and `{bantime}` fill the jail's options.
fn jails(kill: &str, bantime: &str, params: &str) -> String {
    format!(
        r#"
[sshd]
enabled = true
filter = sshd
logpath = {{logs}}/auth.log
port = {PORT}
kill_states = {kill}
bantime = {bantime}
action = nftables[port="%(port)s", protocol=tcp, kill_states="%(kill_states)s"{params}]
"#
    )
}

/// The elements of a set (address text, seconds left); None when the set does not exist.
fn elements(ns: &Netns, table: &str, set: &str) -> Option<Vec<(String, Option<i64>)>> {
    let out = ns
        .command("nft")
        .args(["-j", "list", "set", "inet", table, set])
        .output()
        .unwrap();
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let set = v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|i| i.get("set"))?
        .clone();
    let elems = set.get("elem").and_then(Value::as_array).cloned();
    Some(
        elems
            .unwrap_or_default()
            .iter()
            .map(|e| match e.get("elem") {
                Some(inner) => (
                    inner["val"].as_str().unwrap_or_default().to_string(),
                    inner.get("expires").and_then(Value::as_i64),
                ),
                None => (e.as_str().unwrap_or_default().to_string(), None),
            })
            .collect(),
    )
}

fn holds(ns: &Netns, table: &str, set: &str, addr: &str) -> bool {
    elements(ns, table, set).is_some_and(|es| es.iter().any(|(a, _)| a == addr))
}

/// A daemon to run in the server's namespace (not started).
fn daemon_in(server: &Host, jails: &str) -> Daemon {
    let mut d = Daemon::new(jails);
    d.netns = Some(server.ns.name().to_string());
    d
}

/// Starts the daemon and waits until it follows the service's log: it has read a line
/// written for the purpose (after a restart it resumes after the lines it had read).
fn start_following(d: &mut Daemon) {
    d.append("auth.log", &["an unrelated line".to_string()]);
    d.start();
    d.wait_for("the log to be followed", Duration::from_secs(10), || {
        d.lines_read("sshd") >= 1
    });
}

/// Three bad logins on `conn`; returns the moment just before the third, whose failure
/// line triggers the ban (the line is written before the reply).
fn three_bad_logins(conn: &mut Client, svc: &Service) -> Instant {
    let failures = svc.failures();
    assert!(!conn.login("root", "guess1", SEC).unwrap());
    assert!(!conn.login("admin", "guess2", SEC).unwrap());
    let t0 = Instant::now();
    assert!(!conn.login("oracle", "guess3", SEC).unwrap());
    assert_eq!(svc.failures(), failures + 3);
    t0
}

/// The last kill report of the jail (target, scope, killed), once there is one.
fn last_kill(d: &Daemon) -> Option<(String, String, u64)> {
    let st = d.jail_status("sshd");
    let k = st["actions"]["kills"].as_array()?.last()?.clone();
    Some((
        k["target"].as_str()?.to_string(),
        k["scope"].as_str()?.to_string(),
        k["killed"].as_u64()?,
    ))
}

#[test]
fn nft_daemon_ban_cuts_the_open_connection_within_a_second() {
    let lan = Lan::new(&["server", "attacker", "client"]);
    let (server, attacker, client) = (lan.host("server"), lan.host("attacker"), lan.host("client"));
    let mut d = daemon_in(server, &jails("auto", "10m", ""));
    let svc = Service::spawn(&server.ns, PORT, Some(&d.log("auth.log")));
    let to = SocketAddr::new(server.v4.into(), PORT);
    start_following(&mut d);
    d.wait_for("warden's sets", Duration::from_secs(10), || {
        elements(&server.ns, "warden", "ban4-sshd").is_some()
    });

    let mut other = Client::connect(&client.ns, to, SEC).unwrap();
    assert!(other.alive(SEC));
    let mut conn = Client::connect(&attacker.ns, to, SEC).unwrap();
    assert!(conn.alive(SEC));
    let peer = conn.local_addr();

    let t0 = three_bad_logins(&mut conn, &svc);
    // The service's read on the attacker's connection ends: its socket was destroyed.
    let ended = svc.wait_ended(peer, 5 * SEC);
    let cut_off = t0.elapsed();
    assert_eq!(ended, Some(Ended::Error(ErrorKind::ConnectionAborted)));
    assert!(
        cut_off < SEC,
        "the open connection outlived the triggering line by {cut_off:?}"
    );
    eprintln!("nft daemon: cut-off {cut_off:?} after the triggering line");
    let attacker4 = attacker.v4.to_string();
    assert!(holds(&server.ns, "warden", "ban4-sshd", &attacker4));
    let left = elements(&server.ns, "warden", "ban4-sshd").unwrap()[0].1;
    assert!(left.is_some_and(|s| (590..=600).contains(&s)), "{left:?}");
    d.wait_for("the kill report", Duration::from_secs(5), || {
        last_kill(&d).is_some()
    });
    let (target, scope, killed) = last_kill(&d).unwrap();
    assert_eq!(
        (target.as_str(), scope.as_str()),
        (attacker4.as_str(), "ports")
    );
    assert!(killed >= 1, "{killed}");

    // The attacker's side: its next request fails (reset, or no reply), and new
    // connections fail.
    assert!(!conn.alive(SHORT));
    assert!(Client::connect(&attacker.ns, to, SHORT).is_err());
    // The other client is untouched: its open connection and new ones work.
    assert!(other.alive(SEC));
    assert!(svc.is_open(other.local_addr()));
    assert!(Client::connect(&client.ns, to, SEC).unwrap().alive(SEC));

    // `warden unban` lets the attacker back.
    let out = d.client(&["unban", &attacker4]);
    assert!(
        out.contains(&format!("unbanned {attacker4} (sshd)")),
        "{out}"
    );
    d.wait_for("the element's removal", Duration::from_secs(5), || {
        !holds(&server.ns, "warden", "ban4-sshd", &attacker4)
    });
    let mut again = Client::connect(&attacker.ns, to, SEC).expect("the unbanned attacker connects");
    assert!(again.alive(SEC));

    // A clean stop takes warden's table away.
    assert!(d.stop().success());
    assert!(elements(&server.ns, "warden", "ban4-sshd").is_none());
    assert!(other.alive(SEC));
}

/// The admin's ruleset: accept established traffic first, then jump to warden's chain
/// (declared here, empty, so the jump loads before warden starts), then the service.
const ADMIN_RULESET: &str = "table inet hostfw {
    chain warden {
    }
    chain input {
        type filter hook input priority filter; policy drop;
        ct state established,related accept
        ct state invalid drop
        iif lo accept
        meta l4proto { icmp, ipv6-icmp } accept
        jump warden
        tcp dport 2222 accept
    }
}
";

/// The admin's base chain as nft prints it (without handles).
fn admin_input(ns: &Netns) -> String {
    ns.sh("nft", &["list", "chain", "inet", "hostfw", "input"])
}

#[test]
fn nft_daemon_control_case_established_accept_first_then_cut_off() {
    let lan = Lan::new(&["server", "attacker"]);
    let (server, attacker) = (lan.host("server"), lan.host("attacker"));
    server.ns.nft(ADMIN_RULESET);
    let admin_chain = admin_input(&server.ns);
    let hostfw = ", table=hostfw, chain_hook=none";
    let mut d = daemon_in(server, &jails("none", "10m", hostfw));
    let svc = Service::spawn(&server.ns, PORT, Some(&d.log("auth.log")));
    let to = SocketAddr::new(server.v4.into(), PORT);
    start_following(&mut d);
    // warden's sets and rules go into the admin's table, in the regular chain `warden`.
    d.wait_for("warden's sets in hostfw", Duration::from_secs(10), || {
        elements(&server.ns, "hostfw", "ban4-sshd").is_some()
    });
    let chain = server
        .ns
        .sh("nft", &["list", "chain", "inet", "hostfw", "warden"]);
    assert!(
        chain.contains("ip saddr @ban4-sshd tcp dport 2222 counter")
            && chain.contains("drop comment \"warden jail sshd\"")
            && !chain.contains("hook"),
        "{chain}"
    );
    assert_eq!(admin_input(&server.ns), admin_chain);
    let attacker4 = attacker.v4.to_string();

    // kill_states = none: the ban holds new connections off, but the open one passes the
    // admin's established rule before the jump and keeps working.
    let mut conn = Client::connect(&attacker.ns, to, SEC).unwrap();
    let peer = conn.local_addr();
    three_bad_logins(&mut conn, &svc);
    d.wait_for("the ban", Duration::from_secs(5), || {
        holds(&server.ns, "hostfw", "ban4-sshd", &attacker4)
    });
    assert!(Client::connect(&attacker.ns, to, SHORT).is_err());
    std::thread::sleep(Duration::from_millis(300));
    assert!(svc.is_open(peer));
    assert!(
        conn.alive(SEC),
        "kill_states = none: the open connection keeps working"
    );
    // ...and the attacker goes on guessing on it.
    assert!(!conn.login("root", "guess4", SEC).unwrap());
    assert_eq!(server.ns.flows_from(&attacker4), 1);
    assert_eq!(last_kill(&d), None);

    // Lifting the ban and stopping leaves the admin's table as it was (the chain it jumps
    // to stays, emptied).
    d.client(&["unban", &attacker4]);
    d.wait_for("the unban", Duration::from_secs(5), || {
        !holds(&server.ns, "hostfw", "ban4-sshd", &attacker4)
    });
    assert!(d.stop().success());
    assert_eq!(admin_input(&server.ns), admin_chain);
    assert!(elements(&server.ns, "hostfw", "ban4-sshd").is_none());
    let chain = server
        .ns
        .sh("nft", &["list", "chain", "inet", "hostfw", "warden"]);
    assert!(!chain.contains("saddr"), "{chain}");
    assert!(conn.alive(SEC));

    // kill_states = auto with the same ruleset: the same open connection is cut within a
    // second of the triggering line.
    d.set_jails(&jails("auto", "10m", hostfw));
    start_following(&mut d);
    d.wait_for("warden's sets in hostfw", Duration::from_secs(10), || {
        elements(&server.ns, "hostfw", "ban4-sshd").is_some()
    });
    let t0 = three_bad_logins(&mut conn, &svc);
    let ended = svc.wait_ended(peer, 5 * SEC);
    let cut_off = t0.elapsed();
    assert_eq!(ended, Some(Ended::Error(ErrorKind::ConnectionAborted)));
    assert!(cut_off < SEC, "cut off after {cut_off:?}");
    eprintln!("nft control case, kill_states = auto: cut-off {cut_off:?}");
    assert!(holds(&server.ns, "hostfw", "ban4-sshd", &attacker4));
    assert!(!conn.alive(SHORT));
    assert_eq!(server.ns.flows_from(&attacker4), 0);
    assert!(Client::connect(&attacker.ns, to, SHORT).is_err());
    assert!(d.stop().success());
    assert_eq!(admin_input(&server.ns), admin_chain);
}

#[test]
fn nft_bans_outlive_kill_9_and_expire_on_their_kernel_timeouts() {
    let lan = Lan::new(&["server", "attacker"]);
    let (server, attacker) = (lan.host("server"), lan.host("attacker"));
    let mut d = daemon_in(server, &jails("auto", "3", ""));
    let svc = Service::spawn(&server.ns, PORT, Some(&d.log("auth.log")));
    let to = SocketAddr::new(server.v4.into(), PORT);
    start_following(&mut d);
    let attacker4 = attacker.v4.to_string();

    let mut conn = Client::connect(&attacker.ns, to, SEC).unwrap();
    three_bad_logins(&mut conn, &svc);
    d.wait_for("the ban", Duration::from_secs(5), || {
        holds(&server.ns, "warden", "ban4-sshd", &attacker4)
    });
    let banned = d.json(&["banned"]);
    let expires = banned["bans"][0]["expires"]
        .as_i64()
        .expect("the ban has an end");
    let pid = nix::unistd::Pid::from_raw(d.pid() as i32);
    d.kill9();
    assert_eq!(
        nix::sys::signal::kill(pid, None),
        Err(nix::errno::Errno::ESRCH),
        "the daemon is gone"
    );

    // The kernel keeps enforcing: the element is there with its timeout running, and the
    // attacker cannot connect.
    let elems = elements(&server.ns, "warden", "ban4-sshd").unwrap();
    assert_eq!(elems.len(), 1, "{elems:?}");
    assert_eq!(elems[0].0, attacker4);
    let left = elems[0].1.expect("the element has a timeout");
    assert!((1..=4).contains(&left), "{left} s left");
    assert!(Client::connect(&attacker.ns, to, SHORT).is_err());

    // With no daemon running, the element expires on time: not before the ledger's end
    // of the ban, and at most a second after it (timeouts are written in whole seconds
    // from the current second, so they end up to a second late, never early).
    assert!(
        wait_until(6 * SEC, || elements(&server.ns, "warden", "ban4-sshd")
            .is_some_and(|e| e.is_empty())),
        "the element did not expire"
    );
    let gone = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let late = gone - expires as f64;
    assert!(
        (0.0..1.3).contains(&late),
        "the element expired {late:.3} s after the ban's end"
    );
    eprintln!("nft kill -9: element gone {late:.3} s after the ban's end in the ledger");
    let mut back = Client::connect(&attacker.ns, to, SEC).expect("the ban has ended");
    assert!(back.alive(SEC));
    assert!(
        elements(&server.ns, "warden", "ban4-sshd").is_some(),
        "nobody removed the table"
    );
}
