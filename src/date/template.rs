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
        Start::LineBegin | Start::Caret => LINE_BEGIN | WORD_END,
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
    DEFAULTS
        .iter()
        .map(|d| {
            let date = d.pattern.or(d.keyword).unwrap_or_default();
            pattern_template(&substitute_date(pre, unbound(date)), years)
        })
        .collect()
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
