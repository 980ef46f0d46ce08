//! The pfctl simulator against the behaviour of FreeBSD 15 and OpenBSD 7.7 pfctl:
//! exact stdout, stderr and exit status of each command, the state it leaves behind,
//! concurrency, failure injection and the state file round trip.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::pfctl::{Os, Output, PfSim, State};

const FREEBSD_USAGE: &str =
    "usage: pfctl [-AdeghMmNnOPqRSrvz] [-a anchor] [-D macro=value] [-F modifier]
\t[-f file] [-i interface] [-K host | network]
\t[-k host | network | gateway | label | id] [-o level] [-p device]
\t[-s modifier] [-t table -T command [address ...]] [-x level]
";

const OPENBSD_USAGE: &str =
    "usage: pfctl [-deghNnPqrvz] [-a anchor] [-D macro=value] [-F modifier] [-f file]
\t[-i interface] [-K key] [-k key] [-L statefile] [-o level]
\t[-p device] [-S statefile] [-s modifier [-R id]]
\t[-t table -T command [address ...]] [-V rdomain] [-x level]
";

const NOW: i64 = 1_717_243_200; // Sat Jun  1 12:00:00 2024 UTC

fn usage(os: Os) -> &'static str {
    match os {
        Os::FreeBsd => FREEBSD_USAGE,
        Os::OpenBsd => OPENBSD_USAGE,
    }
}

/// FreeBSD's or OpenBSD's text.
fn by_os<'a>(os: Os, freebsd: &'a str, openbsd: &'a str) -> &'a str {
    match os {
        Os::FreeBsd => freebsd,
        Os::OpenBsd => openbsd,
    }
}

fn sim(os: Os) -> PfSim {
    let mut s = PfSim::new(os);
    s.set_now(NOW);
    s
}

const BOTH: [Os; 2] = [Os::FreeBsd, Os::OpenBsd];

#[track_caller]
fn check(out: &Output, exit: i32, stdout: &str, stderr: &str) {
    assert_eq!(
        (out.exit, out.stdout.as_str(), out.stderr.as_str()),
        (exit, stdout, stderr),
        "exit/stdout/stderr"
    );
}

/// A refusal: exit 1, nothing on stdout, `err` then the OS's usage text on stderr.
#[track_caller]
fn check_usage(out: &Output, os: Os, err: &str) {
    check(out, 1, "", &format!("{err}{}", usage(os)));
}

// ---------------------------------------------------------------------------------------
// Command line.

#[test]
fn usage_without_arguments_and_with_h() {
    for os in BOTH {
        let s = sim(os);
        check_usage(&s.run(&[]), os, "");
        check_usage(&s.run(&["-h"]), os, "");
    }
}

#[test]
fn getopt_errors_use_each_libc_wording() {
    for os in BOTH {
        let s = sim(os);
        let unknown = by_os(
            os,
            "pfctl: illegal option -- y\n",
            "pfctl: unknown option -- y\n",
        );
        check_usage(&s.run(&["-y"]), os, unknown);
        check_usage(
            &s.run(&["-t"]),
            os,
            "pfctl: option requires an argument -- t\n",
        );
        // -t without -T (and -T without -t) is a bare usage.
        check_usage(&s.run(&["-t", "foo"]), os, "");
        check_usage(&s.run(&["-T", "show"]), os, "");
    }
}

#[test]
fn option_strings_differ_per_os() {
    let f = sim(Os::FreeBsd);
    let o = sim(Os::OpenBsd);
    // -M (kill matching states) exists on FreeBSD only, -V (rdomain) on OpenBSD only.
    check(&f.run(&["-M", "-F", "states"]), 0, "", "0 states cleared\n");
    check_usage(
        &o.run(&["-M", "-F", "states"]),
        Os::OpenBsd,
        "pfctl: unknown option -- M\n",
    );
    check(
        &o.run(&["-V", "1", "-F", "states"]),
        0,
        "",
        "0 states cleared\n",
    );
    check_usage(
        &f.run(&["-V", "1"]),
        Os::FreeBsd,
        "pfctl: illegal option -- V\n",
    );
    // No-DNS is -S on FreeBSD and -N on OpenBSD; both clash with -r in the same words.
    check(
        &f.run(&["-S", "-r", "-s", "rules"]),
        1,
        "",
        "pfctl: -N and -r are mutually exclusive\n",
    );
    check(
        &o.run(&["-N", "-r", "-s", "rules"]),
        1,
        "",
        "pfctl: -N and -r are mutually exclusive\n",
    );
}

#[test]
fn combined_flags_and_attached_arguments() {
    for os in BOTH {
        let s = sim(os);
        check(
            &s.run(&["-tbad", "-Tadd", "1.2.3.4"]),
            0,
            "",
            "1 table created.\n1/1 addresses added.\n",
        );
        check(&s.run(&["-tbad", "-Tshow"]), 0, "   1.2.3.4\n", "");
        let listing = by_os(os, "-pa----\tbad\n", "-pa----\tbad\n");
        check(&s.run(&["-vsT"]), 0, listing, "");
        check(&s.run(&["-qtbad", "-Tadd", "5.6.7.8"]), 0, "", "");
    }
}

#[test]
fn options_stop_at_the_first_operand() {
    for os in BOTH {
        let s = sim(os);
        // BSD getopt does not permute: "-q" is an address here.
        check(
            &s.run(&["-t", "t", "-T", "add", "1.2.3.4", "-q"]),
            255,
            "",
            "no IP address found for -q\n",
        );
        assert!(!s.table_exists("", "t"));
        check_usage(
            &s.run(&["-s", "rules", "extra"]),
            os,
            "pfctl: unknown command line argument: extra ...\n",
        );
    }
}

#[test]
fn subcommand_words_may_be_abbreviated() {
    let f = sim(Os::FreeBsd);
    let o = sim(Os::OpenBsd);
    // FreeBSD takes the first match in list order: "re" is replace, not reset.
    check(
        &f.run(&["-t", "t", "-T", "re", "1.2.3.4"]),
        0,
        "",
        "1 table created.\n1 addresses added.\n",
    );
    check(
        &o.run(&["-t", "t", "-T", "a", "1.2.3.4"]),
        0,
        "",
        "1 table created.\n1/1 addresses added.\n",
    );
    // OpenBSD refuses an ambiguous prefix (sic).
    check(&o.run(&["-x", "e"]), 1, "", "pfctl: e is ambigious\n");
    check(&f.run(&["-x", "m"]), 0, "", "debug level set to 'misc'\n");
    for s in [&f, &o] {
        let os = s.os();
        check_usage(
            &s.run(&["-t", "t", "-T", "bogus"]),
            os,
            "pfctl: Unknown table command 'bogus'\n",
        );
        check_usage(
            &s.run(&["-s", "zzz"]),
            os,
            "pfctl: Unknown show modifier 'zzz'\n",
        );
        check_usage(
            &s.run(&["-F", "zzz"]),
            os,
            "pfctl: Unknown flush modifier 'zzz'\n",
        );
    }
    // Table commands of one OS only.
    check_usage(
        &o.run(&["-t", "t", "-T", "reset"]),
        Os::OpenBsd,
        "pfctl: Unknown table command 'reset'\n",
    );
}

#[test]
fn anchor_name_checks() {
    for os in BOTH {
        let s = sim(os);
        check(
            &s.run(&["-a", "", "-s", "rules"]),
            1,
            "",
            "pfctl: anchor name must not be empty\n",
        );
        check_usage(
            &s.run(&["-a", "foo", "-v"]),
            os,
            "pfctl: anchors apply to -f, -F, -s, and -T only\n",
        );
        let underscore =
            "pfctl: anchor names beginning with '_' cannot be modified from the command line\n";
        check(&s.run(&["-a", "_x", "-F", "rules"]), 1, "", underscore);
        check(&s.run(&["-a", "f2b/_x", "-F", "rules"]), 1, "", underscore);
        // Table commands are exempt.
        check(
            &s.run(&["-a", "_x", "-t", "t", "-T", "add", "1.2.3.4"]),
            0,
            "",
            "1 table created.\n1/1 addresses added.\n",
        );
        let long = "a".repeat(1024);
        check(
            &s.run(&["-a", &long, "-s", "rules"]),
            1,
            "",
            &format!("pfctl: anchor name '{long}' too long\n"),
        );
    }
}

#[test]
fn permission_denied_comes_after_argument_checks() {
    for os in BOTH {
        let mut s = sim(os);
        s.set_deny(true);
        check(
            &s.run(&["-s", "rules"]),
            1,
            "",
            "pfctl: /dev/pf: Permission denied\n",
        );
        check(
            &s.run(&["-t", "t", "-T", "add", "1.2.3.4"]),
            1,
            "",
            "pfctl: /dev/pf: Permission denied\n",
        );
        check_usage(&s.run(&["-t", "t"]), os, "");
        assert!(!s.table_exists("", "t"));
    }
}

#[test]
fn syntax_only_mode_without_device() {
    let mut f = sim(Os::FreeBsd);
    f.set_deny(true);
    // FreeBSD opens its netlink handle through /dev/pf even with -n.
    check(
        &f.run(&["-n", "-t", "t", "-T", "delete", "1.2.3.4"]),
        1,
        "",
        "pfctl: Failed to open netlink: Permission denied\n",
    );
    let mut o = sim(Os::OpenBsd);
    o.set_deny(true);
    check(
        &o.run(&["-n", "-t", "t", "-T", "delete", "1.2.3.4"]),
        0,
        "",
        "0/1 addresses deleted (syntax only).\n",
    );
    // add/replace list the existing tables first, on the unopened device.
    check(
        &o.run(&["-n", "-t", "t", "-T", "add", "1.2.3.4"]),
        1,
        "",
        "pfctl: pfr_get_tables: Bad file descriptor\n",
    );
}

#[test]
fn dummy_mode_reports_without_changing() {
    for os in BOTH {
        let s = sim(os);
        check(
            &s.run(&["-n", "-t", "t", "-T", "add", "1.2.3.4"]),
            0,
            "",
            "1 table created (dummy).\n",
        );
        assert!(!s.table_exists("", "t"));
        s.run(&["-t", "t", "-T", "add", "1.2.3.4"]);
        check(
            &s.run(&["-n", "-t", "t", "-T", "add", "5.6.7.8", "1.2.3.4"]),
            0,
            "",
            "1/2 addresses added (dummy).\n",
        );
        check(
            &s.run(&["-n", "-t", "t", "-T", "flush"]),
            0,
            "",
            "1 addresses deleted (dummy).\n",
        );
        assert_eq!(s.table("", "t"), vec!["1.2.3.4"]);
        // -n also turns -s, -F, -e and -d off.
        check(&s.run(&["-n", "-s", "Tables"]), 0, "", "");
        check(&s.run(&["-n", "-d"]), 0, "", "");
        assert!(s.enabled());
    }
}

// ---------------------------------------------------------------------------------------
// Tables.

#[test]
fn add_creates_persistent_table_and_anchor() {
    for os in BOTH {
        let s = sim(os);
        check(
            &s.run(&["-a", "f2b/sshd", "-t", "f2b-sshd", "-T", "add", "1.2.3.4"]),
            0,
            "",
            "1 table created.\n1/1 addresses added.\n",
        );
        let t = s.table_json("f2b/sshd", "f2b-sshd");
        assert_eq!(t["persist"], json!(true));
        assert_eq!(t["tzero"], json!(NOW));
        assert_eq!(
            s.entries("f2b/sshd", "f2b-sshd")["1.2.3.4/32"]["tzero"],
            json!(NOW)
        );
        check(&s.run(&["-s", "Anchors"]), 0, "  f2b\n  f2b/sshd\n", "");
        // Idempotent re-add, duplicates count in B.
        check(
            &s.run(&["-a", "f2b/sshd", "-t", "f2b-sshd", "-T", "add", "1.2.3.4"]),
            0,
            "",
            "0/1 addresses added.\n",
        );
        check(
            &s.run(&[
                "-a", "f2b/sshd", "-t", "f2b-sshd", "-T", "add", "5.6.7.8", "5.6.7.8", "1.2.3.4",
            ]),
            0,
            "",
            "1/3 addresses added.\n",
        );
    }
}

#[test]
fn verbose_feedback_letters() {
    for os in BOTH {
        let s = sim(os);
        s.run(&["-t", "t", "-T", "add", "1.2.3.4", "!10.0.0.0/8"]);
        check(
            &s.run(&[
                "-v",
                "-t",
                "t",
                "-T",
                "add",
                "1.2.3.4",
                "5.6.7.8",
                "5.6.7.8",
                "10.0.0.0/8",
            ]),
            0,
            "A  5.6.7.8\nX  5.6.7.8\nY  10.0.0.0/8\n",
            "1/4 addresses added.\n",
        );
        check(
            &s.run(&["-vv", "-t", "t", "-T", "delete", "1.2.3.4", "9.9.9.9"]),
            0,
            "D  1.2.3.4\n   9.9.9.9\n",
            "1/2 addresses deleted.\n",
        );
        // Replace lists the input, then what it deleted.
        check(
            &s.run(&[
                "-v",
                "-t",
                "t",
                "-T",
                "replace",
                "5.6.7.8",
                "10.0.0.0/8",
                "2001:db8::1",
            ]),
            0,
            "C  10.0.0.0/8\nA  2001:db8::1\n",
            "1 addresses added.\n1 addresses changed.\n",
        );
        check(
            &s.run(&["-v", "-t", "t", "-T", "replace", "5.6.7.8"]),
            0,
            "D  2001:db8::1\nD  10.0.0.0/8\n",
            "2 addresses deleted.\n",
        );
        check(
            &s.run(&["-t", "t", "-T", "replace", "5.6.7.8"]),
            0,
            "",
            "no changes.\n",
        );
    }
}

#[test]
fn missing_table_errors_exit_255() {
    for os in BOTH {
        let s = sim(os);
        let esrch = by_os(
            os,
            "pfctl: Table does not exist.\n",
            "pfctl: Table does not exist\n",
        );
        for cmd in [
            vec!["show"],
            vec!["delete", "1.2.3.4"],
            vec!["flush"],
            vec!["test", "1.2.3.4"],
            vec!["zero", "1.2.3.4"],
            vec!["expire", "10"],
        ] {
            let mut args = vec!["-a", "f2b/x", "-t", "nope", "-T"];
            args.extend(cmd);
            check(&s.run(&args), 255, "", esrch);
        }
        // kill and table-wide zero of a missing table are not errors.
        check(
            &s.run(&["-t", "nope", "-T", "kill"]),
            0,
            "",
            "0 table deleted.\n",
        );
        check(
            &s.run(&["-t", "nope", "-T", "zero"]),
            0,
            "",
            "0 table/stats cleared.\n",
        );
        s.run(&["-t", "t", "-T", "add", "1.2.3.4"]);
        check(
            &s.run(&["-t", "t", "-T", "kill"]),
            0,
            "",
            "1 table deleted.\n",
        );
        assert!(!s.table_exists("", "t"));
        check(&s.run(&["-q", "-t", "t", "-T", "show"]), 255, "", esrch);
    }
}

#[test]
fn show_is_sorted_ipv4_then_ipv6() {
    for os in BOTH {
        let s = sim(os);
        s.run(&[
            "-t",
            "t",
            "-T",
            "add",
            "2001:db8::1",
            "10.0.0.2",
            "!10.1.0.0/16",
            "9.0.0.1",
            "10.0.0.0/8",
            "::ffff:1.2.3.4",
            "2001:db8::/32",
        ]);
        check(
            &s.run(&["-t", "t", "-T", "show"]),
            0,
            "   9.0.0.1\n   10.0.0.0/8\n   10.0.0.2\n  !10.1.0.0/16\n   ::ffff:1.2.3.4\n   2001:db8::/32\n   2001:db8::1\n",
            "",
        );
        assert_eq!(
            s.table("", "t"),
            vec![
                "9.0.0.1",
                "10.0.0.0/8",
                "10.0.0.2",
                "!10.1.0.0/16",
                "::ffff:1.2.3.4",
                "2001:db8::/32",
                "2001:db8::1"
            ]
        );
        check_usage(&s.run(&["-t", "t", "-T", "show", "1.2.3.4"]), os, "");
        check_usage(&s.run(&["-t", "t", "-T", "flush", "1.2.3.4"]), os, "");
        check_usage(&s.run(&["-t", "t", "-T", "kill", "1.2.3.4"]), os, "");
    }
}

#[test]
fn verbose_show_counter_layout() {
    for os in BOTH {
        let s = sim(os);
        s.seed_json(json!({"anchors": {"a": {"tables": {
            "c": {"persist": true, "counters": true, "entries": {
                "1.2.3.4": {"tzero": 1045162518, "in_pass": [10, 840], "out_pass": [10, 840]}}},
            "n": {"persist": true, "entries": {"1.2.3.4": {"tzero": 1045162518}}}
        }}}}));
        let head = "   1.2.3.4\n\tCleared:     Thu Feb 13 18:55:18 2003\n";
        let zero = "[ Packets: 0                  Bytes: 0                  ]\n";
        let ten = "[ Packets: 10                 Bytes: 840                ]\n";
        let expected = match os {
            Os::FreeBsd => format!(
                "{head}\tIn/Block:    {zero}\tIn/Pass:     {ten}\tOut/Block:   {zero}\tOut/Pass:    {ten}"
            ),
            Os::OpenBsd => format!(
                "{head}\tIn/Block:    {zero}\tIn/Match:    {zero}\tIn/Pass:     {ten}\tOut/Block:   {zero}\tOut/Match:   {zero}\tOut/Pass:    {ten}"
            ),
        };
        check(
            &s.run(&["-a", "a", "-t", "c", "-v", "-T", "show"]),
            0,
            &expected,
            "",
        );
        // Without the counters flag only the Cleared line.
        check(
            &s.run(&["-a", "a", "-t", "n", "-v", "-T", "show"]),
            0,
            head,
            "",
        );
    }
}

#[test]
fn test_command_exit_status_and_verbosity() {
    for os in BOTH {
        let s = sim(os);
        s.run(&[
            "-t",
            "t",
            "-T",
            "add",
            "1.2.3.4",
            "10.0.0.0/8",
            "!10.1.0.0/16",
        ]);
        check(
            &s.run(&["-t", "t", "-T", "test", "1.2.3.4", "10.9.9.9"]),
            0,
            "",
            "2/2 addresses match.\n",
        );
        check(
            &s.run(&["-t", "t", "-T", "test", "1.2.3.4", "10.1.2.3", "5.5.5.5"]),
            2,
            "",
            "1/3 addresses match.\n",
        );
        check(
            &s.run(&[
                "-v", "-t", "t", "-T", "test", "1.2.3.4", "10.1.2.3", "10.2.2.2",
            ]),
            2,
            "M  1.2.3.4\nM  10.2.2.2\n",
            "2/3 addresses match.\n",
        );
        check(
            &s.run(&[
                "-vv", "-t", "t", "-T", "test", "10.2.2.2", "10.1.2.3", "5.5.5.5",
            ]),
            2,
            "M  10.2.2.2\t 10.0.0.0/8\n   10.1.2.3\t!10.1.0.0/16\n   5.5.5.5\t nomatch\n",
            "1/3 addresses match.\n",
        );
        // Networks and negations are refused before the kernel is asked.
        check(
            &s.run(&["-t", "t", "-T", "test", "10.0.0.0/8"]),
            255,
            "",
            "pfctl: cannot decode 10.0.0.0/8: Invalid argument\n",
        );
    }
}

#[test]
fn expire_is_strict_and_checks_its_argument() {
    for os in BOTH {
        let s = sim(os);
        s.seed_json(
            json!({"anchors": {"": {"tables": {"t": {"persist": true, "entries": {
                "1.1.1.1": {"tzero": NOW - 101},
                "2.2.2.2": {"tzero": NOW - 100},
                "3.3.3.3": {"tzero": NOW}
            }}}}}}),
        );
        check(
            &s.run(&["-v", "-t", "t", "-T", "expire", "100"]),
            0,
            "D  1.1.1.1\n",
            "1/1 addresses expired.\n",
        );
        assert_eq!(s.table("", "t"), vec!["2.2.2.2", "3.3.3.3"]);
        check(
            &s.run(&["-t", "t", "-T", "expire", "0"]),
            0,
            "",
            "1/1 addresses expired.\n",
        );
        check(
            &s.run(&["-t", "t", "-T", "expire", "soon"]),
            1,
            "",
            "pfctl: expiry time: invalid\n",
        );
        // "-1" would be read as an option; "--" ends them.
        check_usage(
            &s.run(&["-t", "t", "-T", "expire", "-1"]),
            os,
            by_os(
                os,
                "pfctl: illegal option -- 1\n",
                "pfctl: unknown option -- 1\n",
            ),
        );
        check(
            &s.run(&["-t", "t", "-T", "expire", "--", "-1"]),
            1,
            "",
            "pfctl: expiry time: too small\n",
        );
        check_usage(&s.run(&["-t", "t", "-T", "expire"]), os, "");
        check_usage(&s.run(&["-t", "t", "-T", "expire", "1", "2"]), os, "");
    }
}

#[test]
fn zero_resets_tzero_and_counters() {
    for os in BOTH {
        let s = sim(os);
        s.seed_json(json!({"anchors": {"": {"tables": {"t": {"persist": true, "counters": true, "tzero": 5, "entries": {
            "1.1.1.1": {"tzero": 10, "in_block": [3, 120]},
            "2.2.2.2": {"tzero": 10, "in_block": [4, 160]}
        }}}}}}));
        check(
            &s.run(&["-v", "-t", "t", "-T", "zero", "1.1.1.1", "9.9.9.9"]),
            0,
            "Z  1.1.1.1\n",
            "1/2 addresses cleared.\n",
        );
        let e = s.entries("", "t");
        assert_eq!(
            (
                e["1.1.1.1/32"]["tzero"].clone(),
                e["1.1.1.1/32"]["in_block"].clone()
            ),
            (json!(NOW), json!([0, 0]))
        );
        assert_eq!(e["2.2.2.2/32"]["tzero"], json!(10));
        check(
            &s.run(&["-t", "t", "-T", "zero"]),
            0,
            "",
            "1 table/stats cleared.\n",
        );
        let e = s.entries("", "t");
        assert_eq!(
            (
                e["2.2.2.2/32"]["tzero"].clone(),
                e["2.2.2.2/32"]["in_block"].clone()
            ),
            (json!(NOW), json!([0, 0]))
        );
        assert_eq!(s.table_json("", "t")["tzero"], json!(NOW));
    }
}

#[test]
fn freebsd_reset_clears_only_nonzero_entries() {
    let s = sim(Os::FreeBsd);
    s.seed_json(
        json!({"anchors": {"": {"tables": {"t": {"persist": true, "entries": {
            "1.1.1.1": {"tzero": 10, "in_block": [3, 120]},
            "2.2.2.2": {"tzero": 10}
        }}}}}}),
    );
    check(
        &s.run(&["-v", "-t", "t", "-T", "reset"]),
        0,
        "Z  1.1.1.1\n",
        "1/2 stats cleared.\n",
    );
    let e = s.entries("", "t");
    assert_eq!(e["1.1.1.1/32"]["tzero"], json!(NOW));
    assert_eq!(e["2.2.2.2/32"]["tzero"], json!(10));
}

#[test]
fn table_entries_limit_is_enomem() {
    for os in BOTH {
        let s = sim(os);
        s.seed_json(json!({"limits": {"table-entries": 3}}));
        s.run(&["-t", "a", "-T", "add", "1.1.1.1", "2.2.2.2"]);
        let enomem = by_os(
            os,
            "pfctl: Cannot allocate memory.\n",
            "pfctl: Cannot allocate memory\n",
        );
        check(
            &s.run(&["-t", "b", "-T", "add", "3.3.3.3", "4.4.4.4"]),
            255,
            "",
            &format!("1 table created.\n{enomem}"),
        );
        assert!(s.table("", "b").is_empty(), "the batch is all or nothing");
        check(
            &s.run(&["-t", "b", "-T", "add", "3.3.3.3"]),
            0,
            "",
            "1/1 addresses added.\n",
        );
        check(
            &s.run(&["-t", "b", "-T", "replace", "3.3.3.3", "4.4.4.4"]),
            255,
            "",
            enomem,
        );
        // Existing entries and duplicates do not count against the limit.
        check(
            &s.run(&["-t", "b", "-T", "add", "3.3.3.3", "1.1.1.1"]),
            255,
            "",
            enomem,
        );
        check(
            &s.run(&["-t", "a", "-T", "add", "1.1.1.1", "1.1.1.1"]),
            0,
            "",
            "0/2 addresses added.\n",
        );
    }
}

#[test]
fn address_parsing_errors() {
    for os in BOTH {
        let s = sim(os);
        check(
            &s.run(&["-t", "t", "-T", "add", "host.example"]),
            255,
            "",
            "no IP address found for host.example\n",
        );
        check(
            &s.run(&["-t", "t", "-T", "add", "1.2.3.4/200"]),
            255,
            "",
            "invalid netmask '/200'\n",
        );
        check(
            &s.run(&["-t", "t", "-T", "add", "1.2.3.4/33"]),
            255,
            "",
            "no IP address found for 1.2.3.4/33\n",
        );
        // Host bits beyond the prefix are rejected by the kernel: EINVAL, which OpenBSD
        // words as a missing anchor.
        check(
            &s.run(&["-t", "t", "-T", "add", "10.1.2.3/8"]),
            255,
            "",
            &format!(
                "1 table created.\n{}",
                by_os(
                    os,
                    "pfctl: Invalid argument.\n",
                    "pfctl: Anchor does not exist\n"
                )
            ),
        );
        check(
            &s.run(&["-t", "t", "-T", "add", "10/8", "!!1.2.3.4"]),
            0,
            "",
            "2/2 addresses added.\n",
        );
        assert_eq!(s.table("", "t"), vec!["1.2.3.4", "10.0.0.0/8"]);
        check_usage(
            &s.run(&["-t", "x".repeat(32).as_str(), "-T", "show"]),
            os,
            "",
        );
        check(
            &s.run(&["-t", "", "-T", "add", "1.2.3.4"]),
            255,
            "",
            by_os(
                os,
                "pfctl: Invalid argument.\n",
                "pfctl: Anchor does not exist\n",
            ),
        );
    }
}

#[test]
fn addresses_from_files_and_stdin() {
    for os in BOTH {
        let s = sim(os);
        let file = s.dir().join("ban.txt");
        std::fs::write(
            &file,
            "# banned\n1.1.1.1 2.2.2.2\n\t3.3.3.3 # three\n#4.4.4.4\n",
        )
        .unwrap();
        let f = file.display().to_string();
        check(
            &s.run(&["-t", "t", "-T", "add", "-f", &f, "5.5.5.5"]),
            0,
            "",
            "1 table created.\n4/4 addresses added.\n",
        );
        check(
            &s.run_stdin(
                &["-t", "t", "-T", "delete", "-f", "-"],
                "1.1.1.1\n2.2.2.2\n",
            ),
            0,
            "",
            "2/2 addresses deleted.\n",
        );
        check(
            &s.run_stdin(&["-t", "t", "-T", "replace", "-f-"], "9.9.9.9"),
            0,
            "",
            "1 addresses added.\n2 addresses deleted.\n",
        );
        check(
            &s.run(&["-t", "t", "-T", "add", "-f", "/nonexistent/x"]),
            255,
            "",
            "pfctl: cannot load /nonexistent/x: No such file or directory\n",
        );
        check(
            &s.run_stdin(&["-t", "t", "-T", "add", "-f", "-"], "1.1.1.1 bogus\n"),
            255,
            "",
            &format!(
                "no IP address found for bogus\npfctl: cannot load -: {}\n",
                by_os(os, "No error: 0", "Undefined error: 0")
            ),
        );
        let calls = s.calls();
        assert_eq!(calls[1].stdin.as_deref(), Some("1.1.1.1\n2.2.2.2\n"));
        assert_eq!(calls[0].stdin, None);
    }
}

#[test]
fn duplicate_table_names_warn_on_every_add() {
    for os in BOTH {
        let s = sim(os);
        s.run(&["-t", "dup", "-T", "add", "1.1.1.1"]);
        s.run(&["-a", "x", "-t", "dup", "-T", "add", "1.1.1.1"]);
        check(
            &s.run(&["-q", "-a", "y", "-t", "dup", "-T", "add", "1.1.1.1"]),
            0,
            "",
            "pfctl: warning: table <dup> already defined in anchor \"/\"\npfctl: warning: table <dup> already defined in anchor \"x\"\n",
        );
        check(
            &s.run(&["-a", "x", "-t", "dup", "-T", "replace", "2.2.2.2"]),
            0,
            "",
            "pfctl: warning: table <dup> already defined in anchor \"/\"\npfctl: warning: table <dup> already defined in anchor \"y\"\n1 addresses added.\n1 addresses deleted.\n",
        );
    }
}

#[test]
fn const_tables_refuse_changes() {
    for os in BOTH {
        let s = sim(os);
        s.seed_json(json!({"anchors": {"": {"tables": {"c": {"const": true, "persist": true, "entries": {"1.1.1.1": {}}}}}}}));
        let eperm = by_os(
            os,
            "pfctl: Operation not permitted.\n",
            "pfctl: Operation not permitted\n",
        );
        check(&s.run(&["-t", "c", "-T", "add", "2.2.2.2"]), 255, "", eperm);
        check(&s.run(&["-t", "c", "-T", "flush"]), 255, "", eperm);
        check(&s.run(&["-t", "c", "-T", "show"]), 0, "   1.1.1.1\n", "");
    }
}

#[test]
fn quiet_suppresses_only_information() {
    for os in BOTH {
        let s = sim(os);
        check(
            &s.run(&["-q", "-t", "t", "-T", "add", "1.1.1.1"]),
            0,
            "",
            "",
        );
        check(
            &s.run(&["-q", "-v", "-t", "t", "-T", "add", "2.2.2.2"]),
            0,
            "A  2.2.2.2\n",
            "",
        );
        check(
            &s.run(&["-q", "-t", "t", "-T", "add", "nope"]),
            255,
            "",
            "no IP address found for nope\n",
        );
        check(&s.run(&["-q", "-d"]), 0, "", "");
        check(&s.run(&["-q", "-d"]), 1, "", "pfctl: pf not enabled\n");
    }
}

#[test]
fn show_tables_formats() {
    for os in BOTH {
        let s = sim(os);
        s.run(&["-t", "root1", "-T", "add", "1.1.1.1"]);
        s.run_stdin(
            &["-a", "f2b/sshd", "-f", "-"],
            "table <f2b-sshd> persist counters\nblock drop in log quick proto tcp from <f2b-sshd> to any port 22\n",
        );
        check(&s.run(&["-s", "Tables"]), 0, "root1\n", "");
        check(
            &s.run(&["-a", "f2b/sshd", "-sT"]),
            0,
            by_os(os, "f2b-sshd\n", "f2b-sshd@f2b/sshd\n"),
            "",
        );
        check(
            &s.run(&["-a", "f2b/sshd", "-v", "-sT"]),
            0,
            by_os(
                os,
                "-pa-r-C\tf2b-sshd\tf2b/sshd\n",
                "-pa-r-C\tf2b-sshd@f2b/sshd\n",
            ),
            "",
        );
        let zero = "[ Packets: 0                  Bytes: 0                  ]\n";
        let mut vv = String::from(by_os(
            os,
            "-pa-r-C\tf2b-sshd\tf2b/sshd\n",
            "-pa-r-C\tf2b-sshd@f2b/sshd\n",
        ));
        vv.push_str("\tAddresses:   0\n\tCleared:     Sat Jun  1 12:00:00 2024\n");
        vv.push_str("\tReferences:  [ Anchors: 0                  Rules: 1                  ]\n");
        vv.push_str("\tEvaluations: [ NoMatch: 0                  Match: 0                  ]\n");
        let rows: &[&str] = match os {
            Os::FreeBsd => &[
                "In/Block:",
                "In/Pass:",
                "In/XPass:",
                "Out/Block:",
                "Out/Pass:",
                "Out/XPass:",
            ],
            Os::OpenBsd => &[
                "In/Block:",
                "In/Match:",
                "In/Pass:",
                "In/XPass:",
                "Out/Block:",
                "Out/Match:",
                "Out/Pass:",
                "Out/XPass:",
            ],
        };
        for r in rows {
            vv.push_str(&format!("\t{r:<12} {zero}"));
        }
        check(&s.run(&["-a", "f2b/sshd", "-vvsT"]), 0, &vv, "");
        check(
            &s.run(&["-a", "nope", "-sT"]),
            1,
            "",
            by_os(
                os,
                "pfctl: Anchor or Ruleset does not exist.\n",
                "pfctl: Anchor does not exist\n",
            ),
        );
    }
}

// ---------------------------------------------------------------------------------------
// Rulesets.

const F2B_TABLE: &str = "table <f2b-sshd> persist counters\n";
const F2B_RULE: &str = "block drop in log quick proto tcp from <f2b-sshd> to any port 22\n";

#[test]
fn loading_an_anchor_replaces_its_rules() {
    for os in BOTH {
        let s = sim(os);
        check(
            &s.run_stdin(&["-a", "f2b/sshd", "-f", "-"], F2B_TABLE),
            0,
            "",
            "",
        );
        s.run(&["-a", "f2b/sshd", "-t", "f2b-sshd", "-T", "add", "1.2.3.4"]);
        // The fail2ban sequence: the rule alone in a second load; the persistent table
        // and its entries survive, and reloading the bare definition keeps them too.
        check(
            &s.run_stdin(
                &["-a", "f2b/sshd", "-f", "-"],
                &format!("  {}", F2B_RULE.replace(' ', "   ")),
            ),
            0,
            "",
            "",
        );
        assert_eq!(s.rules("f2b/sshd"), vec![F2B_RULE.trim_end()]);
        assert_eq!(s.table("f2b/sshd", "f2b-sshd"), vec!["1.2.3.4"]);
        check(
            &s.run_stdin(
                &["-a", "f2b/sshd", "-f", "-"],
                &format!("{F2B_TABLE}{F2B_RULE}"),
            ),
            0,
            "",
            "",
        );
        assert_eq!(s.table("f2b/sshd", "f2b-sshd"), vec!["1.2.3.4"]);
        check(&s.run(&["-a", "f2b/sshd", "-s", "rules"]), 0, F2B_RULE, "");
        check(&s.run(&["-a", "f2b/sshd", "-sr"]), 0, F2B_RULE, "");
        // A definition with a list replaces the contents, keeping survivors' tzero.
        s.run(&["-a", "f2b/sshd", "-t", "f2b-sshd", "-T", "add", "5.6.7.8"]);
        s.seed_json(json!({"anchors": {"f2b/sshd": {"tables": {"f2b-sshd": {"entries": {"1.2.3.4/32": {"tzero": 7}}}}}}}));
        s.run_stdin(
            &["-a", "f2b/sshd", "-f", "-"],
            "table <f2b-sshd> persist counters { 1.2.3.4, 9.9.9.9 }\n",
        );
        assert_eq!(s.table("f2b/sshd", "f2b-sshd"), vec!["1.2.3.4", "9.9.9.9"]);
        assert_eq!(
            s.entries("f2b/sshd", "f2b-sshd")["1.2.3.4/32"]["tzero"],
            json!(7)
        );
        assert!(s.rules("f2b/sshd").is_empty());
        let _ = os;
    }
}

#[test]
fn syntax_errors_keep_the_old_rules() {
    for os in BOTH {
        let s = sim(os);
        s.run_stdin(&["-a", "a", "-f", "-"], "pass all\n");
        check(
            &s.run_stdin(
                &["-a", "a", "-f", "-"],
                "# comment\n\nblock all\nfrobnicate\nbogus line\n",
            ),
            1,
            "",
            "stdin:4: syntax error\nstdin:5: syntax error\npfctl: Syntax error in config file: pf rules not loaded\n",
        );
        assert_eq!(s.rules("a"), vec!["pass all"]);
        let file = s.dir().join("rules.conf");
        std::fs::write(&file, "pass all\ntable <x> { nope }\n").unwrap();
        let f = file.display().to_string();
        check(
            &s.run(&["-a", "a", "-f", &f]),
            1,
            "",
            &format!(
                "no IP address found for nope\n{f}:2: could not parse host specification\npfctl: Syntax error in config file: pf rules not loaded\n"
            ),
        );
        check(
            &s.run_stdin(
                &["-a", "a", "-f", "-"],
                &format!("table <{}> persist\n", "n".repeat(32)),
            ),
            1,
            "",
            "stdin:1: table name too long, max 31 chars\npfctl: Syntax error in config file: pf rules not loaded\n",
        );
        // -n parses only: errors without the final line, nothing loaded on success.
        check(
            &s.run_stdin(&["-n", "-a", "a", "-f", "-"], "oops\n"),
            1,
            "",
            "stdin:1: syntax error\n",
        );
        check(
            &s.run_stdin(&["-n", "-a", "a", "-f", "-"], "block all\n"),
            0,
            "",
            "",
        );
        assert_eq!(s.rules("a"), vec!["pass all"]);
        check(
            &s.run(&["-a", "a", "-f", "/nonexistent.conf"]),
            1,
            "",
            "pfctl: /nonexistent.conf: No such file or directory\npfctl: cannot open the main config file!: No such file or directory\npfctl: Syntax error in config file: pf rules not loaded\n",
        );
        let _ = os;
    }
}

#[test]
fn table_lifetimes_follow_rule_references() {
    for os in BOTH {
        let s = sim(os);
        // Unreferenced, non-persistent: gone at commit. Referenced but undefined:
        // attached inactive, invisible to table commands until -T add activates it.
        s.run_stdin(
            &["-a", "a", "-f", "-"],
            "table <tmp> { 1.1.1.1 }\nblock from <undef> to any\n",
        );
        assert!(!s.table_exists("a", "tmp"));
        assert!(s.table_json("a", "tmp").is_null());
        assert!(!s.table_exists("a", "undef"));
        let esrch = by_os(
            os,
            "pfctl: Table does not exist.\n",
            "pfctl: Table does not exist\n",
        );
        check(
            &s.run(&["-a", "a", "-t", "undef", "-T", "show"]),
            255,
            "",
            esrch,
        );
        check(&s.run(&["-a", "a", "-sT"]), 0, "", "");
        check(
            &s.run(&["-a", "a", "-t", "undef", "-T", "add", "2.2.2.2"]),
            0,
            "",
            "1 table created.\n1/1 addresses added.\n",
        );
        check(
            &s.run(&["-a", "a", "-v", "-sT"]),
            0,
            by_os(os, "-pa-r--\tundef\ta\n", "-pa-r--\tundef@a\n"),
            "",
        );
        // Killing a referenced table leaves it attached but empty and inactive.
        check(
            &s.run(&["-a", "a", "-t", "undef", "-T", "kill"]),
            0,
            "",
            "1 table deleted.\n",
        );
        assert!(!s.table_exists("a", "undef"));
        assert_eq!(s.table_json("a", "undef")["active"], json!(false));
        check(
            &s.run(&["-a", "a", "-F", "rules"]),
            0,
            "",
            "rules cleared\n",
        );
        assert!(s.anchors().is_empty());
    }
}

#[test]
fn flushing_tables_and_everything() {
    for os in BOTH {
        let s = sim(os);
        s.run_stdin(
            &["-a", "f2b/sshd", "-f", "-"],
            &format!("{F2B_TABLE}{F2B_RULE}"),
        );
        s.run(&["-a", "f2b/sshd", "-t", "extra", "-T", "add", "1.1.1.1"]);
        check(
            &s.run(&["-a", "f2b/sshd", "-F", "Tables"]),
            0,
            "",
            "2 tables deleted.\n",
        );
        check(
            &s.run(&["-a", "nope", "-F", "Tables"]),
            1,
            "",
            by_os(
                os,
                "pfctl: Anchor or Ruleset does not exist.\n",
                "pfctl: Anchor does not exist\n",
            ),
        );
        s.run(&["-a", "f2b/sshd", "-t", "extra", "-T", "add", "1.1.1.1"]);
        let expected = match os {
            Os::FreeBsd => {
                "Ethernet rules cleared\nrules cleared\nnat cleared\n1 tables deleted.\nrules cleared\n"
            }
            // The referenced table went inactive with -F Tables; only "extra" is active.
            Os::OpenBsd => "1 tables deleted.\nrules cleared\n",
        };
        check(&s.run(&["-a", "f2b/sshd", "-F", "all"]), 0, "", expected);
        assert!(s.anchors().is_empty());
        check_usage(
            &s.run(&["-i", "em0", "-F", "all"]),
            os,
            "pfctl: don't specify an interface with -Fall\n",
        );
    }
}

#[test]
fn recursive_flush_lists_what_it_removes() {
    for os in BOTH {
        let s = sim(os);
        s.run_stdin(&["-f", "-"], "anchor \"f2b/*\"\npass all\n");
        for jail in ["sshd", "nginx"] {
            s.run_stdin(
                &["-a", &format!("f2b/{jail}"), "-f", "-"],
                &format!("table <f2b-{jail}> persist\nblock from <f2b-{jail}> to any\n"),
            );
            s.run(&[
                "-a",
                &format!("f2b/{jail}"),
                "-t",
                &format!("f2b-{jail}"),
                "-T",
                "add",
                "1.1.1.1",
            ]);
        }
        check(
            &s.run(&["-a", "f2b/*", "-F", "Tables"]),
            0,
            "Removing:\n  f2b/sshd\n  f2b/nginx\n  f2b\n",
            "",
        );
        assert!(s.table("f2b/sshd", "f2b-sshd").is_empty());
        assert_eq!(s.rules("f2b/sshd"), vec!["block from <f2b-sshd> to any"]);
        check(
            &s.run(&["-q", "-a", "f2b/*", "-F", "all"]),
            0,
            "Removing:\n  f2b/sshd\n  f2b/nginx\n  f2b\n",
            "",
        );
        assert_eq!(s.anchors(), vec![String::new()]);
        assert_eq!(s.rules(""), vec!["anchor \"f2b/*\"", "pass all"]);
        // The wildcard call keeps "f2b" in existence even when it is empty.
        check(&s.run(&["-s", "Anchors"]), 0, "  f2b\n", "");
        let missing = match os {
            Os::FreeBsd => {
                "Anchor 'nope' not found.\npfctl: pfctl_get_anchors failed to retrieve list of anchors, can't continue\n"
            }
            Os::OpenBsd => "pfctl: Anchor does not exist\n",
        };
        check(&s.run(&["-a", "nope/*", "-F", "rules"]), 1, "", missing);
    }
}

#[test]
fn show_rules_and_anchors() {
    for os in BOTH {
        let s = sim(os);
        s.run_stdin(&["-f", "-"], "pass all\nanchor \"f2b/*\"\n");
        s.run_stdin(&["-a", "f2b/sshd", "-f", "-"], F2B_RULE);
        s.run_stdin(
            &["-a", "f2b/nginx", "-f", "-"],
            "block drop in quick from <f2b-nginx> to any port { 80 443 }\n",
        );
        s.run(&["-a", "_hidden", "-t", "t", "-T", "add", "1.1.1.1"]);
        check(
            &s.run(&["-s", "Anchors"]),
            0,
            "  f2b\n  f2b/nginx\n  f2b/sshd\n",
            "",
        );
        check(
            &s.run(&["-v", "-s", "Anchors"]),
            0,
            "  _hidden\n  f2b\n  f2b/nginx\n  f2b/sshd\n",
            "",
        );
        check(
            &s.run(&["-a", "f2b", "-s", "Anchors"]),
            0,
            "  f2b/nginx\n  f2b/sshd\n",
            "",
        );
        match os {
            Os::FreeBsd => check(
                &s.run(&["-a", "nope", "-s", "Anchors"]),
                0,
                "",
                "Anchor 'nope' not found.\n",
            ),
            Os::OpenBsd => check(
                &s.run(&["-a", "nope", "-s", "Anchors"]),
                1,
                "",
                "pfctl: Anchor does not exist\n",
            ),
        }
        check(
            &s.run(&["-s", "rules"]),
            0,
            "pass all\nanchor \"f2b/*\"\n",
            "",
        );
        check(
            &s.run(&["-a", "nope", "-s", "rules"]),
            0,
            "",
            "pfctl: Anchor does not exist\n",
        );
        let tree = "pass all\nanchor \"f2b/*\" {\n  anchor \"nginx\" all {\n    block drop in quick from <f2b-nginx> to any port { 80 443 }\n  }\n  anchor \"sshd\" all {\n    block drop in log quick proto tcp from <f2b-sshd> to any port 22\n  }\n}\n";
        check(&s.run(&["-a", "*", "-s", "rules"]), 0, tree, "");
        let verbose = match os {
            Os::FreeBsd => {
                "@0 block drop in log quick proto tcp from <f2b-sshd> to any port 22\n  [ Evaluations: 0         Packets: 0         Bytes: 0           States: 0     ]\n  [ Source Nodes: 0      Limit: 0      NAT/RDR: 0      Route: 0      ]\n  [ Inserted: uid 0 pid 0 State Creations: 0     ]\n  [ Last Active Time: N/A ]\n"
            }
            Os::OpenBsd => {
                "@0 block drop in log quick proto tcp from <f2b-sshd> to any port 22\n  [ Evaluations: 0         Packets: 0         Bytes: 0           States: 0     ]\n  [ Inserted: uid 0 pid 0 State Creations: 0     ]\n"
            }
        };
        check(
            &s.run(&["-a", "f2b/sshd", "-vv", "-s", "rules"]),
            0,
            verbose,
            "",
        );
    }
}

#[test]
fn set_limit_in_the_main_ruleset() {
    for os in BOTH {
        let s = sim(os);
        let memory = match os {
            Os::FreeBsd => {
                "states        hard limit   100000\nsrc-nodes     hard limit   100000\nfrags         hard limit     5000\ntable-entries hard limit   200000\n"
            }
            Os::OpenBsd => {
                "states        hard limit   100000\nsrc-nodes     hard limit    10000\nfrags         hard limit    65536\ntables        hard limit     1000\ntable-entries hard limit   200000\npktdelay-pkts hard limit    10000\nanchors       hard limit      512\n"
            }
        };
        check(&s.run(&["-s", "memory"]), 0, memory, "");
        s.run_stdin(
            &["-f", "-"],
            "set limit { states 50000, table-entries 2 }\npass all\n",
        );
        check(
            &s.run(&["-sm"]),
            0,
            &memory
                .replace("   100000\nsrc", "    50000\nsrc")
                .replace("   200000", "        2"),
            "",
        );
        assert_eq!(s.rules(""), vec!["pass all"]);
        assert_eq!(
            s.run(&["-t", "t", "-T", "add", "1.1.1.1", "2.2.2.2", "3.3.3.3"])
                .exit,
            255
        );
        check(
            &s.run_stdin(&["-f", "-"], "set limit bogus 5\n"),
            1,
            "",
            "pfctl: Bad pool name.\nstdin:1: unable to set limit bogus 5\npfctl: Syntax error in config file: pf rules not loaded\n",
        );
    }
}

#[test]
fn wildcard_anchor_listing_differs_per_os() {
    for os in BOTH {
        let s = sim(os);
        s.run_stdin(&["-a", "f2b/sshd", "-f", "-"], "block all\n");
        // FreeBSD shows the named anchor's own rules (none); OpenBSD walks its children.
        let expected = by_os(os, "", "anchor \"sshd\" all {\n  block all\n}\n");
        check(&s.run(&["-a", "f2b/*", "-s", "rules"]), 0, expected, "");
        // OpenBSD -R picks one rule.
        if os == Os::OpenBsd {
            s.run_stdin(&["-f", "-"], "pass all\nblock all\n");
            check(&s.run(&["-R", "1", "-sr"]), 0, "block all\n", "");
            check(
                &s.run(&["-R", "5", "-sr"]),
                0,
                "",
                "pfctl: rule 5 not found\n",
            );
        }
    }
}

#[test]
fn other_flush_modifiers_and_options() {
    for os in BOTH {
        let s = sim(os);
        check(&s.run(&["-F", "info"]), 0, "", "pf: statistics cleared\n");
        check(&s.run(&["-F", "osfp"]), 0, "", "");
        s.seed_json(json!({"limits": {"states": 5}}));
        check(
            &s.run(&["-F", "Reset"]),
            0,
            "",
            "pf: interface flags reset\n",
        );
        assert_eq!(s.state()["limits"], json!({}));
        check(
            &s.run(&["-p", "/dev/other", "-s", "rules"]),
            1,
            "",
            "pfctl: /dev/other: No such file or directory\n",
        );
        check(
            &s.run(&["-D", "nomacro", "-s", "rules"]),
            0,
            "",
            "pfctl: could not parse macro definition nomacro\n",
        );
        check(&s.run(&["-z"]), 0, "", "");
    }
    let f = sim(Os::FreeBsd);
    check(&f.run(&["-F", "nat"]), 0, "", "nat cleared\n");
    check(
        &f.run(&["-F", "ethernet"]),
        0,
        "",
        "Ethernet rules cleared\n",
    );
    check(
        &f.run(&["-x", "loud"]),
        0,
        "",
        "debug level set to 'loud'\n",
    );
    let o = sim(Os::OpenBsd);
    check(
        &o.run(&["-i", "em0", "-F", "info"]),
        0,
        "",
        "pf: statistics cleared for interface em0\n",
    );
    check(
        &o.run(&["-x", "debug"]),
        0,
        "",
        "debug level set to 'debug'\n",
    );
    check_usage(
        &o.run(&["-F", "nat"]),
        Os::OpenBsd,
        "pfctl: Unknown flush modifier 'nat'\n",
    );
}

#[test]
fn freebsd_table_load_defines_tables_only() {
    let s = sim(Os::FreeBsd);
    s.run_stdin(&["-f", "-"], "pass all\n");
    check(
        &s.run_stdin(
            &["-t", "ignored", "-T", "load", "-f", "-"],
            "table <a> persist { 1.1.1.1 }\nblock all\n",
        ),
        0,
        "",
        "",
    );
    assert_eq!(s.table("", "a"), vec!["1.1.1.1"]);
    assert_eq!(s.rules(""), vec!["pass all"]);
}

// ---------------------------------------------------------------------------------------
// States.

fn seed_example_states(s: &PfSim) {
    s.seed_json(json!({"states": [
        {"id": "66f2a1b300000005", "creatorid": "7a1c3e2f", "ifname": "all", "proto": "tcp", "af": 4, "dir": "in",
         "src": "198.51.100.7", "sport": 51234, "dst": "192.0.2.10", "dport": 22,
         "src_state": "ESTABLISHED", "dst_state": "ESTABLISHED",
         "src_seq": [2210977403u64, 65280], "src_wscale": 7, "dst_seq": [1384502553u64, 66048], "dst_wscale": 7,
         "label": "", "rule": 0, "anchor": 4, "age": 133, "expires": 86398, "pkts": [25, 31], "bytes": [3120, 5841]},
        {"id": "66f2a1b300000006", "creatorid": "7a1c3e2f", "proto": "udp", "dir": "in",
         "src": "198.51.100.7", "sport": 40001, "dst": "192.0.2.10", "dport": 53,
         "src_state": "SINGLE", "dst_state": "MULTIPLE",
         "rule": 6, "age": 3, "expires": 57, "pkts": [1, 1], "bytes": [72, 88]},
        {"id": "66f2a1b300000007", "creatorid": "7a1c3e2f", "proto": "tcp", "dir": "out",
         "src": "192.0.2.10", "sport": 41000, "dst": "198.51.100.7", "dport": 443, "rule": 2}
    ]}));
}

#[test]
fn state_listing_layouts() {
    for os in BOTH {
        let s = sim(os);
        seed_example_states(&s);
        let plain = "all tcp 192.0.2.10:22 <- 198.51.100.7:51234       ESTABLISHED:ESTABLISHED\nall udp 192.0.2.10:53 <- 198.51.100.7:40001       MULTIPLE:SINGLE\nall tcp 192.0.2.10:41000 -> 198.51.100.7:443       ESTABLISHED:ESTABLISHED\n";
        check(&s.run(&["-s", "states"]), 0, plain, "");
        check(&s.run(&["-ss"]), 0, plain, "");
        let vv = "all tcp 192.0.2.10:22 <- 198.51.100.7:51234       ESTABLISHED:ESTABLISHED
   [1384502553 + 66048] wscale 7  [2210977403 + 65280] wscale 7
   age 00:02:13, expires in 23:59:58, 25:31 pkts, 3120:5841 bytes, anchor 4, rule 0
   id: 66f2a1b300000005 creatorid: 7a1c3e2f
all udp 192.0.2.10:53 <- 198.51.100.7:40001       MULTIPLE:SINGLE
   age 00:00:03, expires in 00:00:57, 1:1 pkts, 72:88 bytes, rule 6
   id: 66f2a1b300000006 creatorid: 7a1c3e2f
all tcp 192.0.2.10:41000 -> 198.51.100.7:443       ESTABLISHED:ESTABLISHED
   [0 + 0]  [0 + 0]
   age 00:00:00, expires in 00:00:00, 0:0 pkts, 0:0 bytes, rule 2
   id: 66f2a1b300000007 creatorid: 7a1c3e2f
";
        check(&s.run(&["-vv", "-s", "states"]), 0, vv, "");
        let v: String = vv
            .lines()
            .filter(|l| !l.contains("id: "))
            .map(|l| format!("{l}\n"))
            .collect();
        check(&s.run(&["-v", "-s", "states"]), 0, &v, "");
        check(&s.run(&["-i", "em0", "-ss"]), 0, "", "");
    }
}

#[test]
fn ipv6_states_use_brackets_and_iface_filter() {
    for os in BOTH {
        let s = sim(os);
        s.seed_states(&[
            State::tcp_in(1, "2001:db8::7", 51234, "2001:db8::10", 22).ifname("em0"),
            State::tcp_in(2, "198.51.100.9", 1000, "192.0.2.10", 22),
        ]);
        check(
            &s.run(&["-i", "em0", "-s", "states"]),
            0,
            "em0 tcp 2001:db8::10[22] <- 2001:db8::7[51234]       ESTABLISHED:ESTABLISHED\n",
            "",
        );
    }
}

#[test]
fn network_kill_matches_the_initiator() {
    for os in BOTH {
        let s = sim(os);
        s.seed_states(&[
            State::tcp_in(1, "198.51.100.7", 51234, "192.0.2.10", 22),
            State::udp_in(2, "198.51.100.7", 40001, "192.0.2.10", 53),
            State::tcp_out(3, "192.0.2.10", 41000, "198.51.100.7", 443),
            State::tcp_in(4, "198.51.100.8", 5000, "192.0.2.10", 22),
        ]);
        check(
            &s.run(&["-k", "198.51.100.7"]),
            0,
            "",
            "killed 2 states from 1 sources and 0 destinations\n",
        );
        assert_eq!(
            s.state_ids(),
            vec![format!("{:016x}", 3), format!("{:016x}", 4)]
        );
        check(
            &s.run(&["-k", "198.51.100.0/24"]),
            0,
            "",
            "killed 1 states from 1 sources and 0 destinations\n",
        );
        check(
            &s.run(&["-k", "192.0.2.10"]),
            0,
            "",
            "killed 1 states from 1 sources and 0 destinations\n",
        );
        assert!(s.states().is_empty());
        check(
            &s.run(&["-k", "203.0.113.1"]),
            0,
            "",
            "killed 0 states from 1 sources and 0 destinations\n",
        );
        check(&s.run(&["-q", "-k", "203.0.113.1"]), 0, "", "");
        check(
            &s.run(&["-k", "1.2.3.4/33"]),
            1,
            "",
            "pfctl: prefix is too large: 33\n",
        );
        check(
            &s.run(&["-k", "1.2.3.4/x"]),
            1,
            "",
            "pfctl: prefix is invalid: x\n",
        );
        check(
            &s.run(&["-k", "attacker.example"]),
            1,
            "",
            by_os(
                os,
                "pfctl: getaddrinfo: Name does not resolve\n",
                "pfctl: getaddrinfo: no address associated with name\n",
            ),
        );
        check_usage(
            &s.run(&["-k", "a", "-k", "b", "-k", "c"]),
            os,
            "pfctl: can only specify -k twice\n",
        );
    }
}

#[test]
fn two_argument_kill_fixed_and_buggy() {
    for os in BOTH {
        let mut s = sim(os);
        let states = [
            State::tcp_in(1, "198.51.100.7", 51234, "192.0.2.10", 22),
            State::tcp_in(2, "198.51.100.7", 51235, "192.0.2.11", 22),
        ];
        s.seed_states(&states);
        check(
            &s.run(&["-k", "0.0.0.0/0", "-k", "192.0.2.10"]),
            0,
            "",
            "killed 1 states from 1 sources and 1 destinations\n",
        );
        assert_eq!(s.state_ids(), vec![format!("{:016x}", 2)]);
        // The bug copies the second address into the source field: nothing matches.
        s.set_kill_bug(true);
        check(
            &s.run(&["-k", "0.0.0.0/0", "-k", "192.0.2.11"]),
            0,
            "",
            "killed 0 states from 1 sources and 1 destinations\n",
        );
        assert_eq!(s.states().len(), 1);
        // ... and "-k B/0 -k A" then kills everything A initiated.
        check(
            &s.run(&["-k", "192.0.2.11", "-k", "198.51.100.7/0"]),
            0,
            "",
            "killed 1 states from 1 sources and 1 destinations\n",
        );
        // Mixed families pair nothing.
        check(
            &s.run(&["-k", "1.2.3.4", "-k", "2001:db8::1"]),
            0,
            "",
            "killed 0 states from 1 sources and 0 destinations\n",
        );
    }
}

#[test]
fn label_id_and_key_kills() {
    for os in BOTH {
        let s = sim(os);
        s.seed_states(&[
            State::tcp_in(0x66f2a1b300000005, "198.51.100.7", 51234, "192.0.2.10", 22).label("ssh"),
            State::tcp_in(0x66f2a1b300000006, "198.51.100.7", 51235, "192.0.2.10", 22),
            State::tcp_in(0x66f2a1b300000007, "2001:db8::7", 4000, "2001:db8::10", 22)
                .creator(0x11111111),
            State::tcp_in(0x66f2a1b300000008, "198.51.100.8", 4000, "192.0.2.10", 22),
        ]);
        check(
            &s.run(&["-k", "label", "-k", "ssh"]),
            0,
            "",
            "killed 1 states\n",
        );
        check(
            &s.run(&["-k", "id", "-k", "66f2a1b300000006/7a1c3e2f"]),
            0,
            "",
            "killed 1 states\n",
        );
        check(
            &s.run(&["-k", "id", "-k", "66f2a1b300000007/7a1c3e2f"]),
            0,
            "",
            "killed 0 states\n",
        );
        check(
            &s.run(&["-k", "id", "-k", "0x66f2a1b300000007"]),
            0,
            "",
            "killed 1 states\n",
        );
        check_usage(
            &s.run(&["-k", "id", "-k", "0"]),
            os,
            "pfctl: cannot kill id 0\n",
        );
        check_usage(
            &s.run(&["-k", "id", "-k", "zz"]),
            os,
            "pfctl: wrong id format specified\n",
        );
        check_usage(&s.run(&["-k", "id"]), os, "pfctl: no id specified\n");
        check_usage(
            &s.run(&["-k", "label", "-k", ""]),
            os,
            "pfctl: no label specified\n",
        );
        check(
            &s.run(&["-k", "key", "-k", "tcp 192.0.2.10:22 <- 198.51.100.9:4000"]),
            0,
            "",
            "killed 0 states\n",
        );
        check(
            &s.run(&["-k", "key", "-k", "tcp 192.0.2.10:22 <- 198.51.100.8:4000"]),
            0,
            "",
            "killed 1 states\n",
        );
        assert!(s.states().is_empty());
        let bad_format = "pfctl: pfctl_key_kill_states: key must be \"protocol host1:port1 direction host2:port2\" format\n";
        check(
            &s.run(&["-k", "key", "-k", "tcp 1.2.3.4:1 <-"]),
            1,
            "",
            bad_format,
        );
        check(
            &s.run(&["-k", "key", "-k", "tcpx 1.2.3.4:1 <- 1.2.3.5:2"]),
            1,
            "",
            "pfctl: invalid protocol: tcpx\n",
        );
        check(
            &s.run(&["-k", "key", "-k", "tcp 1.2.3.4:1 <> 1.2.3.5:2"]),
            1,
            "",
            "pfctl: invalid direction: <>\n",
        );
        check(
            &s.run(&["-k", "key", "-k", "tcp nohost:1 -> 1.2.3.5:2"]),
            1,
            "",
            "pfctl: invalid host: nohost:1\n",
        );
        // A host without port: port 0 on FreeBSD, an error on OpenBSD.
        let bare = s.run(&["-k", "key", "-k", "icmp 1.2.3.4 -> 1.2.3.5"]);
        match os {
            Os::FreeBsd => check(&bare, 0, "", "killed 0 states\n"),
            Os::OpenBsd => check(&bare, 1, "", "pfctl: invalid host: 1.2.3.4\n"),
        }
    }
}

#[test]
fn key_kill_takes_both_directions_and_ipv6() {
    for os in BOTH {
        let s = sim(os);
        s.seed_states(&[
            State::tcp_out(1, "192.0.2.10", 41000, "198.51.100.7", 443),
            State::tcp_in(2, "2001:db8::7", 4000, "2001:db8::10", 22),
        ]);
        check(
            &s.run(&[
                "-k",
                "key",
                "-k",
                "tcp 192.0.2.10:41000 -> 198.51.100.7:443",
            ]),
            0,
            "",
            "killed 1 states\n",
        );
        check(
            &s.run(&[
                "-k",
                "key",
                "-k",
                "tcp 2001:db8::10[22] <- 2001:db8::7[4000]",
            ]),
            0,
            "",
            "killed 1 states\n",
        );
        assert!(s.states().is_empty());
    }
}

#[test]
fn kills_respect_the_interface() {
    for os in BOTH {
        let s = sim(os);
        s.seed_states(&[
            State::tcp_in(1, "198.51.100.7", 1, "192.0.2.10", 22)
                .ifname("em0")
                .label("l"),
            State::tcp_in(2, "198.51.100.7", 2, "192.0.2.10", 22).label("l"),
        ]);
        check(
            &s.run(&["-i", "em1", "-k", "198.51.100.7"]),
            0,
            "",
            "killed 0 states from 1 sources and 0 destinations\n",
        );
        check(
            &s.run(&["-i", "em0", "-k", "label", "-k", "l"]),
            0,
            "",
            "killed 1 states\n",
        );
        check(
            &s.run(&["-i", "em0", "-F", "states"]),
            0,
            "",
            "0 states cleared\n",
        );
        check(&s.run(&["-F", "states"]), 0, "", "1 states cleared\n");
        check(
            &s.run(&["-i", "averyveryverylongname", "-k", "1.2.3.4"]),
            1,
            "",
            "pfctl: invalid interface: averyveryverylongname\n",
        );
    }
}

#[test]
fn freebsd_gateway_nat_and_match_kills() {
    let s = sim(Os::FreeBsd);
    s.seed_states(&[
        State::tcp_in(1, "198.51.100.7", 1, "192.0.2.10", 22).route_to("10.0.0.1"),
        State::tcp_in(2, "198.51.100.7", 2, "192.0.2.10", 22),
    ]);
    check(
        &s.run(&["-k", "gateway", "-k", "10.0.0.0/24"]),
        0,
        "",
        "killed 1 states\n",
    );
    check_usage(
        &s.run(&["-k", "gateway"]),
        Os::FreeBsd,
        "pfctl: no gateway specified\n",
    );
    // -M also kills the state of the same connection in the other direction.
    s.seed_states(&[State::tcp_out(3, "198.51.100.7", 2, "192.0.2.10", 22)]);
    check(
        &s.run(&["-M", "-k", "id", "-k", "2"]),
        0,
        "",
        "killed 2 states\n",
    );
    assert!(s.states().is_empty());
    // "nat" matches the translated (stack) side.
    s.seed_json(json!({"states": [{"id": "0000000000000009", "dir": "out", "src": "203.0.113.5", "sport": 6000,
        "dst": "198.51.100.7", "dport": 443, "stack_src": "10.0.0.5", "stack_sport": 5000}]}));
    check(
        &s.run(&["-ss"]),
        0,
        "all tcp 203.0.113.5:6000 (10.0.0.5:5000) -> 198.51.100.7:443       ESTABLISHED:ESTABLISHED\n",
        "",
    );
    check(
        &s.run(&["-k", "10.0.0.5"]),
        0,
        "",
        "killed 0 states from 1 sources and 0 destinations\n",
    );
    check(
        &s.run(&["-k", "nat", "-k", "10.0.0.5"]),
        0,
        "",
        "killed 1 states from 1 sources and 0 destinations\n",
    );
    // OpenBSD has no gateway form: "gateway" is a host name there.
    let o = sim(Os::OpenBsd);
    check(
        &o.run(&["-k", "gateway", "-k", "10.0.0.1"]),
        1,
        "",
        "pfctl: getaddrinfo: no address associated with name\n",
    );
}

#[test]
fn source_nodes_kill_and_listing() {
    for os in BOTH {
        let mut s = sim(os);
        s.seed_json(json!({"src_nodes": [
            {"addr": "198.51.100.7", "rule": 4, "states": 1, "conn": 1, "rate": [2500, 30], "age": 61, "pkts": [3, 4], "bytes": [100, 200]},
            {"addr": "198.51.100.8", "raddr": "10.0.0.1", "states": 0, "conn": 0, "expires": 30}
        ]}));
        check(
            &s.run(&["-v", "-s", "Sources"]),
            0,
            "198.51.100.7 -> 0.0.0.0 ( states 1, connections 1, rate 2.5/30s )\n   age 00:01:01, 7 pkts, 300 bytes, filter rule 4\n198.51.100.8 -> 10.0.0.1 ( states 0, connections 0, rate 0.0/0s )\n   age 00:00:00, expires in 00:00:30, 0 pkts, 0 bytes\n",
            "",
        );
        check(
            &s.run(&["-K", "198.51.100.7"]),
            0,
            "",
            "killed 1 src nodes from 1 sources and 0 destinations\n",
        );
        check(
            &s.run(&["-K", "198.51.100.8", "-K", "10.0.0.0/8"]),
            0,
            "",
            "killed 1 src nodes from 1 sources and 1 destinations\n",
        );
        assert!(s.src_nodes().is_empty());
        s.seed_json(json!({"src_nodes": [{"addr": "198.51.100.8", "raddr": "10.0.0.1"}]}));
        s.set_kill_bug(true);
        check(
            &s.run(&["-K", "198.51.100.8", "-K", "10.0.0.1"]),
            0,
            "",
            "killed 0 src nodes from 1 sources and 1 destinations\n",
        );
        check(
            &s.run(&["-F", "Sources"]),
            0,
            "",
            "source tracking entries cleared\n",
        );
        check_usage(
            &s.run(&["-K", "a", "-K", "b", "-K", "c"]),
            os,
            "pfctl: can only specify -K twice\n",
        );
    }
}

#[test]
fn execution_order_in_one_invocation() {
    for os in BOTH {
        let s = sim(os);
        s.seed_states(&[State::tcp_in(1, "198.51.100.7", 1, "192.0.2.10", 22)]);
        s.seed_json(json!({"src_nodes": [{"addr": "198.51.100.7"}]}));
        // Written in reverse; pfctl still kills, then touches the table.
        check(
            &s.run(&[
                "-a",
                "f2b/sshd",
                "-t",
                "f2b-sshd",
                "-K",
                "198.51.100.7",
                "-k",
                "198.51.100.7",
                "-T",
                "add",
                "198.51.100.7",
            ]),
            0,
            "",
            "killed 1 states from 1 sources and 0 destinations\nkilled 1 src nodes from 1 sources and 0 destinations\n1 table created.\n1/1 addresses added.\n",
        );
        // -d runs first, -e last, -s before -F.
        s.run_stdin(&["-f", "-"], "pass all\n");
        check(
            &s.run(&["-e", "-F", "rules", "-s", "rules", "-d"]),
            0,
            "pass all\n",
            "pf disabled\nrules cleared\npf enabled\n",
        );
    }
}

// ---------------------------------------------------------------------------------------
// Enable, disable, status.

#[test]
fn enable_disable_and_running() {
    for os in BOTH {
        let s = sim(os);
        check(&s.run(&["-e"]), 1, "", "pfctl: pf already enabled\n");
        check(&s.run(&["-d"]), 0, "", "pf disabled\n");
        check(&s.run(&["-d"]), 1, "", "pfctl: pf not enabled\n");
        assert!(!s.enabled());
        match os {
            Os::FreeBsd => {
                check(&s.run(&["-s", "Running"]), 1, "Disabled\n", "");
                check(&s.run(&["-e"]), 0, "", "pf enabled\n");
                check(&s.run(&["-sR"]), 0, "Enabled\n", "");
            }
            Os::OpenBsd => {
                check_usage(
                    &s.run(&["-s", "Running"]),
                    Os::OpenBsd,
                    "pfctl: Unknown show modifier 'Running'\n",
                );
                check(&s.run(&["-e"]), 0, "", "pf enabled\n");
            }
        }
    }
}

#[test]
fn unsupported_features_fail_loudly() {
    let s = sim(Os::FreeBsd);
    check(
        &s.run(&["-s", "info"]),
        70,
        "",
        "pfctl-sim: -s info is not simulated\n",
    );
    check(
        &s.run(&["-R", "-f", "/dev/null"]),
        70,
        "",
        "pfctl-sim: partial loading with -A, -N, -O or -R is not simulated\n",
    );
}

// ---------------------------------------------------------------------------------------
// The simulator's own machinery.

#[test]
fn parallel_adds_lose_nothing() {
    let s = Arc::new(sim(Os::FreeBsd));
    let handles: Vec<_> = (1..=20)
        .map(|i| {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                let ip = format!("10.0.0.{i}");
                s.run(&["-a", "f2b/sshd", "-t", "f2b-sshd", "-T", "add", &ip])
            })
        })
        .collect();
    let outs: Vec<Output> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(outs.iter().all(|o| o.exit == 0), "{outs:?}");
    // Exactly one invocation created the table.
    assert_eq!(
        outs.iter()
            .filter(|o| o.stderr.starts_with("1 table created."))
            .count(),
        1
    );
    assert_eq!(s.table("f2b/sshd", "f2b-sshd").len(), 20);
    assert_eq!(s.calls().len(), 20);
}

#[test]
fn failure_injection_rules() {
    let mut s = sim(Os::FreeBsd);
    s.fail("{times=2}-T add=>255:pfctl: Table does not exist.");
    s.fail("-T show=>1");
    for _ in 0..2 {
        check(
            &s.run(&["-t", "t", "-T", "add", "1.1.1.1"]),
            255,
            "",
            "pfctl: Table does not exist.\n",
        );
    }
    assert!(
        !s.table_exists("", "t"),
        "an injected failure changes nothing"
    );
    check(
        &s.run(&["-t", "t", "-T", "add", "1.1.1.1"]),
        0,
        "",
        "1 table created.\n1/1 addresses added.\n",
    );
    check(&s.run(&["-t", "t", "-T", "show"]), 1, "", "");
    check(
        &s.run(&["-t", "t", "-T", "test", "1.1.1.1"]),
        0,
        "",
        "1/1 addresses match.\n",
    );
    // "after": the command takes effect, then the failure is reported.
    s.clear_fail();
    s.fail(r"{after}-T delete .*2\.2\.2\.2=>255:partial\nfailure");
    check(
        &s.run(&["-t", "t", "-T", "delete", "1.1.1.1", "2.2.2.2"]),
        255,
        "",
        "1/2 addresses deleted.\npartial\nfailure\n",
    );
    assert!(s.table("", "t").is_empty());
    let calls = s.calls();
    assert_eq!(calls.last().unwrap().exit, 255);
    assert_eq!(calls[0].stderr, "pfctl: Table does not exist.\n");
    // A broken rule is the test's mistake, reported as such.
    s.clear_fail();
    s.fail("no arrow here");
    let out = s.run(&["-s", "rules"]);
    assert_eq!(out.exit, 70);
    assert!(out.stderr.contains("missing '=>'"), "{}", out.stderr);
}

#[test]
fn delays_slow_the_answer_down() {
    let mut s = sim(Os::OpenBsd);
    s.set_delay_ms(Some(300));
    let t = Instant::now();
    check(
        &s.run(&["-t", "t", "-T", "add", "1.1.1.1"]),
        0,
        "",
        "1 table created.\n1/1 addresses added.\n",
    );
    assert!(t.elapsed() >= Duration::from_millis(300));
    s.set_delay_ms(None);
    s.fail("{delay=300}-T show=>0");
    let t = Instant::now();
    check(&s.run(&["-t", "t", "-T", "show"]), 0, "", "");
    assert!(t.elapsed() >= Duration::from_millis(300));
}

#[test]
fn call_log_records_each_invocation() {
    let s = sim(Os::OpenBsd);
    s.run_stdin(&["-a", "a", "-f", "-"], "pass all\n");
    s.run(&["-a", "a", "-sr"]);
    s.run(&["-t", "t", "-T", "show"]);
    let calls = s.calls();
    assert_eq!(
        s.argvs(),
        vec![
            vec!["-a", "a", "-f", "-"],
            vec!["-a", "a", "-sr"],
            vec!["-t", "t", "-T", "show"],
        ]
    );
    assert_eq!(calls[0].stdin.as_deref(), Some("pass all\n"));
    assert_eq!((calls[1].stdout.as_str(), calls[1].exit), ("pass all\n", 0));
    assert_eq!(
        (calls[2].stderr.as_str(), calls[2].exit),
        ("pfctl: Table does not exist\n", 255)
    );
    s.clear_calls();
    assert!(s.calls().is_empty());
}

#[test]
fn state_file_round_trip_and_validation() {
    let s = sim(Os::FreeBsd);
    s.seed_json(json!({
        "enabled": false,
        "limits": {"table-entries": 10},
        "anchors": {
            "f2b/sshd": {"rules": ["block from <f2b-sshd> to any"], "tables": {"f2b-sshd": {"persist": true, "entries": {
                "1.2.3.4": {"tzero": 5}, "2001:DB8::1": {"tzero": 6, "not": true}, "10.0.0.0/8": {}}}}},
            "empty": {}
        },
        "states": [{"id": "66F2A1B300000005", "src": "198.51.100.7", "sport": 1, "dst": "192.0.2.10", "dport": 22}],
        "src_nodes": [{"addr": "198.51.100.7"}]
    }));
    let st = s.state();
    assert_eq!(st["enabled"], json!(false));
    assert_eq!(
        st["anchors"]["f2b/sshd"]["tables"]["f2b-sshd"]["entries"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        vec!["1.2.3.4/32", "10.0.0.0/8", "2001:db8::1/128"]
    );
    assert!(
        st["anchors"].get("empty").is_none(),
        "empty anchors are dropped"
    );
    // A pure read leaves the state as it was.
    s.run(&["-a", "f2b/sshd", "-t", "f2b-sshd", "-T", "show"]);
    assert_eq!(s.state(), st);
    // Merging keeps what the patch does not mention.
    s.seed_json(json!({"anchors": {"other": {"rules": ["pass all"]}}}));
    assert_eq!(s.rules("f2b/sshd"), vec!["block from <f2b-sshd> to any"]);
    assert_eq!(s.rules("other"), vec!["pass all"]);
    // Bad input names the field.
    let out = std::process::Command::new(PfSim::sim_binary())
        .args(["--sim-seed", "-"])
        .envs(s.env())
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(
                br#"{"anchors": {"a": {"tables": {"t": {"entries": {"10.1.2.3/8": {}}}}}}}"#,
            )?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(out.status.code(), Some(70));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "pfctl-sim: -: anchors.\"a\".tables.\"t\".entries: host bits set beyond the prefix in '10.1.2.3/8'\n"
    );
}

#[test]
fn wrapper_carries_the_environment_to_children() {
    let s = sim(Os::OpenBsd);
    // A child with an empty environment still reaches the same simulated kernel.
    let out = std::process::Command::new(s.pfctl_path())
        .args(["-t", "t", "-T", "add", "1.1.1.1"])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "1 table created.\n1/1 addresses added.\n"
    );
    assert_eq!(s.table("", "t"), vec!["1.1.1.1"]);
    assert_eq!(s.table_json("", "t")["tzero"], json!(NOW));
    let names: Vec<String> = s.env().into_iter().map(|(k, _)| k).collect();
    assert!(
        names.contains(&"PFCTL_SIM_STATE".to_string())
            && names.contains(&"PFCTL_SIM_OS".to_string())
    );
}
