//! The nftables backend against the real kernel, in network namespaces the tests create:
//! the ruleset it builds, batching, kernel timeouts, reconciliation, and cutting the
//! connections of banned addresses (with the control case that shows why).

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde_json::Value;
use warden::firewall::nftables::NftAction;
use warden::firewall::{Action, Ban, JailSpec, KillScope, PortSpec};

use crate::support::netns::{Client, Lan, Netns, Service, wait_until};

const SEC: Duration = Duration::from_secs(1);

fn spec(
    jail: &str,
    ports: &str,
    protos: &[&str],
    kill: KillScope,
    params: &[(&str, &str)],
) -> JailSpec {
    JailSpec {
        jail: jail.into(),
        ports: PortSpec::parse(ports).unwrap(),
        protocols: protos.iter().map(|p| p.to_string()).collect(),
        kill_states: kill,
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn action(spec: JailSpec) -> NftAction {
    NftAction::new(spec).unwrap()
}

/// A ban of `target` ending `secs` from now (None: permanent).
fn ban(jail: &str, target: &str, secs: Option<i64>) -> Ban {
    let now = warden::now_epoch();
    let target: IpNet = target
        .parse()
        .or_else(|_| target.parse::<IpAddr>().map(IpNet::from))
        .unwrap();
    Ban {
        jail: jail.into(),
        target,
        start: now,
        expires: secs.map(|s| now + s),
        bantime: secs.unwrap_or(-1),
        failures: 5,
        bancount: 1,
        matches: Vec::new(),
        fields: BTreeMap::new(),
        restored: false,
    }
}

/// The elements of a set: text form, timeout and seconds left.
#[derive(Debug, Clone, PartialEq)]
struct Elem {
    val: String,
    timeout: Option<i64>,
    expires: Option<i64>,
}

fn elem_text(v: &Value) -> String {
    if let Some(p) = v.get("prefix") {
        return format!("{}/{}", p["addr"].as_str().unwrap(), p["len"]);
    }
    if let Some(r) = v.get("range") {
        return format!("{}-{}", r[0].as_str().unwrap(), r[1].as_str().unwrap());
    }
    v.as_str().unwrap().to_string()
}

fn set_elems(ns: &Netns, set: &str) -> Vec<Elem> {
    let v = ns.nft_json(&["list", "set", "inet", "warden", set]);
    let set = v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|i| i.get("set"))
        .unwrap()
        .clone();
    let Some(elems) = set.get("elem").and_then(Value::as_array) else {
        return Vec::new();
    };
    elems
        .iter()
        .map(|e| match e.get("elem") {
            Some(inner) => Elem {
                val: elem_text(&inner["val"]),
                timeout: inner.get("timeout").and_then(Value::as_i64),
                expires: inner.get("expires").and_then(Value::as_i64),
            },
            None => Elem {
                val: elem_text(e),
                timeout: None,
                expires: None,
            },
        })
        .collect()
}

fn vals(elems: &[Elem]) -> Vec<String> {
    let mut v: Vec<String> = elems.iter().map(|e| e.val.clone()).collect();
    v.sort();
    v
}

fn table(ns: &Netns) -> Option<Vec<Value>> {
    let out = ns
        .command("nft")
        .args(["-j", "list", "table", "inet", "warden"])
        .output()
        .unwrap();
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    Some(v["nftables"].as_array().unwrap().clone())
}

fn objects<'a>(items: &'a [Value], kind: &str) -> Vec<&'a Value> {
    items.iter().filter_map(|i| i.get(kind)).collect()
}

/// The sets a rule refers to and its verdict.
fn rule_summary(rule: &Value) -> (Vec<String>, String) {
    let text = rule["expr"].to_string();
    let mut sets = Vec::new();
    for part in text.split('"') {
        if let Some(s) = part.strip_prefix('@') {
            sets.push(s.to_string());
        }
    }
    let verdict = rule["expr"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find_map(|e| {
            e.as_object()
                .and_then(|o| {
                    o.keys()
                        .find(|k| ["drop", "reject", "accept"].contains(&k.as_str()))
                })
                .cloned()
        })
        .unwrap_or_default();
    (sets, verdict)
}

/// An nft wrapper that logs each call to `calls.log` and runs the real nft.
fn counting_nft(dir: &Path) -> (PathBuf, PathBuf) {
    let log = dir.join("calls.log");
    let script = dir.join("nft");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec /usr/sbin/nft \"$@\"\n",
            log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, log)
}

fn calls(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn start_builds_the_ruleset_and_jails_coexist() {
    let ns = Netns::new("rules");
    let mut sshd = action(spec("sshd", "ssh", &["tcp"], KillScope::Auto, &[]));
    let mut web = action(spec(
        "web",
        "http,https",
        &["tcp", "udp"],
        KillScope::Auto,
        &[("blocktype", "reject")],
    ));
    let mut all = action(spec("recidive", "", &[], KillScope::Auto, &[]));
    ns.run(|| {
        sshd.start(&[]).unwrap();
        web.start(&[ban("web", "192.0.2.10", Some(600))]).unwrap();
        all.start(&[]).unwrap();
    });

    let items = table(&ns).expect("table inet warden exists");
    let chains = objects(&items, "chain");
    assert_eq!(chains.len(), 1, "{chains:?}");
    assert_eq!(chains[0]["name"], "input");
    assert_eq!(chains[0]["type"], "filter");
    assert_eq!(chains[0]["hook"], "input");
    assert_eq!(chains[0]["prio"], -10);
    assert_eq!(chains[0]["policy"], "accept");

    let mut sets: Vec<(String, String, Vec<String>)> = objects(&items, "set")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["type"].as_str().unwrap().to_string(),
                s["flags"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect();
    sets.sort();
    let flags = vec!["interval".to_string(), "timeout".to_string()];
    assert_eq!(
        sets,
        vec![
            ("ban4-recidive".into(), "ipv4_addr".into(), flags.clone()),
            ("ban4-sshd".into(), "ipv4_addr".into(), flags.clone()),
            ("ban4-web".into(), "ipv4_addr".into(), flags.clone()),
            ("ban6-recidive".into(), "ipv6_addr".into(), flags.clone()),
            ("ban6-sshd".into(), "ipv6_addr".into(), flags.clone()),
            ("ban6-web".into(), "ipv6_addr".into(), flags.clone()),
        ]
    );

    let rules: Vec<(Vec<String>, String)> = objects(&items, "rule")
        .iter()
        .map(|r| rule_summary(r))
        .collect();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        rules,
        vec![
            (s(&["ban4-sshd"]), "drop".into()),
            (s(&["ban6-sshd"]), "drop".into()),
            // reject: TCP gets a reset, UDP an ICMP error.
            (s(&["ban4-web"]), "reject".into()),
            (s(&["ban4-web"]), "reject".into()),
            (s(&["ban6-web"]), "reject".into()),
            (s(&["ban6-web"]), "reject".into()),
            (s(&["ban4-recidive"]), "drop".into()),
            (s(&["ban6-recidive"]), "drop".into()),
        ]
    );
    let text = ns.sh("nft", &["list", "chain", "inet", "warden", "input"]);
    assert!(
        text.contains("ip saddr @ban4-sshd tcp dport 22 counter packets 0 bytes 0 drop comment \"warden jail sshd\""),
        "{text}"
    );
    assert!(
        text.contains("ip6 saddr @ban6-web tcp dport { 80, 443 } counter packets 0 bytes 0 reject with tcp reset"),
        "{text}"
    );
    assert!(
        text.contains("ip6 saddr @ban6-web meta l4proto { tcp, udp } th dport { 80, 443 } counter packets 0 bytes 0 reject"),
        "{text}"
    );
    assert!(
        text.contains("ip saddr @ban4-recidive counter packets 0 bytes 0 drop"),
        "{text}"
    );

    // A restart of one jail neither duplicates its rules nor touches the others.
    ns.run(|| sshd.start(&[ban("sshd", "192.0.2.20", Some(600))]).unwrap());
    let items = table(&ns).unwrap();
    assert_eq!(objects(&items, "rule").len(), 8);
    assert_eq!(vals(&set_elems(&ns, "ban4-web")), vec!["192.0.2.10"]);
    assert_eq!(vals(&set_elems(&ns, "ban4-sshd")), vec!["192.0.2.20"]);

    // Stopping one jail leaves the others' sets, elements and rules.
    ns.run(|| sshd.stop().unwrap());
    let items = table(&ns).unwrap();
    let names: Vec<&str> = objects(&items, "set")
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(
        !names.contains(&"ban4-sshd") && !names.contains(&"ban6-sshd"),
        "{names:?}"
    );
    assert!(names.contains(&"ban4-web") && names.contains(&"ban4-recidive"));
    let rules: Vec<(Vec<String>, String)> = objects(&items, "rule")
        .iter()
        .map(|r| rule_summary(r))
        .collect();
    assert_eq!(rules.len(), 6);
    assert!(rules.iter().all(|(s, _)| !s[0].ends_with("sshd")));
    assert_eq!(vals(&set_elems(&ns, "ban4-web")), vec!["192.0.2.10"]);
    assert_eq!(
        ns.run(|| web.list().unwrap()).unwrap(),
        vec!["192.0.2.10/32".parse::<IpNet>().unwrap()]
    );

    // The last jail to stop takes the table with it.
    ns.run(|| {
        web.stop().unwrap();
        all.stop().unwrap();
    });
    assert!(table(&ns).is_none(), "table left behind");

    // keep_on_stop leaves the bans enforced.
    let mut kept = action(spec(
        "sshd",
        "ssh",
        &["tcp"],
        KillScope::Auto,
        &[("keep_on_stop", "yes")],
    ));
    ns.run(|| {
        kept.start(&[ban("sshd", "192.0.2.30", Some(600))]).unwrap();
        kept.stop().unwrap();
    });
    assert_eq!(vals(&set_elems(&ns, "ban4-sshd")), vec!["192.0.2.30"]);
}

#[test]
fn odd_jail_names_and_table_options_stay_safe() {
    let ns = Netns::new("names");
    let jail = "we\"ird; delete table inet warden";
    let mut a = action(spec(
        jail,
        "ssh",
        &["tcp"],
        KillScope::Auto,
        &[
            ("table", "inet guard"),
            ("chain", "ban-fwd"),
            ("chain_hook", "forward"),
            ("chain_priority", "filter - 20"),
        ],
    ));
    let set4 = a.names().set4.clone();
    assert!(
        set4.starts_with("ban4-we_ird__delete_table_inet_"),
        "{set4}"
    );
    ns.run(|| {
        a.start(&[]).unwrap();
        a.ban(&[ban(jail, "198.51.100.7", Some(60))]).unwrap();
    });
    let v = ns.nft_json(&["list", "table", "inet", "guard"]);
    let items = v["nftables"].as_array().unwrap();
    let chain = objects(items, "chain")[0].clone();
    assert_eq!(
        (
            chain["name"].as_str(),
            chain["hook"].as_str(),
            chain["prio"].as_i64()
        ),
        (Some("ban-fwd"), Some("forward"), Some(-20))
    );
    let listed = ns.run(|| a.list().unwrap()).unwrap();
    assert_eq!(listed, vec!["198.51.100.7/32".parse::<IpNet>().unwrap()]);
    ns.run(|| a.stop().unwrap());
    let out = ns
        .command("nft")
        .args(["list", "table", "inet", "guard"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "table inet guard should be gone");
}

#[test]
fn a_ban_batch_is_one_nft_call_with_kernel_timeouts() {
    let ns = Netns::new("batch");
    let dir = tempfile::tempdir().unwrap();
    let (nft, log) = counting_nft(dir.path());
    let nft = nft.to_str().unwrap().to_string();
    let mut a = action(spec(
        "sshd",
        "ssh",
        &["tcp"],
        KillScope::Auto,
        &[("nft", &nft)],
    ));
    ns.run(|| a.start(&[]).unwrap());
    assert_eq!(
        calls(&log).len(),
        2,
        "start lists once and writes once: {:?}",
        calls(&log)
    );

    let mut bans = Vec::new();
    for i in 0..400u32 {
        bans.push(ban(
            "sshd",
            &format!("10.{}.{}.{}", 1 + i / 65536, (i / 256) % 256, i % 256),
            Some(600),
        ));
    }
    for i in 0..300u32 {
        bans.push(ban("sshd", &format!("2001:db8:1::{:x}", i + 1), Some(600)));
    }
    bans.push(ban("sshd", "2001:db8:ff::/64", Some(900)));
    bans.push(ban("sshd", "10.200.0.0/16", None));
    std::fs::remove_file(&log).unwrap();
    ns.run(|| a.ban(&bans).unwrap());
    let c = calls(&log);
    assert_eq!(c, vec!["-f -"], "one transaction for {} bans", bans.len());

    let v4 = set_elems(&ns, "ban4-sshd");
    let v6 = set_elems(&ns, "ban6-sshd");
    assert_eq!(v4.len(), 401);
    assert_eq!(v6.len(), 301);
    let host = v4.iter().find(|e| e.val == "10.1.1.44").unwrap();
    assert!((599..=600).contains(&host.timeout.unwrap()), "{host:?}");
    assert!((590..=600).contains(&host.expires.unwrap()), "{host:?}");
    let net = v6.iter().find(|e| e.val == "2001:db8:ff::/64").unwrap();
    assert!((890..=900).contains(&net.expires.unwrap()), "{net:?}");
    let perm = v4.iter().find(|e| e.val == "10.200.0.0/16").unwrap();
    assert_eq!(
        (perm.timeout, perm.expires),
        (None, None),
        "permanent ban has no timeout"
    );
    assert!(v6.iter().any(|e| e.val == "2001:db8:1::12c"));

    // The /64 blocks every address in it (the kernel matches the interval).
    let out = ns
        .command("nft")
        .args([
            "get",
            "element",
            "inet",
            "warden",
            "ban6-sshd",
            "{ 2001:db8:ff::dead:beef }",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A re-ban of present elements succeeds and extends their timeout.
    std::fs::remove_file(&log).unwrap();
    ns.run(|| {
        a.ban(&[
            ban("sshd", "10.1.1.44", Some(7200)),
            ban("sshd", "2001:db8:ff::/64", Some(7200)),
        ])
        .unwrap()
    });
    assert_eq!(calls(&log).len(), 1);
    let host = set_elems(&ns, "ban4-sshd")
        .into_iter()
        .find(|e| e.val == "10.1.1.44")
        .unwrap();
    assert!((7190..=7200).contains(&host.expires.unwrap()), "{host:?}");
    let net = set_elems(&ns, "ban6-sshd")
        .into_iter()
        .find(|e| e.val == "2001:db8:ff::/64")
        .unwrap();
    assert!((7190..=7200).contains(&net.expires.unwrap()), "{net:?}");

    // Unbans of absent targets (never banned, or already gone) do not fail the batch.
    std::fs::remove_file(&log).unwrap();
    ns.run(|| {
        a.unban(&[
            ban("sshd", "10.1.1.44", None),
            ban("sshd", "203.0.113.99", None),
            ban("sshd", "2001:db8:77::/64", None),
        ])
        .unwrap();
        a.unban(&[
            ban("sshd", "10.1.1.44", None),
            ban("sshd", "203.0.113.99", None),
        ])
        .unwrap();
    });
    assert_eq!(calls(&log).len(), 2, "{:?}", calls(&log));
    let v4 = set_elems(&ns, "ban4-sshd");
    assert_eq!(v4.len(), 400);
    assert!(!v4.iter().any(|e| e.val == "10.1.1.44"));

    // Large re-bans and unbans (the set is then rewritten whole) are one call too, and
    // leave every other element with its own timeout.
    std::fs::remove_file(&log).unwrap();
    let reban: Vec<Ban> = (0..100u32)
        .map(|i| ban("sshd", &format!("10.1.0.{i}"), Some(5000)))
        .collect();
    let unban: Vec<Ban> = (100..250u32)
        .map(|i| ban("sshd", &format!("10.1.0.{i}"), None))
        .chain((1..=50u32).map(|i| ban("sshd", &format!("2001:db8:1::{i:x}"), None)))
        .collect();
    ns.run(|| {
        a.ban(&reban).unwrap();
        a.unban(&unban).unwrap();
    });
    assert_eq!(calls(&log).len(), 2, "{:?}", calls(&log));
    let v4 = set_elems(&ns, "ban4-sshd");
    assert_eq!(v4.len(), 250);
    let get = |v: &[Elem], val: &str| v.iter().find(|e| e.val == val).cloned();
    assert!((4990..=5000).contains(&get(&v4, "10.1.0.7").unwrap().expires.unwrap()));
    assert!((590..=600).contains(&get(&v4, "10.1.1.7").unwrap().expires.unwrap()));
    assert!(get(&v4, "10.1.0.200").is_none());
    assert_eq!(get(&v4, "10.200.0.0/16").unwrap().timeout, None);
    let v6 = set_elems(&ns, "ban6-sshd");
    assert_eq!(v6.len(), 251);
    assert!(get(&v6, "2001:db8:1::1").is_none() && get(&v6, "2001:db8:1::33").is_some());
    assert!((7190..=7200).contains(&get(&v6, "2001:db8:ff::/64").unwrap().expires.unwrap()));
    ns.run(|| {
        a.ban(
            &(100..400u32)
                .map(|i| {
                    ban(
                        "sshd",
                        &format!("10.{}.{}.{}", 1 + i / 65536, (i / 256) % 256, i % 256),
                        Some(600),
                    )
                })
                .collect::<Vec<_>>(),
        )
        .unwrap();
    });
    // 10.1.0.100 to 10.1.1.143 back (10.1.1.44 among them): all 400 plus the /16.
    assert_eq!(set_elems(&ns, "ban4-sshd").len(), 401);

    // An element deleted behind the backend's back: unbanning it still succeeds.
    ns.sh(
        "nft",
        &[
            "delete",
            "element",
            "inet",
            "warden",
            "ban4-sshd",
            "{ 10.1.1.45 }",
        ],
    );
    ns.run(|| a.unban(&[ban("sshd", "10.1.1.45", None)]).unwrap());
    assert_eq!(set_elems(&ns, "ban4-sshd").len(), 400);
}

#[test]
fn an_address_inside_a_banned_network_waits_for_it() {
    let ns = Netns::new("nest");
    let mut a = action(spec("sshd", "ssh", &["tcp"], KillScope::Auto, &[]));
    ns.run(|| {
        a.start(&[]).unwrap();
        a.ban(&[ban("sshd", "2001:db8:5::7", Some(3000))]).unwrap();
        // The interval set cannot hold both; the /64 replaces the host while it lasts.
        a.ban(&[ban("sshd", "2001:db8:5::/64", Some(600))]).unwrap();
    });
    assert_eq!(vals(&set_elems(&ns, "ban6-sshd")), vec!["2001:db8:5::/64"]);
    ns.run(|| a.unban(&[ban("sshd", "2001:db8:5::/64", None)]).unwrap());
    let e = set_elems(&ns, "ban6-sshd");
    assert_eq!(vals(&e), vec!["2001:db8:5::7"]);
    assert!((2990..=3000).contains(&e[0].expires.unwrap()), "{e:?}");

    // With cidr6 = 64 every IPv6 ban covers its /64, and hosts of one /64 share it.
    let mut wide = action(spec(
        "wide",
        "ssh",
        &["tcp"],
        KillScope::Auto,
        &[("cidr6", "64")],
    ));
    ns.run(|| {
        wide.start(&[]).unwrap();
        wide.ban(&[
            ban("wide", "2001:db8:9::1", Some(600)),
            ban("wide", "2001:db8:9::2", Some(60)),
        ])
        .unwrap();
    });
    let e = set_elems(&ns, "ban6-wide");
    assert_eq!(vals(&e), vec!["2001:db8:9::/64"]);
    assert!(e[0].expires.unwrap() > 590, "the later end wins: {e:?}");
    assert_eq!(
        wide.entry_key(&"2001:db8:9::2/128".parse().unwrap()),
        "nftables inet warden ban6-wide 2001:db8:9::/64"
    );
}

#[test]
fn kernel_timeouts_end_bans_without_warden() {
    let ns = Netns::new("expiry");
    {
        let mut a = action(spec("sshd", "ssh", &["tcp"], KillScope::Auto, &[]));
        ns.run(|| {
            a.start(&[]).unwrap();
            a.ban(&[
                ban("sshd", "192.0.2.1", Some(2)),
                ban("sshd", "192.0.2.2", Some(2)),
                ban("sshd", "2001:db8::2", Some(2)),
                ban("sshd", "192.0.2.3", Some(3)),
                ban("sshd", "192.0.2.4", Some(600)),
            ])
            .unwrap();
        });
        // No stop: the action and its process state go away, as in a crash.
    }
    let t0 = Instant::now();
    // The timeouts written are the seconds left when the batch ran: 2 s (or 1 s when the
    // clock ticked between building the bans and writing them).
    let v4 = set_elems(&ns, "ban4-sshd");
    assert_eq!(v4.len(), 4);
    let timeout = |val: &str| v4.iter().find(|e| e.val == val).unwrap().timeout.unwrap();
    let short = timeout("192.0.2.1");
    assert!((1..=2).contains(&short), "{v4:?}");
    assert_eq!(timeout("192.0.2.2"), short);
    assert_eq!(timeout("192.0.2.3"), short + 1);
    let short = Duration::from_secs(short as u64);
    assert!(wait_until(Duration::from_secs(5), || {
        vals(&set_elems(&ns, "ban4-sshd")) == ["192.0.2.3", "192.0.2.4"]
            && set_elems(&ns, "ban6-sshd").is_empty()
    }));
    let first = t0.elapsed();
    assert!(
        first + Duration::from_millis(300) > short && first < short + Duration::from_millis(900),
        "expired after {first:?}, timeout {short:?}"
    );
    assert!(wait_until(Duration::from_secs(5), || {
        vals(&set_elems(&ns, "ban4-sshd")) == ["192.0.2.4"]
    }));
    let second = t0.elapsed();
    assert!(
        second + Duration::from_millis(300) > short + SEC
            && second < short + SEC + Duration::from_millis(900),
        "expired after {second:?}, timeout {:?}",
        short + SEC
    );

    // A new process unbanning what the kernel already dropped succeeds.
    let mut b = action(spec("sshd", "ssh", &["tcp"], KillScope::Auto, &[]));
    ns.run(|| {
        b.start(&[ban("sshd", "192.0.2.4", Some(600))]).unwrap();
        b.unban(&[
            ban("sshd", "192.0.2.1", None),
            ban("sshd", "192.0.2.3", None),
        ])
        .unwrap();
    });
    assert_eq!(vals(&set_elems(&ns, "ban4-sshd")), vec!["192.0.2.4"]);
}

#[test]
fn start_reconciles_the_sets_with_the_ledger() {
    let ns = Netns::new("drift");
    let ledger = vec![
        ban("sshd", "192.0.2.1", Some(600)),
        ban("sshd", "192.0.2.2", Some(1200)),
        ban("sshd", "192.0.2.3", None),
        ban("sshd", "2001:db8::1", Some(600)),
        ban("sshd", "2001:db8:1::/64", Some(3600)),
    ];
    let mut a = action(spec("sshd", "ssh", &["tcp"], KillScope::Auto, &[]));
    ns.run(|| a.start(&ledger).unwrap());
    drop(a);

    // Drift: an element lost, strays added (one a range), a timeout changed, a permanent
    // ban given a timeout.
    ns.nft(
        "delete element inet warden ban4-sshd { 192.0.2.1 }\n\
         add element inet warden ban4-sshd { 198.51.100.1, 10.9.0.1-10.9.0.5 timeout 1h }\n\
         delete element inet warden ban4-sshd { 192.0.2.2, 192.0.2.3 }\n\
         add element inet warden ban4-sshd { 192.0.2.2 timeout 5s, 192.0.2.3 timeout 1h }\n\
         add element inet warden ban6-sshd { 2001:db8:99::/48 }\n",
    );
    let mut b = action(spec("sshd", "ssh", &["tcp"], KillScope::Auto, &[]));
    ns.run(|| b.start(&ledger).unwrap());
    let v4 = set_elems(&ns, "ban4-sshd");
    assert_eq!(vals(&v4), vec!["192.0.2.1", "192.0.2.2", "192.0.2.3"]);
    // Many strays (the set is then rewritten whole) are removed as well.
    let strays: Vec<String> = (0..60)
        .map(|i| format!("198.51.100.{i} timeout 1h"))
        .collect();
    ns.nft(&format!(
        "add element inet warden ban4-sshd {{ {} }}\n",
        strays.join(", ")
    ));
    assert_eq!(set_elems(&ns, "ban4-sshd").len(), 63);
    let mut b = action(spec("sshd", "ssh", &["tcp"], KillScope::Auto, &[]));
    ns.run(|| b.start(&ledger).unwrap());
    let v4 = set_elems(&ns, "ban4-sshd");
    assert_eq!(vals(&v4), vec!["192.0.2.1", "192.0.2.2", "192.0.2.3"]);
    let get = |v: &[Elem], val: &str| v.iter().find(|e| e.val == val).unwrap().clone();
    assert!((590..=600).contains(&get(&v4, "192.0.2.1").expires.unwrap()));
    assert!((1190..=1200).contains(&get(&v4, "192.0.2.2").expires.unwrap()));
    assert_eq!(get(&v4, "192.0.2.3").timeout, None);
    let v6 = set_elems(&ns, "ban6-sshd");
    assert_eq!(vals(&v6), vec!["2001:db8:1::/64", "2001:db8::1"]);
    assert!((3590..=3600).contains(&get(&v6, "2001:db8:1::/64").expires.unwrap()));

    // A table removed behind the backend's back comes back on the next batch, with
    // everything the jail holds.
    ns.sh("nft", &["delete", "table", "inet", "warden"]);
    ns.run(|| b.ban(&[ban("sshd", "192.0.2.9", Some(600))]).unwrap());
    assert_eq!(
        vals(&set_elems(&ns, "ban4-sshd")),
        vec!["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.9"]
    );
    assert_eq!(vals(&set_elems(&ns, "ban6-sshd")).len(), 2);
    // And an overlapping element added by hand makes a ban batch resynchronise instead
    // of failing.
    ns.sh(
        "nft",
        &[
            "add",
            "element",
            "inet",
            "warden",
            "ban4-sshd",
            "{ 203.0.113.0/24 }",
        ],
    );
    ns.run(|| b.ban(&[ban("sshd", "203.0.113.5", Some(600))]).unwrap());
    let v4 = vals(&set_elems(&ns, "ban4-sshd"));
    assert!(
        v4.contains(&"203.0.113.5".to_string()) && !v4.contains(&"203.0.113.0/24".to_string()),
        "{v4:?}"
    );
}

/// A firewalld/ufw-like host ruleset: accept established traffic first, then the
/// services, drop the rest; its chain runs before warden's.
const HOST_FIREWALL: &str = "table inet hostfw {
    chain input {
        type filter hook input priority filter - 50; policy drop;
        ct state established,related accept
        ct state invalid drop
        iif lo accept
        meta l4proto { icmp, ipv6-icmp } accept
        tcp dport { 2222, 8080 } accept
    }
}
";

#[test]
fn a_ban_cuts_open_connections_and_an_unban_lets_the_address_back() {
    let lan = Lan::new(&["server", "attacker", "client"]);
    let (server, attacker, client) = (lan.host("server"), lan.host("attacker"), lan.host("client"));
    server.ns.nft(HOST_FIREWALL);
    let svc = Service::spawn(&server.ns, 2222, None);
    let to4 = SocketAddr::new(server.v4.into(), 2222);
    let to6 = SocketAddr::new(server.v6.into(), 2222);

    let mut a4 = Client::connect(&attacker.ns, to4, SEC).unwrap();
    let mut a6 = Client::connect(&attacker.ns, to6, SEC).unwrap();
    let mut c4 = Client::connect(&client.ns, to4, SEC).unwrap();
    let mut c6 = Client::connect(&client.ns, to6, SEC).unwrap();
    for c in [&mut a4, &mut a6, &mut c4, &mut c6] {
        assert!(c.alive(SEC));
    }
    assert!(server.ns.flows_from(&attacker.v4.to_string()) >= 1);

    let mut act = action(spec("sshd", "", &["tcp"], KillScope::Auto, &[]));
    let bans = vec![
        ban("sshd", &attacker.v4.to_string(), Some(600)),
        ban("sshd", &attacker.v6_net(), Some(600)),
    ];
    let t0 = Instant::now();
    let reports = server.ns.run(|| {
        act.start(&[]).unwrap();
        act.ban(&bans).unwrap();
        act.kill_states(&bans).unwrap()
    });
    // The server's blocked reads end at once: the sockets were destroyed.
    assert_eq!(
        svc.wait_ended(a4.local_addr(), 2 * SEC),
        Some(crate::support::netns::Ended::Error(
            ErrorKind::ConnectionAborted
        ))
    );
    assert!(svc.wait_ended(a6.local_addr(), 2 * SEC).is_some());
    assert!(t0.elapsed() < 3 * SEC, "cut took {:?}", t0.elapsed());
    assert_eq!(reports.len(), 2);
    for r in &reports {
        assert_eq!(r.scope, KillScope::All);
        // One socket each, plus its conntrack entry.
        assert!(r.killed >= 2, "{reports:?}");
    }
    assert_eq!(server.ns.flows_from(&attacker.v4.to_string()), 0);

    // The attacker's open connections are dead, and new ones fail.
    assert!(!a4.alive(SEC));
    assert!(!a6.alive(SEC));
    assert!(Client::connect(&attacker.ns, to4, SEC).is_err());
    assert!(Client::connect(&attacker.ns, to6, SEC).is_err());
    // The other client is untouched, old connections and new.
    assert!(c4.alive(SEC) && c6.alive(SEC));
    assert!(svc.is_open(c4.local_addr()));
    assert!(Client::connect(&client.ns, to4, SEC).unwrap().alive(SEC));
    assert!(Client::connect(&client.ns, to6, SEC).unwrap().alive(SEC));

    server.ns.run(|| act.unban(&bans).unwrap());
    let mut again = Client::connect(&attacker.ns, to4, SEC).expect("unbanned attacker connects");
    assert!(again.alive(SEC));
    assert!(Client::connect(&attacker.ns, to6, SEC).unwrap().alive(SEC));
}

#[test]
fn a_port_scoped_ban_cuts_only_the_jails_ports() {
    let lan = Lan::new(&["server", "attacker"]);
    let (server, attacker) = (lan.host("server"), lan.host("attacker"));
    let ssh = Service::spawn(&server.ns, 2222, None);
    let web = Service::spawn(&server.ns, 8080, None);
    let ssh_addr = SocketAddr::new(server.v4.into(), 2222);
    let web_addr = SocketAddr::new(server.v4.into(), 8080);
    let mut to_ssh = Client::connect(&attacker.ns, ssh_addr, SEC).unwrap();
    let mut to_web = Client::connect(&attacker.ns, web_addr, SEC).unwrap();
    assert!(to_ssh.alive(SEC) && to_web.alive(SEC));

    let mut act = action(spec(
        "web",
        "8080",
        &["tcp"],
        KillScope::Auto,
        &[("blocktype", "reject")],
    ));
    let bans = vec![ban("web", &attacker.v4.to_string(), Some(600))];
    let reports = server.ns.run(|| {
        act.start(&[]).unwrap();
        act.ban(&bans).unwrap();
        act.kill_states(&bans).unwrap()
    });
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].scope, KillScope::Ports);
    assert_eq!(reports[0].killed, 1, "{reports:?}");
    assert!(web.wait_ended(to_web.local_addr(), 2 * SEC).is_some());
    assert!(!to_web.alive(SEC));
    // reject: a new connection to the banned port is refused at once.
    let e = Client::connect(&attacker.ns, web_addr, SEC)
        .err()
        .expect("web port banned");
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
    // The other port is outside the jail: the open connection and new ones work.
    assert!(to_ssh.alive(SEC));
    assert!(ssh.is_open(to_ssh.local_addr()));
    assert!(
        Client::connect(&attacker.ns, ssh_addr, SEC)
            .unwrap()
            .alive(SEC)
    );
}

#[test]
fn control_without_cut_off_the_open_connection_stays_open() {
    let lan = Lan::new(&["server", "attacker"]);
    let (server, attacker) = (lan.host("server"), lan.host("attacker"));
    server.ns.nft(HOST_FIREWALL);
    let svc = Service::spawn(&server.ns, 2222, None);
    let to = SocketAddr::new(server.v4.into(), 2222);
    let mut open = Client::connect(&attacker.ns, to, SEC).unwrap();
    assert!(open.alive(SEC));
    let peer = open.local_addr();

    let mut act = action(spec("sshd", "", &["tcp"], KillScope::None, &[]));
    let bans = vec![ban("sshd", &attacker.v4.to_string(), Some(600))];
    let reports = server.ns.run(|| {
        act.start(&[]).unwrap();
        act.ban(&bans).unwrap();
        act.kill_states(&bans).unwrap()
    });
    assert!(reports.is_empty());
    // New connections are refused service...
    assert!(Client::connect(&attacker.ns, to, SEC).is_err());
    // ...but the open one is not cut: the server still holds it, its handler stays blocked
    // on it, conntrack keeps it established, and the attacker's side does not learn
    // anything (its send succeeds).
    assert_eq!(svc.wait_ended(peer, 2 * SEC), None);
    assert!(svc.is_open(peer));
    assert_eq!(server.ns.flows_from(&attacker.v4.to_string()), 1);
    let sockets = server.ns.sh(
        "ss",
        &[
            "-H",
            "-n",
            "-t",
            "state",
            "established",
            "dst",
            &attacker.v4.to_string(),
        ],
    );
    assert_eq!(sockets.lines().count(), 1, "{sockets}");
    open.send("DATA after the ban")
        .expect("the attacker's socket is still open");
    // (In nftables an accept in one base chain does not end evaluation at the hook, so
    // warden's drop still discards the attacker's packets: the data never arrives.)
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !svc.lines_from(peer)
            .iter()
            .any(|l| l.contains("after the ban"))
    );

    // The same ban with cut-off ends it at once.
    let mut cutting = action(spec("sshd", "", &["tcp"], KillScope::All, &[]));
    let reports = server.ns.run(|| cutting.kill_states(&bans).unwrap());
    assert!(reports[0].killed >= 2, "{reports:?}");
    assert!(svc.wait_ended(peer, 2 * SEC).is_some());
    assert_eq!(server.ns.flows_from(&attacker.v4.to_string()), 0);
}

#[test]
fn missing_cut_off_tools_leave_the_ban_in_force() {
    let lan = Lan::new(&["server", "attacker"]);
    let (server, attacker) = (lan.host("server"), lan.host("attacker"));
    let svc = Service::spawn(&server.ns, 2222, None);
    let to = SocketAddr::new(server.v4.into(), 2222);
    let open = Client::connect(&attacker.ns, to, SEC).unwrap();
    assert!(svc.wait_accepted(open.local_addr(), SEC));
    let mut act = action(spec(
        "sshd",
        "",
        &["tcp"],
        KillScope::All,
        &[
            ("conntrack", "/nonexistent/conntrack"),
            ("ss", "/nonexistent/ss"),
        ],
    ));
    let bans = vec![ban("sshd", &attacker.v4.to_string(), Some(600))];
    let reports = server.ns.run(|| {
        act.start(&[]).unwrap();
        act.ban(&bans).unwrap();
        act.kill_states(&bans).unwrap()
    });
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].killed, 0);
    assert!(svc.is_open(open.local_addr()));
    assert!(
        Client::connect(&attacker.ns, to, SEC).is_err(),
        "the ban still applies"
    );
}

#[test]
fn the_service_logs_failures_for_later_end_to_end_tests() {
    let lan = Lan::new(&["server", "attacker"]);
    let (server, attacker) = (lan.host("server"), lan.host("attacker"));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth.log");
    let svc = Service::spawn(&server.ns, 2222, Some(&log));
    let mut c =
        Client::connect(&attacker.ns, SocketAddr::new(server.v4.into(), 2222), SEC).unwrap();
    assert!(!c.login("root", "guess1", SEC).unwrap());
    assert!(!c.login("admin", "guess2", SEC).unwrap());
    assert!(
        c.login("root", crate::support::netns::GOOD_PASSWORD, SEC)
            .unwrap()
    );
    assert_eq!(svc.failures(), 2);
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    let port = c.local_addr().port();
    assert!(
        lines[0].ends_with(&format!(
            "Failed password for root from {} port {port} ssh2",
            attacker.v4
        )),
        "{}",
        lines[0]
    );
    assert!(lines[1].contains("Failed password for admin from"));
}

#[test]
fn a_changed_chain_priority_applies_while_no_other_jail_uses_the_chain() {
    let ns = Netns::new("prio");
    let chain = |ns: &Netns| {
        let items = table(ns).unwrap();
        let c = objects(&items, "chain")[0].clone();
        (c["prio"].as_i64().unwrap(), objects(&items, "rule").len())
    };
    let mut a = action(spec("sshd", "ssh", &["tcp"], KillScope::Auto, &[]));
    ns.run(|| a.start(&[ban("sshd", "192.0.2.1", Some(600))]).unwrap());
    assert_eq!(chain(&ns), (-10, 2));
    let mut a = action(spec(
        "sshd",
        "ssh",
        &["tcp"],
        KillScope::Auto,
        &[("chain_priority", "-5")],
    ));
    ns.run(|| a.start(&[ban("sshd", "192.0.2.1", Some(600))]).unwrap());
    assert_eq!(chain(&ns), (-5, 2));
    assert_eq!(vals(&set_elems(&ns, "ban4-sshd")), vec!["192.0.2.1"]);
    // Another jail asking for a third priority gets the chain as it is (and a warning).
    let mut b = action(spec(
        "web",
        "80",
        &["tcp"],
        KillScope::Auto,
        &[("chain_priority", "10")],
    ));
    ns.run(|| b.start(&[]).unwrap());
    assert_eq!(chain(&ns), (-5, 4));
}

#[test]
fn a_kernel_without_socket_destroy_is_detected_once() {
    let lan = Lan::new(&["server", "attacker"]);
    let (server, attacker) = (lan.host("server"), lan.host("attacker"));
    server.ns.nft(HOST_FIREWALL);
    let svc = Service::spawn(&server.ns, 2222, None);
    let to = SocketAddr::new(server.v4.into(), 2222);
    let mut open = Client::connect(&attacker.ns, to, SEC).unwrap();
    assert!(open.alive(SEC));
    // An ss that destroys nothing, as on a kernel without CONFIG_INET_DIAG_DESTROY.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("ss.log");
    let ss = dir.path().join("ss");
    std::fs::write(
        &ss,
        format!("#!/bin/sh\necho \"$*\" >> '{}'\n", log.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&ss, std::fs::Permissions::from_mode(0o755)).unwrap();

    let ss = ss.to_str().unwrap().to_string();
    let mut act = action(spec("sshd", "", &["tcp"], KillScope::All, &[("ss", &ss)]));
    let bans = vec![ban("sshd", &attacker.v4.to_string(), Some(600))];
    let (first, second) = server.ns.run(|| {
        act.start(&[]).unwrap();
        act.ban(&bans).unwrap();
        (
            act.kill_states(&bans).unwrap(),
            act.kill_states(&bans).unwrap(),
        )
    });
    // conntrack still did its part; ss was asked once, by the probe, and not again.
    assert_eq!(first[0].killed, 1, "{first:?}");
    assert_eq!(second[0].killed, 0, "{second:?}");
    let calls = calls(&log);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(
        calls[0].starts_with("-K") && calls[0].contains("127.0.0.1"),
        "{calls:?}"
    );
    assert!(svc.is_open(open.local_addr()));
    assert!(
        Client::connect(&attacker.ns, to, SEC).is_err(),
        "the ban still applies"
    );
}
