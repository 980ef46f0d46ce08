//! The daemon end to end on PF: the real `warden run` follows a log, bans through its PF
//! backend with the pfctl simulator as pfctl, and kills the banned address's states as the
//! jail's `kill_states` says; then `warden unban` and `warden stop` against the same
//! simulated kernel.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::daemon::{Daemon, sshd_failure};
use crate::support::pfctl::{Os, PfSim, State};

const ANCHOR: &str = "warden/sshd";
const TABLE: &str = "warden-sshd";
const HOST: &str = "192.0.2.10";
const ATTACKER: &str = "198.51.100.7";
const BYSTANDER: &str = "198.51.100.8";

/// The seeded states, by number: what the attacker and a bystander have open.
const TO_JAIL_PORT: u64 = 1;
const TO_OTHER_PORT: u64 = 2;
const BYSTANDER_TO_JAIL_PORT: u64 = 3;
const TOWARD_ATTACKER: u64 = 4;

fn id(n: u64) -> String {
    format!("{n:016x}")
}

fn ids(ns: &[u64]) -> BTreeSet<String> {
    ns.iter().map(|n| id(*n)).collect()
}

/// `pfctl -k id -k ID/CREATOR` for a seeded state.
fn by_id(n: u64) -> Vec<String> {
    ["-k", "id", "-k", &format!("{}/7a1c3e2f", id(n))]
        .map(String::from)
        .to_vec()
}

fn live_ids(s: &PfSim) -> BTreeSet<String> {
    s.state_ids().into_iter().collect()
}

/// What one run showed.
struct Outcome {
    /// From the append of the triggering lines to the state to the jail's port being gone.
    cut_off: Duration,
}

/// Runs the daemon with one sshd jail on `port = ssh` banning through PF in `os` mode,
/// with the given `kill_states`; checks the ban, the states killed and kept (`killed`
/// are the seeded states the scope must remove, `kill_argvs` the pfctl kill runs),
/// `warden unban`, and `warden stop`.
fn ban_kill_unban_stop(
    os: Os,
    kill_states: &str,
    killed: &[u64],
    kill_argvs: &[Vec<String>],
) -> Outcome {
    let s = PfSim::new(os);
    // pf.conf calls warden's anchors, so the daemon has nothing to warn about.
    s.seed_json(json!({"anchors": {"": {"rules": ["anchor \"warden/*\" all", "pass all"]}}}));
    s.seed_states(&[
        State::tcp_in(TO_JAIL_PORT, ATTACKER, 51234, HOST, 22).peers("ESTABLISHED", "ESTABLISHED"),
        State::tcp_in(TO_OTHER_PORT, ATTACKER, 51235, HOST, 80).peers("ESTABLISHED", "ESTABLISHED"),
        State::tcp_in(BYSTANDER_TO_JAIL_PORT, BYSTANDER, 40000, HOST, 22)
            .peers("ESTABLISHED", "ESTABLISHED"),
        State::tcp_out(TOWARD_ATTACKER, HOST, 41000, ATTACKER, 443)
            .peers("ESTABLISHED", "ESTABLISHED"),
    ]);

    // The jail's port and scope reach the action the way the shipped jail.conf passes
    // them (`action_`): through the action's parameters.
    let mut d = Daemon::new(&format!(
        r#"
[sshd]
enabled = true
filter = sshd
logpath = {{logs}}/auth.log
port = ssh
kill_states = {kill_states}
action = pf[pfctl="{}", port="%(port)s", protocol=tcp, kill_states="%(kill_states)s"]
"#,
        s.pfctl_path().display()
    ));
    d.append("auth.log", &["an unrelated line".to_string()]);
    d.start();
    d.wait_for("the log to be followed", Duration::from_secs(10), || {
        d.lines_read("sshd") == 1
    });
    // The firewall worker starts the actions beside the sources: wait for the anchor.
    let rule = "block drop in log quick proto tcp from <warden-sshd> to any port 22";
    d.wait_for("the anchor's rule", Duration::from_secs(10), || {
        s.rules(ANCHOR) == [rule]
    });
    assert!(s.table_exists(ANCHOR, TABLE));
    assert!(s.table(ANCHOR, TABLE).is_empty());
    assert_eq!(live_ids(&s), ids(&[1, 2, 3, 4]));
    let status = d.jail_status("sshd");
    assert_eq!(
        status["actions"]["actions"][0], "pf anchor warden/sshd table warden-sshd",
        "{status}"
    );

    let lines: Vec<String> = (0..3).map(|_| sshd_failure(ATTACKER)).collect();
    let t0 = Instant::now();
    d.append("auth.log", &lines);
    let jail_port = id(TO_JAIL_PORT);
    d.wait_for(
        "the state to the jail's port to be killed",
        Duration::from_secs(10),
        || !live_ids(&s).contains(&jail_port),
    );
    let cut_off = t0.elapsed();
    assert!(
        cut_off < Duration::from_secs(1),
        "{os:?}: the state to port 22 outlived the triggering line by {cut_off:?}"
    );
    // The address is in the table, added (one batch) before the states were listed.
    assert_eq!(s.table(ANCHOR, TABLE), vec![ATTACKER]);
    let calls = s.calls();
    let pos = |argv: &[&str]| calls.iter().position(|c| c.argv == argv);
    let add = pos(&["-a", ANCHOR, "-t", TABLE, "-T", "add", "-f", "-"]).expect("a -T add run");
    assert_eq!(calls[add].stdin.as_deref(), Some(&*format!("{ATTACKER}\n")));
    assert!(add < pos(&["-vv", "-s", "states"]).expect("a state listing"));

    // Once the daemon has the kill's report, exactly the scope's states are gone.
    d.wait_for("the kill report", Duration::from_secs(10), || {
        !d.jail_status("sshd")["actions"]["kills"]
            .as_array()
            .unwrap()
            .is_empty()
    });
    let kills = d.jail_status("sshd")["actions"]["kills"].clone();
    assert_eq!(kills.as_array().unwrap().len(), 1, "{kills}");
    assert_eq!(kills[0]["target"], ATTACKER, "{kills}");
    assert_eq!(kills[0]["scope"], kill_states, "{kills}");
    assert_eq!(kills[0]["killed"], killed.len() as u64, "{kills}");
    let all: BTreeSet<u64> = [1, 2, 3, 4].into();
    let kept: Vec<u64> = all
        .difference(&killed.iter().copied().collect())
        .copied()
        .collect();
    assert_eq!(live_ids(&s), ids(&kept), "{os:?} {kill_states}");
    assert!(
        live_ids(&s).contains(&id(BYSTANDER_TO_JAIL_PORT)),
        "another address's state must survive"
    );
    // The kill runs exactly as documented: the listing, then `-k ADDR` for the states
    // the address initiated (scope all) and `-k id -k ID/CREATOR` for single states;
    // never the two-address form.
    let kill_calls: Vec<Vec<String>> = s
        .argvs()
        .into_iter()
        .filter(|a| a.iter().any(|x| x == "-k" || x == "states"))
        .collect();
    let mut want = vec![vec!["-vv".to_string(), "-s".into(), "states".into()]];
    want.extend(kill_argvs.iter().map(|a| a.to_vec()));
    assert_eq!(kill_calls, want, "{os:?} {kill_states}");

    // `warden unban` takes the address out of the table.
    let out = d.client(&["unban", ATTACKER]);
    assert!(
        out.contains(&format!("unbanned {ATTACKER} (sshd)")),
        "{out}"
    );
    d.wait_for("the unban in the table", Duration::from_secs(10), || {
        s.table(ANCHOR, TABLE).is_empty()
    });
    assert!(d.banned().is_empty());

    // `warden stop`: the daemon flushes its anchor (rule and table) and exits; the main
    // ruleset's call stays, and the kept states are not touched.
    s.clear_calls();
    d.client(&["stop"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while d.is_running() {
        assert!(
            Instant::now() < deadline,
            "warden stop: the daemon did not exit\n{}",
            d.tail_log(40)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        s.argvs()
            .contains(&["-a", ANCHOR, "-F", "all"].map(String::from).to_vec()),
        "{:?}",
        s.argvs()
    );
    assert!(
        !s.anchors().contains(&ANCHOR.to_string()),
        "{:?}",
        s.anchors()
    );
    assert!(!s.table_exists(ANCHOR, TABLE));
    assert_eq!(
        s.state()["anchors"][""]["rules"][0],
        Value::from("anchor \"warden/*\" all")
    );
    assert_eq!(live_ids(&s), ids(&kept));
    Outcome { cut_off }
}

#[test]
fn pf_daemon_ban_kills_the_jails_port_states_freebsd() {
    // ports: only the attacker's state to port 22 goes; its state to port 80, the
    // connection this host opened to it, and the bystander's state stay.
    let o = ban_kill_unban_stop(
        Os::FreeBsd,
        "ports",
        &[TO_JAIL_PORT],
        &[by_id(TO_JAIL_PORT)],
    );
    eprintln!("pf freebsd ports: cut-off {:?}", o.cut_off);
}

#[test]
fn pf_daemon_ban_kills_every_state_of_the_address_openbsd() {
    // all: every state of the attacker, both directions; the bystander's stays.
    let o = ban_kill_unban_stop(
        Os::OpenBsd,
        "all",
        &[TO_JAIL_PORT, TO_OTHER_PORT, TOWARD_ATTACKER],
        &[
            vec!["-k".to_string(), ATTACKER.to_string()],
            by_id(TOWARD_ATTACKER),
        ],
    );
    eprintln!("pf openbsd all: cut-off {:?}", o.cut_off);
}

#[test]
fn pf_a_short_jails_unban_leaves_the_address_in_the_longer_jails_table() {
    // Two jails on the same log ban the same address, each in its own anchor; the short
    // jail's expiry empties only its own table, so PF still blocks the address through
    // the long jail's anchor until that hold ends too.
    let s = PfSim::new(Os::FreeBsd);
    s.seed_json(json!({"anchors": {"": {"rules": ["anchor \"warden/*\" all", "pass all"]}}}));
    let jail = |name: &str, bantime: u32| {
        format!(
            "[{name}]\nenabled = true\nfilter = sshd\nlogpath = {{logs}}/auth.log\nport = ssh\n\
             bantime = {bantime}\naction = pf[pfctl=\"{}\", port=\"%(port)s\", protocol=tcp]\n",
            s.pfctl_path().display()
        )
    };
    let mut d = Daemon::new(&format!("{}\n{}", jail("short", 2), jail("long", 6)));
    d.start();
    let (short, long) = (
        ("warden/short", "warden-short"),
        ("warden/long", "warden-long"),
    );
    d.wait_for("both anchors", Duration::from_secs(10), || {
        s.table_exists(short.0, short.1) && s.table_exists(long.0, long.1)
    });
    d.append(
        "auth.log",
        &(0..3).map(|_| sshd_failure(ATTACKER)).collect::<Vec<_>>(),
    );
    d.wait_for("both bans", Duration::from_secs(10), || {
        s.table(short.0, short.1) == [ATTACKER] && s.table(long.0, long.1) == [ATTACKER]
    });
    d.wait_for("the short jail's unban", Duration::from_secs(10), || {
        s.table(short.0, short.1).is_empty()
    });
    assert_eq!(
        s.table(long.0, long.1),
        vec![ATTACKER],
        "the long jail still holds the address"
    );
    let held: Vec<String> = d.banned().into_iter().map(|(_, jail)| jail).collect();
    assert_eq!(held, vec!["long".to_string()], "{held:?}");
    d.wait_for("the long jail's unban", Duration::from_secs(15), || {
        s.table(long.0, long.1).is_empty()
    });
    assert!(d.banned().is_empty());
    d.stop();
}
