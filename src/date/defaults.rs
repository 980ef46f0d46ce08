//! fail2ban's default date templates as programs for the native matcher, in fail2ban's
//! order, and how an epoch or TAI64N match turns into a time.

use super::native::{Field, Node, Start};

use Field as Fd;
use Node::{Alt, F, Lit, OneOf, Opt, Sep, SepRef, Ws};

const FRACTION_DOT: &[Node] = &[Lit(b'.'), F(Fd::Fraction)];
const FRACTION_DOT_COMMA: &[Node] = &[OneOf(b".,"), F(Fd::Fraction)];
const SPACE: &[Node] = &[Lit(b' ')];
const T_OR_SPACES: &[&[Node]] = &[&[Lit(b'T')], &[Lit(b' '), Opt(SPACE)]];
const WEEKDAY_SP: &[Node] = &[F(Fd::WeekdayAbbr), Lit(b' ')];
const SP_YEAR: &[Node] = &[Lit(b' '), F(Fd::ExYear)];
const WS_ZONE: &[Node] = &[Ws, F(Fd::ZoneOffset { ci: false })];
const SP_ZONE_CI: &[Node] = &[Lit(b' '), F(Fd::ZoneOffset { ci: true })];
const ZONE_NAME_SP: &[Node] = &[F(Fd::ZoneName), Lit(b' ')];
const ZONE_CI_SP: &[Node] = &[F(Fd::ZoneOffset { ci: true }), Lit(b' ')];
const YEAR4_OR_2: &[&[Node]] = &[&[F(Fd::ExYear)], &[F(Fd::Year2)]];
const COLON_OR_SPACE: &[Node] = &[OneOf(b" :")];

/// `%ExY(?P<_sep>[-/.])%m(?P=_sep)%d(?:T|  ?)%H:%M:%S(?:[.,]%f)?(?:\s*%z)?`
const ISO: &[Node] = &[
    F(Fd::ExYear),
    Sep(b"-/."),
    F(Fd::Month),
    SepRef,
    F(Fd::Day),
    Alt(T_OR_SPACES),
    F(Fd::Hour),
    Lit(b':'),
    F(Fd::Minute),
    Lit(b':'),
    F(Fd::Second),
    Opt(FRACTION_DOT_COMMA),
    Opt(WS_ZONE),
];

/// `(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?`
const SYSLOG: &[Node] = &[
    Opt(WEEKDAY_SP),
    F(Fd::MonthAbbr),
    Lit(b' '),
    F(Fd::Day),
    Lit(b' '),
    Opt(SPACE),
    F(Fd::KHour),
    Lit(b':'),
    F(Fd::Minute),
    Lit(b':'),
    F(Fd::Second),
    Opt(FRACTION_DOT),
    Opt(SP_YEAR),
];

/// `(?:%a )?%b %d %ExY %k:%M:%S(?:\.%f)?`
const SYSLOG_YEAR_FIRST: &[Node] = &[
    Opt(WEEKDAY_SP),
    F(Fd::MonthAbbr),
    Lit(b' '),
    F(Fd::Day),
    Lit(b' '),
    F(Fd::ExYear),
    Lit(b' '),
    Opt(SPACE),
    F(Fd::KHour),
    Lit(b':'),
    F(Fd::Minute),
    Lit(b':'),
    F(Fd::Second),
    Opt(FRACTION_DOT),
];

/// `%d(?P<_sep>[-/])%m(?P=_sep)(?:%ExY|%Exy) %k:%M:%S`
const DMY: &[Node] = &[
    F(Fd::Day),
    Sep(b"-/"),
    F(Fd::Month),
    SepRef,
    Alt(YEAR4_OR_2),
    Lit(b' '),
    Opt(SPACE),
    F(Fd::KHour),
    Lit(b':'),
    F(Fd::Minute),
    Lit(b':'),
    F(Fd::Second),
];

/// `%d(?P<_sep>[-/])%b(?P=_sep)%ExY[ :]?%H:%M:%S(?:\.%f)?(?: %z)?` (Apache, nginx)
const APACHE: &[Node] = &[
    F(Fd::Day),
    Sep(b"-/"),
    F(Fd::MonthAbbr),
    SepRef,
    F(Fd::ExYear),
    Opt(COLON_OR_SPACE),
    F(Fd::Hour),
    Lit(b':'),
    F(Fd::Minute),
    Lit(b':'),
    F(Fd::Second),
    Opt(FRACTION_DOT),
    Opt(SP_ZONE_CI),
];

/// `%m/%d/%ExY:%H:%M:%S` (cPanel)
const CPANEL: &[Node] = &[
    F(Fd::Month),
    Lit(b'/'),
    F(Fd::Day),
    Lit(b'/'),
    F(Fd::ExYear),
    Lit(b':'),
    F(Fd::Hour),
    Lit(b':'),
    F(Fd::Minute),
    Lit(b':'),
    F(Fd::Second),
];

/// `%m-%d-%ExY %k:%M:%S(?:\.%f)?`
const MDY: &[Node] = &[
    F(Fd::Month),
    Lit(b'-'),
    F(Fd::Day),
    Lit(b'-'),
    F(Fd::ExYear),
    Lit(b' '),
    Opt(SPACE),
    F(Fd::KHour),
    Lit(b':'),
    F(Fd::Minute),
    Lit(b':'),
    F(Fd::Second),
    Opt(FRACTION_DOT),
];

/// `%H:%M:%S`
const TIME_ONLY: &[Node] = &[
    F(Fd::Hour),
    Lit(b':'),
    F(Fd::Minute),
    Lit(b':'),
    F(Fd::Second),
];

/// `<%m/%d/%Exy@%H:%M:%S>`
const ANGLE: &[Node] = &[
    Lit(b'<'),
    F(Fd::Month),
    Lit(b'/'),
    F(Fd::Day),
    Lit(b'/'),
    F(Fd::Year2),
    Lit(b'@'),
    F(Fd::Hour),
    Lit(b':'),
    F(Fd::Minute),
    Lit(b':'),
    F(Fd::Second),
    Lit(b'>'),
];

/// `%Exy%Exm%Exd  ?%H:%M:%S` (MySQL)
const MYSQL: &[Node] = &[
    F(Fd::Year2),
    F(Fd::ExMonth),
    F(Fd::ExDay),
    Lit(b' '),
    Opt(SPACE),
    F(Fd::Hour),
    Lit(b':'),
    F(Fd::Minute),
    Lit(b':'),
    F(Fd::Second),
];

/// `%b %d, %ExY %I:%M:%S %p` (Tomcat)
const TOMCAT: &[Node] = &[
    F(Fd::MonthAbbr),
    Lit(b' '),
    F(Fd::Day),
    Lit(b','),
    Lit(b' '),
    F(Fd::ExYear),
    Lit(b' '),
    F(Fd::Hour12),
    Lit(b':'),
    F(Fd::Minute),
    Lit(b':'),
    F(Fd::Second),
    Lit(b' '),
    F(Fd::AmPm),
];

/// `%b-%d-%Exy %k:%M:%S` (ASSP)
const ASSP: &[Node] = &[
    F(Fd::MonthAbbr),
    Lit(b'-'),
    F(Fd::Day),
    Lit(b'-'),
    F(Fd::Year2),
    Lit(b' '),
    Opt(SPACE),
    F(Fd::KHour),
    Lit(b':'),
    F(Fd::Minute),
    Lit(b':'),
    F(Fd::Second),
];

/// `%ExY%Exm%Exd(?:T|  ?)%ExH%ExM%ExS(?:[.,]%f)?(?:\s*%z)?` (compact ISO 8601)
const ISO_COMPACT: &[Node] = &[
    F(Fd::ExYear),
    F(Fd::ExMonth),
    F(Fd::ExDay),
    Alt(T_OR_SPACES),
    F(Fd::ExHour),
    F(Fd::ExMinute),
    F(Fd::ExSecond),
    Opt(FRACTION_DOT_COMMA),
    Opt(WS_ZONE),
];

/// `(?:%Z )?(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?` (monit: zone name first)
const SYSLOG_ZONE_NAME: &[Node] = &[
    Opt(ZONE_NAME_SP),
    Opt(WEEKDAY_SP),
    F(Fd::MonthAbbr),
    Lit(b' '),
    F(Fd::Day),
    Lit(b' '),
    Opt(SPACE),
    F(Fd::KHour),
    Lit(b':'),
    F(Fd::Minute),
    Lit(b':'),
    F(Fd::Second),
    Opt(FRACTION_DOT),
    Opt(SP_YEAR),
];

/// `(?:%z )?(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?` (zone offset first)
const SYSLOG_ZONE_OFFSET: &[Node] = &[
    Opt(ZONE_CI_SP),
    Opt(WEEKDAY_SP),
    F(Fd::MonthAbbr),
    Lit(b' '),
    F(Fd::Day),
    Lit(b' '),
    Opt(SPACE),
    F(Fd::KHour),
    Lit(b':'),
    F(Fd::Minute),
    Lit(b':'),
    F(Fd::Second),
    Opt(FRACTION_DOT),
    Opt(SP_YEAR),
];

const EPOCH_FRACTION: &[Node] = &[Lit(b'.'), Node::Digits(3, 6)];
/// `\d{10,11}\b(?:\.\d{3,6})?`
const EPOCH: &[Node] = &[
    Node::Digits(10, 11),
    Node::WordBoundary,
    Opt(EPOCH_FRACTION),
];

const LEPOCH_TAIL_FRACTION: &[Node] = &[Lit(b'.'), Node::Digits(1, 6)];
const LEPOCH_TAIL_MICROS: &[Node] = &[Node::Digits(3, 3)];
const LEPOCH_TAIL: &[&[Node]] = &[LEPOCH_TAIL_FRACTION, LEPOCH_TAIL_MICROS];
const LEPOCH_MILLIS: &[Node] = &[Node::Digits(3, 3), Opt(&[Alt(LEPOCH_TAIL)])];
/// `\d{10,11}(?:\d{3}(?:\.\d{1,6}|\d{3})?)?`: seconds, milliseconds or microseconds.
const LEPOCH: &[Node] = &[Node::Digits(10, 11), Opt(LEPOCH_MILLIS)];

/// `@[0-9a-f]{24}`
const TAI64N: &[Node] = &[Lit(b'@'), Node::Hex(24)];

/// How the value of a native template is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Value {
    /// strptime fields.
    Fields,
    /// Seconds since the epoch, with an optional fraction.
    Epoch,
    /// Seconds, milliseconds (13 to 15 digits, or a fraction) or microseconds (16 digits).
    LongEpoch,
    /// TAI64N label; fail2ban takes the seconds as Unix seconds.
    Tai64n,
}

/// One of fail2ban's default templates.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DefaultTemplate {
    /// The datepattern that stands for it (`None` for `EPOCH` and `TAI64N`, which have
    /// no `%` form); also what `{DATE}` expands to.
    pub pattern: Option<&'static str>,
    /// The keyword that stands for it in place of a pattern.
    pub keyword: Option<&'static str>,
    pub nodes: &'static [Node],
    /// Where the unanchored template may start.
    pub start: Start,
    pub value: Value,
}

/// fail2ban's default templates in its order. Each one not already tied to the line start
/// also exists anchored there, and those anchored copies come first.
pub(crate) const DEFAULTS: &[DefaultTemplate] = &[
    DefaultTemplate {
        pattern: Some(r"%ExY(?P<_sep>[-/.])%m(?P=_sep)%d(?:T|  ?)%H:%M:%S(?:[.,]%f)?(?:\s*%z)?"),
        keyword: None,
        nodes: ISO,
        start: Start::Word,
        value: Value::Fields,
    },
    DefaultTemplate {
        pattern: Some(r"(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?"),
        keyword: None,
        nodes: SYSLOG,
        start: Start::Word,
        value: Value::Fields,
    },
    DefaultTemplate {
        pattern: Some(r"(?:%a )?%b %d %ExY %k:%M:%S(?:\.%f)?"),
        keyword: None,
        nodes: SYSLOG_YEAR_FIRST,
        start: Start::Word,
        value: Value::Fields,
    },
    DefaultTemplate {
        pattern: Some(r"%d(?P<_sep>[-/])%m(?P=_sep)(?:%ExY|%Exy) %k:%M:%S"),
        keyword: None,
        nodes: DMY,
        start: Start::Word,
        value: Value::Fields,
    },
    DefaultTemplate {
        pattern: Some(r"%d(?P<_sep>[-/])%b(?P=_sep)%ExY[ :]?%H:%M:%S(?:\.%f)?(?: %z)?"),
        keyword: None,
        nodes: APACHE,
        start: Start::Word,
        value: Value::Fields,
    },
    DefaultTemplate {
        pattern: Some(r"%m/%d/%ExY:%H:%M:%S"),
        keyword: None,
        nodes: CPANEL,
        start: Start::Word,
        value: Value::Fields,
    },
    DefaultTemplate {
        pattern: Some(r"%m-%d-%ExY %k:%M:%S(?:\.%f)?"),
        keyword: None,
        nodes: MDY,
        start: Start::Word,
        value: Value::Fields,
    },
    DefaultTemplate {
        pattern: None,
        keyword: Some("Epoch"),
        nodes: EPOCH,
        start: Start::Epoch,
        value: Value::Epoch,
    },
    DefaultTemplate {
        pattern: Some(r"{^LN-BEG}%H:%M:%S"),
        keyword: None,
        nodes: TIME_ONLY,
        start: Start::LineBegin,
        value: Value::Fields,
    },
    DefaultTemplate {
        pattern: Some(r"^<%m/%d/%Exy@%H:%M:%S>"),
        keyword: None,
        nodes: ANGLE,
        start: Start::Caret,
        value: Value::Fields,
    },
    DefaultTemplate {
        pattern: Some(r"%Exy%Exm%Exd  ?%H:%M:%S"),
        keyword: None,
        nodes: MYSQL,
        start: Start::Word,
        value: Value::Fields,
    },
    DefaultTemplate {
        pattern: Some(r"%b %d, %ExY %I:%M:%S %p"),
        keyword: None,
        nodes: TOMCAT,
        start: Start::Word,
        value: Value::Fields,
    },
    DefaultTemplate {
        pattern: Some(r"^%b-%d-%Exy %k:%M:%S"),
        keyword: None,
        nodes: ASSP,
        start: Start::Caret,
        value: Value::Fields,
    },
    DefaultTemplate {
        pattern: Some(r"%ExY%Exm%Exd(?:T|  ?)%ExH%ExM%ExS(?:[.,]%f)?(?:\s*%z)?"),
        keyword: None,
        nodes: ISO_COMPACT,
        start: Start::Word,
        value: Value::Fields,
    },
    DefaultTemplate {
        pattern: Some(r"(?:%Z )?(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?"),
        keyword: None,
        nodes: SYSLOG_ZONE_NAME,
        start: Start::Word,
        value: Value::Fields,
    },
    DefaultTemplate {
        pattern: Some(r"(?:%z )?(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?"),
        keyword: None,
        nodes: SYSLOG_ZONE_OFFSET,
        start: Start::Word,
        value: Value::Fields,
    },
    DefaultTemplate {
        pattern: None,
        keyword: Some("TAI64N"),
        nodes: TAI64N,
        start: Start::Any,
        value: Value::Tai64n,
    },
];

/// The `EPOCH`/`LEPOCH` keyword templates: nodes, value kind and base name.
pub(crate) fn epoch_program(long: bool) -> (&'static [Node], Value, &'static str) {
    if long {
        (LEPOCH, Value::LongEpoch, "LongEpoch")
    } else {
        (EPOCH, Value::Epoch, "Epoch")
    }
}

/// The `TAI64N` keyword template.
pub(crate) fn tai64n_program() -> &'static [Node] {
    TAI64N
}

/// The time an epoch-style match stands for: seconds with an optional fraction, scaled
/// down for `LEPOCH` milliseconds and microseconds as fail2ban does.
pub(crate) fn epoch_value(text: &str, value: Value) -> Option<jiff::Timestamp> {
    let (int_part, frac) = match text.split_once('.') {
        Some((i, f)) => (i, f),
        None => (text, ""),
    };
    if int_part.is_empty() || !int_part.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|c| c.is_ascii_digit()) || frac.len() > 9 {
        return None;
    }
    // Nanoseconds as an exact integer, then the unit division.
    let ns_frac: i128 = format!("{frac:0<9}").parse().ok()?;
    let mut ns: i128 = int_part.parse::<i128>().ok()? * 1_000_000_000 + ns_frac;
    if value == Value::LongEpoch && text.len() >= 13 {
        if text.len() >= 16 && frac.is_empty() {
            ns /= 1_000_000;
        } else {
            ns /= 1_000;
        }
    }
    jiff::Timestamp::from_nanosecond(ns).ok()
}

/// The seconds of a TAI64N label (`@` and 24 hex digits), read as fail2ban reads them:
/// the 15 hex digits after `@4`, which drops the 2^62 base but not the 10 s TAI offset.
pub(crate) fn tai64n_value(text: &str) -> Option<jiff::Timestamp> {
    let secs = i64::from_str_radix(text.get(2..17)?, 16).ok()?;
    jiff::Timestamp::from_second(secs).ok()
}

#[cfg(test)]
mod tests {
    use std::ops::Range;

    use super::*;
    use crate::date::native::{Program, YearRange};

    fn years() -> YearRange {
        YearRange::for_year(2026)
    }

    fn find(nodes: &'static [Node], start: Start, line: &str) -> Option<(Range<usize>, usize)> {
        Program::new(nodes, start, years())
            .search(line, 0, line.len())
            .map(|m| (m.group, m.start))
    }

    fn span<'a>(nodes: &'static [Node], start: Start, line: &'a str) -> Option<&'a str> {
        find(nodes, start, line).map(|(g, _)| &line[g])
    }

    #[test]
    fn iso_fields_backtrack_to_the_word_boundary() {
        assert_eq!(
            span(ISO, Start::Word, "x 2005-01-23T21:59:59.981746Z y"),
            Some("2005-01-23T21:59:59.981746Z")
        );
        assert_eq!(
            span(ISO, Start::Word, "2005/1/23  8:59:59 +02:00"),
            Some("2005/1/23  8:59:59 +02:00")
        );
        // Separators must repeat.
        assert_eq!(span(ISO, Start::Word, "2005-01/23 21:59:59"), None);
        // Inside a word: no.
        assert_eq!(span(ISO, Start::Word, "a2005-01-23 21:59:59"), None);
        // A seven-digit fraction is no fraction: the date ends before the dot.
        assert_eq!(
            span(ISO, Start::Word, "2005-01-23 21:59:59.1234567"),
            Some("2005-01-23 21:59:59")
        );
        // A zone glued to a word is left out.
        assert_eq!(
            span(ISO, Start::Word, "2005-01-23 21:59:59 UTCx"),
            Some("2005-01-23 21:59:59")
        );
        // Years outside the accepted range are no years.
        assert_eq!(span(ISO, Start::Word, "1999-01-23 21:59:59"), None);
    }

    #[test]
    fn seconds_fall_back_like_a_regex() {
        // "12:34:567": S=56 fails the boundary, S=5 too; M=3 then ':' fails; no match.
        assert_eq!(span(TIME_ONLY, Start::LineBegin, "12:34:567"), None);
        assert_eq!(
            span(TIME_ONLY, Start::LineBegin, "12:34:56 x"),
            Some("12:34:56")
        );
        // Second 60 and 61 are taken (a leap second), 62 is not.
        assert_eq!(
            span(TIME_ONLY, Start::LineBegin, "23:59:60"),
            Some("23:59:60")
        );
        assert_eq!(span(TIME_ONLY, Start::LineBegin, "23:59:62"), None);
    }

    #[test]
    fn line_begin_skips_up_to_two_non_word_characters() {
        assert_eq!(
            find(TIME_ONLY, Start::LineBegin, "[12:34:56]"),
            Some((1..9, 0))
        );
        assert_eq!(
            find(TIME_ONLY, Start::LineBegin, "«12:34:56"),
            Some((2..10, 0))
        );
        assert_eq!(
            find(TIME_ONLY, Start::LineBegin, "((12:34:56"),
            Some((2..10, 0))
        );
        assert_eq!(find(TIME_ONLY, Start::LineBegin, "(((12:34:56"), None);
        assert_eq!(find(TIME_ONLY, Start::LineBegin, "x 12:34:56"), None);
    }

    #[test]
    fn syslog_variants() {
        assert_eq!(
            span(SYSLOG, Start::Word, "Jan 23 21:59:59 host sshd[1]: x"),
            Some("Jan 23 21:59:59")
        );
        assert_eq!(
            span(SYSLOG, Start::Word, "Sun Jan  3 01:02:03.011 2005 x"),
            Some("Sun Jan  3 01:02:03.011 2005")
        );
        // %k takes a blank before a one-digit hour.
        assert_eq!(
            span(SYSLOG, Start::Word, "jan 23  1:02:03"),
            Some("jan 23  1:02:03")
        );
        assert_eq!(
            span(
                SYSLOG_YEAR_FIRST,
                Start::Word,
                "Sun Jan 23 2005 21:59:59.011"
            ),
            Some("Sun Jan 23 2005 21:59:59.011")
        );
        assert_eq!(
            span(SYSLOG_ZONE_NAME, Start::Word, "PDT Apr 16 21:05:29"),
            Some("PDT Apr 16 21:05:29")
        );
        assert_eq!(
            span(
                SYSLOG_ZONE_OFFSET,
                Start::Word,
                "+00:00 Jan 23 21:59:59.011 2005"
            ),
            Some("+00:00 Jan 23 21:59:59.011 2005")
        );
    }

    #[test]
    fn apache_and_friends() {
        assert_eq!(
            span(
                APACHE,
                Start::Word,
                "1.2.3.4 - - [31/Oct/2006:09:22:55 -0000] \"GET"
            ),
            Some("31/Oct/2006:09:22:55 -0000")
        );
        assert_eq!(
            span(APACHE, Start::Word, "26-Jul-2007 15:20:52.252 named"),
            Some("26-Jul-2007 15:20:52.252")
        );
        assert_eq!(
            span(CPANEL, Start::Word, "[05/20/2008:01:57:39]"),
            Some("05/20/2008:01:57:39")
        );
        assert_eq!(
            span(MDY, Start::Word, "01-27-2012 16:22:44.252"),
            Some("01-27-2012 16:22:44.252")
        );
        assert_eq!(
            span(DMY, Start::Word, "23/01/05 21:59:59"),
            Some("23/01/05 21:59:59")
        );
        assert_eq!(
            span(DMY, Start::Word, "17-07-2008 17:23:25"),
            Some("17-07-2008 17:23:25")
        );
        assert_eq!(
            span(MYSQL, Start::Word, "130322 11:46:11 [Warning]"),
            Some("130322 11:46:11")
        );
        assert_eq!(
            span(TOMCAT, Start::Word, "Jul 30, 2014 1:03:12 PM org"),
            Some("Jul 30, 2014 1:03:12 PM")
        );
        assert_eq!(
            span(ASSP, Start::Caret, "Apr-27-13 02:33:06 x"),
            Some("Apr-27-13 02:33:06")
        );
        assert_eq!(span(ASSP, Start::Caret, " Apr-27-13 02:33:06 x"), None);
        assert_eq!(
            span(ANGLE, Start::Caret, "<09/16/08@05:03:30> x"),
            Some("<09/16/08@05:03:30>")
        );
        assert_eq!(
            span(ISO_COMPACT, Start::Word, "20050123T215959,123 +0100"),
            Some("20050123T215959,123 +0100")
        );
    }

    #[test]
    fn epoch_starts() {
        assert_eq!(
            span(EPOCH, Start::Epoch, "1124013600.123 x"),
            Some("1124013600.123")
        );
        assert_eq!(
            span(EPOCH, Start::Epoch, "[1124013600] x"),
            Some("1124013600")
        );
        assert_eq!(
            span(
                EPOCH,
                Start::Epoch,
                "type=AVC msg=audit(1124013600.123:42): x"
            ),
            Some("1124013600.123")
        );
        assert_eq!(span(EPOCH, Start::Epoch, "x 1124013600"), None);
        assert_eq!(span(EPOCH, Start::Epoch, "xaudit(1124013600"), None);
        // Twelve digits are no epoch; a two-digit fraction is left out.
        assert_eq!(span(EPOCH, Start::Epoch, "112401360012"), None);
        assert_eq!(
            span(EPOCH, Start::Epoch, "1124013600.12 x"),
            Some("1124013600")
        );
        assert_eq!(
            span(LEPOCH, Start::LineBegin, "1124013600123 x"),
            Some("1124013600123")
        );
        assert_eq!(
            span(LEPOCH, Start::LineBegin, "1124013600123456 x"),
            Some("1124013600123456")
        );
        assert_eq!(
            span(LEPOCH, Start::LineBegin, "1124013600123.5 x"),
            Some("1124013600123.5")
        );
    }

    #[test]
    fn epoch_values() {
        let t = |s, v| epoch_value(s, v).map(|t| t.as_nanosecond());
        assert_eq!(
            t("1124013600", Value::Epoch),
            Some(1_124_013_600_000_000_000)
        );
        assert_eq!(
            t("1124013600.25", Value::Epoch),
            Some(1_124_013_600_250_000_000)
        );
        assert_eq!(
            t("1124013600123", Value::LongEpoch),
            Some(1_124_013_600_123_000_000)
        );
        assert_eq!(
            t("1124013600123456", Value::LongEpoch),
            Some(1_124_013_600_123_456_000)
        );
        assert_eq!(
            t("1124013600123.5", Value::LongEpoch),
            Some(1_124_013_600_123_500_000)
        );
        assert_eq!(
            t("1124013600", Value::LongEpoch),
            Some(1_124_013_600_000_000_000)
        );
    }

    #[test]
    fn tai64n() {
        let line = "@4000000042f6f2a01c1d3e14 x";
        assert_eq!(
            span(TAI64N, Start::Any, line),
            Some("@4000000042f6f2a01c1d3e14")
        );
        // The label's seconds are "4000000042f6f2a0"; fail2ban reads the 15 hex digits
        // after the leading "4".
        assert_eq!(
            tai64n_value("@4000000042f6f2a01c1d3e14").map(|t| t.as_second()),
            Some(0x42f6_f2a0)
        );
        assert_eq!(span(TAI64N, Start::Any, "@4000000042F6F2A01C1D3E14"), None);
    }
}
