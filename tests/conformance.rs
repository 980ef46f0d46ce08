//! Conformance with fail2ban's sample-log test: the annotated sample logs run through
//! warden's filters (date detection, prefregex, every failregex, sessions, multi-line)
//! and every annotated line checked as fail2ban's `samplestestcase.py` checks it (see
//! `support/samples.rs`).
//!
//! - Debian's fail2ban 1.0.2: its own filters (`etc/fail2ban/filter.d`, plus its zzz-*
//!   test filters) on its own sample logs. Each disagreement is listed; the run fails under
//!   99 % agreement.
//! - warden: the filters it ships (`config/filter.d`) on its sample logs
//!   (`tests/files/logs`), which must agree everywhere.

use std::path::PathBuf;

use crate::support::fail2ban;
use crate::support::samples::{self, FilterUnderTest};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn fail2ban_sample_logs_through_warden() {
    let pkg = fail2ban::package();
    let tmp = tempfile::tempdir().unwrap();
    let mut filters = samples::filters_of(&pkg.config_dir(), |_, _| false);
    filters.extend(samples::relocated_test_filters(
        &pkg.config_dir(),
        &pkg.test_config(),
        tmp.path(),
    ));
    assert!(filters.len() >= 90, "{} filters", filters.len());
    let out = samples::run(&filters, &pkg.sample_logs());
    println!("{}", out.report("fail2ban 1.0.2 sample logs"));
    // Debian 1.0.2 has 1,067 annotations; with the option variants about 1,350 checks.
    assert!(out.evaluations > 1_300, "{} checks", out.evaluations);
    assert!(
        out.rate() >= 0.99,
        "agreement {:.2} % is under 99 %",
        out.rate() * 100.0
    );
    assert!(
        out.count_only_differences.is_empty(),
        "{}",
        out.report("fail2ban 1.0.2 sample logs")
    );
}

#[test]
fn warden_sample_logs_through_warden() {
    // The pflog filters match decoded packets, not log lines (tested in the pflog module).
    let filters: Vec<FilterUnderTest> = samples::filters_of(&root().join("config"), |_, text| {
        text.contains("pflog_match")
    });
    assert!(filters.len() >= 8, "{} filters", filters.len());
    let out = samples::run(&filters, &root().join("tests/files/logs"));
    println!("{}", out.report("warden sample logs"));
    assert!(out.evaluations > 100, "{} checks", out.evaluations);
    assert!(
        out.disagreements.is_empty()
            && out.unsampled.is_empty()
            && out.errors.is_empty()
            && out.count_only_differences.is_empty(),
        "{}",
        out.report("warden sample logs")
    );
}

/// The harness is a real check: a wrong host, a line that should match but does not, and
/// a regex without a sample are all reported.
#[test]
fn harness_reports_wrong_annotations() {
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let good = std::fs::read_to_string(root().join("tests/files/logs/sshd")).unwrap();
    let bad = good
        .replacen(
            "\"host\": \"203.0.113.17\"",
            "\"host\": \"203.0.113.18\"",
            1,
        )
        .replacen("\"match\": false", "\"match\": true", 1);
    assert_ne!(good, bad);
    std::fs::write(logs.join("sshd"), &bad).unwrap();
    let filters: Vec<FilterUnderTest> =
        samples::filters_of(&root().join("config"), |n, _| n != "sshd");
    let out = samples::run(&filters, &logs);
    let report = out.report("altered");
    assert!(out.disagreements.len() >= 2, "{report}");
    assert!(
        report.contains("want \"203.0.113.18\""),
        "the wrong host is reported: {report}"
    );
    assert!(
        report.contains("not matched, should have"),
        "the wrong match flag is reported: {report}"
    );
    // A log without the lines of one regex leaves that regex without a sample.
    let first_failure = good.find("\"match\": true").unwrap();
    let truncated: String = good[..first_failure]
        .rsplit_once('\n')
        .map(|(head, _)| head.to_string())
        .unwrap_or_default();
    std::fs::write(logs.join("sshd"), truncated + "\n").unwrap();
    let out = samples::run(&filters, &logs);
    assert!(!out.unsampled.is_empty(), "{}", out.report("truncated"));
}
