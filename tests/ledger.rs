//! The ledger on a real file: restarts, a process killed mid-burst, overlapping holds,
//! purge, migrations, and concurrent use through the handle.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};

use ipnet::IpNet;
use warden::ledger::{
    Durability, Hold, Ledger, LedgerError, LedgerHandle, LedgerOptions, NewBan, Origin, Outcome,
    Position, SCHEMA_VERSION,
};

const T0: i64 = 1_700_000_000;

fn net(s: &str) -> IpNet {
    if s.contains('/') {
        s.parse().unwrap()
    } else {
        IpNet::from(s.parse::<IpAddr>().unwrap())
    }
}

fn host(i: u32) -> IpNet {
    IpNet::from(IpAddr::from(Ipv4Addr::from(0x0a00_0000 + i)))
}

fn open(path: &Path) -> Ledger {
    Ledger::open(path, LedgerOptions::default()).unwrap()
}

fn summary(holds: &[Hold]) -> Vec<(String, String, Option<i64>)> {
    holds
        .iter()
        .map(|h| (h.target.to_string(), h.jail.clone(), h.expires))
        .collect()
}

#[test]
fn holds_survive_a_restart_with_their_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut l = open(&path);
    let mut b = NewBan::new(net("192.0.2.1"), "sshd", T0, 600);
    b.failures = 3;
    b.matches = vec!["Failed password for root from 192.0.2.1".into()];
    b.fields.insert("user".into(), "root".into());
    l.record_ban(&b).unwrap();
    l.record_ban(&NewBan::new(net("2001:db8::/64"), "web", T0 + 5, -1))
        .unwrap();
    let mut m = NewBan::new(net("198.51.100.0/24"), "manual", T0 + 9, 86_400);
    m.origin = Origin::Manual;
    l.record_ban(&m).unwrap();
    l.record_ban(&NewBan::new(net("192.0.2.2"), "sshd", T0, 10))
        .unwrap();
    l.set_position(
        "sshd",
        &Position {
            path: "/var/log/auth.log".into(),
            device: 64768,
            inode: 1234,
            checksum: vec![1, 2, 3],
            offset: 4096,
        },
        T0,
    )
    .unwrap();
    l.set_cursor("sshd", "journal", "s=1;i=2", T0).unwrap();
    let before = l.active(T0 + 100, None).unwrap();
    l.close().unwrap();

    let l = open(&path);
    let after = l.active(T0 + 100, None).unwrap();
    assert_eq!(after, before);
    assert_eq!(
        summary(&after),
        [
            ("192.0.2.1/32".into(), "sshd".into(), Some(T0 + 600)),
            (
                "198.51.100.0/24".into(),
                "manual".into(),
                Some(T0 + 9 + 86_400)
            ),
            ("2001:db8::/64".into(), "web".into(), None),
        ]
    );
    assert_eq!(after[0].matches.len(), 1);
    assert_eq!(after[0].fields["user"], "root");
    assert_eq!(after[1].origin, Origin::Manual);
    // The expired one is still known for escalation.
    assert_eq!(
        l.hold(&net("192.0.2.2"), "sshd").unwrap().unwrap().bancount,
        1
    );
    assert_eq!(
        l.position("sshd", Path::new("/var/log/auth.log"))
            .unwrap()
            .unwrap()
            .offset,
        4096
    );
    assert_eq!(
        l.cursor("sshd", "journal").unwrap().as_deref(),
        Some("s=1;i=2")
    );
    assert_eq!(l.next_expiry().unwrap(), Some(T0 + 10));
}

#[test]
fn holds_survive_a_restart_through_the_handle() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let (handle, thread) = LedgerHandle::spawn(open(&path)).unwrap();
    handle
        .run_blocking(|l| l.record_ban(&NewBan::new(net("192.0.2.7"), "sshd", T0, 3600)))
        .unwrap();
    drop(handle);
    thread.join().unwrap();
    let l = open(&path);
    assert_eq!(
        summary(&l.active(T0, None).unwrap()),
        [("192.0.2.7/32".into(), "sshd".into(), Some(T0 + 3600))]
    );
}

/// The environment variable that turns [`crash_child`] into the child of
/// [`acknowledged_bans_survive_sigkill`].
const CRASH_DB: &str = "WARDEN_LEDGER_CRASH_DB";
const CRASH_FROM: &str = "WARDEN_LEDGER_CRASH_FROM";

/// Not a test on its own: the child process of [`acknowledged_bans_survive_sigkill`].
/// Records bans as fast as it can, singly and in batches, and prints `ACK <n>` for each
/// ban once its transaction has committed.
#[test]
#[ignore = "child process of acknowledged_bans_survive_sigkill"]
fn crash_child() {
    let Some(db) = std::env::var_os(CRASH_DB) else {
        return;
    };
    let from: u32 = std::env::var(CRASH_FROM).unwrap().parse().unwrap();
    let mut l = open(Path::new(&db));
    let out = std::io::stdout();
    let mut i = from;
    // Bounded so that a child whose parent vanished stops by itself.
    while i < from + 1_000_000 {
        let size = [1, 1, 7, 1, 32][(i as usize) % 5];
        let batch: Vec<NewBan> = (i..i + size).map(crash_ban).collect();
        if size == 1 {
            l.record_ban(&batch[0]).unwrap();
        } else {
            l.record_bans(&batch).unwrap();
        }
        let mut o = out.lock();
        for n in i..i + size {
            writeln!(o, "ACK {n}").unwrap();
        }
        o.flush().unwrap();
        i += size;
    }
}

fn crash_jail(n: u32) -> &'static str {
    if n.is_multiple_of(2) { "sshd" } else { "web" }
}

fn crash_ban(n: u32) -> NewBan {
    let mut b = NewBan::new(host(n), crash_jail(n), T0 + i64::from(n), 600);
    b.failures = 5;
    b.matches = vec![format!("line {n} {}", "x".repeat(100)); 3];
    b
}

#[test]
fn acknowledged_bans_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut acked: BTreeSet<u32> = BTreeSet::new();
    let mut next = 0u32;
    for round in 0..4u32 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "ledger::crash_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_DB, &path)
            .env(CRASH_FROM, next.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = 0;
        // Kill at a different point of the burst each round.
        let kill_after = 500 + round * 777;
        while seen < kill_after {
            let line = lines
                .next()
                .expect("child ended before it was killed")
                .unwrap();
            if let Some(n) = line.strip_prefix("ACK ") {
                acked.insert(n.parse().unwrap());
                seen += 1;
            }
        }
        child.kill().unwrap();
        // What the child printed before it died was acknowledged too.
        for line in lines {
            if let Some(n) = line.unwrap().strip_prefix("ACK ") {
                acked.insert(n.parse().unwrap());
            }
        }
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "{status:?}");

        let l = open(&path);
        l.check_integrity().unwrap();
        let stored: BTreeSet<u32> = l
            .recent_bans(0, None)
            .unwrap()
            .iter()
            .map(|e| (e.at - T0) as u32)
            .collect();
        let lost: Vec<&u32> = acked.difference(&stored).collect();
        assert!(
            lost.is_empty(),
            "round {round}: acknowledged but lost: {lost:?}"
        );
        // Every ban is whole: a hold for each event, and no hold without its event.
        let size = l.size().unwrap();
        assert_eq!(size.holds, size.events, "round {round}");
        assert_eq!(size.events as usize, stored.len());
        for n in acked.iter().step_by(97) {
            let h = l.hold(&host(*n), crash_jail(*n)).unwrap().unwrap();
            assert_eq!(
                (h.start, h.failures, h.matches.len()),
                (T0 + i64::from(*n), 5, 3)
            );
        }
        // Unacknowledged bans may have committed; the next round starts after them.
        next = stored.last().map_or(0, |n| n + 1);
        assert!(next as usize >= acked.len());
    }
    assert!(acked.len() > 4000, "{}", acked.len());
}

#[test]
fn two_jails_holding_one_address() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut l = open(&path);
    let addr = net("203.0.113.5");
    l.record_ban(&NewBan::new(addr, "sshd", T0, 600)).unwrap();
    l.record_ban(&NewBan::new(addr, "recidive", T0 + 60, 7 * 86_400))
        .unwrap();
    let holders = l.holders(&addr, T0 + 60).unwrap();
    let jails: Vec<&str> = holders.iter().map(|h| h.jail.as_str()).collect();
    assert_eq!(jails, ["recidive", "sshd"]);

    // The short hold expires: the timer ends it, the long one stays.
    assert_eq!(l.next_expiry().unwrap(), Some(T0 + 600));
    let ended = l.expire_due(T0 + 600).unwrap();
    assert_eq!(
        summary(&ended),
        [("203.0.113.5/32".into(), "sshd".into(), Some(T0 + 600))]
    );
    let left: Vec<String> = l
        .holders(&addr, T0 + 600)
        .unwrap()
        .iter()
        .map(|h| h.jail.clone())
        .collect();
    assert_eq!(left, ["recidive"], "the firewall entry must stay");
    drop(l);

    // Across a restart too, and an explicit unban of the long one ends it all.
    let mut l = open(&path);
    assert_eq!(l.holders(&addr, T0 + 601).unwrap().len(), 1);
    l.unban(&addr, "recidive", T0 + 700, false)
        .unwrap()
        .unwrap();
    assert!(l.holders(&addr, T0 + 700).unwrap().is_empty());
    assert_eq!(l.next_expiry().unwrap(), None);
}

#[test]
fn purge_removes_only_old_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let day = 86_400;
    let opts = LedgerOptions {
        purge_age: day,
        max_matches: 10,
        durability: Durability::Normal,
    };
    let now = T0 + 30 * day;
    let mut l = Ledger::open(&path, opts.clone()).unwrap();
    for i in 0..100u32 {
        // One ban per hour over the last 100 hours; the older ones expired long ago.
        let at = now - i64::from(i) * 3600;
        l.record_ban(&NewBan::new(host(i), "sshd", at, 600))
            .unwrap();
    }
    l.record_ban(&NewBan::new(host(1000), "sshd", now - 20 * day, -1))
        .unwrap();
    l.record_ban(&NewBan::new(host(1001), "sshd", now - 20 * day, 30 * day))
        .unwrap();
    let purged = l.purge(now).unwrap();
    // Events at or after now - 1 day: i = 0..=24.
    assert_eq!(purged.events, 100 - 25 + 2);
    drop(l);

    let l = Ledger::open(&path, opts).unwrap();
    let events = l.recent_bans(0, None).unwrap();
    assert_eq!(events.len(), 25);
    assert!(events.iter().all(|e| e.at >= now - day));
    // Both old but active holds stand; their records were not touched.
    let active: Vec<IpNet> = l
        .active(now + 3600, None)
        .unwrap()
        .iter()
        .map(|h| h.target)
        .collect();
    assert_eq!(active, [host(1000), host(1001)]);
    l.check_integrity().unwrap();
}

#[test]
fn migrations_from_an_empty_file_and_idempotent_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    std::fs::write(&path, b"").unwrap();
    let mut l = open(&path);
    assert_eq!(l.schema_version().unwrap(), SCHEMA_VERSION);
    l.record_ban(&NewBan::new(net("192.0.2.1"), "sshd", T0, 600))
        .unwrap();
    drop(l);
    for _ in 0..3 {
        let l = open(&path);
        assert_eq!(l.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(l.active(T0, None).unwrap().len(), 1);
        assert_eq!(l.recent_bans(0, None).unwrap().len(), 1);
        l.check_integrity().unwrap();
    }
    // A file from a newer warden is left alone.
    let c = rusqlite::Connection::open(&path).unwrap();
    c.pragma_update(None, "user_version", 99).unwrap();
    drop(c);
    let err = Ledger::open(&path, LedgerOptions::default()).unwrap_err();
    assert!(
        matches!(err, LedgerError::TooNew { found: 99, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("ledger.db"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_through_the_handle() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let (handle, thread) = LedgerHandle::spawn(open(&path)).unwrap();
    let jails = ["sshd", "web", "mail"];

    // 3 jails × 8 tasks × 50 bans; each target is banned by every jail, and twice in each
    // jail by two different tasks.
    let mut tasks = Vec::new();
    for (j, jail) in jails.iter().enumerate() {
        for t in 0..8u32 {
            let h = handle.clone();
            let jail = jail.to_string();
            tasks.push(tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for k in 0..50u32 {
                    let target = host((t % 4) * 50 + k);
                    let ban = NewBan::new(target, jail.clone(), T0 + j as i64, 600);
                    outcomes.push(h.run(move |l| l.record_ban(&ban)).await.unwrap().outcome);
                    if k % 10 == 0 {
                        // Readers interleave with writers.
                        h.run(move |l| l.holders(&target, T0)).await.unwrap();
                    }
                }
                outcomes
            }));
        }
    }
    // A blocking caller on a plain thread at the same time.
    let h = handle.clone();
    let blocking = std::thread::spawn(move || {
        for k in 0..100u32 {
            let ban = NewBan::new(host(10_000 + k), "offline", T0, 600);
            h.run_blocking(move |l| l.record_ban(&ban)).unwrap();
        }
    });
    let mut new = 0;
    let mut held = 0;
    for t in tasks {
        for o in t.await.unwrap() {
            match o {
                Outcome::New => new += 1,
                Outcome::AlreadyHeld => held += 1,
                Outcome::Extended => panic!("same ban time, nothing to extend"),
            }
        }
    }
    blocking.join().unwrap();
    // Calls ran one at a time: of the two tasks banning a target in a jail, one recorded
    // it and the other found it held.
    assert_eq!((new, held), (3 * 200, 3 * 200));
    let (events, holders) = handle
        .run(|l| {
            let events = l.size()?.events;
            let holders = l.holders(&host(123), T0 + 10)?;
            Ok((events, holders))
        })
        .await
        .unwrap();
    assert_eq!(events, 3 * 200 + 100);
    let mut held_by: Vec<String> = holders.into_iter().map(|h| h.jail).collect();
    held_by.sort();
    assert_eq!(held_by, ["mail", "sshd", "web"]);
    drop(handle);
    tokio::task::spawn_blocking(move || thread.join())
        .await
        .unwrap()
        .unwrap();
    open(&path).check_integrity().unwrap();
}
