//! The sample logs of warden's shipped filters (`tests/files/logs/<filter>`) checked with
//! fail2ban's own sample-test machinery from Debian's package: every annotated line must
//! match or not as annotated, with the annotated host, user and time; every failregex of
//! every mode must have a sample; and no regex may have a greedy catch-all before
//! `<HOST>` that is not anchored at the end of the line.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::fail2ban;

/// Runs fail2ban's `testSampleRegexsFactory` for the named filters of a config directory
/// over sample logs under `<files>/logs/`.
const DRIVER: &str = r#"
import sys, unittest
cfg, files, names = sys.argv[1], sys.argv[2], sys.argv[3:]
from fail2ban.tests import utils
utils.initTests(None)
from fail2ban.tests import samplestestcase as st
st.TEST_FILES_DIR = files
class WardenSamples(st.FilterSamplesRegex):
    pass
for n in names:
    setattr(WardenSamples, 'test_' + n, st.testSampleRegexsFactory(n, cfg))
suite = unittest.TestSuite([WardenSamples('test_' + n) for n in names])
result = unittest.TextTestRunner(verbosity=2).run(suite)
sys.exit(0 if result.wasSuccessful() else 1)
"#;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped filters that read log text (every filter.d/*.conf but shared includes).
/// The shipped text filters (pflog filters match decoded packets, not lines; their tests
/// are in the pflog module).
fn shipped_filters() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("config/filter.d"))
        .expect("config/filter.d")
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".conf").map(str::to_string))
        .filter(|n| !n.ends_with("common"))
        .filter(|n| {
            let text = std::fs::read_to_string(root().join(format!("config/filter.d/{n}.conf")))
                .unwrap_or_default();
            !text.contains("pflog_match")
        })
        .collect();
    names.sort();
    names
}

fn run_driver(cfg: &Path, files: &Path, names: &[String]) -> (bool, String) {
    let pkg = fail2ban::package();
    let out = Command::new("python3")
        .arg("-c")
        .arg(DRIVER)
        .arg(cfg)
        .arg(files)
        .args(names)
        .env("PYTHONPATH", pkg.python_path())
        // Read at import time by fail2ban's test utilities; any existing tree will do.
        .env("FAIL2BAN_CONFIG_DIR", cfg)
        .output()
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn every_shipped_filter_has_a_sample_log() {
    let names = shipped_filters();
    assert!(names.len() >= 8, "{names:?}");
    for n in &names {
        let log = root().join("tests/files/logs").join(n);
        let text =
            std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let matching = text.matches("\"match\": true").count();
        let missing = text.matches("\"match\": false").count();
        assert!(
            matching >= 2 && missing >= 2,
            "{n}: want matching and non-matching samples, have {matching} and {missing}"
        );
    }
}

#[test]
fn shipped_samples_pass_fail2bans_sample_tests() {
    let names = shipped_filters();
    let (ok, text) = run_driver(&root().join("config"), &root().join("tests/files"), &names);
    assert!(ok, "fail2ban's sample test fails:\n{text}");
    for n in &names {
        let passed = text
            .lines()
            .any(|l| l.starts_with(&format!("test_{n} (")) && l.ends_with("... ok"));
        assert!(passed, "{n} did not pass:\n{text}");
    }
    assert!(
        text.contains(&format!("Ran {} tests", names.len())),
        "{text}"
    );
}

/// The driver is a real check: a sample annotated with the wrong host fails it.
#[test]
fn sample_driver_rejects_a_wrong_annotation() {
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let good = std::fs::read_to_string(root().join("tests/files/logs/sshd")).unwrap();
    let bad = good.replacen(
        "\"host\": \"203.0.113.17\"",
        "\"host\": \"203.0.113.18\"",
        1,
    );
    assert_ne!(good, bad);
    std::fs::write(logs.join("sshd"), bad).unwrap();
    let (ok, text) = run_driver(&root().join("config"), tmp.path(), &["sshd".to_string()]);
    assert!(!ok, "a wrong host passed:\n{text}");
    assert!(text.contains("203.0.113.18"), "{text}");
}
