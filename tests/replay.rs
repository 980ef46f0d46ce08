//! `warden replay` on generated logs: the logs' own timestamps drive windows, bans and
//! unbans; nothing touches a firewall or a database.

use crate::support::daemon::{Daemon, warden_bin};

fn sshd(t: jiff::Timestamp, addr: &str) -> String {
    format!(
        "{} host sshd[7]: Failed password for invalid user admin from {addr} port 4242 ssh2",
        t.strftime("%Y-%m-%dT%H:%M:%SZ")
    )
}

#[test]
fn replay_prints_a_timeline_and_a_summary() {
    let d = Daemon::new(
        r#"
[sshd]
enabled = true
filter = sshd
logpath = {logs}/auth.log
action = log[logfile="{fw}"]
findtime = 10m
maxretry = 5
bantime = 1h
"#,
    );
    let t0: jiff::Timestamp = "2024-05-01T00:00:00Z".parse().unwrap();
    let mut lines = Vec::new();
    // 40 attackers: five failures a minute apart each, staggered by 30 s.
    for a in 0..40 {
        for k in 0..5 {
            let t = t0 + jiff::SignedDuration::from_secs(a * 30 + k * 60);
            lines.push((t, sshd(t, &format!("203.0.113.{a}"))));
        }
    }
    // 10 slow guessers: five failures 15 minutes apart never fall within findtime.
    for a in 0..10 {
        for k in 0..5 {
            let t = t0 + jiff::SignedDuration::from_secs(a + k * 900);
            lines.push((t, sshd(t, &format!("198.51.100.{a}"))));
        }
    }
    lines.push((t0, "noise that matches nothing".to_string()));
    lines.sort();
    let text: Vec<String> = lines.into_iter().map(|(_, l)| l).collect();
    d.append("auth.log", &text);

    let out = std::process::Command::new(warden_bin())
        .arg("--config")
        .arg(&d.config)
        .args(["replay", "--json"])
        .arg(d.log("auth.log"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let bans: Vec<&serde_json::Value> = r["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "ban")
        .collect();
    assert_eq!(bans.len(), 40);
    assert!(
        bans.iter()
            .all(|b| b["target"].as_str().unwrap().starts_with("203.0.113."))
    );
    // The first attacker is banned at its fifth failure, four minutes after its first.
    assert_eq!(bans[0]["time"], t0.as_second() + 240);
    assert_eq!(bans[0]["failures"], 5);
    assert_eq!(bans[0]["bantime"], 3600);
    let unbans = r["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "unban")
        .count();
    // The logs end 3600 s after the first slow failure: the first bans (at 240 s + 30 s k)
    // end before that only for the attackers banned in the first 1 h - 240 s of the log.
    let last = t0.as_second() + 9 + 4 * 900;
    let expected_unbans = (0..40)
        .filter(|a| t0.as_second() + a * 30 + 240 + 3600 <= last)
        .count();
    assert_eq!(unbans, expected_unbans);
    let s = &r["jails"][0];
    assert_eq!(s["jail"], "sshd");
    assert_eq!(s["lines"], 40 * 5 + 10 * 5 + 1);
    assert_eq!(s["failures"], 250);
    assert_eq!(s["bans"], 40);
    assert_eq!(s["addresses"], 50);
    assert_eq!(s["banned_at_end"], 40 - expected_unbans as u64);
    assert!(!d.fw.exists(), "no firewall touched");
    assert!(!d.db.exists(), "no database written");

    // The text form: a header, one row per event, the summary.
    let out = std::process::Command::new(warden_bin())
        .arg("--config")
        .arg(&d.config)
        .args(["replay", "--jail", "sshd"])
        .arg(d.log("auth.log"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("TIME"), "{text}");
    assert_eq!(text.lines().filter(|l| l.contains(" ban ")).count(), 40);
    assert!(text.contains("203.0.113.0"), "{text}");
    let summary = text.lines().find(|l| l.starts_with("sshd ")).unwrap();
    let cols: Vec<&str> = summary.split_whitespace().collect();
    assert_eq!(
        cols[1..6],
        [
            "251",
            "250",
            "40",
            "50",
            &(40 - expected_unbans).to_string()
        ]
    );
}
