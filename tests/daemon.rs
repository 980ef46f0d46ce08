//! The daemon end to end: the real binary on temporary directories, firewall calls
//! observed through the log backend's record file.

use std::time::Duration;

use crate::support::daemon::{Daemon, sshd_failure};

const SSHD: &str = r#"
[sshd]
enabled = true
filter = sshd
logpath = {logs}/auth.log
action = log[logfile="{fw}"]
"#;

#[test]
fn failures_lead_to_a_ban_within_a_second() {
    let mut d = Daemon::new(SSHD);
    d.append("auth.log", &["an unrelated line".to_string()]);
    d.start();
    d.wait_for("the log to be followed", Duration::from_secs(10), || {
        d.lines_read("sshd") == 1
    });
    let lines: Vec<String> = (0..3).map(|_| sshd_failure("192.0.2.7")).collect();
    d.append("auth.log", &lines);
    let took = d.wait_for("a ban", Duration::from_secs(10), || {
        d.fw_targets("ban", Some("sshd"))
            .contains(&"192.0.2.7".to_string())
    });
    assert!(took < Duration::from_secs(1), "ban took {took:?}");
    let st = d.jail_status("sshd");
    assert_eq!(st["actions"]["banned"][0], "192.0.2.7");
    assert_eq!(st["actions"]["currently_banned"], 1);
    assert_eq!(st["filter"]["total_failed"], 3);
    assert_eq!(st["filter"]["lines_read"], 4);
    let files = st["filter"]["sources"].as_array().unwrap();
    assert!(
        files[0].as_str().unwrap().ends_with("auth.log"),
        "{files:?}"
    );
    let text = d.client(&["status", "sshd"]);
    assert!(text.contains("Status for the jail: sshd"), "{text}");
    assert!(text.contains("Banned IP list:\t192.0.2.7"), "{text}");
    let banned = d.banned();
    assert!(
        banned.contains(&("192.0.2.7".into(), "sshd".into())),
        "{banned:?}"
    );
    assert!(d.stop().success());
    assert!(!d.socket.exists(), "socket removed at stop");
    assert!(!d.pidfile.exists(), "pid file removed at stop");
}

fn failures(addr: &str, n: usize) -> Vec<String> {
    (0..n).map(|_| sshd_failure(addr)).collect()
}

fn has(list: &[String], t: &str) -> bool {
    list.iter().any(|x| x == t)
}

#[test]
fn bans_end_on_time_and_on_request() {
    let mut d = Daemon::new(
        r#"
[sshd]
enabled = true
filter = sshd
logpath = {logs}/auth.log
action = log[logfile="{fw}"]
bantime = 2
"#,
    );
    d.start();
    d.append("auth.log", &failures("192.0.2.1", 3));
    d.wait_for("the ban", Duration::from_secs(10), || {
        has(&d.fw_targets("ban", None), "192.0.2.1")
    });
    let banned_at = std::time::Instant::now();
    d.wait_for("the unban on expiry", Duration::from_secs(10), || {
        has(&d.fw_targets("unban", None), "192.0.2.1")
    });
    let held = banned_at.elapsed();
    assert!(
        held >= Duration::from_millis(1500),
        "unbanned after {held:?}"
    );
    assert!(d.banned().is_empty());

    // By request: a manual ban, then `warden unban`.
    let out = d.try_client(&["ban", "sshd", "198.51.100.5", "not-an-address"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an invalid address fails the command"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("banned 198.51.100.5 in sshd"), "{text}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not-an-address: not an address"), "{err}");
    d.wait_for("the manual ban", Duration::from_secs(10), || {
        has(&d.fw_targets("ban", None), "198.51.100.5")
    });
    let list = d.json(&["banned", "198.51.100.5"]);
    assert_eq!(list["bans"][0]["origin"], "manual");
    let out = d.client(&["unban", "198.51.100.5", "203.0.113.1"]);
    assert!(out.contains("unbanned 198.51.100.5 (sshd)"), "{out}");
    assert!(out.contains("203.0.113.1 is not banned"), "{out}");
    d.wait_for("the unban by request", Duration::from_secs(10), || {
        has(&d.fw_targets("unban", None), "198.51.100.5")
    });
    assert!(d.banned().is_empty());

    // --all lifts everything.
    d.client(&["ban", "sshd", "198.51.100.6", "198.51.100.7"]);
    let out = d.client(&["unban", "--all"]);
    assert_eq!(out.matches("unbanned").count(), 2, "{out}");
    assert!(d.banned().is_empty());
    // A jail that does not exist is an error, with the daemon's reason.
    let out = d.try_client(&["ban", "nope", "192.0.2.9"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such jail: nope"));
    d.stop();
}

/// Writes `n` failures from distinct addresses, one every millisecond or so, rotating
/// the log at `rename_at` (rename and create) and at `truncate_at` (copy and truncate).
fn write_with_rotations(log: &std::path::Path, n: usize, rename_at: usize, truncate_at: usize) {
    use std::io::Write;
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap()
    };
    let generation = |k: u32| log.with_file_name(format!("auth.log.{k}"));
    let mut f = open();
    for i in 0..n {
        if i == rename_at {
            drop(f);
            std::fs::rename(log, generation(1)).unwrap();
            f = open();
        }
        if i == truncate_at {
            std::fs::rename(generation(1), generation(2)).unwrap();
            std::fs::copy(log, generation(1)).unwrap();
            f.set_len(0).unwrap();
        }
        let addr = format!("10.{}.{}.{}", i / 65536, i / 256 % 256, i % 256);
        writeln!(f, "{}", sshd_failure(&addr)).unwrap();
        if i % 10 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[test]
fn rotation_both_ways_loses_and_repeats_nothing() {
    let mut d = Daemon::new(
        r#"
[sshd]
enabled = true
filter = sshd
logpath = {logs}/auth.log
action = log[logfile="{fw}"]
maxretry = 1000
"#,
    );
    d.append("auth.log", &["first line".to_string()]);
    d.start();
    d.wait_for("the log to be followed", Duration::from_secs(10), || {
        d.lines_read("sshd") == 1
    });
    write_with_rotations(&d.log("auth.log"), 600, 200, 400);
    d.wait_for("every line", Duration::from_secs(30), || {
        d.total_failed("sshd") >= 600
    });
    // Nothing read twice: give the tailer time to find a doubled line, then count.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(d.total_failed("sshd"), 600);
    assert_eq!(d.lines_read("sshd"), 601);
    d.stop();
}

#[test]
fn restart_restores_bans_and_resumes_positions() {
    let mut d = Daemon::new(
        r#"
[sshd]
enabled = true
filter = sshd
logpath = {logs}/auth.log
action = log[logfile="{fw}"]
bantime = 1h
"#,
    );
    d.start();
    d.append("auth.log", &failures("192.0.2.1", 3));
    d.append("auth.log", &failures("192.0.2.2", 2));
    d.wait_for("the ban", Duration::from_secs(10), || {
        has(&d.fw_targets("ban", None), "192.0.2.1")
    });
    d.wait_for("every line", Duration::from_secs(10), || {
        d.lines_read("sshd") == 5
    });
    let before = d.json(&["banned"]);
    assert!(d.stop().success());
    // Written while warden is down: read after the restart, once.
    d.append("auth.log", &failures("192.0.2.3", 2));
    d.start();
    d.wait_for(
        "the lines written while stopped",
        Duration::from_secs(10),
        || d.lines_read("sshd") == 2,
    );
    let after = d.json(&["banned"]);
    assert_eq!(before["bans"], after["bans"], "same bans, same expiry");
    let starts = || -> Vec<serde_json::Value> {
        d.fw_records()
            .into_iter()
            .filter(|r| r["op"] == "start")
            .collect()
    };
    d.wait_for("the actions' start", Duration::from_secs(10), || {
        starts().len() == 2
    });
    let starts = starts();
    assert_eq!(starts[1]["targets"], serde_json::json!(["192.0.2.1"]));
    // The two failures of 192.0.2.2 before the restart were not read again: one more
    // does not make three.
    assert_eq!(d.total_failed("sshd"), 2);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(d.lines_read("sshd"), 2, "nothing read twice");
    d.stop();
}

#[test]
fn a_second_daemon_is_refused() {
    let mut d = Daemon::new(SSHD);
    d.start();
    let out = std::process::Command::new(crate::support::daemon::warden_bin())
        .arg("--config")
        .arg(&d.config)
        .args(["run", "--foreground"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another warden is running"), "{err}");
    assert!(d.is_running());
    assert!(d.client(&["ping"]).contains("pong"));
    d.stop();
}

const TWO_JAILS: &str = r#"
[short]
enabled = true
filter = sshd
logpath = {logs}/auth.log
action = {action}
bantime = 2

[long]
enabled = true
filter = sshd
logpath = {logs}/auth.log
action = {action}
bantime = 6
"#;

#[test]
fn a_short_jail_never_lifts_a_longer_jails_ban_with_per_jail_entries() {
    let mut d = Daemon::new(&TWO_JAILS.replace("{action}", r#"log[logfile="{fw}"]"#));
    d.start();
    d.append("auth.log", &failures("192.0.2.5", 3));
    d.wait_for("both bans", Duration::from_secs(10), || {
        d.fw_held("short").contains("192.0.2.5") && d.fw_held("long").contains("192.0.2.5")
    });
    d.wait_for("the short jail's unban", Duration::from_secs(10), || {
        !d.fw_held("short").contains("192.0.2.5")
    });
    assert!(
        d.fw_held("long").contains("192.0.2.5"),
        "the long jail's entry stays"
    );
    let banned = d.banned();
    assert_eq!(
        banned.into_iter().collect::<Vec<_>>(),
        [("192.0.2.5".to_string(), "long".to_string())]
    );
    d.wait_for("the long jail's unban", Duration::from_secs(15), || {
        !d.fw_held("long").contains("192.0.2.5")
    });
    assert!(d.banned().is_empty());
    d.stop();
}

#[test]
fn a_short_jail_never_lifts_a_longer_jails_ban_with_a_shared_entry() {
    let mut d = Daemon::new(&TWO_JAILS.replace("{action}", "shared"));
    // No <name> in the commands: both jails add and remove the same entry.
    d.write_config(
        "action.d/shared.conf",
        "[Definition]\nactionban = echo ban <ip> >> {dir}/shared.txt\nactionunban = echo unban <ip> >> {dir}/shared.txt\n",
    );
    let record = d.dir().join("shared.txt");
    let read = || std::fs::read_to_string(&record).unwrap_or_default();
    d.start();
    d.append("auth.log", &failures("192.0.2.6", 3));
    d.wait_for("both bans", Duration::from_secs(10), || {
        read().matches("ban 192.0.2.6").count() == 2
    });
    d.wait_for(
        "the short jail's hold to end",
        Duration::from_secs(10),
        || d.banned().len() == 1,
    );
    // Give the firewall worker its batching window and more.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !read().contains("unban"),
        "the entry stays while the long jail holds it:\n{}",
        read()
    );
    d.wait_for("the long jail's unban", Duration::from_secs(15), || {
        read().contains("unban 192.0.2.6")
    });
    assert_eq!(read().matches("unban").count(), 1, "{}", read());
    d.stop();
}

#[test]
fn repeat_offenders_get_longer_bans() {
    let mut d = Daemon::new(
        r#"
[sshd]
enabled = true
filter = sshd
logpath = {logs}/auth.log
action = log[logfile="{fw}"]
maxretry = 2
bantime = 2
bantime.increment = true
bantime.maxtime = 1h
"#,
    );
    d.start();
    let bantimes = || -> Vec<i64> {
        d.fw_records()
            .iter()
            .filter(|r| r["op"] == "ban")
            .flat_map(|r| {
                r["bantime"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_i64().unwrap())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    d.append("auth.log", &failures("192.0.2.8", 2));
    d.wait_for("the first ban", Duration::from_secs(10), || {
        bantimes() == [2]
    });
    d.wait_for("its end", Duration::from_secs(10), || d.banned().is_empty());
    // A known offender: one failure weighs 2^(1-1)+1 = 2, which is maxretry.
    d.append("auth.log", &failures("192.0.2.8", 1));
    d.wait_for("the second ban", Duration::from_secs(10), || {
        bantimes().len() == 2
    });
    assert_eq!(bantimes(), [2, 4], "the second ban lasts twice as long");
    let b = d.json(&["banned"]);
    assert_eq!(b["bans"][0]["bancount"], 2);
    assert_eq!(b["bans"][0]["bantime"], 4);
    d.stop();
}

#[test]
fn recidive_bans_repeat_offenders_from_the_ledger() {
    let mut d = Daemon::new(
        r#"
[sshd]
enabled = true
filter = sshd
logpath = {logs}/auth.log
action = log[logfile="{fw}"]
maxretry = 1
bantime = 2

[recidive]
enabled = true
backend = ledger
action = log[logfile="{fw}"]
findtime = 1h
maxretry = 2
bantime = 1h
"#,
    );
    d.start();
    d.append("auth.log", &failures("192.0.2.9", 1));
    d.wait_for("the first sshd ban", Duration::from_secs(10), || {
        d.fw_targets("ban", Some("sshd")).len() == 1
    });
    d.wait_for("its end", Duration::from_secs(10), || d.banned().is_empty());
    // A restart in between: the recidive jail counts the first ban from the ledger.
    d.stop();
    d.start();
    d.append("auth.log", &failures("192.0.2.9", 1));
    d.wait_for("the recidive ban", Duration::from_secs(10), || {
        has(&d.fw_targets("ban", Some("recidive")), "192.0.2.9")
    });
    assert_eq!(d.fw_targets("ban", Some("sshd")).len(), 2);
    let b = d.json(&["banned", "192.0.2.9"]);
    let rec: Vec<_> = b["bans"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["jail"] == "recidive")
        .collect();
    assert_eq!(rec.len(), 1, "{b}");
    assert_eq!(rec[0]["origin"], "recidive");
    assert_eq!(rec[0]["bantime"], 3600);
    d.stop();
}

#[test]
fn kill_9_during_a_burst_loses_no_recorded_ban() {
    let mut d = Daemon::new(
        r#"
[sshd]
enabled = true
filter = sshd
logpath = {logs}/auth.log
action = log[logfile="{fw}"]
maxretry = 1
bantime = 1h
"#,
    );
    d.start();
    let n = 3000;
    let addrs: Vec<String> = (0..n)
        .map(|i| format!("10.9.{}.{}", i / 256, i % 256))
        .collect();
    let lines: Vec<String> = addrs.iter().map(|a| sshd_failure(a)).collect();
    d.append("auth.log", &lines);
    d.wait_for("some bans", Duration::from_secs(20), || {
        d.fw_targets("ban", None).len() >= 50
    });
    d.kill9();
    let applied: std::collections::BTreeSet<String> =
        d.fw_targets("ban", None).into_iter().collect();
    assert!(
        applied.len() < n,
        "the kill came before the end of the burst"
    );
    d.start();
    // Every ban the firewall saw before the crash was in the ledger first, so it is in
    // force again: re-applied by the actions' start.
    d.wait_for("the restored start", Duration::from_secs(10), || {
        d.fw_records().iter().filter(|r| r["op"] == "start").count() == 2
    });
    let start = d
        .fw_records()
        .into_iter()
        .filter(|r| r["op"] == "start")
        .nth(1)
        .unwrap();
    let restored: std::collections::BTreeSet<String> = start["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    let missing: Vec<&String> = applied.difference(&restored).collect();
    assert!(
        missing.is_empty(),
        "lost {} bans: {missing:?}",
        missing.len()
    );
    // The lines not processed before the crash are read after it; every address ends up
    // banned exactly once.
    d.wait_for("every ban", Duration::from_secs(60), || {
        d.banned().len() == n
    });
    let st = d.jail_status("sshd");
    assert_eq!(
        st["actions"]["total_banned"], n as u64,
        "no ban recorded twice"
    );
    d.stop();
}

#[test]
fn the_control_socket_is_for_root_and_the_daemons_user_only() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::os::unix::process::CommandExt;
    let mut d = Daemon::new(SSHD);
    d.start();
    let meta = std::fs::metadata(&d.socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw());
    let as_nobody = || {
        std::process::Command::new(crate::support::daemon::warden_bin())
            .arg("--socket")
            .arg(&d.socket)
            .arg("ping")
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap()
    };
    // The file's mode keeps others out...
    for dir in [d.dir(), d.socket.parent().unwrap()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = as_nobody();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "{err} {} mode {:o}",
        String::from_utf8_lossy(&out.stdout),
        std::fs::metadata(&d.socket).unwrap().permissions().mode()
    );
    assert!(err.contains("permission denied"), "{err}");
    // ...and with the mode opened by mistake, the peer credentials still do.
    std::fs::set_permissions(&d.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = as_nobody();
    assert!(
        !out.status.success(),
        "{}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        d.tail_log(10)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("uid 65534 may not use the control socket"),
        "{err}"
    );
    assert!(d.daemon_log().contains("Refused a control connection"));
    assert!(d.client(&["ping"]).contains("pong"), "root is still served");
    d.stop();
}

#[test]
fn sighup_reload_keeps_bans_and_counts() {
    let jails = |maxretry_web: u32, with_gone: bool| {
        let mut s = format!(
            r#"
[sshd]
enabled = true
filter = sshd
logpath = {{logs}}/auth.log
action = log[logfile="{{fw}}"]
bantime = 1h

[web]
enabled = true
filter = sshd
logpath = {{logs}}/web.log
action = log[logfile="{{fw}}"]
maxretry = {maxretry_web}
bantime = 1h
"#
        );
        if with_gone {
            s.push_str(
                r#"
[gone]
enabled = true
filter = sshd
logpath = {logs}/gone.log
action = log[logfile="{fw}"]
maxretry = 1
bantime = 1h
"#,
            );
        }
        s
    };
    let mut d = Daemon::new(&jails(3, true));
    d.start();
    d.append("auth.log", &failures("192.0.2.1", 3));
    d.append("auth.log", &failures("192.0.2.2", 2));
    d.append("web.log", &failures("192.0.2.3", 1));
    d.append("gone.log", &failures("192.0.2.4", 1));
    d.wait_for("the bans", Duration::from_secs(10), || {
        d.banned().len() == 2
    });
    d.wait_for("the counts", Duration::from_secs(10), || {
        d.total_failed("sshd") == 5 && d.total_failed("web") == 1
    });
    // sshd unchanged, web changed (maxretry 3 -> 2), gone removed.
    d.set_jails(&jails(2, false));
    d.signal(nix::sys::signal::Signal::SIGHUP);
    d.wait_for("the reload", Duration::from_secs(10), || {
        d.daemon_log().contains("Configuration reloaded.")
    });
    let banned = d.banned();
    assert!(
        banned.contains(&("192.0.2.1".into(), "sshd".into())),
        "{banned:?}"
    );
    assert!(
        !banned.iter().any(|(_, j)| j == "gone"),
        "a removed jail's bans are lifted"
    );
    assert!(!has(&d.fw_targets("unban", Some("sshd")), "192.0.2.1"));
    // Counts kept: one more failure completes 192.0.2.2 in sshd (3) and 192.0.2.3 in
    // web (2 under the new maxretry).
    d.append("auth.log", &failures("192.0.2.2", 1));
    d.append("web.log", &failures("192.0.2.3", 1));
    d.wait_for("bans from the kept counts", Duration::from_secs(10), || {
        let b = d.banned();
        b.contains(&("192.0.2.2".into(), "sshd".into()))
            && b.contains(&("192.0.2.3".into(), "web".into()))
    });
    // The client's reload reports what changed.
    d.set_jails(&jails(2, true));
    let out = d.json(&["reload"]);
    assert_eq!(out["added"], serde_json::json!(["gone"]));
    assert_eq!(out["unchanged"], serde_json::json!(["sshd", "web"]));
    d.stop();
}

#[test]
fn ipv6_attackers_are_banned_by_prefix_and_metrics_count_it() {
    let mut d = Daemon::new(
        r#"
[sshd]
enabled = true
filter = sshd
logpath = {logs}/auth.log
action = log[logfile="{fw}"]
cidr6 = 64
"#,
    );
    d.start();
    let lines: Vec<String> = ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3"]
        .iter()
        .map(|a| sshd_failure(a))
        .collect();
    d.append("auth.log", &lines);
    d.wait_for("the /64 ban", Duration::from_secs(10), || {
        has(&d.fw_targets("ban", None), "2001:db8:1:2::/64")
    });
    let list = d.json(&["banned", "2001:db8:1:2::77"]);
    assert_eq!(list["bans"][0]["target"], "2001:db8:1:2::/64");
    let m = d.client(&["metrics"]);
    for want in [
        "warden_lines_read_total{jail=\"sshd\"} 3",
        "warden_lines_matched_total{jail=\"sshd\"} 3",
        "warden_failures_total{jail=\"sshd\"} 3",
        "warden_bans_total{jail=\"sshd\"} 1",
        "warden_banned{jail=\"sshd\"} 1",
    ] {
        assert!(m.contains(want), "{want} missing from:\n{m}");
    }
    d.stop();
}

#[test]
fn firewall_errors_are_retried_and_shown_until_they_clear() {
    let mut d = Daemon::new(
        r#"
[sshd]
enabled = true
filter = sshd
logpath = {logs}/auth.log
action = flaky
"#,
    );
    // The action fails until the file `ok` exists.
    d.write_config(
        "action.d/flaky.conf",
        "[Definition]\nactionban = test -e {dir}/ok && echo ban <ip> >> {dir}/flaky.txt\nactionunban = echo unban <ip> >> {dir}/flaky.txt\n",
    );
    d.start();
    d.append("auth.log", &failures("192.0.2.40", 3));
    d.wait_for("the pending error", Duration::from_secs(10), || {
        let s = d.json(&["status"]);
        !s["pending_firewall_errors"].as_array().unwrap().is_empty()
    });
    let st = d.jail_status("sshd");
    assert_eq!(
        st["actions"]["banned"][0], "192.0.2.40",
        "the ledger holds the ban"
    );
    let err = st["actions"]["errors"][0].as_str().unwrap().to_string();
    assert!(err.contains("ban of 1 failed, retrying"), "{err}");
    let text = d.client(&["status"]);
    assert!(text.contains("Firewall errors being retried"), "{text}");
    std::fs::write(d.dir().join("ok"), "").unwrap();
    d.wait_for("the retried ban", Duration::from_secs(20), || {
        std::fs::read_to_string(d.dir().join("flaky.txt"))
            .unwrap_or_default()
            .contains("ban 192.0.2.40")
    });
    d.wait_for("the error to clear", Duration::from_secs(10), || {
        d.json(&["status"])["pending_firewall_errors"]
            .as_array()
            .unwrap()
            .is_empty()
    });
    let m = d.client(&["metrics"]);
    assert!(
        m.contains("warden_firewall_errors_total{jail=\"sshd\"}"),
        "{m}"
    );
    d.stop();
}

#[test]
fn the_log_file_is_reopened_on_sigusr1() {
    let mut d = Daemon::new(SSHD);
    let log = d.dir().join("warden.log");
    d.write_config(
        "warden.local",
        &format!(
            "[Definition]\nloglevel = INFO\nlogtarget = {}\nsocket = {}\npidfile = {}\ndbfile = {}\n",
            log.display(),
            d.socket.display(),
            d.pidfile.display(),
            d.db.display()
        ),
    );
    d.env.push(("RUST_LOG".into(), String::new()));
    d.start();
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    d.wait_for("the log file", Duration::from_secs(10), || {
        read(&log).contains("warden is running.")
    });
    let rotated = d.dir().join("warden.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    d.signal(nix::sys::signal::Signal::SIGUSR1);
    d.wait_for("a new log file", Duration::from_secs(10), || {
        read(&log).contains("Reopened the log file.")
    });
    d.stop();
    assert!(read(&log).contains("warden stopped."));
    assert!(!read(&rotated).contains("warden stopped."));
}

#[test]
fn a_normal_user_falls_back_to_per_user_paths_the_client_also_finds() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let d = Daemon::new(SSHD);
    // The configured paths stay the defaults under /run and /var/lib, which nobody
    // cannot write.
    d.write_config("warden.local", "[Definition]\nloglevel = INFO\n");
    let home = d.dir().join("home");
    for p in [d.dir(), &d.config, &home] {
        std::fs::create_dir_all(p).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    for entry in walk(&d.config) {
        let mode = if entry.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let env = [
        ("XDG_RUNTIME_DIR", home.join("run")),
        ("XDG_DATA_HOME", home.join("data")),
        ("HOME", home.clone()),
    ];
    let cmd = |args: &[&str]| {
        let mut c = std::process::Command::new(crate::support::daemon::warden_bin());
        c.arg("--config")
            .arg(&d.config)
            .args(args)
            .uid(65534)
            .gid(65534);
        for (k, v) in &env {
            c.env(k, v);
        }
        c.env_remove("WARDEN_SOCKET");
        c
    };
    let err = std::fs::File::create(d.dir().join("user.log")).unwrap();
    // Started as the README's quick start does: no --backend, so `auto` finds no
    // firewall this user may change and says so.
    let mut daemon = Guard(
        cmd(&["run", "--foreground"])
            .stdout(std::process::Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap(),
    );
    let daemon = &mut daemon.0;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let out = cmd(&["ping"]).output().unwrap();
        if out.status.success() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline && daemon.try_wait().unwrap().is_none(),
            "the daemon did not answer: {}",
            std::fs::read_to_string(d.dir().join("user.log")).unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(home.join("run/warden/warden.sock").exists());
    assert!(home.join("run/warden/warden.pid").exists());
    assert!(home.join("data/warden/warden.sqlite3").exists());
    let log = std::fs::read_to_string(d.dir().join("user.log")).unwrap();
    assert!(
        log.contains("Not running as root: using per-user paths."),
        "{log}"
    );
    assert!(
        log.contains("NOT enforced"),
        "the log-backend warning: {log}"
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    assert!(daemon.wait().unwrap().success());
    assert!(!home.join("run/warden/warden.sock").exists());
}

/// Kills a child left running by a failed assertion.
struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    if dir.is_dir() {
        for e in std::fs::read_dir(dir).unwrap() {
            out.extend(walk(&e.unwrap().path()));
        }
    }
    out
}
