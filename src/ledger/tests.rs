//! Unit tests of every ledger operation, on real files in a temporary directory.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use tempfile::TempDir;

use super::schema::MIGRATIONS;
use super::*;
use crate::config::model::Escalation;
use crate::jail::escalation::Escalate;

const T0: i64 = 1_700_000_000;

fn net(s: &str) -> IpNet {
    if s.contains('/') {
        s.parse().unwrap()
    } else {
        IpNet::from(s.parse::<std::net::IpAddr>().unwrap())
    }
}

fn open_opts(opts: LedgerOptions) -> (TempDir, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&dir.path().join("ledger.db"), opts).unwrap();
    (dir, ledger)
}

fn open() -> (TempDir, Ledger) {
    open_opts(LedgerOptions::default())
}

fn ban(target: &str, jail: &str, start: i64, bantime: i64) -> NewBan {
    NewBan::new(net(target), jail, start, bantime)
}

fn escalate(overall: bool) -> Escalate {
    Escalate {
        rule: Escalation {
            increment: true,
            factor: 1.0,
            multipliers: Vec::new(),
            maxtime: None,
            rndtime: None,
            overalljails: overall,
        },
        extra: 0,
    }
}

fn jails(holds: &[Hold]) -> Vec<(String, String)> {
    holds
        .iter()
        .map(|h| (h.target.to_string(), h.jail.clone()))
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn open_creates_a_private_wal_database_at_the_current_version() {
    let (dir, ledger) = open();
    let path = dir.path().join("ledger.db");
    assert_eq!(ledger.schema_version().unwrap(), SCHEMA_VERSION);
    let mode: String = ledger
        .conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let sync: i64 = ledger
        .conn
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .unwrap();
    assert_eq!(sync, 1, "NORMAL");
    let auto_vacuum: i64 = ledger
        .conn
        .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
        .unwrap();
    assert_eq!(auto_vacuum, 2, "INCREMENTAL");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    ledger.check_integrity().unwrap();
}

#[test]
fn full_durability_sets_synchronous_full() {
    let (_dir, ledger) = open_opts(LedgerOptions {
        durability: Durability::Full,
        ..LedgerOptions::default()
    });
    let sync: i64 = ledger
        .conn
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .unwrap();
    assert_eq!(sync, 2, "FULL");
}

#[test]
fn a_newer_schema_is_refused_and_an_older_one_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut l = Ledger::open(&path, LedgerOptions::default()).unwrap();
    l.record_ban(&ban("192.0.2.1", "sshd", T0, 600)).unwrap();
    drop(l);

    // A later release adds a migration: the data stays, the version moves on.
    let mut next: Vec<&str> = MIGRATIONS.to_vec();
    next.push("CREATE TABLE later (x INTEGER);");
    let l = Ledger::open_with(&path, LedgerOptions::default(), &next).unwrap();
    assert_eq!(l.schema_version().unwrap(), SCHEMA_VERSION + 1);
    assert_eq!(l.active(T0, None).unwrap().len(), 1);
    l.conn.execute("INSERT INTO later VALUES (1)", []).unwrap();
    drop(l);
    // Idempotent: opening again runs nothing and keeps the row.
    let l = Ledger::open_with(&path, LedgerOptions::default(), &next).unwrap();
    let n: i64 = l
        .conn
        .query_row("SELECT count(*) FROM later", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
    drop(l);

    // This build does not know version SCHEMA_VERSION + 1.
    let err = Ledger::open(&path, LedgerOptions::default()).unwrap_err();
    match &err {
        LedgerError::TooNew { found, known, .. } => {
            assert_eq!((*found, *known), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("ledger.db"), "{err}");
}

#[test]
fn a_failing_migration_leaves_the_previous_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    drop(Ledger::open(&path, LedgerOptions::default()).unwrap());
    let mut next: Vec<&str> = MIGRATIONS.to_vec();
    next.push("CREATE TABLE fine (x); CREATE TABLE holds (y);");
    let err = Ledger::open_with(&path, LedgerOptions::default(), &next).unwrap_err();
    assert!(
        matches!(err, LedgerError::Migrate { version, .. } if version == SCHEMA_VERSION + 1),
        "{err:?}"
    );
    let l = Ledger::open(&path, LedgerOptions::default()).unwrap();
    assert_eq!(l.schema_version().unwrap(), SCHEMA_VERSION);
    let fine: i64 = l
        .conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'fine'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(fine, 0, "the failed migration rolled back whole");
}

#[test]
fn a_foreign_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fail2ban.sqlite3");
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch("CREATE TABLE bips (ip TEXT); CREATE TABLE jails (name TEXT);")
        .unwrap();
    drop(c);
    let err = Ledger::open(&path, LedgerOptions::default()).unwrap_err();
    assert!(
        matches!(err, LedgerError::Foreign { tables: 2, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("not a warden ledger"));
}

#[test]
fn a_file_that_is_not_sqlite_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.db");
    std::fs::write(&path, b"this is not an SQLite database, just some text...").unwrap();
    let err = Ledger::open(&path, LedgerOptions::default()).unwrap_err();
    assert!(err.to_string().contains("junk.db"), "{err}");
}

#[test]
fn record_ban_creates_a_hold_and_an_event() {
    let (_d, mut l) = open();
    let mut b = ban("192.0.2.1", "sshd", T0, 600);
    b.failures = 5;
    b.matches = vec!["line 1".into(), "line 2".into()];
    b.fields = BTreeMap::from([("user".to_string(), "root".to_string())]);
    let r = l.record_ban(&b).unwrap();
    assert_eq!(r.outcome, Outcome::New);
    assert_eq!((r.prior, r.bancount), (0, 1));
    let h = &r.hold;
    assert_eq!(h.target, net("192.0.2.1/32"));
    assert_eq!((h.start, h.expires, h.bantime), (T0, Some(T0 + 600), 600));
    assert_eq!((h.bancount, h.failures, h.origin), (1, 5, Origin::Filter));
    assert_eq!(l.hold(&net("192.0.2.1"), "sshd").unwrap().as_ref(), Some(h));
    let ev = l.recent_bans(T0, None).unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(Some(ev[0].id), r.event);
    assert_eq!(
        (ev[0].target, ev[0].jail.as_str(), ev[0].at, ev[0].bantime),
        (net("192.0.2.1"), "sshd", T0, 600)
    );
    assert_eq!((ev[0].bancount, ev[0].failures), (1, 5));
    let fw = r.to_ban();
    assert_eq!(fw.matches, ["line 1", "line 2"]);
    assert_eq!(fw.fields["user"], "root");
    assert!(!fw.restored);
}

#[test]
fn permanent_bans_have_no_expiry() {
    let (_d, mut l) = open();
    let r = l.record_ban(&ban("192.0.2.1", "sshd", T0, -1)).unwrap();
    assert_eq!((r.hold.expires, r.hold.bantime), (None, -1));
    assert!(r.hold.is_active(i64::MAX));
    assert_eq!(l.active(T0 + 100 * 365 * 86_400, None).unwrap().len(), 1);
}

#[test]
fn targets_are_stored_canonically() {
    let (_d, mut l) = open();
    let r = l
        .record_ban(&ban("::ffff:192.0.2.9", "sshd", T0, 600))
        .unwrap();
    assert_eq!(r.hold.target, net("192.0.2.9/32"));
    let r = l
        .record_ban(&ban("2001:db8::77/64", "web", T0, 600))
        .unwrap();
    assert_eq!(r.hold.target, net("2001:db8::/64"));
    assert!(l.hold(&net("192.0.2.9"), "sshd").unwrap().is_some());
    assert!(l.hold(&net("2001:db8::/64"), "web").unwrap().is_some());
}

#[test]
fn only_the_last_matches_are_kept() {
    let (_d, mut l) = open_opts(LedgerOptions {
        max_matches: 2,
        ..LedgerOptions::default()
    });
    let mut b = ban("192.0.2.1", "sshd", T0, 600);
    b.matches = vec!["a".into(), "b".into(), "c".into()];
    assert_eq!(l.record_ban(&b).unwrap().hold.matches, ["b", "c"]);
    assert_eq!(
        l.hold(&net("192.0.2.1"), "sshd").unwrap().unwrap().matches,
        ["b", "c"]
    );

    let (_d, mut l) = open_opts(LedgerOptions {
        max_matches: 0,
        ..LedgerOptions::default()
    });
    assert!(l.record_ban(&b).unwrap().hold.matches.is_empty());
    let stored: Option<String> = l
        .conn
        .query_row("SELECT matches FROM holds", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, None);
}

#[test]
fn a_ban_of_an_active_hold_extends_it_or_changes_nothing() {
    let (_d, mut l) = open();
    l.record_ban(&ban("192.0.2.1", "sshd", T0, 600)).unwrap();

    let r = l
        .record_ban(&ban("192.0.2.1", "sshd", T0 + 100, 300))
        .unwrap();
    assert_eq!(r.outcome, Outcome::AlreadyHeld);
    assert_eq!(r.hold.expires, Some(T0 + 600));

    let r = l
        .record_ban(&ban("192.0.2.1", "sshd", T0 + 100, 900))
        .unwrap();
    assert_eq!(r.outcome, Outcome::Extended);
    assert_eq!((r.hold.start, r.hold.expires), (T0, Some(T0 + 1000)));
    assert_eq!(r.hold.bantime, 1000);
    assert_eq!((r.bancount, r.event), (1, None));

    let r = l
        .record_ban(&ban("192.0.2.1", "sshd", T0 + 200, -1))
        .unwrap();
    assert_eq!(r.outcome, Outcome::Extended);
    assert_eq!((r.hold.expires, r.hold.bantime), (None, -1));

    let stored = l.hold(&net("192.0.2.1"), "sshd").unwrap().unwrap();
    assert_eq!((stored.expires, stored.bancount), (None, 1));
    assert_eq!(l.recent_bans(0, None).unwrap().len(), 1, "one event only");
}

#[test]
fn a_ban_after_expiry_counts_again() {
    let (_d, mut l) = open();
    l.record_ban(&ban("192.0.2.1", "sshd", T0, 600)).unwrap();
    let r = l
        .record_ban(&ban("192.0.2.1", "sshd", T0 + 600, 600))
        .unwrap();
    assert_eq!(r.outcome, Outcome::New);
    assert_eq!((r.prior, r.bancount, r.hold.bancount), (1, 2, 2));
    // Ended early by an unban: the count is kept too.
    l.unban(&net("192.0.2.1"), "sshd", T0 + 700, false).unwrap();
    let r = l
        .record_ban(&ban("192.0.2.1", "sshd", T0 + 800, 600))
        .unwrap();
    assert_eq!((r.outcome, r.bancount), (Outcome::New, 3));
    assert_eq!(r.hold.ended, None);
    assert_eq!(l.recent_bans(0, None).unwrap().len(), 3);
}

#[test]
fn escalation_doubles_per_earlier_ban_of_the_jail() {
    let (_d, mut l) = open();
    let mut start = T0;
    let mut times = Vec::new();
    for _ in 0..4 {
        let mut b = ban("192.0.2.1", "sshd", start, 600);
        b.escalation = Some(escalate(false));
        let r = l.record_ban(&b).unwrap();
        times.push((r.prior, r.hold.bantime, r.bancount));
        start = r.hold.expires.unwrap();
    }
    assert_eq!(
        times,
        [(0, 600, 1), (1, 1200, 2), (2, 2400, 3), (3, 4800, 4)]
    );
    // Another jail starts from its own count.
    let mut b = ban("192.0.2.1", "web", start, 600);
    b.escalation = Some(escalate(false));
    assert_eq!(l.record_ban(&b).unwrap().hold.bantime, 600);
}

#[test]
fn overalljails_escalation_counts_every_jails_bans() {
    let (_d, mut l) = open();
    l.record_ban(&ban("192.0.2.1", "sshd", T0, 60)).unwrap();
    l.record_ban(&ban("192.0.2.1", "sshd", T0 + 60, 60))
        .unwrap();
    l.record_ban(&ban("192.0.2.1", "web", T0, 60)).unwrap();
    let mut b = ban("192.0.2.1", "mail", T0 + 1000, 600);
    b.escalation = Some(escalate(true));
    let r = l.record_ban(&b).unwrap();
    assert_eq!(r.prior, 3);
    assert_eq!(r.hold.bantime, 600 * 8);
    assert_eq!(r.bancount, 4, "escalation's count");
    assert_eq!(r.hold.bancount, 1, "the jail's own count");
    assert_eq!(r.to_ban().bancount, 4);
    // The jails' own counts are not inflated by the overall sum.
    assert_eq!(
        l.prior_bans(&net("192.0.2.1"), "mail", false).unwrap().bans,
        1
    );
    assert_eq!(
        l.prior_bans(&net("192.0.2.1"), "sshd", true).unwrap(),
        Prior {
            bans: 4,
            last_start: Some(T0 + 1000)
        }
    );
}

#[test]
fn restored_bans_are_not_counted_or_escalated() {
    let (_d, mut l) = open();
    l.record_ban(&ban("192.0.2.1", "sshd", T0, 600)).unwrap();
    let mut b = ban("192.0.2.1", "sshd", T0 + 1000, 600);
    b.origin = Origin::Restored;
    b.escalation = Some(escalate(false));
    let r = l.record_ban(&b).unwrap();
    assert_eq!(r.outcome, Outcome::New);
    assert_eq!((r.hold.bantime, r.hold.bancount, r.bancount), (600, 1, 1));
    assert_eq!(r.hold.origin, Origin::Restored);
    // Never seen before: counts as its first ban.
    let mut b = ban("192.0.2.2", "sshd", T0, 600);
    b.origin = Origin::Restored;
    assert_eq!(l.record_ban(&b).unwrap().hold.bancount, 1);
    assert_eq!(
        l.recent_bans(0, None).unwrap().len(),
        1,
        "restored excluded"
    );
    assert_eq!(l.history_count(&net("192.0.2.1"), None, 0).unwrap(), 1);
}

#[test]
fn record_bans_writes_a_batch_in_order() {
    let (_d, mut l) = open();
    let batch = vec![
        ban("192.0.2.1", "sshd", T0, 600),
        ban("192.0.2.2", "sshd", T0, 600),
        ban("192.0.2.1", "sshd", T0, 1200),
    ];
    let out = l.record_bans(&batch).unwrap();
    let outcomes: Vec<Outcome> = out.iter().map(|r| r.outcome).collect();
    assert_eq!(outcomes, [Outcome::New, Outcome::New, Outcome::Extended]);
    assert_eq!(l.active(T0, None).unwrap().len(), 2);
    assert!(l.record_bans(&[]).unwrap().is_empty());
}

#[test]
fn a_failed_batch_writes_nothing() {
    let (_d, mut l) = open();
    // A trigger makes the third insert fail, as a full disk would.
    l.conn
        .execute_batch(
            "CREATE TEMP TRIGGER no_third BEFORE INSERT ON main.bans \
             WHEN NEW.target LIKE '192.000.002.003%' BEGIN SELECT RAISE(ABORT, 'refused'); END;",
        )
        .unwrap();
    let batch = vec![
        ban("192.0.2.1", "sshd", T0, 600),
        ban("192.0.2.2", "sshd", T0, 600),
        ban("192.0.2.3", "sshd", T0, 600),
    ];
    let err = l.record_bans(&batch).unwrap_err();
    assert!(
        err.to_string()
            .contains("record ban of 192.0.2.3/32 in jail sshd"),
        "{err}"
    );
    assert!(l.active(T0, None).unwrap().is_empty());
    assert!(l.recent_bans(0, None).unwrap().is_empty());
}

#[test]
fn unban_ends_the_hold_and_keeps_the_count() {
    let (_d, mut l) = open();
    l.record_ban(&ban("192.0.2.1", "sshd", T0, 600)).unwrap();
    let h = l
        .unban(&net("192.0.2.1"), "sshd", T0 + 10, false)
        .unwrap()
        .unwrap();
    assert_eq!(h.ended, Some(T0 + 10));
    assert!(l.active(T0 + 10, None).unwrap().is_empty());
    let kept = l.hold(&net("192.0.2.1"), "sshd").unwrap().unwrap();
    assert_eq!((kept.ended, kept.bancount), (Some(T0 + 10), 1));
    // Nothing to end a second time, nor in another jail.
    assert_eq!(
        l.unban(&net("192.0.2.1"), "sshd", T0 + 20, false).unwrap(),
        None
    );
    assert_eq!(
        l.unban(&net("192.0.2.1"), "web", T0 + 20, false).unwrap(),
        None
    );
    assert_eq!(l.expire_due(T0 + 10_000).unwrap(), [], "ended, not due");
}

#[test]
fn unban_with_forget_deletes_the_record_and_history() {
    let (_d, mut l) = open();
    l.record_ban(&ban("192.0.2.1", "sshd", T0, 600)).unwrap();
    l.record_ban(&ban("192.0.2.1", "web", T0, 600)).unwrap();
    assert!(
        l.unban(&net("192.0.2.1"), "sshd", T0 + 10, true)
            .unwrap()
            .is_some()
    );
    assert_eq!(l.hold(&net("192.0.2.1"), "sshd").unwrap(), None);
    assert_eq!(
        l.history_count(&net("192.0.2.1"), Some("sshd"), 0).unwrap(),
        0
    );
    assert_eq!(
        l.history_count(&net("192.0.2.1"), Some("web"), 0).unwrap(),
        1
    );
    let r = l
        .record_ban(&ban("192.0.2.1", "sshd", T0 + 20, 600))
        .unwrap();
    assert_eq!(r.bancount, 1, "counting starts over");
}

#[test]
fn unban_all_of_a_jail_or_of_all() {
    let (_d, mut l) = open();
    l.record_ban(&ban("192.0.2.1", "sshd", T0, 600)).unwrap();
    l.record_ban(&ban("192.0.2.2", "sshd", T0, 600)).unwrap();
    l.record_ban(&ban("192.0.2.1", "web", T0, 600)).unwrap();
    l.record_ban(&ban("192.0.2.9", "web", T0 - 1000, 600))
        .unwrap();
    let ended = l.unban_all(Some("sshd"), T0 + 1, false).unwrap();
    assert_eq!(
        jails(&ended),
        pairs(&[("192.0.2.1/32", "sshd"), ("192.0.2.2/32", "sshd")])
    );
    assert!(ended.iter().all(|h| h.ended == Some(T0 + 1)));
    assert_eq!(
        jails(&l.active(T0 + 1, None).unwrap()),
        pairs(&[("192.0.2.1/32", "web")])
    );
    let ended = l.unban_all(None, T0 + 2, true).unwrap();
    assert_eq!(jails(&ended), pairs(&[("192.0.2.1/32", "web")]));
    assert_eq!(l.size().unwrap().holds, 0);
    assert_eq!(l.size().unwrap().events, 0);
}

#[test]
fn expire_due_ends_each_due_hold_once() {
    let (_d, mut l) = open();
    l.record_ban(&ban("192.0.2.1", "sshd", T0, 300)).unwrap();
    l.record_ban(&ban("192.0.2.2", "sshd", T0, 100)).unwrap();
    l.record_ban(&ban("192.0.2.3", "sshd", T0, 900)).unwrap();
    l.record_ban(&ban("192.0.2.4", "sshd", T0, -1)).unwrap();
    assert!(l.expire_due(T0 + 99).unwrap().is_empty());
    let due = l.expire_due(T0 + 300).unwrap();
    assert_eq!(
        jails(&due),
        pairs(&[("192.0.2.2/32", "sshd"), ("192.0.2.1/32", "sshd")])
    );
    assert_eq!(due[0].ended, Some(T0 + 100), "ended at its expiry");
    assert!(l.expire_due(T0 + 300).unwrap().is_empty());
    assert_eq!(
        jails(&l.expire_due(T0 + 1_000_000).unwrap()),
        pairs(&[("192.0.2.3/32", "sshd")])
    );
    assert_eq!(l.active(T0 + 1_000_000, None).unwrap().len(), 1);
}

#[test]
fn extend_moves_only_later() {
    let (_d, mut l) = open();
    l.record_ban(&ban("192.0.2.1", "sshd", T0, 600)).unwrap();
    let t = net("192.0.2.1");
    let h = l.extend(&t, "sshd", T0, Some(T0 + 100)).unwrap().unwrap();
    assert_eq!(h.expires, Some(T0 + 600));
    let h = l.extend(&t, "sshd", T0, Some(T0 + 7200)).unwrap().unwrap();
    assert_eq!((h.expires, h.bantime), (Some(T0 + 7200), 7200));
    assert_eq!(
        l.hold(&t, "sshd").unwrap().unwrap().expires,
        Some(T0 + 7200)
    );
    let h = l.extend(&t, "sshd", T0, None).unwrap().unwrap();
    assert_eq!((h.expires, h.bantime), (None, -1));
    assert_eq!(l.extend(&t, "web", T0, None).unwrap(), None);
    l.unban(&t, "sshd", T0 + 1, false).unwrap();
    assert_eq!(l.extend(&t, "sshd", T0 + 2, None).unwrap(), None);
}

#[test]
fn active_lists_per_jail_or_all_at_a_time() {
    let (_d, mut l) = open();
    l.record_ban(&ban("192.0.2.2", "sshd", T0, 600)).unwrap();
    l.record_ban(&ban("192.0.2.1", "sshd", T0, 100)).unwrap();
    l.record_ban(&ban("2001:db8::1", "web", T0, 600)).unwrap();
    assert_eq!(
        jails(&l.active(T0 + 50, None).unwrap()),
        pairs(&[
            ("192.0.2.1/32", "sshd"),
            ("192.0.2.2/32", "sshd"),
            ("2001:db8::1/128", "web")
        ])
    );
    assert_eq!(
        jails(&l.active(T0 + 100, Some("sshd")).unwrap()),
        pairs(&[("192.0.2.2/32", "sshd")])
    );
    assert!(l.active(T0 + 600, None).unwrap().is_empty());
    assert!(l.active(T0, Some("nope")).unwrap().is_empty());
}

#[test]
fn next_expiry_is_the_soonest_hold_not_yet_ended() {
    let (_d, mut l) = open();
    assert_eq!(l.next_expiry().unwrap(), None);
    l.record_ban(&ban("192.0.2.1", "sshd", T0, -1)).unwrap();
    assert_eq!(l.next_expiry().unwrap(), None);
    l.record_ban(&ban("192.0.2.2", "sshd", T0, 600)).unwrap();
    l.record_ban(&ban("192.0.2.3", "web", T0, 60)).unwrap();
    l.record_ban(&ban("192.0.2.4", "web", T0, 300)).unwrap();
    assert_eq!(l.next_expiry().unwrap(), Some(T0 + 60));
    let next = l.next_expiries(2).unwrap();
    assert_eq!(
        jails(&next),
        pairs(&[("192.0.2.3/32", "web"), ("192.0.2.4/32", "web")])
    );
    l.unban(&net("192.0.2.3"), "web", T0 + 1, false).unwrap();
    assert_eq!(l.next_expiry().unwrap(), Some(T0 + 300));
    assert_eq!(l.next_expiries(10).unwrap().len(), 2);
}

#[test]
fn holders_finds_the_target_and_overlapping_networks() {
    let (_d, mut l) = open();
    l.record_ban(&ban("10.1.2.3", "sshd", T0, 600)).unwrap();
    l.record_ban(&ban("10.1.2.3", "web", T0, 60)).unwrap();
    l.record_ban(&ban("10.1.0.0/16", "recidive", T0, 600))
        .unwrap();
    l.record_ban(&ban("10.0.0.0/8", "manual", T0, 600)).unwrap();
    l.record_ban(&ban("10.1.2.4", "sshd", T0, 600)).unwrap();
    l.record_ban(&ban("10.2.0.1", "sshd", T0, 600)).unwrap();
    l.record_ban(&ban("2001:db8::/64", "web", T0, 600)).unwrap();
    // An IPv6 key that sorts between IPv4 keys of 10.x.
    l.record_ban(&ban("105::1", "web", T0, 600)).unwrap();

    assert_eq!(
        jails(&l.holders(&net("10.1.2.3"), T0).unwrap()),
        pairs(&[
            ("10.0.0.0/8", "manual"),
            ("10.1.0.0/16", "recidive"),
            ("10.1.2.3/32", "sshd"),
            ("10.1.2.3/32", "web"),
        ])
    );
    // Expired holds do not count.
    assert_eq!(
        jails(&l.holders(&net("10.1.2.3"), T0 + 60).unwrap()),
        pairs(&[
            ("10.0.0.0/8", "manual"),
            ("10.1.0.0/16", "recidive"),
            ("10.1.2.3/32", "sshd"),
        ])
    );
    // A network: everything inside it, and what contains it.
    assert_eq!(
        jails(&l.holders(&net("10.1.0.0/16"), T0).unwrap()),
        pairs(&[
            ("10.0.0.0/8", "manual"),
            ("10.1.0.0/16", "recidive"),
            ("10.1.2.3/32", "sshd"),
            ("10.1.2.3/32", "web"),
            ("10.1.2.4/32", "sshd"),
        ])
    );
    assert_eq!(
        jails(&l.holders(&net("2001:db8::abcd"), T0).unwrap()),
        pairs(&[("2001:db8::/64", "web")])
    );
    assert_eq!(
        jails(&l.holders(&net("::/0"), T0).unwrap()),
        pairs(&[("105::1/128", "web"), ("2001:db8::/64", "web")])
    );
    assert!(l.holders(&net("192.0.2.1"), T0).unwrap().is_empty());
    assert!(l.holders(&net("2001:db9::1"), T0).unwrap().is_empty());
    // Prefix lengths in use: /8, /16, /32 for IPv4; /64, /128 for IPv6.
    let n: i64 = l
        .conn
        .query_row("SELECT count(*) FROM prefixes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 5);
}

#[test]
fn purge_drops_prefix_lengths_no_hold_uses() {
    let (_d, mut l) = open();
    l.record_ban(&ban("10.0.0.0/8", "manual", T0, 60)).unwrap();
    l.record_ban(&ban("10.1.2.3", "sshd", T0, -1)).unwrap();
    l.unban(&net("10.0.0.0/8"), "manual", T0 + 1, true).unwrap();
    // A stale length only costs a lookup.
    assert_eq!(
        jails(&l.holders(&net("10.1.2.3"), T0 + 1).unwrap()),
        pairs(&[("10.1.2.3/32", "sshd")])
    );
    l.purge(T0 + 1).unwrap();
    let lengths: Vec<(i64, i64)> = l
        .conn
        .prepare("SELECT width, plen FROM prefixes")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(lengths, [(19, 32)]);
    l.record_ban(&ban("10.0.0.0/8", "manual", T0 + 2, 60))
        .unwrap();
    assert_eq!(l.holders(&net("10.1.2.3"), T0 + 2).unwrap().len(), 2);
}

#[test]
fn prior_bans_per_jail_and_overall() {
    let (_d, mut l) = open();
    let t = net("192.0.2.1");
    assert_eq!(l.prior_bans(&t, "sshd", false).unwrap(), Prior::default());
    l.record_ban(&ban("192.0.2.1", "sshd", T0, 10)).unwrap();
    l.record_ban(&ban("192.0.2.1", "sshd", T0 + 10, 10))
        .unwrap();
    l.record_ban(&ban("192.0.2.1", "web", T0 + 5, 10)).unwrap();
    assert_eq!(
        l.prior_bans(&t, "sshd", false).unwrap(),
        Prior {
            bans: 2,
            last_start: Some(T0 + 10)
        }
    );
    assert_eq!(
        l.prior_bans(&t, "web", false).unwrap(),
        Prior {
            bans: 1,
            last_start: Some(T0 + 5)
        }
    );
    assert_eq!(l.prior_bans(&t, "web", true).unwrap().bans, 3);
    assert_eq!(
        l.prior_bans(&net("192.0.2.0/24"), "sshd", true)
            .unwrap()
            .bans,
        0,
        "exact target only"
    );
}

#[test]
fn history_count_within_a_window() {
    let (_d, mut l) = open();
    let t = net("192.0.2.1");
    l.record_ban(&ban("192.0.2.1", "sshd", T0, 10)).unwrap();
    l.record_ban(&ban("192.0.2.1", "sshd", T0 + 100, 10))
        .unwrap();
    l.record_ban(&ban("192.0.2.1", "web", T0 + 200, 10))
        .unwrap();
    l.record_ban(&ban("192.0.2.2", "web", T0 + 200, 10))
        .unwrap();
    assert_eq!(l.history_count(&t, None, T0).unwrap(), 3);
    assert_eq!(l.history_count(&t, None, T0 + 1).unwrap(), 2);
    assert_eq!(l.history_count(&t, Some("sshd"), T0).unwrap(), 2);
    assert_eq!(l.history_count(&t, Some("web"), T0 + 201).unwrap(), 0);
}

#[test]
fn recent_bans_and_the_event_stream_skip_restored_and_own_jail() {
    let (_d, mut l) = open();
    l.record_ban(&ban("192.0.2.1", "sshd", T0, 10)).unwrap();
    let mut b = ban("192.0.2.2", "sshd", T0 + 1, 10);
    b.origin = Origin::Restored;
    l.record_ban(&b).unwrap();
    let mut b = ban("192.0.2.3", "recidive", T0 + 2, 10);
    b.origin = Origin::Recidive;
    l.record_ban(&b).unwrap();
    l.record_ban(&ban("192.0.2.4", "web", T0 + 3, 10)).unwrap();

    let all: Vec<String> = l
        .recent_bans(T0, None)
        .unwrap()
        .iter()
        .map(|e| e.target.to_string())
        .collect();
    assert_eq!(all, ["192.0.2.1/32", "192.0.2.3/32", "192.0.2.4/32"]);
    let for_recidive = l.recent_bans(T0 + 1, Some("recidive")).unwrap();
    assert_eq!(for_recidive.len(), 1);
    assert_eq!(for_recidive[0].jail, "web");

    let first = l.bans_after(0, Some("recidive"), 1).unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].target, net("192.0.2.1"));
    let rest = l.bans_after(first[0].id, Some("recidive"), 10).unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].target, net("192.0.2.4"));
    assert!(l.bans_after(rest[0].id, None, 10).unwrap().is_empty());
}

#[test]
fn event_ids_are_never_reused() {
    let (_d, mut l) = open();
    let a = l.record_ban(&ban("192.0.2.1", "sshd", T0, 10)).unwrap();
    l.unban(&net("192.0.2.1"), "sshd", T0 + 1, true).unwrap();
    let b = l.record_ban(&ban("192.0.2.2", "sshd", T0, 10)).unwrap();
    assert!(b.event.unwrap() > a.event.unwrap());
}

#[test]
fn purge_removes_old_history_and_outdated_ended_holds_only() {
    let day = 86_400;
    let (_d, mut l) = open_opts(LedgerOptions {
        purge_age: day,
        ..LedgerOptions::default()
    });
    let now = T0 + 10 * day;
    // Old short ban: ended long ago, record and event both outdated.
    l.record_ban(&ban("192.0.2.1", "sshd", now - 3 * day, 600))
        .unwrap();
    // Old long ban, still active: event purged, hold kept.
    l.record_ban(&ban("192.0.2.2", "sshd", now - 3 * day, 7 * day))
        .unwrap();
    // Old permanent ban: event purged, hold kept.
    l.record_ban(&ban("192.0.2.3", "sshd", now - 9 * day, -1))
        .unwrap();
    // Ended 2 days ago, but 3 × its ban time keeps its count longer.
    l.record_ban(&ban("192.0.2.4", "sshd", now - 3 * day, day))
        .unwrap();
    // Recent ban, ended: kept, event kept.
    l.record_ban(&ban("192.0.2.5", "sshd", now - 3600, 600))
        .unwrap();
    // Lifted permanent ban, ended 2 days ago: outdated.
    l.record_ban(&ban("192.0.2.6", "sshd", now - 5 * day, -1))
        .unwrap();
    l.unban(&net("192.0.2.6"), "sshd", now - 2 * day, false)
        .unwrap();

    let purged = l.purge(now).unwrap();
    assert_eq!(
        purged,
        Purged {
            events: 5,
            holds: 2
        }
    );
    let kept: Vec<String> = [
        "192.0.2.1",
        "192.0.2.2",
        "192.0.2.3",
        "192.0.2.4",
        "192.0.2.5",
        "192.0.2.6",
    ]
    .iter()
    .filter(|t| l.hold(&net(t), "sshd").unwrap().is_some())
    .map(|t| t.to_string())
    .collect();
    assert_eq!(kept, ["192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5"]);
    let events: Vec<String> = l
        .recent_bans(0, None)
        .unwrap()
        .iter()
        .map(|e| e.target.to_string())
        .collect();
    assert_eq!(events, ["192.0.2.5/32"]);
    assert_eq!(l.active(now, None).unwrap().len(), 2);
    assert_eq!(l.purge(now).unwrap(), Purged::default());
    // The 1-day ban's count goes once start + 3 days is more than a purge age old.
    assert_eq!(l.purge(now + day).unwrap().holds, 1, "only 192.0.2.5");
    assert!(l.hold(&net("192.0.2.4"), "sshd").unwrap().is_some());
    assert_eq!(l.purge(now + day + 1).unwrap().holds, 1);
    assert!(l.hold(&net("192.0.2.4"), "sshd").unwrap().is_none());
}

#[test]
fn positions_round_trip_and_are_kept_per_owner() {
    let (_d, mut l) = open();
    let auth = Position {
        path: PathBuf::from("/var/log/auth.log"),
        device: u64::MAX,
        inode: 1 << 63,
        checksum: vec![0xde, 0xad, 0xbe, 0xef],
        offset: 123_456_789_012,
    };
    let odd = Position {
        path: PathBuf::from(OsStr::from_bytes(b"/var/log/\xff\xfe.log")),
        device: 2049,
        inode: 7,
        checksum: Vec::new(),
        offset: 0,
    };
    assert_eq!(l.position("sshd", &auth.path).unwrap(), None);
    l.set_positions("sshd", &[auth.clone(), odd.clone()], T0)
        .unwrap();
    assert_eq!(l.position("sshd", &auth.path).unwrap(), Some(auth.clone()));
    assert_eq!(l.position("sshd", &odd.path).unwrap(), Some(odd.clone()));
    assert_eq!(l.position("web", &auth.path).unwrap(), None);

    let moved = Position {
        offset: 999,
        ..auth.clone()
    };
    l.set_position("sshd", &moved, T0 + 1).unwrap();
    assert_eq!(l.position("sshd", &auth.path).unwrap(), Some(moved.clone()));
    let all = l.positions("sshd").unwrap();
    assert_eq!(all.len(), 2);
    assert!(all.contains(&odd) && all.contains(&moved));

    assert_eq!(
        l.forget_positions("sshd", Some(Path::new("/nope")))
            .unwrap(),
        0
    );
    assert_eq!(l.forget_positions("sshd", Some(&odd.path)).unwrap(), 1);
    assert_eq!(l.positions("sshd").unwrap(), [moved]);
    assert_eq!(l.forget_positions("sshd", None).unwrap(), 1);
    assert!(l.positions("sshd").unwrap().is_empty());
}

#[test]
fn cursors_round_trip() {
    let (_d, mut l) = open();
    assert_eq!(l.cursor("sshd", "journal").unwrap(), None);
    l.set_cursor("sshd", "journal", "s=abc;i=1", T0).unwrap();
    l.set_cursor("sshd", "journal", "s=abc;i=2", T0 + 1)
        .unwrap();
    l.set_cursor("recidive", "ledger", "42", T0).unwrap();
    assert_eq!(
        l.cursor("sshd", "journal").unwrap().as_deref(),
        Some("s=abc;i=2")
    );
    assert_eq!(
        l.cursor("recidive", "ledger").unwrap().as_deref(),
        Some("42")
    );
    assert_eq!(l.forget_cursors("sshd").unwrap(), 1);
    assert_eq!(l.cursor("sshd", "journal").unwrap(), None);
    assert!(l.cursor("recidive", "ledger").unwrap().is_some());
}

#[test]
fn jail_counts_report_active_and_total() {
    let (_d, mut l) = open();
    l.record_ban(&ban("192.0.2.1", "sshd", T0, 10)).unwrap();
    l.record_ban(&ban("192.0.2.1", "sshd", T0 + 10, 100))
        .unwrap();
    l.record_ban(&ban("192.0.2.2", "web", T0, 10)).unwrap();
    let counts = l.jail_counts(T0 + 20).unwrap();
    assert_eq!(
        counts,
        [
            JailCounts {
                jail: "sshd".into(),
                active: 1,
                total: 2
            },
            JailCounts {
                jail: "web".into(),
                active: 0,
                total: 1
            }
        ]
    );
}

#[test]
fn housekeeping_purges_and_reclaims_free_pages() {
    let (_d, mut l) = open_opts(LedgerOptions {
        purge_age: 3600,
        max_matches: 10,
        durability: Durability::Normal,
    });
    let line = "x".repeat(200);
    let bans: Vec<NewBan> = (0..2000u32)
        .map(|i| {
            let mut b = NewBan::new(
                IpNet::from(std::net::IpAddr::from(std::net::Ipv4Addr::from(
                    0x0a00_0000 + i,
                ))),
                "sshd",
                T0,
                60,
            );
            b.matches = vec![line.clone(); 10];
            b
        })
        .collect();
    l.record_bans(&bans).unwrap();
    let before = l.size().unwrap();
    assert_eq!((before.holds, before.events), (2000, 2000));
    assert!(before.file_bytes > 3_000_000, "{before:?}");

    let hk = l.housekeeping(T0 + 86_400).unwrap();
    assert_eq!(
        hk.purged,
        Purged {
            events: 2000,
            holds: 2000
        }
    );
    assert!(hk.reclaimed_pages > 0, "{hk:?}");
    let after = l.size().unwrap();
    assert_eq!((after.holds, after.events), (0, 0));
    assert!(
        after.file_bytes < before.file_bytes / 4,
        "{before:?} {after:?}"
    );
    l.check_integrity().unwrap();
}

#[test]
fn vacuum_rewrites_to_a_smaller_file() {
    let (_d, mut l) = open();
    let bans: Vec<NewBan> = (0..1000u32)
        .map(|i| {
            let mut b = NewBan::new(
                IpNet::from(std::net::IpAddr::from(std::net::Ipv4Addr::from(
                    0x0a00_0000 + i,
                ))),
                "sshd",
                T0,
                60,
            );
            b.matches = vec!["y".repeat(300); 5];
            b
        })
        .collect();
    l.record_bans(&bans).unwrap();
    l.unban_all(None, T0 + 1, true).unwrap();
    let (before, after) = l.vacuum().unwrap();
    assert!(after < before / 4, "{before} -> {after}");
    assert_eq!(l.size().unwrap().wal_bytes, 0, "WAL truncated");
    l.check_integrity().unwrap();
}

#[test]
fn corrupt_rows_are_errors_not_panics() {
    let (_d, mut l) = open();
    l.record_ban(&ban("192.0.2.1", "sshd", T0, 600)).unwrap();
    l.conn
        .execute("UPDATE holds SET origin = 'martian'", [])
        .unwrap();
    let err = l.active(T0, None).unwrap_err();
    assert!(
        err.to_string()
            .contains("corrupt origin \"martian\" in table holds"),
        "{err}"
    );
    l.conn
        .execute("UPDATE holds SET origin = 'filter', target = '1.2.3.4'", [])
        .unwrap();
    assert!(matches!(
        l.active(T0, None).unwrap_err(),
        LedgerError::Corrupt { what: "target", .. }
    ));
    l.conn.execute("UPDATE bans SET target = 'x'", []).unwrap();
    assert!(matches!(
        l.recent_bans(0, None).unwrap_err(),
        LedgerError::Corrupt { table: "bans", .. }
    ));
}

#[test]
fn an_unreadable_row_does_not_hide_the_other_expired_holds() {
    let (_d, mut l) = open();
    l.record_ban(&ban("192.0.2.1", "sshd", T0, 60)).unwrap();
    l.record_ban(&ban("192.0.2.2", "sshd", T0, 60)).unwrap();
    l.conn
        .execute(
            "UPDATE holds SET fields = '{broken' WHERE target LIKE '%.001/032'",
            [],
        )
        .unwrap();
    let due = l.expire_due(T0 + 60).unwrap();
    assert_eq!(jails(&due), pairs(&[("192.0.2.2/32", "sshd")]));
    assert_eq!(l.next_expiry().unwrap(), None, "both ended");
}

#[test]
fn the_handle_runs_calls_on_the_owning_thread() {
    let (_d, l) = open();
    let (handle, thread) = LedgerHandle::spawn(l).unwrap();
    let other = handle.clone();
    let name = handle
        .run_blocking(|_| Ok(std::thread::current().name().map(str::to_string)))
        .unwrap();
    assert_eq!(name.as_deref(), Some("warden-ledger"));
    let r = other
        .run_blocking(|l| l.record_ban(&ban("192.0.2.1", "sshd", T0, 600)))
        .unwrap();
    assert_eq!(r.outcome, Outcome::New);
    // A panicking call loses its answer, not the thread.
    let lost: Result<(), LedgerError> = handle.run_blocking(|_| panic!("boom"));
    assert!(matches!(lost, Err(LedgerError::Closed)));
    let n = handle
        .run_blocking(|l| Ok(l.active(T0, None)?.len()))
        .unwrap();
    assert_eq!(n, 1);
    // Errors come back as they are.
    let err = handle
        .run_blocking(|l| {
            l.conn.execute_batch("DROP TABLE cursors").unwrap();
            l.cursor("a", "b")
        })
        .unwrap_err();
    assert!(matches!(err, LedgerError::Sql { .. }), "{err:?}");
    drop((handle, other));
    thread.join().unwrap();
}

#[tokio::test]
async fn the_handle_serves_async_callers() {
    let (_d, l) = open();
    let (handle, thread) = LedgerHandle::spawn(l).unwrap();
    let mut tasks = Vec::new();
    for i in 0..20u32 {
        let h = handle.clone();
        tasks.push(tokio::spawn(async move {
            let t = IpNet::from(std::net::IpAddr::from(std::net::Ipv4Addr::from(
                0xc000_0200 + i,
            )));
            h.run(move |l| l.record_ban(&NewBan::new(t, "sshd", T0, 600)))
                .await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().outcome, Outcome::New);
    }
    let n = handle.run(|l| Ok(l.active(T0, None)?.len())).await.unwrap();
    assert_eq!(n, 20);
    drop(handle);
    tokio::task::spawn_blocking(move || thread.join())
        .await
        .unwrap()
        .unwrap();
}
