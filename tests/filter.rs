//! The filter pipeline's features, one scenario each: prefregex and `<F-CONTENT>`,
//! ignoreregexes, check-all, multi-line buffers and `<SKIPLINES>`, `F-MLFID` sessions
//! (pending, forget, gained, nofail, several users), alternative and tuple groups, `usedns`,
//! failure ids, errors and the backtrack limit. The same scenarios also run through
//! fail2ban itself in `filter_compat` (those that do not depend on the clock).

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use warden::filter::{
    Engine, Failure, Filter, FilterError, FilterSpec, FilterState, LineResult, RegexKind,
    UseDnsMode,
};

pub struct Scenario {
    pub name: &'static str,
    pub spec: FilterSpec,
    pub check_all: bool,
    pub lines: Vec<&'static str>,
    pub check: fn(&[LineResult]),
}

fn spec(prefregex: Option<&str>, failregex: &[&str], ignoreregex: &[&str]) -> FilterSpec {
    FilterSpec {
        prefregex: prefregex.map(str::to_string),
        failregex: failregex.iter().map(|s| s.to_string()).collect(),
        ignoreregex: ignoreregex.iter().map(|s| s.to_string()).collect(),
        ..FilterSpec::default()
    }
}

fn failures(r: &LineResult) -> &[Failure] {
    match r {
        LineResult::Matched(f) => f,
        other => panic!("expected failures, got {other:?}"),
    }
}

fn one(r: &LineResult) -> &Failure {
    let f = failures(r);
    assert_eq!(f.len(), 1, "{f:?}");
    &f[0]
}

fn ignored(ignoreregex: Option<usize>, failregex: Option<usize>) -> LineResult {
    LineResult::Ignored {
        ignoreregex,
        failregex,
    }
}

const SESSION_PREF: &str = r"^<F-MLFID>srv\[\d+\]: </F-MLFID><F-CONTENT>.+</F-CONTENT>$";

fn session_spec() -> FilterSpec {
    spec(
        Some(SESSION_PREF),
        &[
            r"^Failed password for <F-USER>\S+</F-USER> from <HOST>$",
            r"^Invalid user <F-USER>\S+</F-USER>$",
            r"^<F-NOFAIL>Failed publickey</F-NOFAIL> for <F-USER>\S+</F-USER> from <HOST>$",
            r"^<F-MLFFORGET><F-MLFGAINED>Accepted password</F-MLFGAINED></F-MLFFORGET> for <F-USER>\S+</F-USER> from <HOST>$",
            r"^<F-NOFAIL><F-MLFFORGET>Disconnected</F-MLFFORGET></F-NOFAIL> from <HOST>$",
        ],
        &[],
    )
}

pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "prefregex content replaces the text failregexes see",
            spec: spec(
                Some(r"^host svc\[(?P<pid>\d+)\]: <F-CONTENT>.+</F-CONTENT>$"),
                &[
                    r"^auth failure from <HOST>$",
                    r"^bad user <F-USER>\S+</F-USER> from <HOST>",
                ],
                &[],
            ),
            check_all: false,
            lines: vec![
                "host svc[1]: auth failure from 192.0.2.1",
                "other daemon: auth failure from 192.0.2.1",
                "host svc[2]: bad user bob from 2001:DB8::1 port 22",
                "host svc[3]: hello",
            ],
            check: |r| {
                let f = one(&r[0]);
                assert_eq!((f.regex, f.id.as_str()), (0, "192.0.2.1"));
                assert_eq!(f.addr, Some("192.0.2.1".parse().unwrap()));
                // Prefregex groups merge into the failure; the content group does not.
                assert_eq!(f.fields.get("pid").map(String::as_str), Some("1"));
                assert!(!f.fields.contains_key("content"));
                assert_eq!(f.matches, vec!["host svc[1]: auth failure from 192.0.2.1"]);
                assert_eq!(r[1], LineResult::Missed);
                let f = one(&r[2]);
                assert_eq!((f.regex, f.id.as_str()), (1, "2001:db8::1"));
                assert_eq!(f.fields["user"], "bob");
                assert_eq!(r[3], LineResult::Missed);
            },
        },
        Scenario {
            name: "failregex groups named like the prefregex's win over them",
            spec: spec(
                Some(r"^host svc\[(?P<pid>\d+)\] (?P<user>\w+): <F-CONTENT>.+</F-CONTENT>$"),
                &[
                    r"^bad user <F-USER>\S+</F-USER> from <HOST>$",
                    r"^auth failure from <HOST>$",
                    r"^login <F-ALT_USER>\S+</F-ALT_USER> from <HOST>$",
                ],
                &[],
            ),
            check_all: false,
            lines: vec![
                "host svc[1] alice: bad user bob from 192.0.2.1",
                "host svc[2] alice: auth failure from 192.0.2.2",
                "host svc[3] alice: login carol from 192.0.2.3",
            ],
            check: |r| {
                let field = |i: usize, k: &str| one(&r[i]).fields.get(k).cloned();
                assert_eq!(one(&r[0]).regex, 0);
                assert_eq!(field(0, "user").as_deref(), Some("bob"));
                assert_eq!(field(0, "pid").as_deref(), Some("1"));
                // A failregex without the name keeps the prefregex's value.
                assert_eq!(one(&r[1]).regex, 1);
                assert_eq!(field(1, "user").as_deref(), Some("alice"));
                assert_eq!(field(1, "pid").as_deref(), Some("2"));
                // An alt group's target counts as the failregex's own.
                assert_eq!(one(&r[2]).regex, 2);
                assert_eq!(field(2, "user").as_deref(), Some("carol"));
                assert_eq!(field(2, "alt_user").as_deref(), Some("carol"));
            },
        },
        Scenario {
            name: "ignoreregex drops a match",
            spec: spec(
                None,
                &[r"login failed from <HOST>"],
                &[r"from 192\.0\.2\.9\b"],
            ),
            check_all: false,
            lines: vec!["login failed from 192.0.2.9", "login failed from 192.0.2.8"],
            check: |r| {
                assert_eq!(r[0], ignored(Some(0), Some(0)));
                assert_eq!(one(&r[1]).id, "192.0.2.8");
            },
        },
        Scenario {
            name: "few ignoreregexes are tried first, on the whole line",
            // One ignoreregex and four failregexes: fail2ban tries the ignoreregex before
            // the prefregex, so it sees the text the content replaces.
            spec: spec(
                Some(r"^(?:\S+) svc: <F-CONTENT>.+</F-CONTENT>$"),
                &[
                    r"^denied <HOST>$",
                    r"^rejected <HOST>$",
                    r"^refused <HOST>$",
                    r"^dropped <HOST>$",
                ],
                &[r"^trusted-host "],
            ),
            check_all: false,
            lines: vec![
                "trusted-host svc: denied 192.0.2.11",
                "other svc: denied 192.0.2.11",
            ],
            check: |r| {
                assert_eq!(r[0], ignored(Some(0), None));
                assert_eq!(one(&r[1]).id, "192.0.2.11");
            },
        },
        Scenario {
            name: "with more ignoreregexes they only see the matched content",
            spec: spec(
                Some(r"^(?:\S+) svc: <F-CONTENT>.+</F-CONTENT>$"),
                &[
                    r"^denied <HOST>$",
                    r"^rejected <HOST>$",
                    r"^refused <HOST>$",
                ],
                &[r"^trusted-host "],
            ),
            check_all: false,
            lines: vec!["trusted-host svc: denied 192.0.2.11"],
            check: |r| assert_eq!(one(&r[0]).id, "192.0.2.11"),
        },
        Scenario {
            name: "first match wins, check-all reports every regex",
            spec: spec(
                None,
                &[r"from <HOST>", r"^fail .* from <ADDR>$", r"nomatch <HOST>"],
                &[],
            ),
            check_all: true,
            lines: vec!["fail x from 192.0.2.12", "y from 192.0.2.13"],
            check: |r| {
                let f = failures(&r[0]);
                assert_eq!(f.iter().map(|f| f.regex).collect::<Vec<_>>(), vec![0, 1]);
                assert_eq!(one(&r[1]).regex, 0);
            },
        },
        Scenario {
            name: "first match only, without check-all",
            spec: spec(None, &[r"from <HOST>", r"^fail .* from <ADDR>$"], &[]),
            check_all: false,
            lines: vec!["fail x from 192.0.2.12"],
            check: |r| assert_eq!(one(&r[0]).regex, 0),
        },
        Scenario {
            name: "maxlines buffers lines and joins them with newlines",
            spec: FilterSpec {
                maxlines: 3,
                ..spec(
                    None,
                    &[r"^conn (?P<conn>\d+) start\n(?:.*\n)?conn (?P=conn) fail from <HOST>$"],
                    &[],
                )
            },
            check_all: false,
            lines: vec![
                "conn 1 start",
                "noise",
                "conn 1 fail from 192.0.2.14",
                "conn 2 fail from 192.0.2.15",
            ],
            check: |r| {
                assert_eq!(r[0], LineResult::Missed);
                assert_eq!(r[1], LineResult::Missed);
                let f = one(&r[2]);
                assert_eq!(f.id, "192.0.2.14");
                assert_eq!(f.fields["conn"], "1");
                assert_eq!(
                    f.matches,
                    vec!["conn 1 start", "noise", "conn 1 fail from 192.0.2.14"]
                );
                // The matched lines left the buffer, so "conn 1 start" cannot match again.
                assert_eq!(r[3], LineResult::Missed);
            },
        },
        Scenario {
            name: "skiplines leave the skipped lines in the buffer",
            spec: FilterSpec {
                maxlines: 5,
                ..spec(
                    None,
                    &[r"^conn start<SKIPLINES>conn fail from <HOST>$"],
                    &[],
                )
            },
            check_all: false,
            lines: vec![
                "conn start",
                "noise a",
                "noise b",
                "conn fail from 192.0.2.16",
                "conn fail from 192.0.2.17",
            ],
            check: |r| {
                let f = one(&r[3]);
                assert_eq!(f.id, "192.0.2.16");
                assert_eq!(f.matches, vec!["conn start", "conn fail from 192.0.2.16"]);
                assert_eq!(f.fields["skiplines0"], "noise a\nnoise b\n");
                assert_eq!(r[4], LineResult::Missed);
            },
        },
        Scenario {
            name: "a pending session failure completes when the address arrives",
            spec: session_spec(),
            check_all: false,
            lines: vec![
                "srv[1]: Invalid user bob",
                "srv[1]: Disconnected from 192.0.2.7",
            ],
            check: |r| {
                assert_eq!(r[0], ignored(None, Some(1)));
                let f = one(&r[1]);
                assert_eq!((f.regex, f.id.as_str()), (4, "192.0.2.7"));
                assert_eq!(f.users.iter().collect::<Vec<_>>(), vec!["bob"]);
                assert_eq!(
                    f.matches,
                    vec![
                        "srv[1]: Invalid user bob",
                        "srv[1]: Disconnected from 192.0.2.7"
                    ]
                );
                assert!(!f.nofail);
            },
        },
        Scenario {
            name: "check-all reports pending and nofail session results",
            spec: session_spec(),
            check_all: true,
            lines: vec![
                "srv[1]: Invalid user bob",
                "srv[2]: Failed publickey for carol from 192.0.2.9",
            ],
            check: |r| {
                let f = one(&r[0]);
                assert!(f.pending && f.id.is_empty());
                let f = one(&r[1]);
                assert!(f.nofail && !f.pending);
                assert_eq!(f.id, "192.0.2.9");
            },
        },
        Scenario {
            name: "a successful login forgets the session",
            spec: session_spec(),
            check_all: false,
            lines: vec![
                "srv[2]: Failed password for alice from 192.0.2.8",
                "srv[2]: Accepted password for alice from 192.0.2.8",
                "srv[2]: Failed password for alice from 192.0.2.8",
            ],
            check: |r| {
                assert_eq!(one(&r[0]).matches.len(), 1);
                assert_eq!(r[1], ignored(None, Some(3)));
                // A new session: only the new line.
                assert_eq!(one(&r[2]).matches.len(), 1);
            },
        },
        Scenario {
            name: "a nofail attempt counts once a real failure follows",
            spec: session_spec(),
            check_all: false,
            lines: vec![
                "srv[3]: Failed publickey for carol from 192.0.2.9",
                "srv[3]: Failed password for carol from 192.0.2.9",
            ],
            check: |r| {
                assert_eq!(r[0], ignored(None, Some(2)));
                let f = one(&r[1]);
                assert_eq!(f.regex, 0);
                assert_eq!(
                    f.matches,
                    vec![
                        "srv[3]: Failed publickey for carol from 192.0.2.9",
                        "srv[3]: Failed password for carol from 192.0.2.9"
                    ]
                );
            },
        },
        Scenario {
            name: "nofail attempts for several users are failures",
            spec: session_spec(),
            check_all: false,
            lines: vec![
                "srv[4]: Failed publickey for dave from 192.0.2.10",
                "srv[4]: Failed publickey for erin from 192.0.2.10",
            ],
            check: |r| {
                assert_eq!(r[0], ignored(None, Some(2)));
                let f = one(&r[1]);
                assert_eq!(f.users.len(), 2);
                assert!(!f.nofail);
                assert_eq!(f.matches.len(), 2);
            },
        },
        Scenario {
            name: "alternative groups fill empty ones",
            spec: spec(
                None,
                &[r"^user=<F-USER>\S*</F-USER> ruser=<F-ALT_USER>\S*</F-ALT_USER> from <HOST>$"],
                &[],
            ),
            check_all: false,
            lines: vec![
                "user= ruser=mallory from 192.0.2.18",
                "user=trent ruser=mallory from 192.0.2.18",
            ],
            check: |r| {
                let f = one(&r[0]);
                assert_eq!(f.fields["user"], "mallory");
                assert_eq!(f.fields["alt_user"], "mallory");
                assert_eq!(one(&r[1]).fields["user"], "trent");
            },
        },
        Scenario {
            name: "tuple groups combine into the id",
            spec: spec(
                None,
                &[r"^<F-ID>\S+</F-ID> port <F-TUPLE_ID>\d+</F-TUPLE_ID>$"],
                &[],
            ),
            check_all: false,
            lines: vec!["client's port 22"],
            check: |r| {
                let f = one(&r[0]);
                assert_eq!(f.id, r#"("client's", '22')"#);
                assert_eq!(f.addr, None);
            },
        },
        Scenario {
            name: "host names wait for the jail to resolve them",
            spec: spec(None, &[r"from <HOST>$"], &[]),
            check_all: false,
            lines: vec![
                "from host.example.com",
                "from ::ffff:192.0.2.30",
                "from [2001:db8::2]",
            ],
            check: |r| {
                let f = one(&r[0]);
                assert!(f.needs_dns);
                assert_eq!((f.id.as_str(), f.addr), ("host.example.com", None));
                // IPv4-mapped addresses are reported as IPv4.
                assert_eq!(one(&r[1]).id, "192.0.2.30");
                assert_eq!(one(&r[2]).id, "2001:db8::2");
            },
        },
        Scenario {
            name: "usedns = no leaves host names out of <HOST>",
            spec: FilterSpec {
                usedns: UseDnsMode::No,
                ..spec(None, &[r"from <HOST>$", r"^name <DNS>$"], &[])
            },
            check_all: false,
            lines: vec![
                "from host.example.com",
                "from 192.0.2.31",
                "name host.example.com",
            ],
            check: |r| {
                assert_eq!(r[0], LineResult::Missed);
                assert_eq!(one(&r[1]).id, "192.0.2.31");
                // An explicit <DNS> still matches but yields no failure without resolving.
                assert_eq!(r[2], LineResult::Missed);
            },
        },
        Scenario {
            name: "usedns = raw keeps ids as written",
            spec: FilterSpec {
                usedns: UseDnsMode::Raw,
                ..spec(None, &[r"from <HOST>$", r"^user <F-ID>\S+</F-ID>$"], &[])
            },
            check_all: false,
            lines: vec!["from host.example.com", "user [2001:db8::3]"],
            check: |r| {
                let f = one(&r[0]);
                assert_eq!((f.id.as_str(), f.needs_dns), ("host.example.com", false));
                assert_eq!(one(&r[1]).id, "[2001:db8::3]");
            },
        },
        Scenario {
            name: "failure ids and subnets",
            spec: spec(
                None,
                &[
                    r"^user <F-ID>\S+</F-ID>$",
                    r"^net <SUBNET>$",
                    r"^both <F-ID>\S+</F-ID> <HOST>$",
                ],
                &[],
            ),
            check_all: false,
            lines: vec![
                "user [2001:db8::4]",
                "user someone@example",
                "net 192.0.2.77/24",
                "both alice 192.0.2.40",
                "user 192.030.0.6",
            ],
            check: |r| {
                let f = one(&r[0]);
                assert_eq!(
                    (f.id.as_str(), f.addr),
                    ("2001:db8::4", Some("2001:db8::4".parse().unwrap()))
                );
                let f = one(&r[1]);
                assert_eq!((f.id.as_str(), f.addr), ("someone@example", None));
                let f = one(&r[2]);
                assert_eq!((f.id.as_str(), f.prefix), ("192.0.2.0/24", Some(24)));
                // An id other than the address keeps the address aside.
                let f = one(&r[3]);
                assert_eq!(f.id, "alice");
                assert_eq!(f.fields["ip"], "192.0.2.40");
                // Not an address for inet_pton: kept as text.
                assert_eq!(one(&r[4]).addr, None);
            },
        },
        Scenario {
            name: "python dialect: possessive, \\Z, inline flags, backreferences",
            spec: spec(
                None,
                &[
                    r"(?i)^LOGIN FAILED for <HOST>\Z",
                    r"^x(a++)a from <HOST>",
                    r"^tag (?P<t>\w+) .* (?P=t) from <HOST>$",
                ],
                &[],
            ),
            check_all: true,
            lines: vec![
                "login failed for 192.0.2.50",
                "xaaa from 192.0.2.51",
                "tag abc then abc from 192.0.2.52",
                "tag abc then abd from 192.0.2.52",
            ],
            check: |r| {
                // `\Z` is the absolute end: the text always ends with "\n", so it never matches.
                assert_eq!(r[0], LineResult::Missed);
                // `a++` gives nothing back, so the final `a` cannot match.
                assert_eq!(r[1], LineResult::Missed);
                assert_eq!(one(&r[2]).regex, 2);
                assert_eq!(r[3], LineResult::Missed);
            },
        },
    ]
}

fn run(sc: &Scenario, time: Timestamp) -> Vec<LineResult> {
    let filter = Arc::new(Filter::compile(&sc.spec).unwrap_or_else(|e| panic!("{}: {e}", sc.name)));
    let mut state = FilterState::new(filter);
    sc.lines
        .iter()
        .map(|l| state.process(l, time, sc.check_all))
        .collect()
}

fn t0() -> Timestamp {
    "2024-03-01T12:00:00Z".parse().unwrap()
}

#[test]
fn pipeline_scenarios_behave_as_specified() {
    for sc in scenarios() {
        let results = run(&sc, t0());
        let outcome = std::panic::catch_unwind(|| (sc.check)(&results));
        assert!(
            outcome.is_ok(),
            "scenario {:?} failed; results: {results:#?}",
            sc.name
        );
    }
}

#[test]
fn failure_time_is_the_line_time() {
    let filter = Arc::new(Filter::compile(&spec(None, &["from <HOST>"], &[])).unwrap());
    let mut st = FilterState::new(filter);
    let t = t0();
    assert_eq!(one(&st.process("from 192.0.2.1", t, false)).time, t);
}

#[test]
fn sessions_expire_after_five_minutes_of_line_time() {
    let filter = Arc::new(Filter::compile(&session_spec()).unwrap());
    for (gap, merged) in [
        (SignedDuration::from_secs(299), true),
        (SignedDuration::from_secs(301), false),
    ] {
        let mut st = FilterState::new(filter.clone());
        assert_eq!(
            st.process("srv[1]: Invalid user bob", t0(), false),
            ignored(None, Some(1))
        );
        let r = st.process(
            "srv[1]: Failed password for bob from 192.0.2.7",
            t0() + gap,
            false,
        );
        assert_eq!(
            one(&r).matches.len(),
            if merged { 2 } else { 1 },
            "gap {gap}"
        );
    }
}

#[test]
fn session_cache_keeps_one_hundred_entries() {
    let filter = Arc::new(Filter::compile(&session_spec()).unwrap());
    let mut st = FilterState::new(filter);
    for i in 0..=100 {
        st.process(&format!("srv[{i}]: Invalid user u{i}"), t0(), false);
    }
    // Session 0 was evicted by the 101st, session 1 is still there.
    let r1 = st.process("srv[1]: Failed password for u1 from 192.0.2.7", t0(), false);
    assert_eq!(one(&r1).matches.len(), 2);
    let r0 = st.process("srv[0]: Failed password for u0 from 192.0.2.7", t0(), false);
    assert_eq!(one(&r0).matches.len(), 1);
}

#[test]
fn prefregex_state_is_reported() {
    let filter = Arc::new(
        Filter::compile(&spec(
            Some(r"^svc: <F-CONTENT>.+</F-CONTENT>$"),
            &["from <HOST>"],
            &[],
        ))
        .unwrap(),
    );
    let mut st = FilterState::new(filter);
    st.process("other: x", t0(), false);
    assert_eq!(st.prefregex_matched(), Some(false));
    st.process("svc: x", t0(), false);
    assert_eq!(st.prefregex_matched(), Some(true));
}

#[test]
fn compile_errors_name_the_regex_and_the_cause() {
    let e = Filter::compile(&spec(None, &["from <HOST>", "broken (<HOST>"], &[])).unwrap_err();
    match &e {
        FilterError::Regex {
            kind: RegexKind::Failregex,
            index: 1,
            message,
            ..
        } => assert!(
            message.contains("missing ), unterminated subpattern"),
            "{e}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().starts_with("failregex 1: "), "{e}");
    let e = Filter::compile(&spec(None, &["from <HOST>"], &[r"bad \p"])).unwrap_err();
    assert!(
        e.to_string().starts_with("ignoreregex 0: bad escape"),
        "{e}"
    );
    let e = Filter::compile(&spec(None, &["from <HOST>", "no id here"], &[])).unwrap_err();
    assert!(
        matches!(e, FilterError::NoFailureId { index: 1, .. }),
        "{e}"
    );
    // An id group in the prefregex is enough.
    assert!(Filter::compile(&spec(Some("^<F-MLFID>x</F-MLFID>"), &["no id here"], &[])).is_ok());
    let e = Filter::compile(&spec(None, &["  "], &[])).unwrap_err();
    assert!(matches!(e, FilterError::Empty { index: 0, .. }), "{e}");
    let e = Filter::compile(&FilterSpec {
        maxlines: 0,
        ..spec(None, &["<HOST>"], &[])
    })
    .unwrap_err();
    assert_eq!(e, FilterError::MaxLines);
}

#[test]
fn engines_are_reported_per_regex() {
    let filter = Filter::compile(&spec(
        Some(r"^svc: <F-CONTENT>.+</F-CONTENT>$"),
        &[r"^fail from <HOST>$", r"^user (?!root)\S+ from <HOST>$"],
        &[r"^ok"],
    ))
    .unwrap();
    let e = filter.engines();
    let summary: Vec<(RegexKind, usize, Engine)> =
        e.iter().map(|i| (i.kind, i.index, i.engine)).collect();
    assert_eq!(
        summary,
        vec![
            (RegexKind::Prefregex, 0, Engine::Fast),
            (RegexKind::Failregex, 0, Engine::Fast),
            (RegexKind::Failregex, 1, Engine::Fallback),
            (RegexKind::Ignoreregex, 0, Engine::Fast),
        ]
    );
    assert_eq!(e[2].reason, "lookahead");
    assert!(e[2].pattern.contains("(?!root)"), "{}", e[2].pattern);
    assert!(e[1].expanded.contains("(?P<ip4>"));
    assert!(filter.memory_usage() > 0);
}

#[test]
fn a_pathological_line_hits_the_backtrack_limit_and_counts_as_no_match() {
    // The screen (lookbehind dropped) lets the line through; the exact pattern then
    // backtracks exponentially until the limit stops it.
    let filter = Arc::new(
        Filter::compile(&FilterSpec {
            backtrack_limit: 10_000,
            ..spec(
                None,
                &[r"^(?:<HOST> )?(?P<a>a*)*(?P=a)$(?<=y)", r"^a+ <HOST>$"],
                &[],
            )
        })
        .unwrap(),
    );
    let mut st = FilterState::new(filter);
    let line = "a".repeat(1 << 20);
    assert_eq!(st.process(&line, t0(), false), LineResult::Missed);
    assert_eq!(st.backtrack_limit_hits(), 1);
    // The next regex still gets its chance.
    let r = st.process(&format!("{line} 192.0.2.60"), t0(), false);
    assert_eq!(one(&r).regex, 1);
}

#[test]
fn megabyte_lines_go_through_the_fast_engine() {
    let filter =
        Arc::new(Filter::compile(&spec(None, &[r"^\S+ from <HOST>$", r"x<HOST>y"], &[])).unwrap());
    let mut st = FilterState::new(filter);
    let line = format!("{} from 192.0.2.61", "b".repeat(1 << 20));
    assert_eq!(one(&st.process(&line, t0(), false)).id, "192.0.2.61");
    let line = format!("{} from nowhere", "b ".repeat(1 << 19));
    assert_eq!(st.process(&line, t0(), false), LineResult::Missed);
    assert_eq!(st.fallback_runs(), 0);
}

#[test]
fn byte_wide_classes_never_split_a_line_into_invalid_text() {
    // `.` matches one byte here (Python: one character), so the prefix ends inside "é".
    let filter = Arc::new(
        Filter::compile(&spec(
            Some(r"^x.<F-CONTENT>.+</F-CONTENT>$"),
            &[r"(?P<rest>.+) from <HOST>$"],
            &[],
        ))
        .unwrap(),
    );
    let mut st = FilterState::new(filter);
    let f = st.process("xé bad from 192.0.2.70", t0(), false);
    let f = one(&f);
    assert_eq!(f.id, "192.0.2.70");
    assert_eq!(f.fields["rest"], "\u{FFFD} bad");
}
