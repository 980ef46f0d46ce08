//! Date templates: what a datepattern line turns into, and fail2ban's default list.

use std::ops::Range;

use super::defaults::{self, DEFAULTS, Value};
use super::error::DateError;
use super::fields::{CivilNow, LocalZone};
use super::native::{NativeMatch, Program, Start, YearRange};
use super::pattern::{
    self, LINE_BEGIN, LINE_END, RegexMatch, RegexTemplate, WORD_BEGIN, WORD_END,
    find_epoch_placeholders,
};
use jiff::Timestamp;

/// How a template finds its date.
#[derive(Debug, Clone)]
pub(crate) enum Matcher {
    /// A native recogniser.
    Native { program: Program, value: Value },
    /// A custom pattern.
    Regex(Box<RegexTemplate>),
    /// `{NONE}`: an empty match at the line start.
    Empty,
    /// A template that cannot match any line.
    Never,
}

/// One template of a detector.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    pub name: String,
    pub flags: u8,
    /// Preference in reordering: 100 for the line-start copies of the defaults, else 1.
    pub weight: f64,
    pub matcher: Matcher,
}

/// What a template found.
#[derive(Debug)]
pub(crate) enum Found<'t> {
    // Boxed: hits move through the detector's search several times per line, and an
    // unboxed match makes each move a copy of a few hundred bytes.
    Native(Box<NativeMatch>),
    Regex(Box<RegexMatch<'t>>),
    Empty,
}

/// A template match: the whole match (which drives template selection) and group 1 (the
/// date that is cut out of the line), in bytes.
#[derive(Debug)]
pub(crate) struct Hit<'t> {
    pub start: usize,
    pub end: usize,
    pub group: Option<Range<usize>>,
    pub found: Found<'t>,
}

impl Template {
    /// Tied to the line start or end: found at most once per line, never moved by a
    /// better candidate.
    pub(crate) fn anchored(&self) -> bool {
        self.flags & (LINE_BEGIN | LINE_END) != 0
    }

    /// For a native template tied to the line start: where in `line` it begins to read
    /// the date (see [`Program::origin`]).
    pub(crate) fn origin(&self, line: &str) -> Option<usize> {
        match &self.matcher {
            Matcher::Native { program, .. } => program.origin(line),
            _ => None,
        }
    }

    /// Whether the search visits the line's word starts (see [`super::native::word_starts`]).
    pub(crate) fn word_bounded(&self) -> bool {
        matches!(&self.matcher, Matcher::Native { program, .. } if program.word_bounded())
    }

    /// Python's `search(line, pos, endpos)` for this template (byte offsets on character
    /// boundaries).
    pub(crate) fn search<'t>(
        &mut self,
        line: &'t str,
        pos: usize,
        endpos: usize,
        starts: Option<&[u32]>,
    ) -> Option<Hit<'t>> {
        if pos > endpos {
            return None;
        }
        match &mut self.matcher {
            Matcher::Native { program, .. } => {
                program.search_in(line, pos, endpos, starts).map(|m| Hit {
                    start: m.start,
                    end: m.group.end,
                    group: Some(m.group.clone()),
                    found: Found::Native(Box::new(m)),
                })
            }
            Matcher::Regex(re) => re.search(line, pos, endpos).map(|m| Hit {
                start: m.start,
                end: m.end,
                group: m.group.clone(),
                found: Found::Regex(Box::new(m)),
            }),
            Matcher::Empty => (pos == 0).then_some(Hit {
                start: 0,
                end: 0,
                group: Some(0..0),
                found: Found::Empty,
            }),
            Matcher::Never => None,
        }
    }

    /// The part of the line the time of a hit depends on (with the current second): two
    /// hits of this template with the same text there stand for the same time.
    pub(crate) fn value_text<'t>(&self, line: &'t str, hit: &Hit<'_>) -> Option<&'t str> {
        match &hit.found {
            Found::Native(m) => line.get(m.group.clone()),
            Found::Regex(m) => match &self.matcher {
                Matcher::Regex(re) => line.get(re.value_span(m)),
                _ => None,
            },
            Found::Empty => None,
        }
    }

    /// Whether the template's time comes from its fields (not an epoch count).
    pub(crate) fn fields_value(&self) -> bool {
        matches!(
            self.matcher,
            Matcher::Native {
                value: Value::Fields,
                ..
            }
        )
    }

    /// Done with a hit of this template: its search memory can serve the next search.
    pub(crate) fn recycle(&mut self, hit: Hit<'_>) {
        if let (Matcher::Regex(re), Found::Regex(m)) = (&mut self.matcher, hit.found) {
            re.recycle(*m);
        }
    }

    /// The time a hit stands for; `None` when its fields make no valid date.
    pub(crate) fn value(
        &self,
        line: &str,
        hit: &Hit<'_>,
        now: &CivilNow,
        zone: &mut LocalZone,
    ) -> Option<Timestamp> {
        match (&self.matcher, &hit.found) {
            (Matcher::Native { value, .. }, Found::Native(m)) => match value {
                Value::Fields => m.fields(line).resolve(now, zone),
                Value::Epoch | Value::LongEpoch => {
                    defaults::epoch_value(&line[m.group.clone()], *value)
                }
                Value::Tai64n => defaults::tai64n_value(&line[m.group.clone()]),
            },
            (Matcher::Regex(re), Found::Regex(m)) => re.value(m, now, zone),
            _ => None,
        }
    }
}

fn native(name: String, flags: u8, weight: f64, program: Program, value: Value) -> Template {
    Template {
        name,
        flags,
        weight,
        matcher: Matcher::Native { program, value },
    }
}

/// The name fail2ban gives a default template.
fn default_name(d: &defaults::DefaultTemplate, years: YearRange) -> String {
    match (d.pattern, d.keyword) {
        (Some(p), _) => pattern::expand_pattern(p, years)
            .map(|e| e.name)
            .unwrap_or_else(|_| p.to_string()),
        (None, Some(k)) => k.to_string(),
        (None, None) => String::new(),
    }
}

fn start_flags(start: Start) -> u8 {
    match start {
        Start::Word => WORD_BEGIN | WORD_END,
        Start::Any | Start::Epoch => WORD_END,
        Start::LineBegin | Start::Caret | Start::AfterFirst(_) => LINE_BEGIN | WORD_END,
    }
}

/// fail2ban's default templates in its order: first a line-start copy of each default that
/// is not tied to the line start already, then the defaults themselves.
pub(crate) fn default_templates(years: YearRange) -> Vec<Template> {
    let mut anchored = Vec::new();
    let mut plain = Vec::new();
    for d in DEFAULTS {
        let name = default_name(d, years);
        if !name.starts_with("{^LN-BEG}") && !name.starts_with('^') {
            anchored.push(native(
                format!("{{^LN-BEG}}{name}"),
                LINE_BEGIN | WORD_END,
                100.0,
                Program::new(d.nodes, Start::LineBegin, years),
                d.value,
            ));
        }
        plain.push(native(
            name,
            start_flags(d.start),
            1.0,
            Program::new(d.nodes, d.start, years),
            d.value,
        ));
    }
    anchored.extend(plain);
    anchored
}

/// `{DATE}` (any case, not escaped) in a datepattern line.
pub(crate) fn contains_date_keyword(s: &str) -> bool {
    date_keyword_ranges(s).next().is_some()
}

fn date_keyword_ranges(s: &str) -> impl Iterator<Item = Range<usize>> + '_ {
    let upper = s.to_ascii_uppercase();
    let b = s.as_bytes().to_vec();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = upper[from..].find("{DATE}").map(|i| i + from) {
        if i == 0 || b[i - 1] != b'\\' {
            out.push(i..i + 6);
        }
        from = i + 6;
    }
    out.into_iter()
}

/// Replaces each `{DATE}` of `pre` with `date`.
fn substitute_date(pre: &str, date: &str) -> String {
    let mut out = String::with_capacity(pre.len() + date.len());
    let mut last = 0;
    for r in date_keyword_ranges(pre) {
        out.push_str(&pre[last..r.start]);
        out.push_str(date);
        last = r.end;
    }
    out.push_str(&pre[last..]);
    out
}

/// fail2ban's `unboundPattern`: drops a leading `{UNB}`, `{^LN-BEG}`, `(^|\b|\W)` and a
/// trailing `(?=\b|\W|$)`.
fn unbound(p: &str) -> &str {
    let mut p = p.strip_prefix("{UNB}").unwrap_or(p);
    p = p.strip_prefix("{^LN-BEG}").unwrap_or(p);
    for lead in [r"(^|\b|\W)", r"(?:^|\b|\W)"] {
        p = p.strip_prefix(lead).unwrap_or(p);
    }
    p.strip_suffix(r"(?=\b|\W|$)").unwrap_or(p)
}

/// The templates `{DATE}` in `pre` expands to: each default, unanchored, put in place of
/// `{DATE}`.
pub(crate) fn date_templates(pre: &str, years: YearRange) -> Result<Vec<Template>, DateError> {
    // EPOCH and TAI64N have no `%` form: fail2ban puts their names in place of `{DATE}`,
    // which makes a keyword again only when nothing but an anchor surrounds it, and else
    // a literal word.
    let native_start = native_date_start(pre);
    DEFAULTS
        .iter()
        .map(|d| {
            let date = d.pattern.or(d.keyword).unwrap_or_default();
            let mut t = pattern_template(&substitute_date(pre, unbound(date)), years)?;
            // The same search on the default's native program, where the prefix is one it
            // can stand for (the regex is compiled all the same: it checks the pattern and
            // names the template).
            if let (Some(start), Some(_), Matcher::Regex(_)) = (native_start, d.pattern, &t.matcher)
            {
                t.matcher = match (start, d.start) {
                    // `^` holds only at the line start, never after the prefix's `X`.
                    (Start::AfterFirst(_), Start::Caret) => Matcher::Never,
                    _ => Matcher::Native {
                        program: Program::new(d.nodes, start, years),
                        value: d.value,
                    },
                };
            }
            Ok(t)
        })
        .collect()
}

/// Where a default's own program must start to search like the `{DATE}` line `pre` made
/// with that default: `^{DATE}` and `^({DATE})` at the line start, `^[^X]*X({DATE})` right
/// after the first `X`. `None` for any other line (its templates stay regexes).
fn native_date_start(pre: &str) -> Option<Start> {
    let keys: Vec<Range<usize>> = date_keyword_ranges(pre).collect();
    let [key] = keys.as_slice() else {
        return None;
    };
    let (head, tail) = (&pre[..key.start], &pre[key.end..]);
    if (head == "^" && tail.is_empty()) || (head == "^(" && tail == ")") {
        return Some(Start::Caret);
    }
    if tail != ")" {
        return None;
    }
    // `^[^X]*X(` with X one ASCII punctuation character, escaped or (where the regex
    // syntax allows) not.
    let rest = head.strip_prefix("^[^")?;
    let (x, rest) = one_char(rest, true)?;
    let rest = rest.strip_prefix("]*")?;
    let (y, rest) = one_char(rest, false)?;
    (x == y && rest == "(").then_some(Start::AfterFirst(x))
}

/// One ASCII punctuation character at the start of `s`, as a regex spells it inside a
/// class (`in_class`) or outside: escaped, or bare where it has no special meaning there.
fn one_char(s: &str, in_class: bool) -> Option<(u8, &str)> {
    let b = s.as_bytes();
    let special: &[u8] = if in_class {
        b"\\]^-["
    } else {
        b"\\.^$*+?()[]{}|"
    };
    match b {
        [b'\\', c, ..] if c.is_ascii_punctuation() => Some((*c, &s[2..])),
        [c, ..] if c.is_ascii_punctuation() && !special.contains(c) => Some((*c, &s[1..])),
        _ => None,
    }
}

/// The key fail2ban files a pattern under: upper-cased unless it has `%` codes.
fn key_of(p: &str) -> String {
    if p.contains('%') {
        p.to_string()
    } else {
        p.to_uppercase()
    }
}

/// One datepattern line that is not a list keyword (`{DEFAULT}`, `{^LN-BEG}`, `{DATE}`,
/// `{NONE}`).
pub(crate) fn pattern_template(p: &str, years: YearRange) -> Result<Template, DateError> {
    let key = key_of(p);
    if key.contains("EPOCH") {
        if !find_epoch_placeholders(p).is_empty() {
            let e = pattern::expand_epoch_pattern(p, key.contains("LEPOCH"));
            let re = RegexTemplate::compile(p, &e.regex, Some(key.contains("LEPOCH")))?;
            return Ok(Template {
                name: e.name,
                flags: e.flags,
                weight: 1.0,
                matcher: Matcher::Regex(Box::new(re)),
            });
        }
        let epoch = match key.as_str() {
            "EPOCH" => Some((false, false)),
            "{^LN-BEG}EPOCH" | "^EPOCH" => Some((false, true)),
            "LEPOCH" => Some((true, false)),
            "{^LN-BEG}LEPOCH" | "^LEPOCH" => Some((true, true)),
            _ => None,
        };
        if let Some((long, line)) = epoch {
            let (nodes, value, name) = defaults::epoch_program(long);
            let start = if line { Start::LineBegin } else { Start::Epoch };
            let name = if line {
                format!("{{^LN-BEG}}{name}")
            } else {
                name.to_string()
            };
            return Ok(native(
                name,
                start_flags(start),
                1.0,
                Program::new(nodes, start, years),
                value,
            ));
        }
    }
    if matches!(key.as_str(), "TAI64N" | "{^LN-BEG}TAI64N" | "^TAI64N") {
        let (start, name) = if key == "TAI64N" {
            (Start::Any, "TAI64N")
        } else {
            (Start::LineBegin, "{^LN-BEG}TAI64N")
        };
        return Ok(native(
            name.to_string(),
            start_flags(start),
            1.0,
            Program::new(defaults::tai64n_program(), start, years),
            Value::Tai64n,
        ));
    }
    let e = pattern::expand_pattern(p, years)?;
    let re = RegexTemplate::compile(p, &e.regex, None)?;
    Ok(Template {
        name: e.name,
        flags: e.flags,
        weight: 1.0,
        matcher: Matcher::Regex(Box::new(re)),
    })
}

/// The `{NONE}` template: no date in the line.
pub(crate) fn none_template() -> Template {
    Template {
        name: "^".to_string(),
        flags: LINE_BEGIN,
        weight: 1.0,
        matcher: Matcher::Empty,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn years() -> YearRange {
        YearRange::for_year(2026)
    }

    #[test]
    fn default_list_matches_fail2ban_names_and_order() {
        let t = default_templates(years());
        let names: Vec<&str> = t.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names.len(), 31);
        assert_eq!(
            names[0],
            r"{^LN-BEG}ExYear(?P<_sep>[-/.])Month(?P=_sep)Day(?:T|  ?)24hour:Minute:Second(?:[.,]Microseconds)?(?:\s*Zone offset)?"
        );
        assert_eq!(
            names[1],
            r"{^LN-BEG}(?:DAY )?MON Day %k:Minute:Second(?:\.Microseconds)?(?: ExYear)?"
        );
        assert_eq!(names[7], "{^LN-BEG}Epoch");
        assert_eq!(names[13], "{^LN-BEG}TAI64N");
        assert_eq!(names[21], "Epoch");
        assert_eq!(names[22], "{^LN-BEG}24hour:Minute:Second");
        assert_eq!(names[23], "^<Month/Day/ExYear2@24hour:Minute:Second>");
        assert_eq!(names[26], "^MON-Day-ExYear2 %k:Minute:Second");
        assert_eq!(names[30], "TAI64N");
        let anchored: Vec<bool> = t.iter().map(Template::anchored).collect();
        assert!(anchored[..14].iter().all(|a| *a));
        assert_eq!(
            anchored[14..],
            [
                false, false, false, false, false, false, false, false, true, true, false, false,
                true, false, false, false, false
            ]
        );
        assert!(t[..14].iter().all(|t| t.weight == 100.0));
        assert!(t[14..].iter().all(|t| t.weight == 1.0));
    }

    #[test]
    fn date_keyword_expansion() {
        let t = date_templates(r"^[^\[]*\[({DATE})", years()).unwrap();
        assert_eq!(t.len(), 17);
        assert!(t.iter().all(Template::anchored));
        // EPOCH's name lands in the pattern as a literal word.
        assert_eq!(t[7].name, r"^[^\[]*\[(Epoch)");
        assert!(matches!(t[7].matcher, Matcher::Regex(_)));
        // With only an anchor around it, it is the epoch keyword again.
        let t = date_templates("^{DATE}", years()).unwrap();
        assert_eq!(t[7].name, "{^LN-BEG}Epoch");
        assert_eq!(t[16].name, "{^LN-BEG}TAI64N");
        let line = "[31/Oct/2006:09:22:55 -0000] x";
        let mut t = date_templates(r"^[^\[]*\[({DATE})", years()).unwrap();
        let hit = t[4].search(line, 0, line.len(), None).unwrap();
        assert_eq!(hit.group, Some(1..27));
    }

    /// `{DATE}` lines of the forms a native program can stand for search and read dates
    /// exactly as their regexes do: same match, same date span, same time, on lines built
    /// from every default's kind of date, broken and bent at random.
    #[test]
    fn native_date_lines_agree_with_their_regexes() {
        use super::super::fields::{CivilNow, LocalZone};
        let dates = [
            "31/Oct/2006:09:22:55 -0000",
            "31-oct-2006 09:22:55.25 +0100",
            "2/Oct/2006 09:22:55",
            "2005-03-02 00:00:01",
            "2005-03-02T00:00:01.123+02:00",
            "2005/03/02  00:00:01",
            "Mar  2 00:00:01",
            "Tue Mar  2 00:00:01.5 2005",
            "Mar 02 2005 00:00:01",
            "03/02/2005:00:00:01",
            "02-03-05 1:02:03",
            "12-31-2005 10:11:12.5",
            "<03/02/05@12:13:14>",
            "Mar-02-05 1:02:03",
            "20050302 12:13:14",
            "050302  12:13:14",
            "Mar 02, 2005 01:02:03 PM",
            "20050302T121314,5 +0100",
            "CET Tue Mar  2 00:00:01",
            "+0100 Mar  2 00:00:01 2005",
            "1112345678",
            "1112345678.123",
            "@4000000037c219bf2ef02e94",
            "12:13:14",
            "Epoch",
            "TAI64N",
        ];
        let heads = [
            "",
            "[",
            "x [",
            "192.0.2.1 - - [",
            "a[b[",
            "[[",
            "é [",
            "-",
            "x|",
            " ",
        ];
        let tails = [
            "",
            "]",
            " x",
            "a",
            "5",
            "é",
            "] \"GET / HTTP/1.1\"",
            ":",
            "Z",
        ];
        let pres = [
            r"^[^\[]*\[({DATE})",
            r"^[^\[]*\[({date})",
            "^{DATE}",
            "^({DATE})",
            r"^[^|]*\|({DATE})",
            r"^[^\-]*-({DATE})",
            r"^[^:]*:({DATE})",
        ];
        let now = CivilNow::new(jiff::civil::datetime(2006, 11, 2, 12, 0, 0, 0));
        let mut zone = LocalZone::new(jiff::tz::TimeZone::fixed(jiff::tz::offset(1)));
        let mut next = crate::test_rng(0x51f1_5eed_d47e_0001u64);
        let mut found = 0;
        let mut natives = 0;
        for pre in pres {
            let mut fast = date_templates(pre, years()).unwrap();
            let mut slow: Vec<Template> = DEFAULTS
                .iter()
                .map(|d| {
                    let date = d.pattern.or(d.keyword).unwrap_or_default();
                    pattern_template(&substitute_date(pre, unbound(date)), years()).unwrap()
                })
                .collect();
            natives += fast
                .iter()
                .filter(|t| matches!(t.matcher, Matcher::Native { .. }))
                .count();
            for _ in 0..4000 {
                let mut date: Vec<char> = dates[next(dates.len())].chars().collect();
                // Bend the date now and then: a character dropped, changed or doubled, or
                // the case of a letter changed.
                for _ in 0..next(3) {
                    if date.is_empty() {
                        break;
                    }
                    let i = next(date.len());
                    match next(5) {
                        0 => {
                            date.remove(i);
                        }
                        1 => date[i] = ['0', '9', ' ', '/', ':', 'x', 'é', '['][next(8)],
                        2 => date.insert(i, date[i]),
                        3 => date[i] = date[i].to_ascii_uppercase(),
                        _ => date[i] = date[i].to_ascii_lowercase(),
                    }
                }
                let date: String = date.into_iter().collect();
                let line = format!(
                    "{}{date}{}",
                    heads[next(heads.len())],
                    tails[next(tails.len())]
                );
                for (f, s) in fast.iter_mut().zip(slow.iter_mut()) {
                    let a = f.search(&line, 0, line.len(), None);
                    let b = s.search(&line, 0, line.len(), None);
                    let key =
                        |h: &Option<Hit<'_>>| h.as_ref().map(|h| (h.start, h.end, h.group.clone()));
                    assert_eq!(key(&a), key(&b), "{pre} {} {line:?}", s.name);
                    if let (Some(a), Some(b)) = (a, b) {
                        found += 1;
                        assert_eq!(
                            f.value(&line, &a, &now, &mut zone),
                            s.value(&line, &b, &now, &mut zone),
                            "{pre} {} {line:?}",
                            s.name
                        );
                    }
                }
            }
        }
        // The 15 defaults with a `%` pattern run natively: after an `X` (5 lines) all but
        // the two `^`-bound ones, which never match there; at the line start (2 lines)
        // all. `^{DATE}` also turns EPOCH and TAI64N into their keyword programs.
        assert_eq!(natives, 5 * 13 + 2 * 15 + 2, "{natives}");
        assert!(found > 2000, "{found}");
    }

    #[test]
    fn keywords() {
        for (p, name, anchored) in [
            ("EPOCH", "Epoch", false),
            ("epoch", "Epoch", false),
            ("^EPOCH", "{^LN-BEG}Epoch", true),
            ("{^LN-BEG}Epoch", "{^LN-BEG}Epoch", true),
            ("LEPOCH", "LongEpoch", false),
            ("^LEPOCH", "{^LN-BEG}LongEpoch", true),
            ("TAI64N", "TAI64N", false),
            ("^TAI64N", "{^LN-BEG}TAI64N", true),
        ] {
            let t = pattern_template(p, years()).unwrap();
            assert_eq!(t.name, name, "{p}");
            assert_eq!(t.anchored(), anchored, "{p}");
            assert!(matches!(t.matcher, Matcher::Native { .. }), "{p}");
        }
    }
}
