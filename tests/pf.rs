//! The PF backend against the pfctl simulator in FreeBSD and OpenBSD mode: the anchor,
//! table and rule it loads, batched bans, the states each kill scope cuts, recovery from
//! tables removed behind its back, error kinds, restart reconciliation, the pf.conf hook
//! warning, and stop.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::json;
use warden::exec::ExecError;
use warden::firewall::pf::PfAction;
use warden::firewall::{Action, Ban, FirewallError, JailSpec, KillReport, KillScope, PortSpec};

use crate::support::pfctl::{Os, PfSim, State};

/// Action parameters as (name, value) pairs.
type Params<'a> = &'a [(&'a str, &'a str)];

const BOTH: [Os; 2] = [Os::FreeBsd, Os::OpenBsd];

const ANCHOR: &str = "warden/sshd";
const TABLE: &str = "warden-sshd";

fn sim(os: Os) -> PfSim {
    let mut s = PfSim::new(os);
    s.set_now(1_717_243_200);
    s
}

/// Makes the main ruleset call every warden anchor.
fn hook(s: &PfSim) {
    s.seed_json(json!({"anchors": {"": {"rules": ["anchor \"warden/*\" all", "pass all"]}}}));
}

fn spec_for(
    s: &PfSim,
    jail: &str,
    ports: &str,
    kill: KillScope,
    params: &[(&str, &str)],
) -> JailSpec {
    let mut p: BTreeMap<String, String> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    p.entry("pfctl".into())
        .or_insert_with(|| s.pfctl_path().display().to_string());
    JailSpec {
        jail: jail.into(),
        ports: PortSpec::parse(ports).unwrap(),
        protocols: vec!["tcp".into()],
        kill_states: kill,
        params: p,
    }
}

fn action(s: &PfSim, ports: &str, kill: KillScope, params: &[(&str, &str)]) -> PfAction {
    PfAction::new(&spec_for(s, "sshd", ports, kill, params)).unwrap()
}

fn net(t: &str) -> IpNet {
    match t.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => IpNet::from(t.parse::<IpAddr>().unwrap()),
    }
}

fn ban(t: &str) -> Ban {
    Ban {
        jail: "sshd".into(),
        target: net(t),
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

fn bans(ts: &[&str]) -> Vec<Ban> {
    ts.iter().map(|t| ban(t)).collect()
}

fn argv(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn id(n: u64) -> String {
    format!("{n:016x}")
}

fn report(t: &str, scope: KillScope, killed: u64) -> KillReport {
    KillReport {
        target: net(t),
        scope,
        killed,
    }
}

/// The calls start makes after loading and reconciling: the enabled check and the
/// main-ruleset check.
fn check_calls(os: Os) -> Vec<Vec<String>> {
    match os {
        Os::FreeBsd => vec![argv(&["-s", "Running"]), argv(&["-s", "rules"])],
        Os::OpenBsd => vec![
            argv(&["-s", "Running"]),
            argv(&["-s", "info"]),
            argv(&["-s", "rules"]),
        ],
    }
}

#[test]
fn start_loads_the_anchor_table_and_rule() {
    for os in BOTH {
        let s = sim(os);
        hook(&s);
        let mut a = action(&s, "ssh,http", KillScope::Auto, &[]);
        a.start(&[]).unwrap();
        assert_eq!(
            s.rules(ANCHOR),
            vec!["block drop in log quick proto tcp from <warden-sshd> to any port { 22, 80 }"]
        );
        let t = s.table_json(ANCHOR, TABLE);
        assert_eq!(
            (&t["persist"], &t["counters"], &t["const"]),
            (&json!(true), &json!(true), &json!(false)),
            "{t}"
        );
        assert!(s.table_exists(ANCHOR, TABLE));
        assert!(s.table(ANCHOR, TABLE).is_empty());
        let calls = s.calls();
        let mut want = vec![
            argv(&["-a", ANCHOR, "-f", "-"]),
            argv(&["-a", ANCHOR, "-t", TABLE, "-T", "replace", "-f", "-"]),
        ];
        want.extend(check_calls(os));
        assert_eq!(s.argvs(), want, "{os:?}");
        assert_eq!(
            calls[0].stdin.as_deref(),
            Some(
                "table <warden-sshd> persist counters\nblock drop in log quick proto tcp from <warden-sshd> to any port { 22, 80 }\n"
            )
        );
        assert_eq!(calls[1].stdin.as_deref(), Some(""));
        assert!(a.warnings().is_empty(), "{:?}", a.warnings());
        assert_eq!(a.describe(), "pf anchor warden/sshd table warden-sshd");
    }
}

#[test]
fn rule_forms_for_allports_ranges_and_protocol_lists() {
    for os in BOTH {
        let s = sim(os);
        hook(&s);
        let cases: [(&str, &str, Params, &str); 4] = [
            (
                "web",
                "http,https",
                &[("protocol", "tcp")],
                "block drop in log quick proto tcp from <warden-web> to any port { 80, 443 }",
            ),
            (
                "dns",
                "domain",
                &[("protocol", "tcp,udp"), ("block", "block return")],
                "block return in log quick proto { tcp, udp } from <warden-dns> to any port 53",
            ),
            (
                "x11",
                "6000:6010",
                &[],
                "block drop in log quick proto tcp from <warden-x11> to any port 6000:6010",
            ),
            (
                "all",
                "",
                &[("protocol", "all"), ("os", "openbsd")],
                "block drop in log quick from <warden-all> to any",
            ),
        ];
        for (jail, ports, params, rule) in cases {
            let mut a = PfAction::new(&spec_for(&s, jail, ports, KillScope::Auto, params)).unwrap();
            a.start(&[]).unwrap();
            let anchor = format!("warden/{jail}");
            assert_eq!(s.rules(&anchor), vec![rule], "{os:?} {jail}");
            assert!(s.table_exists(&anchor, &format!("warden-{jail}")));
        }
        // An explicit os skips the probe: OpenBSD's check straight away.
        let calls = s.argvs();
        assert_eq!(
            calls[calls.len() - 3..],
            [
                argv(&[
                    "-a",
                    "warden/all",
                    "-t",
                    "warden-all",
                    "-T",
                    "replace",
                    "-f",
                    "-"
                ]),
                argv(&["-s", "info"]),
                argv(&["-s", "rules"])
            ]
        );
    }
}

#[test]
fn fail2ban_pf_parameters_keep_their_meaning() {
    for os in BOTH {
        let s = sim(os);
        s.seed_json(json!({"anchors": {"": {"rules": ["anchor \"f2b/*\" all"]}}}));
        let pfctl = format!("{} -a f2b/sshd", s.pfctl_path().display());
        let mut a = action(
            &s,
            "ssh",
            KillScope::Auto,
            &[
                ("pfctl", pfctl.as_str()),
                ("tablename", "f2b"),
                ("block", "block quick"),
                ("actiontype", "<allports>"),
            ],
        );
        a.start(&bans(&["192.0.2.7"])).unwrap();
        assert_eq!(
            s.rules("f2b/sshd"),
            vec!["block drop in log quick proto tcp from <f2b-sshd> to any"]
        );
        assert_eq!(s.table("f2b/sshd", "f2b-sshd"), vec!["192.0.2.7"]);
        assert!(a.warnings().is_empty(), "{:?}", a.warnings());
        // allports resolves the automatic kill scope to all.
        assert_eq!(a.config().kill, KillScope::All);
    }
}

#[test]
fn ban_adds_one_batch_and_port_scope_kills_exactly_its_states() {
    for os in BOTH {
        let s = sim(os);
        hook(&s);
        let mut a = action(&s, "ssh", KillScope::Auto, &[]);
        a.start(&[]).unwrap();
        s.seed_states(&[
            State::tcp_in(1, "198.51.100.7", 51234, "192.0.2.10", 22),
            State::tcp_in(2, "198.51.100.7", 51235, "192.0.2.10", 80),
            State::tcp_in(3, "198.51.100.8", 5000, "192.0.2.10", 22),
            State::tcp_in(4, "2001:db8::7", 40000, "2001:db8::10", 22).ifname("em0"),
            State::tcp_out(5, "192.0.2.10", 41000, "198.51.100.7", 443),
            State::udp_in(6, "198.51.100.7", 4000, "192.0.2.10", 22),
            // Forwarded: the attacker reaches an inside host through this router.
            State::tcp_out(7, "198.51.100.7", 5555, "10.0.0.5", 22),
            State::tcp_in(8, "2001:db8::8", 40001, "2001:db8::10", 22),
        ]);
        s.clear_calls();
        a.ban(&bans(&["198.51.100.7", "2001:db8::7"])).unwrap();
        assert_eq!(s.table(ANCHOR, TABLE), vec!["198.51.100.7", "2001:db8::7"]);
        let calls = s.calls();
        assert_eq!(
            s.argvs(),
            vec![argv(&["-a", ANCHOR, "-t", TABLE, "-T", "add", "-f", "-"])]
        );
        assert_eq!(
            calls[0].stdin.as_deref(),
            Some("198.51.100.7\n2001:db8::7\n")
        );

        s.clear_calls();
        let reports = a
            .kill_states(&bans(&["198.51.100.7", "2001:db8::7"]))
            .unwrap();
        assert_eq!(
            reports,
            vec![
                report("198.51.100.7", KillScope::Ports, 2),
                report("2001:db8::7", KillScope::Ports, 1),
            ]
        );
        assert_eq!(
            s.state_ids(),
            vec![id(2), id(3), id(5), id(6), id(8)],
            "{os:?}"
        );
        assert_eq!(
            s.argvs(),
            vec![
                argv(&["-vv", "-s", "states"]),
                argv(&["-k", "id", "-k", &format!("{}/7a1c3e2f", id(1))]),
                argv(&["-k", "id", "-k", &format!("{}/7a1c3e2f", id(7))]),
                argv(&["-k", "id", "-k", &format!("{}/7a1c3e2f", id(4))]),
            ]
        );
    }
}

#[test]
fn cidr_bans_go_in_whole_and_kill_the_states_inside() {
    for os in BOTH {
        let s = sim(os);
        hook(&s);
        let mut a = action(&s, "ssh", KillScope::Ports, &[]);
        a.start(&[]).unwrap();
        s.seed_states(&[
            State::tcp_in(1, "2001:db8:1::5", 40000, "2001:db8::10", 22),
            State::tcp_in(2, "2001:db8:1::6", 40001, "2001:db8::10", 22),
            State::tcp_in(3, "2001:db8:2::1", 40002, "2001:db8::10", 22),
            State::tcp_in(4, "203.0.113.9", 40003, "192.0.2.10", 22),
            State::tcp_in(5, "203.0.114.1", 40004, "192.0.2.10", 22),
        ]);
        // Host bits in the ban are dropped: the kernel refuses them.
        let b = bans(&["2001:db8:1::5/64", "203.0.113.0/24"]);
        a.ban(&b).unwrap();
        assert_eq!(
            s.table(ANCHOR, TABLE),
            vec!["203.0.113.0/24", "2001:db8:1::/64"]
        );
        let reports = a.kill_states(&b).unwrap();
        assert_eq!(
            reports,
            vec![
                report("203.0.113.0/24", KillScope::Ports, 1),
                report("2001:db8:1::/64", KillScope::Ports, 2),
            ]
        );
        assert_eq!(s.state_ids(), vec![id(3), id(5)]);
        assert_eq!(
            a.entry_key(&net("2001:db8:1::5/64")),
            "pf:warden/sshd:warden-sshd:2001:db8:1::/64"
        );
        a.unban(&b).unwrap();
        assert!(s.table(ANCHOR, TABLE).is_empty());
    }
}

#[test]
fn all_scope_kills_both_directions_without_the_two_address_form() {
    for os in BOTH {
        for bug in [false, true] {
            let mut s = sim(os);
            s.set_kill_bug(bug);
            hook(&s);
            let mut a = action(&s, "", KillScope::Auto, &[]);
            a.start(&[]).unwrap();
            s.seed_states(&[
                State::tcp_in(1, "198.51.100.7", 51234, "192.0.2.10", 22),
                State::tcp_in(2, "198.51.100.7", 51235, "192.0.2.10", 80),
                State::udp_in(3, "198.51.100.7", 4000, "192.0.2.10", 53),
                State::tcp_out(4, "192.0.2.10", 41000, "198.51.100.7", 443),
                State::tcp_in(5, "198.51.100.8", 5000, "192.0.2.10", 22),
                State::tcp_out(6, "192.0.2.10", 41001, "198.51.100.8", 443),
            ]);
            a.ban(&bans(&["198.51.100.7", "203.0.113.1"])).unwrap();
            s.clear_calls();
            let reports = a
                .kill_states(&bans(&["198.51.100.7", "203.0.113.1"]))
                .unwrap();
            assert_eq!(
                reports,
                vec![
                    report("198.51.100.7", KillScope::All, 4),
                    report("203.0.113.1", KillScope::All, 0),
                ]
            );
            assert_eq!(s.state_ids(), vec![id(5), id(6)], "{os:?} bug={bug}");
            // No call for the address without states; no two-address -k anywhere.
            assert_eq!(
                s.argvs(),
                vec![
                    argv(&["-vv", "-s", "states"]),
                    argv(&["-k", "198.51.100.7"]),
                    argv(&["-k", "id", "-k", &format!("{}/7a1c3e2f", id(4))]),
                ]
            );
        }
    }
}

#[test]
fn kill_scope_none_touches_nothing_and_gone_states_are_fine() {
    for os in BOTH {
        let mut s = sim(os);
        hook(&s);
        let mut none = action(&s, "ssh", KillScope::None, &[]);
        none.start(&[]).unwrap();
        s.seed_states(&[
            State::tcp_in(1, "198.51.100.7", 51234, "192.0.2.10", 22),
            State::tcp_in(2, "198.51.100.7", 51235, "192.0.2.10", 22),
        ]);
        s.clear_calls();
        assert!(
            none.kill_states(&bans(&["198.51.100.7"]))
                .unwrap()
                .is_empty()
        );
        assert!(s.calls().is_empty());

        // A state that went away between the listing and its kill: `killed 0 states`.
        s.fail(&format!("{{times=1}}-k id -k {}=>0:killed 0 states", id(1)));
        let mut ports = action(&s, "ssh", KillScope::Ports, &[]);
        let reports = ports.kill_states(&bans(&["198.51.100.7"])).unwrap();
        assert_eq!(reports, vec![report("198.51.100.7", KillScope::Ports, 1)]);
    }
}

#[test]
fn kill_failures_name_the_targets_that_failed() {
    for os in BOTH {
        let mut s = sim(os);
        hook(&s);
        let mut a = action(&s, "ssh", KillScope::Ports, &[]);
        a.start(&[]).unwrap();
        s.seed_states(&[
            State::tcp_in(1, "198.51.100.7", 51234, "192.0.2.10", 22),
            State::tcp_in(2, "198.51.100.9", 51234, "192.0.2.10", 22),
        ]);
        s.fail(&format!(
            "-k id -k {}=>1:pfctl: DIOCKILLSTATES: Operation not permitted",
            id(1)
        ));
        let err = a
            .kill_states(&bans(&["198.51.100.7", "198.51.100.9"]))
            .unwrap_err();
        match &err {
            FirewallError::Partial { failed, first } => {
                assert_eq!(failed, &vec![net("198.51.100.7")]);
                assert!(first.to_string().contains("DIOCKILLSTATES"), "{first}");
            }
            other => panic!("{os:?}: {other}"),
        }
        assert!(err.is_transient());
        assert_eq!(s.state_ids(), vec![id(1)]);
        // The listing itself failing fails the whole batch.
        s.fail("-s states=>1:pfctl: DIOCGETSTATES: Operation not permitted");
        let err = a.kill_states(&bans(&["198.51.100.7"])).unwrap_err();
        assert!(matches!(err, FirewallError::Command { .. }), "{err}");
    }
}

#[test]
fn ten_thousand_bans_take_a_bounded_number_of_calls() {
    for os in BOTH {
        let s = sim(os);
        hook(&s);
        let mut a = action(&s, "ssh", KillScope::Ports, &[]);
        a.start(&[]).unwrap();
        let targets: Vec<String> = (0..10_000u32)
            .map(|i| format!("10.{}.{}.{}", i >> 16, (i >> 8) & 0xff, i & 0xff))
            .collect();
        let b: Vec<Ban> = targets.iter().map(|t| ban(t)).collect();
        s.clear_calls();
        a.ban(&b).unwrap();
        let adds = s.argvs();
        // 8192 per call by default.
        assert_eq!(adds.len(), 2, "{os:?}");
        assert!(
            adds.iter()
                .all(|c| c[4..6] == ["-T".to_string(), "add".to_string()])
        );
        assert_eq!(s.table(ANCHOR, TABLE).len(), 10_000);

        s.clear_calls();
        assert_eq!(a.kill_states(&b).unwrap().len(), 10_000);
        assert_eq!(s.argvs(), vec![argv(&["-vv", "-s", "states"])]);

        // A restart with more active bans than one batch reconciles by difference.
        s.run(&["-a", ANCHOR, "-t", TABLE, "-T", "delete", "10.0.0.1"]);
        s.run(&["-a", ANCHOR, "-t", TABLE, "-T", "add", "172.16.0.1"]);
        s.clear_calls();
        let mut again = action(&s, "ssh", KillScope::Ports, &[]);
        again.start(&b).unwrap();
        let calls = s.argvs();
        assert!(calls.len() <= 4 + check_calls(os).len(), "{calls:?}");
        let table = s.table(ANCHOR, TABLE);
        assert_eq!(table.len(), 10_000);
        assert!(table.contains(&"10.0.0.1".to_string()));
        assert!(!table.contains(&"172.16.0.1".to_string()));

        s.clear_calls();
        again.unban(&b).unwrap();
        assert_eq!(s.calls().len(), 2);
        assert!(s.table(ANCHOR, TABLE).is_empty());
    }
}

#[test]
fn banning_twice_and_unbanning_absent_addresses_succeed() {
    for os in BOTH {
        let s = sim(os);
        hook(&s);
        let mut a = action(&s, "ssh", KillScope::Ports, &[]);
        a.start(&[]).unwrap();
        a.ban(&bans(&["192.0.2.7"])).unwrap();
        s.clear_calls();
        a.ban(&bans(&["192.0.2.7"])).unwrap();
        assert_eq!(s.calls()[0].stderr, "0/1 addresses added.\n");
        a.unban(&bans(&["192.0.2.99"])).unwrap();
        assert_eq!(s.calls()[1].stderr, "0/1 addresses deleted.\n");
        assert_eq!(a.list().unwrap(), Some(vec![net("192.0.2.7")]));
    }
}

#[test]
fn a_table_killed_behind_its_back_is_rebuilt() {
    for os in BOTH {
        let mut s = sim(os);
        hook(&s);
        let mut a = action(&s, "ssh", KillScope::Ports, &[]);
        a.start(&[]).unwrap();
        a.ban(&bans(&["192.0.2.1", "192.0.2.2"])).unwrap();

        // Unban after `-T kill`: exit 255 "Table does not exist"; the anchor is reloaded
        // and the table restored without the unbanned address.
        let out = s.run(&["-a", ANCHOR, "-t", TABLE, "-T", "kill"]);
        assert_eq!(out.exit, 0);
        s.clear_calls();
        a.unban(&bans(&["192.0.2.1"])).unwrap();
        let calls = s.calls();
        assert_eq!(calls[0].exit, 255);
        assert!(calls[0].stderr.contains("Table does not exist"));
        assert_eq!(calls[1].argv, argv(&["-a", ANCHOR, "-f", "-"]));
        assert_eq!(calls[2].argv[4..6], argv(&["-T", "replace"]));
        assert_eq!(s.table(ANCHOR, TABLE), vec!["192.0.2.2"]);
        assert_eq!(s.table_json(ANCHOR, TABLE)["counters"], json!(true));

        // The whole anchor flushed: `-T add` silently recreates a bare table without
        // the rule; the action notices `1 table created.` and rebuilds the anchor.
        let out = s.run(&["-a", ANCHOR, "-F", "all"]);
        assert_eq!(out.exit, 0, "{out:?}");
        assert!(s.rules(ANCHOR).is_empty());
        a.ban(&bans(&["192.0.2.3"])).unwrap();
        assert_eq!(s.table(ANCHOR, TABLE), vec!["192.0.2.2", "192.0.2.3"]);
        assert_eq!(s.rules(ANCHOR).len(), 1);
        assert_eq!(s.table_json(ANCHOR, TABLE)["counters"], json!(true));

        // Exit 255 "Table does not exist" on an add: rebuilt, then retried once.
        s.fail(&format!(
            "{{times=1}}-T add=>255:{}",
            match os {
                Os::FreeBsd => "pfctl: Table does not exist.",
                Os::OpenBsd => "pfctl: Table does not exist",
            }
        ));
        s.clear_calls();
        a.ban(&bans(&["192.0.2.4"])).unwrap();
        let argvs = s.argvs();
        assert_eq!(argvs.len(), 4, "{argvs:?}");
        assert_eq!(argvs[0], argvs[3]);
        assert_eq!(
            s.table(ANCHOR, TABLE),
            vec!["192.0.2.2", "192.0.2.3", "192.0.2.4"]
        );

        // A second failure after the rebuild is returned, transient.
        s.clear_fail();
        s.fail("-T add=>255:pfctl: Table does not exist.");
        let err = a.ban(&bans(&["192.0.2.5"])).unwrap_err();
        assert!(matches!(err, FirewallError::Command { .. }), "{err}");
        assert!(err.is_transient());
    }
}

#[test]
fn permission_denied_is_a_transient_command_error() {
    for os in BOTH {
        let mut s = sim(os);
        hook(&s);
        let mut a = action(&s, "ssh", KillScope::Ports, &[]);
        a.start(&[]).unwrap();
        s.set_deny(true);
        let err = a.ban(&bans(&["192.0.2.7", "192.0.2.8"])).unwrap_err();
        match &err {
            FirewallError::Command { message, .. } => {
                assert_eq!(message, "exit status 1: pfctl: /dev/pf: Permission denied")
            }
            other => panic!("{other}"),
        }
        assert!(err.is_transient());
        let err = a.start(&[]).unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert!(
            a.kill_states(&bans(&["192.0.2.7"]))
                .unwrap_err()
                .is_transient()
        );
        // The retry the daemon makes once the cause is gone.
        s.set_deny(false);
        a.ban(&bans(&["192.0.2.7", "192.0.2.8"])).unwrap();
        assert_eq!(s.table(ANCHOR, TABLE), vec!["192.0.2.7", "192.0.2.8"]);
    }
}

#[test]
fn a_slow_pfctl_times_out_as_a_transient_error() {
    for os in BOTH {
        let mut s = sim(os);
        hook(&s);
        let mut a = action(&s, "ssh", KillScope::Ports, &[("timeout", "300ms")]);
        a.start(&[]).unwrap();
        s.set_delay_ms(Some(3000));
        let err = a.ban(&bans(&["192.0.2.7"])).unwrap_err();
        assert!(
            matches!(err, FirewallError::Exec(ExecError::Timeout { .. })),
            "{err}"
        );
        assert!(err.is_transient());
        s.set_delay_ms(None);
        a.ban(&bans(&["192.0.2.7"])).unwrap();
        assert_eq!(s.table(ANCHOR, TABLE), vec!["192.0.2.7"]);
    }
}

#[test]
fn a_failed_chunk_is_a_partial_failure() {
    for os in BOTH {
        let mut s = sim(os);
        hook(&s);
        let mut a = action(&s, "ssh", KillScope::Ports, &[("batch_size", "2")]);
        a.start(&[]).unwrap();
        s.clear_calls();
        s.fail("{times=1}-T add=>255:pfctl: Cannot allocate memory.");
        let err = a
            .ban(&bans(&["192.0.2.1", "192.0.2.2", "192.0.2.3"]))
            .unwrap_err();
        match &err {
            FirewallError::Partial { failed, first } => {
                assert_eq!(failed, &vec![net("192.0.2.1"), net("192.0.2.2")]);
                assert!(first.to_string().contains("Cannot allocate memory"));
            }
            other => panic!("{other}"),
        }
        assert!(err.is_transient());
        assert_eq!(s.table(ANCHOR, TABLE), vec!["192.0.2.3"]);
        // No rebuild for errors other than a missing table.
        assert!(!s.argvs().iter().any(|c| c[2..] == argv(&["-f", "-"])[..]));
    }
}

#[test]
fn restart_reconciles_a_drifted_table_and_rule() {
    for os in BOTH {
        let s = sim(os);
        hook(&s);
        let active = bans(&["192.0.2.1", "192.0.2.2", "2001:db8::/64"]);
        let mut a = action(&s, "ssh", KillScope::Ports, &[("keep_on_stop", "yes")]);
        a.start(&active).unwrap();
        a.stop().unwrap();
        // Behind warden's back: one entry added, one removed, the rule replaced.
        s.run(&["-a", ANCHOR, "-t", TABLE, "-T", "add", "198.51.100.66"]);
        s.run(&["-a", ANCHOR, "-t", TABLE, "-T", "delete", "192.0.2.2"]);
        s.run_stdin(
            &["-a", ANCHOR, "-f", "-"],
            "table <warden-sshd> persist\npass all\n",
        );
        s.clear_calls();
        let mut b = action(&s, "ssh", KillScope::Ports, &[]);
        b.start(&active).unwrap();
        assert_eq!(
            s.table(ANCHOR, TABLE),
            vec!["192.0.2.1", "192.0.2.2", "2001:db8::/64"]
        );
        assert_eq!(
            s.rules(ANCHOR),
            vec!["block drop in log quick proto tcp from <warden-sshd> to any port 22"]
        );
        let replace = &s.calls()[1];
        assert_eq!(
            replace.stdin.as_deref(),
            Some("192.0.2.1\n192.0.2.2\n2001:db8::/64\n")
        );
        assert!(
            replace.stderr.contains("1 addresses added."),
            "{}",
            replace.stderr
        );
        assert!(
            replace.stderr.contains("1 addresses deleted."),
            "{}",
            replace.stderr
        );
        assert_eq!(b.list().unwrap().unwrap().len(), 3);
    }
}

#[test]
fn a_main_ruleset_without_the_anchor_call_gets_one_clear_warning() {
    for os in BOTH {
        let s = sim(os);
        s.seed_json(json!({"anchors": {"": {"rules": ["pass all"]}}}));
        let mut a = action(&s, "ssh", KillScope::Ports, &[]);
        a.start(&[]).unwrap();
        assert_eq!(
            a.warnings(),
            &[
                "PF's main ruleset does not call anchor \"warden/sshd\": table <warden-sshd> is kept up to date \
                 but blocks nothing. Add the line\n    anchor \"warden/*\"\nto /etc/pf.conf, before the rules that \
                 pass traffic, and reload it with `pfctl -f /etc/pf.conf`."
                    .to_string()
            ]
        );
        assert_eq!(a.hook_line(), "anchor \"warden/*\"");
        // Table operations still work.
        a.ban(&bans(&["192.0.2.7"])).unwrap();
        assert_eq!(s.table(ANCHOR, TABLE), vec!["192.0.2.7"]);

        // Calls that cover the anchor: the jail's own, or the root's with a wildcard
        // inside it.
        for (main, inner) in [
            ("anchor \"warden/sshd\" all", None),
            ("anchor \"warden\" all", Some("anchor \"*\" all")),
            (
                "anchor \"/warden\" in on em0 all",
                Some("anchor \"sshd\" all"),
            ),
        ] {
            let s = sim(os);
            s.seed_json(json!({"anchors": {"": {"rules": [main]}}}));
            if let Some(inner) = inner {
                s.seed_json(json!({"anchors": {"warden": {"rules": [inner]}}}));
            }
            let mut a = action(&s, "ssh", KillScope::Ports, &[]);
            a.start(&[]).unwrap();
            assert!(a.warnings().is_empty(), "{main}: {:?}", a.warnings());
        }
        // A call of the root alone evaluates no jail anchor.
        let s = sim(os);
        s.seed_json(json!({"anchors": {"": {"rules": ["anchor \"warden\" all"]}, "warden": {"rules": ["pass all"]}}}));
        let mut a = action(&s, "ssh", KillScope::Ports, &[]);
        a.start(&[]).unwrap();
        assert_eq!(a.warnings().len(), 1);
    }
}

#[test]
fn freebsd_reports_pf_disabled() {
    let s = sim(Os::FreeBsd);
    hook(&s);
    s.seed_json(json!({"enabled": false}));
    let mut a = action(&s, "ssh", KillScope::Ports, &[]);
    a.start(&[]).unwrap();
    assert_eq!(a.warnings().len(), 1);
    assert!(
        a.warnings()[0].starts_with("PF is disabled"),
        "{:?}",
        a.warnings()
    );
    assert!(a.warnings()[0].contains("pfctl -e"));
}

#[test]
fn stop_flushes_the_anchor_and_keep_on_stop_keeps_it() {
    for os in BOTH {
        let s = sim(os);
        hook(&s);
        let mut a = action(&s, "ssh", KillScope::Ports, &[]);
        a.start(&bans(&["192.0.2.1"])).unwrap();
        s.clear_calls();
        a.stop().unwrap();
        assert_eq!(s.argvs(), vec![argv(&["-a", ANCHOR, "-F", "all"])]);
        assert!(
            !s.anchors().contains(&ANCHOR.to_string()),
            "{:?}",
            s.anchors()
        );
        assert!(!s.table_exists(ANCHOR, TABLE));
        // Stopping again (nothing left) is fine.
        a.stop().unwrap();

        let mut k = action(&s, "ssh", KillScope::Ports, &[("keep_on_stop", "yes")]);
        k.start(&bans(&["192.0.2.1", "192.0.2.2"])).unwrap();
        s.clear_calls();
        k.stop().unwrap();
        assert!(s.calls().is_empty());
        assert_eq!(s.table(ANCHOR, TABLE), vec!["192.0.2.1", "192.0.2.2"]);
        assert_eq!(s.rules(ANCHOR).len(), 1);
    }
}

#[test]
fn a_missing_pfctl_is_not_transient() {
    let s = sim(Os::FreeBsd);
    let mut a = action(
        &s,
        "ssh",
        KillScope::Ports,
        &[("pfctl", "/nonexistent/pfctl")],
    );
    let err = a.start(&[]).unwrap_err();
    assert!(!err.is_transient(), "{err}");
}

#[test]
fn a_refused_ruleset_is_a_configuration_error() {
    for os in BOTH {
        let mut s = sim(os);
        s.fail("-f -=>1:stdin:2: syntax error\\npfctl: Syntax error in config file: pf rules not loaded");
        let mut a = action(&s, "ssh", KillScope::Ports, &[]);
        let err = a.start(&[]).unwrap_err();
        assert!(matches!(err, FirewallError::Config(_)), "{err}");
        assert!(!err.is_transient());
        assert!(err.to_string().contains("syntax error"), "{err}");
    }
}

#[test]
fn a_table_of_the_same_name_elsewhere_is_reported() {
    for os in BOTH {
        let s = sim(os);
        hook(&s);
        let out = s.run(&["-t", TABLE, "-T", "add", "192.0.2.200"]);
        assert_eq!(out.exit, 0);
        let mut a = action(&s, "ssh", KillScope::Ports, &[]);
        a.start(&[]).unwrap();
        assert_eq!(
            a.warnings(),
            &["pfctl: warning: table <warden-sshd> already defined in anchor \"/\"".to_string()]
        );
    }
}
