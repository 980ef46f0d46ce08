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
