//! `warden check` on the shipped configuration and on a deliberately broken copy of it.

use std::path::{Path, PathBuf};

use assert_cmd::cargo::cargo_bin_cmd;
use serde_json::Value as Json;

fn shipped() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// The 1-based line of `text` that contains `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle} not in text"))
        + 1
}

#[test]
fn check_passes_on_the_shipped_configuration() {
    let out = cargo_bin_cmd!("warden")
        .arg("check")
        .arg("--config")
        .arg(shipped())
        .env_remove("WARDEN_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("[sshd] enabled"), "{stdout}");
    assert!(stdout.contains("failregex    1) ^Failed "), "{stdout}");
    assert!(stdout.contains("prefregex"), "{stdout}");
    assert!(stdout.contains("auto: native auto"), "{stdout}");
    assert!(stdout.contains("0 errors, 0 warnings"), "{stdout}");
    // Disabled jails only with --all.
    assert!(!stdout.contains("[postfix]"), "{stdout}");
    let all = cargo_bin_cmd!("warden")
        .args(["check", "--all", "--config"])
        .arg(shipped())
        .output()
        .unwrap();
    let all = String::from_utf8_lossy(&all.stdout);
    for jail in [
        "sshd",
        "nginx-http-auth",
        "nginx-limit-req",
        "nginx-botsearch",
        "apache-auth",
        "postfix",
        "dovecot",
        "recidive",
    ] {
        assert!(
            all.contains(&format!("[{jail}] ")),
            "{jail} missing:\n{all}"
        );
    }
    assert!(all.contains("backend      ledger"), "{all}");
}

#[test]
fn check_json_is_one_document() {
    let out = cargo_bin_cmd!("warden")
        .args(["check", "--json", "--all", "--config"])
        .arg(shipped())
        .output()
        .unwrap();
    assert!(out.status.success());
    let doc: Json = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let jails = doc["jails"].as_array().unwrap();
    assert_eq!(jails.len(), 10);
    let sshd = jails.iter().find(|j| j["name"] == "sshd").unwrap();
    assert_eq!(sshd["enabled"], true);
    assert_eq!(sshd["bantime"], 600);
    assert_eq!(sshd["filter"]["args"]["mode"], "normal");
    assert!(sshd["filter"]["failregex"].as_array().unwrap().len() >= 5);
    assert_eq!(sshd["actions"][0]["params"]["native"], "auto");
    assert_eq!(doc["errors"].as_array().unwrap().len(), 0);
    assert_eq!(doc["daemon"]["dbfile"], "/var/lib/warden/warden.sqlite3");
}

#[test]
fn check_without_a_directory_uses_the_embedded_configuration() {
    if Path::new("/etc/warden").exists() {
        eprintln!("skipped: /etc/warden exists and would be used");
        return;
    }
    let out = cargo_bin_cmd!("warden")
        .arg("check")
        .env_remove("WARDEN_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.starts_with("configuration (embedded) (10 jails, 1 enabled)"),
        "{stdout}"
    );
}

#[test]
fn check_lists_every_error_with_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("warden");
    copy_dir(&shipped(), &dir);
    let jail_local = "\
[sshd]
bantime = 10x

[nginx-http-auth]
enabled = true
filter = nosuch

[nginx-limit-req]
enabled = true

[postfix]
enabled = true
action = nosuchaction[port=smtp]

[dovecot]
enabled = true
logpath = %(nope)s

[recidive]
enabled = true
loop_a = %(loop_b)s
loop_b = %(loop_a)s
findtime = %(loop_a)s

[apache-auth]
enabled = true

[nginx-botsearch]
enabled = true
";
    std::fs::write(dir.join("jail.local"), jail_local).unwrap();
    std::fs::write(
        dir.join("filter.d/apache-auth.local"),
        "[Definition]\nfailregex = <loop-a>\nloop-a = x<loop-b>\nloop-b = y<loop-a>\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("filter.d/nginx-botsearch.local"),
        "[Definition]\nthis line is not an option\n",
    )
    .unwrap();

    let out = cargo_bin_cmd!("warden")
        .arg("check")
        .arg("--config")
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");

    let local = dir.join("jail.local").display().to_string();
    let expect = |needle: &str, jail: &str, what: &str| {
        let prefix = format!("{local}:{}: [{jail}] ", line_of(jail_local, needle));
        let found = stderr
            .lines()
            .any(|l| l.starts_with(&prefix) && l.contains(what));
        assert!(found, "want `{prefix}... {what}` in:\n{stderr}");
    };
    expect("bantime = 10x", "sshd", "unknown unit `x`");
    expect(
        "filter = nosuch",
        "nginx-http-auth",
        "filter `nosuch` not found",
    );
    expect(
        "action = nosuchaction",
        "postfix",
        "action `nosuchaction` not found",
    );
    expect("logpath = %(nope)s", "dovecot", "%(nope)s");
    expect(
        "findtime = %(loop_a)s",
        "recidive",
        "recursive interpolation",
    );
    let apache = dir.join("filter.d/apache-auth.local").display().to_string();
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with(&format!("{apache}:")) && l.contains("[apache-auth]")),
        "{stderr}"
    );
    let bots = dir
        .join("filter.d/nginx-botsearch.local")
        .display()
        .to_string();
    assert!(
        stderr.contains(&format!("{bots}:2: `this line is not an option`")),
        "{stderr}"
    );
    assert!(
        stderr.contains("[nginx-botsearch] filter `nginx-botsearch` has lines"),
        "{stderr}"
    );
    assert!(stderr.contains("errors in the configuration"), "{stderr}");
    // The healthy jails still load and are listed.
    assert!(stdout.contains("[nginx-limit-req] enabled"), "{stdout}");
    assert!(!stdout.contains("[sshd] enabled"), "{stdout}");

    // --json reports the same errors in the document, and fails the same way.
    let out = cargo_bin_cmd!("warden")
        .args(["check", "--json", "--config"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let doc: Json = serde_json::from_slice(&out.stdout).unwrap();
    let errors = doc["errors"].as_array().unwrap();
    assert!(errors.len() >= 7, "{errors:?}");
    assert!(errors.iter().any(|e| e["jail"] == "postfix"
        && e["span"]["line"] == line_of(jail_local, "action = nosuchaction")));
}

#[test]
fn check_fails_cleanly_on_a_missing_directory() {
    let out = cargo_bin_cmd!("warden")
        .args(["check", "--config", "/nonexistent/warden-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot read configuration directory /nonexistent/warden-config"),
        "{stderr}"
    );
}
