//! The journal source against a fake journalctl (tests/support/fakejournal/journalctl):
//! following, resuming after a cursor, restarting when journalctl exits, matches, and the
//! line format checked against fail2ban's own formatJournalEntry.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use warden::source::file::Encoding;
use warden::source::journal::{
    JournalBatch, JournalEntry, JournalOptions, JournalSource, JournalStart, format_entry,
    parse_journalmatch,
};

use crate::support::fail2ban;

/// A fake journal in a temporary directory: the script and its records.
struct FakeJournal {
    _dir: tempfile::TempDir,
    dir: PathBuf,
}

impl FakeJournal {
    fn new(records: &[Value]) -> FakeJournal {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/fakejournal/journalctl");
        std::fs::copy(&script, d.join("journalctl")).unwrap();
        let j = FakeJournal { _dir: dir, dir: d };
        std::fs::write(j.dir.join("records.jsonl"), "").unwrap();
        for r in records {
            j.push(r);
        }
        j
    }

    fn push(&self, record: &Value) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("records.jsonl"))
            .unwrap();
        writeln!(f, "{record}").unwrap();
    }

    fn exit_after(&self, n: usize) {
        std::fs::write(self.dir.join("exit_after"), n.to_string()).unwrap();
    }

    fn invocations(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.dir.join("invocations.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn options(&self) -> JournalOptions {
        JournalOptions {
            journalctl: self.dir.join("journalctl"),
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(100),
            ..JournalOptions::default()
        }
    }
}

/// A record as journalctl prints it; `n` makes its cursor and time.
fn record(n: u64, message: Value) -> Value {
    json!({
        "__CURSOR": format!("s=fake;i={n:x};t={:x}", 1_700_000_000_000_000u64 + n * 1_000_000),
        "__REALTIME_TIMESTAMP": (1_700_000_000_000_000u64 + n * 1_000_000).to_string(),
        "__MONOTONIC_TIMESTAMP": (n * 1000).to_string(),
        "_HOSTNAME": "host",
        "SYSLOG_IDENTIFIER": "sshd",
        "_COMM": "sshd",
        "_SYSTEMD_UNIT": "sshd.service",
        "SYSLOG_PID": "100",
        "MESSAGE": message,
    })
}

async fn collect(rx: &mut mpsc::Receiver<JournalBatch>, n: usize) -> Vec<JournalEntry> {
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while got.len() < n {
            let b = rx.recv().await.expect("source ended");
            assert_eq!(b.cursor.as_ref(), b.entries.last().map(|e| &e.cursor));
            got.extend(b.entries);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {n} entries arrived: {got:?}", got.len()));
    got
}

fn texts(entries: &[JournalEntry]) -> Vec<String> {
    entries.iter().map(|e| e.text.clone()).collect()
}

fn epoch() -> JournalStart {
    JournalStart::Since(jiff::Timestamp::UNIX_EPOCH)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_new_records_and_resumes_after_the_cursor() {
    let j = FakeJournal::new(&[
        record(
            1,
            json!("Failed password for root from 192.0.2.1 port 22 ssh2"),
        ),
        // "Invalid user caf\xe9": not UTF-8, so journalctl sends the bytes.
        record(2, json!(b"Invalid user caf\xe9".to_vec())),
        record(3, json!("third")),
    ]);
    let (source, mut rx) = JournalSource::spawn(j.options(), epoch(), 8);
    let got = collect(&mut rx, 3).await;
    assert_eq!(
        texts(&got),
        [
            "host sshd[100]: Failed password for root from 192.0.2.1 port 22 ssh2",
            "host sshd[100]: Invalid user caf\u{fffd}",
            "host sshd[100]: third",
        ]
    );
    assert_eq!(got[0].time.as_second(), 1_700_000_001);
    // Followed: a record written later arrives.
    j.push(&record(4, json!("fourth")));
    let got = collect(&mut rx, 1).await;
    assert_eq!(texts(&got), ["host sshd[100]: fourth"]);
    let cursor = source.stop().await.expect("a cursor after reading");
    assert_eq!(cursor, got[0].cursor);

    // Resume: only what came after the saved cursor.
    j.push(&record(5, json!("fifth")));
    let (source, mut rx) =
        JournalSource::spawn(j.options(), JournalStart::AfterCursor(cursor.clone()), 8);
    let got = collect(&mut rx, 1).await;
    assert_eq!(texts(&got), ["host sshd[100]: fifth"]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(rx.try_recv().is_err(), "nothing read twice");
    source.stop().await;
    let runs = j.invocations();
    assert!(runs[0].contains(&"--follow".to_string()));
    assert!(runs[0].contains(&"--output=json".to_string()));
    assert!(runs[0].contains(&"--since=@0".to_string()));
    assert!(runs[1].contains(&format!("--after-cursor={cursor}")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latin1_logencoding_decodes_byte_messages() {
    let j = FakeJournal::new(&[record(1, json!(b"user \xe9l\xe8ve".to_vec()))]);
    let opts = JournalOptions {
        encoding: Encoding::Latin1,
        ..j.options()
    };
    let (source, mut rx) = JournalSource::spawn(opts, epoch(), 8);
    assert_eq!(
        texts(&collect(&mut rx, 1).await),
        ["host sshd[100]: user élève"]
    );
    source.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journalctl_that_exits_is_restarted_after_the_last_cursor() {
    let records: Vec<Value> = (1..=5).map(|n| record(n, json!(format!("m{n}")))).collect();
    let j = FakeJournal::new(&records);
    j.exit_after(2);
    let (source, mut rx) = JournalSource::spawn(j.options(), epoch(), 8);
    let got = collect(&mut rx, 5).await;
    assert_eq!(
        texts(&got),
        (1..=5)
            .map(|n| format!("host sshd[100]: m{n}"))
            .collect::<Vec<_>>()
    );
    source.stop().await;
    let runs = j.invocations();
    assert!(runs.len() >= 3, "{runs:?}");
    let cursor_of = |n: usize| records[n - 1]["__CURSOR"].as_str().unwrap().to_string();
    assert!(
        runs[1].contains(&format!("--after-cursor={}", cursor_of(2))),
        "{runs:?}"
    );
    assert!(
        runs[2].contains(&format!("--after-cursor={}", cursor_of(4))),
        "{runs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_now_skips_what_is_already_there() {
    let j = FakeJournal::new(&[record(1, json!("old"))]);
    let (source, mut rx) = JournalSource::spawn(j.options(), JournalStart::Now, 8);
    // Wait until journalctl runs, then log something new.
    tokio::time::timeout(Duration::from_secs(30), async {
        while j.invocations().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    j.push(&record(2, json!("new")));
    assert_eq!(texts(&collect(&mut rx, 1).await), ["host sshd[100]: new"]);
    source.stop().await;
    assert!(j.invocations()[0].contains(&"--lines=0".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_journalctl_rejects_falls_back_to_its_time() {
    let records: Vec<Value> = (1..=3).map(|n| record(n, json!(format!("m{n}")))).collect();
    let j = FakeJournal::new(&records);
    // A cursor this journal does not know, whose time is that of record 2.
    let unknown = format!("s=other;i=1;t={:x}", 1_700_000_000_000_000u64 + 2_000_000);
    let (source, mut rx) = JournalSource::spawn(j.options(), JournalStart::AfterCursor(unknown), 8);
    let got = collect(&mut rx, 2).await;
    assert_eq!(texts(&got), ["host sshd[100]: m2", "host sshd[100]: m3"]);
    source.stop().await;
    let runs = j.invocations();
    assert!(
        runs.iter()
            .any(|r| r.contains(&format!("--since=@{}", 1_700_000_002))),
        "{runs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journalmatch_is_passed_to_journalctl() {
    let mut other = record(2, json!("from cron"));
    other["_SYSTEMD_UNIT"] = json!("cron.service");
    other["_COMM"] = json!("cron");
    other["SYSLOG_IDENTIFIER"] = json!("CRON");
    let j = FakeJournal::new(&[
        record(1, json!("from sshd")),
        other,
        record(3, json!("again")),
    ]);
    let opts = JournalOptions {
        matches: parse_journalmatch("_SYSTEMD_UNIT=sshd.service + _COMM=sshd").unwrap(),
        ..j.options()
    };
    let (source, mut rx) = JournalSource::spawn(opts, epoch(), 8);
    let got = collect(&mut rx, 2).await;
    assert_eq!(
        texts(&got),
        ["host sshd[100]: from sshd", "host sshd[100]: again"]
    );
    source.stop().await;
    let run = &j.invocations()[0];
    let tail: Vec<&str> = run[run.len() - 3..].iter().map(String::as_str).collect();
    assert_eq!(tail, ["_SYSTEMD_UNIT=sshd.service", "+", "_COMM=sshd"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_journalctl_is_retried_not_fatal() {
    let opts = JournalOptions {
        journalctl: PathBuf::from("/nonexistent/journalctl"),
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(20),
        ..JournalOptions::default()
    };
    let (source, mut rx) = JournalSource::spawn(opts, JournalStart::Now, 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(rx.try_recv().is_err());
    assert_eq!(source.stop().await, None);
}

/// The same records through warden and through fail2ban's formatJournalEntry (Debian's
/// fail2ban package, run with python3): same text, same time.
#[test]
fn lines_match_fail2ban_format_journal_entry() {
    let pkg = fail2ban::package();
    let base = |n: u64| {
        json!({
            "__CURSOR": format!("c{n}"),
            "__REALTIME_TIMESTAMP": (1_700_000_000_000_000u64 + n * 1_234_567).to_string(),
            "__MONOTONIC_TIMESTAMP": (n * 1_000_001).to_string(),
        })
    };
    let with = |n: u64, fields: Value| {
        let mut r = base(n);
        for (k, v) in fields.as_object().unwrap() {
            r[k] = v.clone();
        }
        r
    };
    let records = vec![
        with(
            1,
            json!({"_HOSTNAME": "web1", "SYSLOG_IDENTIFIER": "sshd", "SYSLOG_PID": "4242", "_PID": "9", "MESSAGE": "Failed password for root from 192.0.2.7 port 22 ssh2"}),
        ),
        with(
            2,
            json!({"_COMM": "dovecot", "_PID": "77", "MESSAGE": "auth failed"}),
        ),
        with(
            3,
            json!({"_HOSTNAME": "h", "SYSLOG_IDENTIFIER": "", "_COMM": "postfix", "MESSAGE": "two\nlines"}),
        ),
        with(
            4,
            json!({"SYSLOG_IDENTIFIER": "app", "SYSLOG_PID": "0x1f", "MESSAGE": "hex pid"}),
        ),
        with(
            5,
            json!({"SYSLOG_IDENTIFIER": "app", "SYSLOG_PID": "0042", "MESSAGE": "leading zeros"}),
        ),
        with(
            6,
            json!({"SYSLOG_IDENTIFIER": "app", "SYSLOG_PID": "worker-3", "MESSAGE": "odd pid"}),
        ),
        with(
            7,
            json!({"SYSLOG_IDENTIFIER": "app", "SYSLOG_PID": "0", "_PID": "5", "MESSAGE": "zero pid"}),
        ),
        with(
            8,
            json!({"_HOSTNAME": "fw", "SYSLOG_IDENTIFIER": "kernel", "MESSAGE": "IN=eth0 SRC=192.0.2.9"}),
        ),
        with(
            9,
            json!({"SYSLOG_IDENTIFIER": "kernel", "_SOURCE_MONOTONIC_TIMESTAMP": "98765432", "MESSAGE": "source monotonic"}),
        ),
        with(
            10,
            json!({"SYSLOG_IDENTIFIER": "app", "MESSAGE": b"caf\xe9 au lait".to_vec()}),
        ),
        with(
            11,
            json!({"SYSLOG_IDENTIFIER": "app", "MESSAGE": ["first", "second"]}),
        ),
        with(12, json!({"SYSLOG_IDENTIFIER": "app"})),
        with(13, json!({"MESSAGE": "no identifier at all"})),
        with(
            14,
            json!({"SYSLOG_IDENTIFIER": "app", "_SOURCE_REALTIME_TIMESTAMP": "1600000000654321", "MESSAGE": "source time"}),
        ),
        with(
            15,
            json!({"_HOSTNAME": "h", "SYSLOG_IDENTIFIER": "sshd", "SYSLOG_PID": "1", "MESSAGE": "Invalid user \u{e9}t\u{e9} from 2001:db8::1"}),
        ),
    ];
    for encoding in [Encoding::Utf8, Encoding::Latin1] {
        let input: String = records.iter().map(|r| format!("{r}\n")).collect();
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/fakejournal/f2b_format.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(encoding.name())
            .env("PYTHONPATH", pkg.python_path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3");
        {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "oracle failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let oracle: Vec<Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(oracle.len(), records.len());
        for (rec, want) in records.iter().zip(&oracle) {
            let got = format_entry(rec.as_object().unwrap(), encoding, 64 * 1024).unwrap();
            assert_eq!(
                got.text,
                want["text"].as_str().unwrap(),
                "record {rec} ({})",
                encoding.name()
            );
            let t = want["time"].as_f64().unwrap();
            let ours = got.time.as_microsecond() as f64 / 1e6;
            assert!((ours - t).abs() < 1e-3, "time of {rec}: {ours} vs {t}");
        }
    }
}
