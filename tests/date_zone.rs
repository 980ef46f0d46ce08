//! `local_zone` reads `TZ`: checked in a child process of this test binary, so that no
//! test changes the environment of the others.

use std::process::Command;

use jiff::Timestamp;
use warden::date::{DateDetector, local_zone};

/// Runs in the child: prints the local zone's offsets in summer and winter 2005, and the
/// time a detector built with it gives a zone-less date.
#[test]
#[ignore = "run by local_zone_follows_tz in a child process"]
fn local_zone_child() {
    if std::env::var_os("WARDEN_ZONE_CHILD").is_none() {
        return;
    }
    let tz = local_zone();
    let summer = tz.to_offset(Timestamp::from_second(1_124_013_600).unwrap());
    let winter = tz.to_offset(Timestamp::from_second(1_104_537_600).unwrap());
    let mut d = DateDetector::new(None, tz).unwrap();
    let now = Timestamp::from_second(1_124_013_600).unwrap();
    let t = d
        .detect("2005-08-14 12:00:00 x", now)
        .unwrap()
        .time
        .as_second();
    println!("ZONE {} {} {t}", summer.seconds(), winter.seconds());
}

fn child(tz: Option<&str>) -> (i32, i32, i64) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "date_zone::local_zone_child",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("WARDEN_ZONE_CHILD", "1");
    match tz {
        Some(tz) => cmd.env("TZ", tz),
        None => cmd.env_remove("TZ"),
    };
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.split_once("ZONE ").map(|(_, v)| v))
        .unwrap_or_else(|| panic!("child printed no zone: {text}"));
    let v: Vec<i64> = line
        .split(' ')
        .take(3)
        .map(|x| x.parse().unwrap())
        .collect();
    (v[0] as i32, v[1] as i32, v[2])
}

#[test]
fn local_zone_follows_tz() {
    // POSIX TZ string, as fail2ban's tests use.
    assert_eq!(
        child(Some("CET-01CEST-02,M3.5.0,M10.5.0")),
        (7200, 3600, 1_124_013_600)
    );
    assert_eq!(child(Some("Europe/Paris")), (7200, 3600, 1_124_013_600));
    assert_eq!(
        child(Some("EST5EDT,M3.2.0,M11.1.0")),
        (-14400, -18000, 1_124_035_200)
    );
    assert_eq!(child(Some("UTC")), (0, 0, 1_124_020_800));
}
