//! Property tests of date detection: no input makes it panic, and every span it returns
//! lies on character boundaries inside the line.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use proptest::prelude::*;
use warden::date::DateDetector;

const PATTERNS: &[Option<&str>] = &[
    None,
    Some("{^LN-BEG}"),
    Some("^[^\\[]*\\[({DATE})\n{^LN-BEG}"),
    Some("%d/%b/%Y:%H:%M:%S %z"),
    Some("{UNB}%H:%M"),
    Some("^%b %d %k:%M:%S\nEPOCH\nTAI64N"),
    Some("^\\[{LEPOCH}\\]"),
    Some("{NONE}"),
];

/// Pieces that look like parts of dates, so generated lines often hold (partial) dates,
/// mixed with arbitrary text including multi-byte characters.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "2005-08-14",
            "14/Aug/2005:",
            "Aug 14",
            " ",
            "  ",
            "09:30:00",
            "9:3:0",
            ".123456",
            ",5",
            "+0200",
            "Z",
            "UTC",
            "[",
            "]",
            "«",
            "é",
            "日本",
            "\u{301}",
            "1124013600",
            "1124013600123",
            "@4000000042f6f2a01c1d3e14",
            "audit(",
            ":",
            "-",
            "/",
            "T",
            "Sun ",
            "PM",
            "<",
            ">",
            "@",
            "\t",
            "x",
            "_",
            "0",
            "12",
            "2029",
            "2030",
        ])
        .prop_map(str::to_string),
        "\\PC{0,6}",
    ]
}

fn line() -> impl Strategy<Value = String> {
    prop::collection::vec(piece(), 0..12).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn detect_never_panics_and_spans_are_char_boundaries(
        lines in prop::collection::vec(line(), 1..20),
        which in 0..PATTERNS.len(),
        now in 0i64..2_000_000_000,
    ) {
        let zone = TimeZone::posix("CET-01CEST-02,M3.5.0,M10.5.0").unwrap();
        let mut d = DateDetector::new(PATTERNS[which], zone).unwrap();
        let now = Timestamp::from_second(now).unwrap();
        for l in &lines {
            if let Some(m) = d.detect(l, now) {
                prop_assert!(m.span.start <= m.span.end && m.span.end <= l.len(), "{:?} in {:?}", m.span, l);
                prop_assert!(l.is_char_boundary(m.span.start) && l.is_char_boundary(m.span.end), "{:?} in {:?}", m.span, l);
                prop_assert!(m.template < d.template_count());
                prop_assert!(!d.template_name(m.template).is_empty());
                if !m.parsed {
                    prop_assert_eq!(m.time, now);
                }
            }
        }
    }
}

/// Pieces of datepatterns, valid and not.
fn pattern_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "%",
            "%%",
            "%Y",
            "%m",
            "%d",
            "%H:%M:%S",
            "%Ex",
            "%ExY",
            "%b",
            "%z",
            "%Z",
            "%s",
            "%j",
            "{DATE}",
            "{date}",
            "{^LN-BEG}",
            "{UNB}",
            "{NONE}",
            "{DEFAULT}",
            "EPOCH",
            "{EPOCH}",
            "{LEPOCH}",
            "TAI64N",
            "(",
            ")",
            "(?P<x>",
            "(?P=x)",
            "(?(x)",
            "(?i)",
            "**",
            "^",
            "$",
            "\\",
            "[",
            "]",
            "{",
            "}",
            "|",
            "?",
            "*",
            "+",
            ".",
            "\n",
            " ",
            "日",
            "é)",
            "\\d+",
            "(?=",
            "(?<=a)",
        ])
        .prop_map(str::to_string),
        "\\PC{0,3}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn any_datepattern_builds_or_fails_cleanly(
        pieces in prop::collection::vec(pattern_piece(), 0..8),
        line in line(),
    ) {
        let pattern = pieces.concat();
        if let Ok(mut d) = DateDetector::new(Some(&pattern), TimeZone::UTC) {
            let now = Timestamp::from_second(1_124_013_600).unwrap();
            if let Some(m) = d.detect(&line, now) {
                prop_assert!(m.span.end <= line.len());
                prop_assert!(line.is_char_boundary(m.span.start) && line.is_char_boundary(m.span.end));
            }
        }
    }
}
