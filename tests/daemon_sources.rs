//! The daemon's other sources end to end: the systemd journal (through the fake
//! journalctl of tests/support/fakejournal) and PF's pflog pcap file.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::daemon::Daemon;
use crate::support::pcap::{Pcap, Rec};

fn journal_record(n: u64, addr: &str) -> Value {
    let now = jiff::Timestamp::now().as_microsecond() as u64;
    json!({
        "__CURSOR": format!("s=fake;i={n:x}"),
        "__REALTIME_TIMESTAMP": now.to_string(),
        "__MONOTONIC_TIMESTAMP": (n * 1000).to_string(),
        "_HOSTNAME": "host",
        "SYSLOG_IDENTIFIER": "sshd",
        "_COMM": "sshd",
        "_SYSTEMD_UNIT": "sshd.service",
        "SYSLOG_PID": "100",
        "MESSAGE": format!("Failed password for root from {addr} port 22 ssh2"),
    })
}

fn append_records(dir: &Path, recs: &[Value]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("records.jsonl"))
        .unwrap();
    for r in recs {
        writeln!(f, "{r}").unwrap();
    }
}

#[test]
fn journal_jails_ban_and_resume_after_their_cursor() {
    let fake = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/fakejournal/journalctl");
    let mut d = Daemon::new(&format!(
        r#"
[sshd]
enabled = true
filter = sshd
backend = systemd[journalctl={}, journalpath={{dir}}/journal]
action = log[logfile="{{fw}}"]
"#,
        fake.display()
    ));
    let jdir = d.dir().join("journal");
    std::fs::create_dir_all(&jdir).unwrap();
    append_records(
        &jdir,
        &[
            journal_record(1, "192.0.2.30"),
            journal_record(2, "192.0.2.30"),
        ],
    );
    d.start();
    append_records(&jdir, &[journal_record(3, "192.0.2.30")]);
    d.wait_for("the ban", Duration::from_secs(20), || {
        d.fw_targets("ban", None)
            .contains(&"192.0.2.30".to_string())
    });
    let st = d.jail_status("sshd");
    assert_eq!(st["filter"]["total_failed"], 3);
    assert!(
        st["filter"]["sources"][0]
            .as_str()
            .unwrap()
            .starts_with("journal: ")
    );
    d.stop();
    d.start();
    append_records(&jdir, &[journal_record(4, "192.0.2.31")]);
    d.wait_for("the new entry", Duration::from_secs(20), || {
        d.total_failed("sshd") == 1
    });
    let runs: Vec<Vec<String>> = std::fs::read_to_string(jdir.join("invocations.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|a: &Vec<String>| !a.contains(&"--version".to_string()))
        .collect();
    assert!(
        runs[0].iter().any(|a| a.starts_with("--since=@")),
        "{runs:?}"
    );
    let last = runs.last().unwrap();
    assert!(
        last.contains(&"--after-cursor=s=fake;i=3".to_string()),
        "the restart resumes after the last entry processed: {last:?}"
    );
    d.stop();
}

#[test]
fn pflog_jails_ban_port_scanners_from_the_capture() {
    let mut d = Daemon::new(
        r#"
[pf-portscan]
enabled = true
backend = pflog
filter = pf-portscan
logpath = {logs}/pflog
action = log[logfile="{fw}"]
findtime = 1m
maxretry = 1
bantime = 1h
"#,
    );
    let pcap = Pcap::default();
    let path = d.log("pflog");
    std::fs::write(&path, pcap.file_header()).unwrap();
    d.start();
    let now = jiff::Timestamp::now().as_second() as u32;
    let append = |recs: Vec<Rec>| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        for r in &recs {
            f.write_all(&pcap.record(r)).unwrap();
        }
    };
    // 14 ports: not yet a scan. Another source touching one port many times: never.
    append(
        (0..14)
            .map(|p| Rec::tcp("198.51.100.50", "192.0.2.1", 40000, 1000 + p).at(now, 0))
            .chain((0..20).map(|_| Rec::tcp("198.51.100.60", "192.0.2.1", 40000, 22).at(now, 0)))
            .collect(),
    );
    d.wait_for("the records", Duration::from_secs(20), || {
        d.lines_read("pf-portscan") == 34
    });
    assert!(d.banned().is_empty());
    append(vec![
        Rec::tcp("198.51.100.50", "192.0.2.1", 40000, 2000).at(now, 0),
    ]);
    d.wait_for("the scanner's ban", Duration::from_secs(20), || {
        d.fw_targets("ban", None) == ["198.51.100.50"]
    });
    // The position is saved: a restart reads only what is new.
    d.stop();
    d.start();
    append(vec![
        Rec::tcp("198.51.100.70", "192.0.2.1", 40000, 22).at(now, 0),
    ]);
    d.wait_for("the new record", Duration::from_secs(20), || {
        d.lines_read("pf-portscan") == 1
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(d.lines_read("pf-portscan"), 1);
    d.stop();
}
