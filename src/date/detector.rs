//! The date detector: finds the date in a line with the template list of a datepattern,
//! choosing among templates and keeping the last one in front as fail2ban does.
//!
//! fail2ban's selection is stateful and shapes which date wins when a line holds several:
//! the template that matched last is tried first, within the same stretch of the line when
//! the characters around the previous date still fit; a match further into the line than
//! before is held back while the other templates get a chance to find one nearer the start;
//! and a template that keeps winning bubbles up the list. This module follows those rules
//! step for step, with one detector's counters kept to itself (fail2ban shares part of them
//! among all detectors of a process).

use std::ops::Range;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::error::DateError;
use super::fields::{CivilNow, LocalZone};
use super::native::NativeMatch;
use super::native::{YearRange, seconds_apart};
use super::pattern::LINE_BEGIN;
use super::template::{
    Found, Hit, Template, contains_date_keyword, date_templates, default_templates, none_template,
    pattern_template,
};

/// A date found in a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateMatch {
    /// The time of the date; `now` when `parsed` is false.
    pub time: Timestamp,
    /// Byte range of the date in the line: what fail2ban cuts out before the failregex
    /// sees the line (the text before and after it is joined). Empty when nothing is cut.
    pub span: Range<usize>,
    /// The template that matched (an index for [`DateDetector::template_name`]).
    pub template: usize,
    /// False when the template matched but gave no date: an empty match (`{NONE}`, an
    /// optional pattern) or fields that make no valid date (31 April, an unknown zone
    /// abbreviation). fail2ban then uses the previous line's date if it is less than a
    /// minute old, else "now"; that choice belongs to the caller.
    pub parsed: bool,
}

impl DateMatch {
    /// The text before and after the date: fail2ban matches the failregex against the two
    /// joined.
    pub fn around<'a>(&self, line: &'a str) -> (&'a str, &'a str) {
        let start = self.span.start.min(line.len());
        let end = self.span.end.clamp(start, line.len());
        match (line.get(..start), line.get(end..)) {
            (Some(before), Some(after)) => (before, after),
            _ => ("", line),
        }
    }
}

/// A template's place in the detector's current order, with its counters.
#[derive(Debug, Clone)]
struct Entry {
    template: usize,
    /// How often it gave the date of a line.
    hits: u64,
    /// When it last did (seconds, from the caller's clock).
    last_used: f64,
    /// Character offset of its last date in its line.
    distance: usize,
}

/// Where the last date was: its character offset and the characters on either side.
#[derive(Debug, Clone, Copy)]
struct Edge {
    at: usize,
    before: Option<char>,
    after: Option<char>,
}

/// Finds dates in log lines; one detector per log source, fed that source's lines in order.
#[derive(Debug, Clone)]
pub struct DateDetector {
    templates: Vec<Template>,
    order: Vec<Entry>,
    /// Per template: how often a search found something, win or not.
    found: Vec<u64>,
    last_start: Edge,
    last_end: Edge,
    last_index: Option<usize>,
    first_unused: usize,
    zone: LocalZone,
    none: bool,
    /// The last "now" converted to civil time, by its whole second.
    civil_cache: Option<(i64, CivilNow)>,
    memo: Memo,
    /// Word starts of the line being searched (valid while `starts_valid`).
    starts: Vec<u32>,
    starts_valid: bool,
    /// The last line-start match of a native template, with the bytes it depended on.
    start_memo: StartMemo,
    /// The line's date came from the line-start memo (or set it): how many seconds it is
    /// after the memo's date.
    start_delta: Option<i64>,
    /// With a `start_delta` other than 0: where the seconds digits are in the memo's key,
    /// and the line's two digits.
    start_digits: Option<(usize, [u8; 2])>,
    /// A native match's memory, kept from the last line for the next.
    spare: Option<Box<NativeMatch>>,
}

/// A native template's match at the line start depends only on the bytes its search
/// looked at, from where the date may begin (the line start, or just after the first `X`
/// of a `^[^X]*X({DATE})` datepattern): lines alike there (stamped in the same second,
/// from the same host) get the same match without a search.
#[derive(Debug, Clone, Default)]
struct StartMemo {
    template: Option<usize>,
    /// Where the search began to read the date.
    origin: usize,
    /// The bytes looked at from `origin` on.
    key: Vec<u8>,
    /// The search saw the end of the line: only the same line end gives the same match.
    whole: bool,
    found: Option<NativeMatch>,
    /// The time of the date in the bytes of `key`, read in the second `KeyTime::second`.
    time: Option<KeyTime>,
}

/// The time of a start memo's date (in seconds), with the window a date differing from
/// it only in its seconds digits may be shifted in.
#[derive(Debug, Clone, Copy)]
struct KeyTime {
    second: i64,
    t: i64,
    window: Window,
}

/// The times (in seconds) a date just read may take when another date differs from it
/// only in its seconds, as its time plus the difference: no zone transition nearby and no
/// year inference at play (see [`DateDetector::shift_window`]).
#[derive(Debug, Clone, Copy)]
struct Window {
    lo: i64,
    hi: i64,
}

impl Window {
    /// `t` (in seconds) plus `delta`, when that stays in the window.
    fn shift(self, t: i64, delta: i64) -> Option<Timestamp> {
        let t = t + delta;
        (self.lo <= t && t <= self.hi)
            .then(|| Timestamp::from_second(t).ok())
            .flatten()
    }
}

impl StartMemo {
    /// The remembered match, if it holds for `line`, whose date would begin at
    /// `origin`; with how far the match moves (the difference of the origins), how many
    /// seconds the line's date is after the remembered one, and where in `key` the
    /// seconds digits are when they differ.
    fn get(
        &self,
        template: usize,
        line: &str,
        origin: usize,
    ) -> Option<(&NativeMatch, isize, i64, Option<usize>)> {
        if self.template != Some(template) {
            return None;
        }
        let found = self.found.as_ref()?;
        let b = line.as_bytes().get(origin..)?;
        let k = self.key.as_slice();
        if (self.whole && b.len() != k.len()) || b.len() < k.len() {
            return None;
        }
        let b = &b[..k.len()];
        let by = origin as isize - self.origin as isize;
        if b == k {
            return Some((found, by, 0, None));
        }
        // The same line start but for the seconds: the same match.
        let at = found.second_digits(k, self.origin)?;
        seconds_apart(b, k, at).map(|d| (found, by, d, Some(at)))
    }

    /// Makes the key the bytes of a line that differs from it only in the seconds digits
    /// at `at` (the line's being `digits`), whose date is at `t`: the lines after it,
    /// often of the same second, then find the key as it is.
    fn rekey(&mut self, at: usize, digits: [u8; 2], t: i64) {
        self.key[at..at + 2].copy_from_slice(&digits);
        if let Some(k) = &mut self.time {
            k.t = t;
        }
    }

    /// The time of a date `delta` seconds after the remembered one, read in `second`,
    /// when the remembered time allows the shift.
    fn time(&self, second: i64, delta: i64) -> Option<Timestamp> {
        let k = self.time.filter(|k| k.second == second)?;
        k.window.shift(k.t, delta)
    }

    fn set(&mut self, template: usize, line: &str, origin: usize, m: &NativeMatch) {
        let b = line.as_bytes();
        let n = m.seen.min(b.len());
        self.template = Some(template);
        self.origin = origin;
        self.whole = m.seen >= b.len();
        self.key.clear();
        self.key.extend_from_slice(&b[origin.min(n)..n]);
        self.found = Some(m.clone());
        self.time = None;
    }
}

/// The last native date text read, with the second it was read in and its time.
#[derive(Debug, Clone)]
struct Memo {
    template: usize,
    second: i64,
    text: String,
    time: Option<Timestamp>,
    shift: Option<Shift>,
}

/// For the last date: where its seconds are in its text, and the window it may be
/// shifted in.
#[derive(Debug, Clone, Copy)]
struct Shift {
    at: usize,
    window: Window,
}

/// How far from a zone transition a shifted time must stay: more than any change of
/// offset, so that no civil time in between is ambiguous or skipped.
const SHIFT_MARGIN: i64 = 26 * 3600;

impl Memo {
    /// The time of `text` by shifting the last one, when it differs only in its seconds.
    fn shifted(&self, template: usize, second: i64, text: &str) -> Option<Timestamp> {
        let sh = self.shift?;
        if self.template != template || self.second != second {
            return None;
        }
        let delta = seconds_apart(text.as_bytes(), self.text.as_bytes(), sh.at)?;
        sh.window.shift(self.time?.as_second(), delta)
    }
}

/// fail2ban holds a template back for five minutes before letting another one take its
/// place in the order regardless of their weights.
const UNUSED_SECONDS: f64 = 300.0;

impl DateDetector {
    /// `datepattern`: the filter's datepattern (None = fail2ban defaults).
    /// `zone`: the zone for dates without one (logtimezone or the local zone).
    pub fn new(datepattern: Option<&str>, zone: TimeZone) -> Result<DateDetector, DateError> {
        DateDetector::with_reference_time(datepattern, zone, Timestamp::now())
    }

    /// Like [`DateDetector::new`], with the time that decides which four-digit years the
    /// default templates accept: 2000 to the end of the decade three years after it (what
    /// fail2ban fixes when it starts).
    pub fn with_reference_time(
        datepattern: Option<&str>,
        zone: TimeZone,
        reference: Timestamp,
    ) -> Result<DateDetector, DateError> {
        let years = YearRange::for_year(zone.to_datetime(reference).year());
        let mut d = DateDetector {
            templates: Vec::new(),
            order: Vec::new(),
            found: Vec::new(),
            last_start: Edge {
                at: 1,
                before: None,
                after: None,
            },
            last_end: Edge {
                at: usize::MAX,
                before: None,
                after: None,
            },
            last_index: None,
            first_unused: 0,
            zone: LocalZone::new(zone),
            none: false,
            civil_cache: None,
            memo: Memo {
                template: usize::MAX,
                second: 0,
                text: String::new(),
                time: None,
                shift: None,
            },
            starts: Vec::new(),
            starts_valid: false,
            start_memo: StartMemo::default(),
            start_delta: None,
            start_digits: None,
            spare: None,
        };
        let lines: Vec<&str> = datepattern
            .unwrap_or("")
            .split('\n')
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        for line in &lines {
            d.append_line(line, years)?;
        }
        if d.templates.is_empty() {
            d.append_defaults(years, false);
        }
        d.none = lines.len() == 1 && lines[0].eq_ignore_ascii_case("{NONE}");
        Ok(d)
    }

    fn append_line(&mut self, line: &str, years: YearRange) -> Result<(), DateError> {
        let key = if line.contains('%') {
            line.to_string()
        } else {
            line.to_uppercase()
        };
        match key.as_str() {
            "{^LN-BEG}" => self.append_defaults(years, true),
            "{DEFAULT}" => self.append_defaults(years, false),
            "{NONE}" => self.append(line, none_template(), false)?,
            _ if contains_date_keyword(&key) => {
                let ignore_dup = !self.templates.is_empty();
                // Errors name the line as written, not one of its expansions.
                let templates = date_templates(line, years).map_err(|e| match e {
                    DateError::Regex { reason, .. } => DateError::Regex {
                        pattern: line.to_string(),
                        reason,
                    },
                    DateError::UnknownCode { code, .. } => DateError::UnknownCode {
                        pattern: line.to_string(),
                        at: line.find(&code).unwrap_or(0),
                        code,
                    },
                    other => other,
                })?;
                for t in templates {
                    self.append(line, t, ignore_dup)?;
                }
            }
            _ => self.append(line, pattern_template(line, years)?, false)?,
        }
        Ok(())
    }

    fn append_defaults(&mut self, years: YearRange, line_begin_only: bool) {
        let ignore_dup = !self.templates.is_empty();
        for t in default_templates(years) {
            if line_begin_only && t.flags & LINE_BEGIN == 0 {
                continue;
            }
            // Duplicates among the defaults are skipped, never reported.
            let _ = self.append("", t, ignore_dup);
        }
    }

    fn append(&mut self, line: &str, t: Template, ignore_dup: bool) -> Result<(), DateError> {
        if self.templates.iter().any(|x| x.name == t.name) {
            if ignore_dup {
                return Ok(());
            }
            return Err(DateError::Duplicate {
                pattern: line.to_string(),
                name: t.name,
            });
        }
        self.order.push(Entry {
            template: self.templates.len(),
            hits: 0,
            last_used: 0.0,
            distance: 0x7fff_ffff,
        });
        self.templates.push(t);
        self.found.push(0);
        Ok(())
    }

    /// True for `{NONE}`: every line takes "now".
    pub fn is_none(&self) -> bool {
        self.none
    }

    /// Human-readable name of a template (for "Date template hits" in warden test).
    pub fn template_name(&self, template: usize) -> &str {
        self.templates.get(template).map_or("", |t| t.name.as_str())
    }

    /// Number of templates; indexes run from 0 to this.
    pub fn template_count(&self) -> usize {
        self.templates.len()
    }

    /// How many lines a template gave the date of.
    pub fn template_hits(&self, template: usize) -> u64 {
        self.order
            .iter()
            .find(|e| e.template == template)
            .map_or(0, |e| e.hits)
    }

    /// The zone used for dates without one.
    pub fn zone(&self) -> &TimeZone {
        self.zone.zone()
    }

    /// Finds the date in `line`; `now` drives year inference.
    pub fn detect(&mut self, line: &str, now: Timestamp) -> Option<DateMatch> {
        self.start_delta = None;
        self.start_digits = None;
        let (template, hit) = self.match_time(line, now)?;
        let span = match &hit.group {
            Some(g) => g.clone(),
            None => hit.start..hit.start,
        };
        let unparsed = |span| DateMatch {
            time: now,
            span,
            template,
            parsed: false,
        };
        if span.is_empty() {
            return Some(unparsed(span));
        }
        let second = now.as_second();
        // A date from the line-start memo: the memo's time plus the difference of the
        // seconds, when that time is known for this second.
        let delta = self
            .start_delta
            .filter(|_| self.start_memo.template == Some(template));
        if let Some(t) = delta.and_then(|d| self.start_memo.time(second, d)) {
            if let Some((at, digits)) = self.start_digits {
                self.start_memo.rekey(at, digits, t.as_second());
            }
            if let Found::Native(m) = hit.found {
                self.spare = Some(m);
            }
            return Some(DateMatch {
                time: t,
                span,
                template,
                parsed: true,
            });
        }
        // A date depends on the text of its fields and the current second only: bursts of
        // lines stamped with the same second reuse the last result.
        let key = self.templates[template].value_text(line, &hit);
        // Where the date's seconds are and the window its time may shift in, once read.
        let mut shift: Option<Option<(usize, Window)>> = None;
        let time = match key {
            Some(text)
                if self.memo.template == template
                    && self.memo.second == second
                    && self.memo.text == text =>
            {
                self.memo.time
            }
            Some(text) if let Some(t) = self.memo.shifted(template, second, text) => {
                self.memo.text.clear();
                self.memo.text.push_str(text);
                self.memo.time = Some(t);
                Some(t)
            }
            _ => {
                let civil_now = self.civil_now(now);
                let time = self.templates[template].value(line, &hit, &civil_now, &mut self.zone);
                if let Some(text) = key {
                    self.memo.template = template;
                    self.memo.second = second;
                    self.memo.text.clear();
                    self.memo.text.push_str(text);
                    self.memo.time = time;
                    let sh = time.and_then(|t| self.seconds_shift(template, &hit, line, t, now));
                    shift = Some(sh);
                    self.memo.shift = sh.and_then(|(at, window)| {
                        let at = at
                            .checked_sub(span.start)
                            .filter(|at| at + 2 <= span.len())?;
                        Some(Shift { at, window })
                    });
                }
                time
            }
        };
        // The memo's date time, for the next lines that differ from it only in seconds.
        // Only dates read from fields, which carry whole seconds (an epoch keeps its
        // fraction).
        if let (Some(d), Some(time)) = (delta, time)
            && self.templates[template].fields_value()
        {
            let sh = shift.unwrap_or_else(|| self.seconds_shift(template, &hit, line, time, now));
            let t = time.as_second();
            self.start_memo.time = Some(KeyTime {
                second,
                t: t - d,
                // A date that cannot be shifted still serves lines with the same seconds.
                window: sh.map_or(Window { lo: t, hi: t }, |(_, w)| w),
            });
        }
        match hit.found {
            // The memory of a native match serves the next line-start memo hit.
            Found::Native(m) => self.spare = Some(m),
            found => self.templates[template].recycle(Hit { found, ..hit }),
        }
        match time {
            Some(time) => Some(DateMatch {
                time,
                span,
                template,
                parsed: true,
            }),
            None => Some(unparsed(span)),
        }
    }

    /// The times around `t` (a date just read) that a date in the same minute may be
    /// shifted to: far from any transition of the detector's zone, and not more than a
    /// day ahead of `now` (where fail2ban would take last year's date instead).
    fn shift_window(&self, t: Timestamp, now: Timestamp) -> Option<Window> {
        let zone = self.zone.zone();
        let secs = t.as_second();
        let mut lo = secs - 60;
        let mut hi = secs + 60;
        if let Some(prev) = zone.preceding(t).next() {
            lo = lo.max(prev.timestamp().as_second() + SHIFT_MARGIN);
        }
        if let Some(next) = zone.following(t).next() {
            hi = hi.min(next.timestamp().as_second() - SHIFT_MARGIN);
        }
        // fail2ban compares civil times: a date without a year more than a day ahead of
        // now, in the zone, is last year's. A date of another year than now's (last
        // year's, or written so) is left to the full computation; for the others the
        // shifted time must stay at or before that limit.
        if zone.to_datetime(t).year() != zone.to_datetime(now).year() {
            return None;
        }
        let offset = |x: Timestamp| i64::from(zone.to_offset(x).seconds());
        let threshold = now.as_second() + 86_400 + offset(now) - offset(t);
        hi = hi.min(threshold);
        (lo <= secs && secs <= hi).then_some(Window { lo, hi })
    }

    /// For a native date read from fields, at time `t`: where its seconds are in the
    /// line, and the window its time may shift in.
    fn seconds_shift(
        &self,
        template: usize,
        hit: &Hit<'_>,
        line: &str,
        t: Timestamp,
        now: Timestamp,
    ) -> Option<(usize, Window)> {
        let Found::Native(m) = &hit.found else {
            return None;
        };
        if !self.templates[template].fields_value() {
            return None;
        }
        m.shiftable_second(line.as_bytes(), 0)
            .zip(self.shift_window(t, now))
    }

    /// `now` as a civil time in the detector's zone, to the whole second. Dates carry
    /// whole seconds, so comparing them with the truncated "now" decides the same; the
    /// conversion is kept for the second, as consecutive lines mostly share it.
    fn civil_now(&mut self, now: Timestamp) -> CivilNow {
        let second = now.as_second();
        match self.civil_cache {
            Some((s, c)) if s == second => c,
            _ => {
                let now = self
                    .zone
                    .zone()
                    .to_datetime(Timestamp::from_second(second).unwrap_or(now));
                let c = CivilNow::new(now);
                self.civil_cache = Some((second, c));
                c
            }
        }
    }

    fn search<'t>(
        &mut self,
        template: usize,
        line: &'t str,
        pos: usize,
        endpos: usize,
    ) -> Option<Hit<'t>> {
        // Whole-line searches share the line's word starts, computed at the first one.
        let starts = if pos == 0 && endpos == line.len() && self.templates[template].word_bounded()
        {
            if !self.starts_valid {
                super::native::word_starts(line, &mut self.starts);
                self.starts_valid = true;
            }
            Some(self.starts.as_slice())
        } else {
            None
        };
        let hit = self.templates[template].search(line, pos, endpos, starts);
        if hit.is_some() {
            self.found[template] += 1;
        }
        hit
    }

    /// The search of a template tied to the line start, through the memo.
    fn search_line_start<'t>(&mut self, template: usize, line: &'t str) -> Option<Hit<'t>> {
        let origin = self.templates[template].origin(line);
        if let Some(origin) = origin
            && let Some((m, by, delta, at)) = self.start_memo.get(template, line, origin)
        {
            self.found[template] += 1;
            self.start_delta = Some(delta);
            self.start_digits = at.map(|at| {
                let b = line.as_bytes();
                (at, [b[origin + at], b[origin + at + 1]])
            });
            let mut found = match self.spare.take() {
                Some(mut b) => {
                    b.as_mut().clone_from(m);
                    b
                }
                None => Box::new(m.clone()),
            };
            if by != 0 {
                found.move_by(by);
            }
            return Some(Hit {
                start: found.start,
                end: found.group.end,
                group: Some(found.group.clone()),
                found: Found::Native(found),
            });
        }
        let hit = self.search(template, line, 0, line.len());
        if let Some(Hit {
            found: Found::Native(m),
            ..
        }) = &hit
            && m.seen != usize::MAX
            && let Some(origin) = origin
        {
            self.start_memo.set(template, line, origin, m);
            self.start_delta = Some(0);
        }
        hit
    }

    /// fail2ban's `matchTime`: the winning template (stable index) and its match.
    fn match_time<'t>(&mut self, line: &'t str, now: Timestamp) -> Option<(usize, Hit<'t>)> {
        self.starts_valid = false;
        // Offsets are Python's, in characters; in an ASCII stretch they are byte offsets.
        let ascii = ascii_prefix(line);
        let n = self.order.len();
        // Hit, character offset of its start (distance), index in the order.
        let mut best: Option<(Hit<'t>, usize, usize)> = None;
        let mut winner: Option<(Hit<'t>, usize, usize)> = None;
        let mut skip = usize::MAX;

        if let Some(i) = self.last_index.filter(|i| *i < n) {
            let template = self.order[i].template;
            let anchored = self.templates[template].anchored();
            let hit = if anchored {
                skip = i;
                self.search_line_start(template, line)
            } else if self.same_surroundings(line, ascii) {
                let pos = byte_of_char(line, self.last_start.at, ascii);
                let end = byte_of_char(line, self.last_end.at, ascii);
                self.search(template, line, pos, end)
            } else {
                skip = i;
                self.search(template, line, 0, line.len())
            };
            if let Some(hit) = hit {
                let start = char_index(line, hit.start, ascii);
                let end = char_index(line, hit.end, ascii);
                if n == 1 || anchored || (start == self.last_start.at && end == self.last_end.at) {
                    winner = Some((hit, start, i));
                } else {
                    // Same template, different place: maybe another format now; look
                    // through all before settling for it.
                    best = Some((hit, start, i));
                }
            }
        }

        if winner.is_none() {
            let mut i = 0;
            while i < n {
                if i == skip {
                    i += 1;
                    continue;
                }
                let template = self.order[i].template;
                if let Some(hit) = self.search(template, line, 0, line.len()) {
                    let distance = char_index(line, hit.start, ascii);
                    if i + 1 >= n || self.templates[template].anchored() {
                        winner = Some((hit, distance, i));
                        break;
                    }
                    // At the line start after earlier wins, and the next template has
                    // never found anything: nothing better is coming.
                    if distance == 0
                        && self.order[i].hits > 0
                        && self.found[self.order[i + 1].template] == 0
                    {
                        winner = Some((hit, distance, i));
                        break;
                    }
                    if distance > self.order[i].distance || distance > self.last_start.at {
                        // Further into the line than before: possibly a date inside the
                        // message. Keep the nearest such candidate and go on.
                        if best.as_ref().is_none_or(|b| distance < b.1) {
                            best = Some((hit, distance, i));
                        }
                        i += 1;
                        continue;
                    }
                    winner = Some((hit, distance, i));
                    break;
                }
                i += 1;
            }
            if winner.is_none() {
                winner = best;
            }
        }

        let (hit, start, mut i) = winner?;
        let end = char_index(line, hit.end, ascii);
        let entry = &mut self.order[i];
        entry.hits += 1;
        entry.last_used = now.as_duration().as_secs_f64();
        entry.distance = start;
        let template = entry.template;
        if self.first_unused == i {
            self.first_unused += 1;
        }
        self.last_start = Edge {
            at: start,
            before: None,
            after: None,
        };
        self.last_end = Edge {
            at: end,
            before: None,
            after: None,
        };
        // The characters around the date are read again only when the next line's first
        // search is this template's and it is not tied to the line start.
        if !self.templates[template].anchored() {
            self.last_start.before = start.checked_sub(1).and_then(|p| char_at(line, p, ascii));
            self.last_start.after = char_at(line, start, ascii);
            // At offset 0 fail2ban reads `line[-1]`: the last character.
            self.last_end.before = match end.checked_sub(1) {
                Some(p) => char_at(line, p, ascii),
                None => line.chars().next_back(),
            };
            self.last_end.after = char_at(line, end, ascii);
        }
        if i != 0 && Some(i) != self.last_index {
            i = self.reorder(i);
        }
        self.last_index = Some(i);
        Some((template, hit))
    }

    /// Whether the characters around the previous date's place still look like a date's
    /// surroundings in this line, so that the search can stay inside that stretch.
    fn same_surroundings(&self, line: &str, ascii: usize) -> bool {
        let s = self.last_start;
        let e = self.last_end;
        let not_alnum = |c: Option<char>| !c.is_some_and(char::is_alphanumeric);
        let start_ok = s.at.checked_sub(1).and_then(|p| char_at(line, p, ascii)) == s.before
            || (char_at(line, s.at, ascii) == s.after && not_alnum(s.after));
        let end_ok = char_at(line, e.at, ascii) == e.after
            || (e.at.checked_sub(1).and_then(|p| char_at(line, p, ascii)) == e.before
                && not_alnum(e.before));
        start_ok && end_ok
    }

    fn weight(&self, e: &Entry) -> f64 {
        e.hits as f64 * self.templates[e.template].weight / e.distance.max(1) as f64
    }

    /// Moves a template that just won towards the front: to the first never-used place or
    /// half-way up when it outweighs the one there (or that one has been idle for a
    /// while), else one place up on the same terms.
    fn reorder(&mut self, num: usize) -> usize {
        let entry = &self.order[num];
        let idle_before = entry.last_used - UNUSED_SECONDS;
        let weight = self.weight(entry);
        let movable = |d: &DateDetector, pos: usize| {
            weight > d.weight(&d.order[pos]) || idle_before > d.order[pos].last_used
        };
        let mut pos = if self.first_unused < num {
            self.first_unused
        } else {
            num / 2
        };
        if !movable(self, pos) {
            if pos == num - 1 {
                return num;
            }
            pos = num - 1;
            if !movable(self, pos) {
                return num;
            }
        }
        let e = self.order.remove(num);
        self.order.insert(pos, e);
        while self.first_unused < self.order.len() && self.order[self.first_unused].hits > 0 {
            self.first_unused += 1;
        }
        pos
    }
}

/// The length of the line's start that is known to be ASCII (one cheap check of up to 64
/// bytes): offsets below it are byte and character offsets alike.
fn ascii_prefix(line: &str) -> usize {
    let b = line.as_bytes();
    let n = b.len().min(64);
    if b[..n].is_ascii() { n } else { 0 }
}

/// The character at character index `i`; `ascii` is [`ascii_prefix`].
fn char_at(line: &str, i: usize, ascii: usize) -> Option<char> {
    let b = line.as_bytes();
    if i < ascii || (i < b.len() && b[..=i].is_ascii()) {
        return Some(char::from(b[i]));
    }
    line.chars().nth(i)
}

/// Byte offset of character index `i`, clamped to the line's end.
fn byte_of_char(line: &str, i: usize, ascii: usize) -> usize {
    if i < ascii {
        return i;
    }
    if i >= line.len() {
        return if line.is_ascii() {
            line.len()
        } else {
            line.char_indices().nth(i).map_or(line.len(), |(b, _)| b)
        };
    }
    if line.as_bytes()[..i].is_ascii() {
        return i;
    }
    line.char_indices().nth(i).map_or(line.len(), |(b, _)| b)
}

/// Character index of byte offset `b` (a character boundary).
fn char_index(line: &str, b: usize, ascii: usize) -> usize {
    if b <= ascii {
        return b;
    }
    let prefix = &line.as_bytes()[..b];
    if prefix.is_ascii() {
        b
    } else {
        line[..b].chars().count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_124_013_600; // 2005-08-14 10:00:00 UTC

    fn now() -> Timestamp {
        Timestamp::from_second(NOW).unwrap()
    }

    fn detector(p: Option<&str>) -> DateDetector {
        DateDetector::with_reference_time(
            p,
            TimeZone::UTC,
            Timestamp::from_second(1_780_000_000).unwrap(),
        )
        .unwrap_or_else(|e| panic!("{p:?}: {e}"))
    }

    fn secs(t: Timestamp) -> f64 {
        t.as_nanosecond() as f64 / 1e9
    }

    /// Every format code through a whole detector; spans and times as fail2ban 1.0.2
    /// gives them (TZ=UTC, now 2005-08-14 10:00:00).
    #[test]
    fn format_codes() {
        /// Pattern, line, and the date text and time fail2ban finds.
        type Case = (&'static str, &'static str, Option<(&'static str, f64)>);
        let cases: &[Case] = &[
            (
                "%Y-%m-%d %H:%M:%S",
                "x 2005-08-14 09:30:00 y",
                Some(("2005-08-14 09:30:00", 1124011800.0)),
            ),
            (
                "%a %b %d %H:%M:%S %Y",
                "Sun Aug 14 09:30:00 2005 sshd",
                Some(("Sun Aug 14 09:30:00 2005", 1124011800.0)),
            ),
            (
                "%A, %B %d %Y %H:%M",
                "Sunday, AUGUST 14 2005 09:30",
                Some(("Sunday, AUGUST 14 2005 09:30", 1124011800.0)),
            ),
            (
                "%c",
                "[Sun Aug 14 09:30:00 2005]",
                Some(("Sun Aug 14 09:30:00 2005", 1124011800.0)),
            ),
            (
                "%x %X",
                "08/14/05 09:30:00",
                Some(("08/14/05 09:30:00", 1124011800.0)),
            ),
            (
                "%d.%m.%y %I:%M:%S %p",
                "14.08.05 09:30:00 PM",
                Some(("14.08.05 09:30:00 PM", 1124055000.0)),
            ),
            (
                "%j/%Y %H:%M",
                "226/2005 09:30",
                Some(("226/2005 09:30", 1124011800.0)),
            ),
            (
                "%Y %U %w %H:%M",
                "2005 33 0 09:30",
                Some(("2005 33 0 09:30", 1124011800.0)),
            ),
            (
                "%Y %W %a %H:%M",
                "2005 32 Sun 09:30",
                Some(("2005 32 Sun 09:30", 1124011800.0)),
            ),
            (
                "%Y-%m-%dT%H:%M:%S%z",
                "2005-08-14T11:30:00+0200",
                Some(("2005-08-14T11:30:00+0200", 1124011800.0)),
            ),
            (
                "%Y-%m-%dT%H:%M:%S%z",
                "2005-08-14T09:30:00Z",
                Some(("2005-08-14T09:30:00Z", 1124011800.0)),
            ),
            (
                "%Y-%m-%d %H:%M:%S %Z",
                "2005-08-14 11:30:00 CEST",
                Some(("2005-08-14 11:30:00 CEST", 1124011800.0)),
            ),
            (
                "%ExY%Exm%Exd%ExH%ExM%ExS",
                "20050814093000",
                Some(("20050814093000", 1124011800.0)),
            ),
            (
                "%Exy-%Exm-%Exd %Exk:%ExM",
                "05-08-14  9:30",
                Some(("05-08-14  9:30", 1124011800.0)),
            ),
            (
                "%d/%m/%Y %l:%M %p",
                "14/08/2005  9:30 pm",
                Some(("14/08/2005  9:30 pm", 1124055000.0)),
            ),
            (
                "%Y-%m-%d %H:%M:%S %ExZ",
                "2005-08-14 11:30:00 CEST",
                Some(("2005-08-14 11:30:00 CEST", 1124011800.0)),
            ),
            (
                "%Y-%m-%d %H:%M:%S %Exz",
                "2005-08-14 11:30:00 CET+0100",
                Some(("2005-08-14 11:30:00 CET+0100", 1124011800.0)),
            ),
            (
                "%Y-%m-%d %H:%M:%S.%f",
                "2005-08-14 09:30:00.123456",
                Some(("2005-08-14 09:30:00.123456", 1124011800.0)),
            ),
            (
                "%% %Y-%m-%d %H:%M",
                "% 2005-08-14 09:30",
                Some(("% 2005-08-14 09:30", 1124011800.0)),
            ),
            // %G, %V and %u are matched but not used.
            (
                "%G-%V-%u %H:%M",
                "2005-32-7 09:30",
                Some(("2005-32-7 09:30", 1124011800.0)),
            ),
            (
                "%b %d %k:%M:%S",
                "Aug 14  9:30:00",
                Some(("Aug 14  9:30:00", 1124011800.0)),
            ),
            ("%H:%M:%S", "9:30:00", Some(("9:30:00", 1124011800.0))),
            // Later than now today: yesterday.
            ("%H:%M:%S", "11:30:00", Some(("11:30:00", 1123932600.0))),
            // More than a day ahead: last year; within a day: this year.
            (
                "%b %d %H:%M:%S",
                "Aug 15 10:30:00",
                Some(("Aug 15 10:30:00", 1092565800.0)),
            ),
            (
                "%b %d %H:%M:%S",
                "Aug 15 09:30:00",
                Some(("Aug 15 09:30:00", 1124098200.0)),
            ),
            ("%ExY-%m-%d", "2005-8-14", Some(("2005-8-14", 1123977600.0))),
            (
                "^%Y-%m-%d %H:%M",
                "2005-08-14 09:30",
                Some(("2005-08-14 09:30", 1124011800.0)),
            ),
            ("^%Y-%m-%d %H:%M", " 2005-08-14 09:30", None),
            (
                "{^LN-BEG}%Y-%m-%d %H:%M",
                "[2005-08-14 09:30]",
                Some(("2005-08-14 09:30", 1124011800.0)),
            ),
            ("{UNB}%H:%M", "x09:30y", Some(("09:30", 1124011800.0))),
            ("%H:%M", "x09:30y", None),
            (
                "%m/%d %H:%M$",
                "08/14 09:30",
                Some(("08/14 09:30", 1124011800.0)),
            ),
            ("%m/%d %H:%M$", "08/14 09:30 x", None),
            (
                r"^[^|]*\|(%Y-%m-%d)\|",
                "a|2005-08-14|b",
                Some(("2005-08-14", 1123977600.0)),
            ),
            (r"^\[{EPOCH}\]", "[1124011800.5] x", None),
            (
                r"^\[{EPOCH}\]",
                "[1124011800.500] x",
                Some(("[1124011800.500]", 1124011800.5)),
            ),
            (
                r"^\[{LEPOCH}\]",
                "[1124011800500] x",
                Some(("[1124011800500]", 1124011800.5)),
            ),
            // `%s` is warden's: fail2ban 1.0.2 has no such code.
            ("^%s", "1124011800 x", Some(("1124011800", 1124011800.0))),
        ];
        for (p, line, want) in cases {
            let mut d = detector(Some(p));
            let got = d.detect(line, now());
            match (want, got) {
                (None, None) => {}
                (Some((text, t)), Some(m)) => {
                    assert_eq!(&line[m.span.clone()], *text, "{p} on {line:?}");
                    assert!(m.parsed, "{p} on {line:?}");
                    assert!(
                        (secs(m.time) - t).abs() < 1e-6,
                        "{p} on {line:?}: {} != {t}",
                        secs(m.time)
                    );
                }
                (want, got) => panic!("{p} on {line:?}: want {want:?}, got {got:?}"),
            }
        }
    }

    /// Lines that begin alike reuse the last line-start match only when it cannot
    /// differ: the same stream through a detector whose memo is cleared before every line
    /// gives the same dates and spans.
    #[test]
    fn line_start_memo_changes_no_result() {
        let heads = [
            "Mar  2 00:00:01",
            "Mar  2 00:00:01.5",
            "Mar  2 00:00:01 2005",
            "Mar  2 00:00:01 20",
            "Mar 12 00:00:01",
            "Mar  2 00:00:0",
            "Tue Mar  2 00:00:01",
            "[Mar  2 00:00:01]",
            "2005-03-02 00:00:01",
            "2005-03-02T00:00:01.25+02:00",
            "",
            "[31/Oct/2006:09:22:55 -0000]",
            "10.0.0.1 - - [31/Oct/2006:09:22:55 -0000]",
            "10.0.0.12 - - [31/Oct/2006:09:22:56 -0000]",
            "10.0.0.12 - - [31/Oct/2006:09:22:56",
            "x [Mar  2 00:00:01",
            "[[Mar  2 00:00:01",
            "é [31/Oct/2006:09:22:55",
            "1112345678.123",
            "1112345678.123 x",
            "1112345679",
        ];
        let tails = ["", " web1 sshd[1]: x", "x", " 2005", ".7 host", "  ", " é"];
        let mut next = crate::test_rng(0x9e37_79b9_7f4a_7c15u64);
        for dp in [None, Some("{^LN-BEG}"), Some(r"^[^\[]*\[({DATE})")] {
            let mut memo = detector(dp);
            let mut fresh = detector(dp);
            let mut hits = 0;
            for _ in 0..5000 {
                let line = format!("{}{}", heads[next(heads.len())], tails[next(tails.len())]);
                fresh.start_memo = StartMemo::default();
                let a = memo.detect(&line, now());
                let b = fresh.detect(&line, now());
                assert_eq!(a, b, "{dp:?} {line:?}");
                assert_eq!(memo.found, fresh.found, "{dp:?} {line:?}");
                hits += usize::from(a.is_some());
            }
            assert!(hits > 1000, "{hits}");
        }
    }

    /// A date that differs from the last one only in its seconds takes the last time
    /// plus the difference; that shortcut must give what a full reading gives, also next
    /// to DST transitions, around the "more than a day ahead is last year" limit, at the
    /// turn of the year and for templates with a year, a zone or a fraction.
    #[test]
    fn seconds_shortcut_changes_no_result() {
        let zones = [
            TimeZone::posix("CET-01CEST-02,M3.5.0,M10.5.0").unwrap(),
            TimeZone::UTC,
            TimeZone::posix("AEST-10AEDT,M10.1.0,M4.1.0/3").unwrap(),
        ];
        // now = 2005-08-14 12:00:00 UTC (fail2ban's test time)
        let nows = [
            now(),
            Timestamp::from_second(1_111_885_000).unwrap(), // 2005-03-27 01:03 UTC
            Timestamp::from_second(1_104_537_540).unwrap(), // 2004-12-31 23:59 UTC
        ];
        // Minutes around the interesting places: CET's spring and autumn changes, a day
        // after each "now", New Year, an ordinary day.
        let minutes = [
            "Mar 27 01:59",
            "Mar 27 02:00",
            "Mar 27 02:59",
            "Mar 27 03:00",
            "Oct 30 01:59",
            "Oct 30 02:00",
            "Oct 30 02:59",
            "Oct 30 03:00",
            "Aug 15 11:59",
            "Aug 15 12:00",
            "Aug 15 13:59",
            "Aug 15 14:00",
            "Mar 28 01:03",
            "Mar 28 03:03",
            "Jan  1 00:59",
            "Jan  1 01:00",
            "Dec 31 23:59",
            "Jan  1 00:00",
            "Jun  9 10:10",
            "Apr  3 02:59",
            "Oct  2 02:00",
        ];
        let tails = ["", " 2005", ".250", " +0300", " web1 sshd[1]: x"];
        let mut next = crate::test_rng(0x2545_f491_4f6c_dd1du64);
        let mut shifted = 0;
        for zone in &zones {
            for &now in &nows {
                for dp in [
                    None,
                    Some("{^LN-BEG}"),
                    Some("%b %d %H:%M:%S"),
                    Some(r"^[^\[]*\[({DATE})"),
                ] {
                    let after = dp.is_some_and(|p| p.ends_with("({DATE})"));
                    let mut memo = DateDetector::new(dp, zone.clone()).unwrap();
                    let mut fresh = DateDetector::new(dp, zone.clone()).unwrap();
                    let mut minute = minutes[0].to_string();
                    let mut tail = tails[0];
                    for _ in 0..3000 {
                        // Mostly the same minute and tail, with new seconds.
                        if next(8) == 0 {
                            minute = minutes[next(minutes.len())].to_string();
                            // After a `[`, also web-server dates, with a year and
                            // mostly a zone.
                            if after && next(2) == 0 {
                                let (mon, rest) = minute.split_at(3);
                                let (day, hm) = (rest[1..3].trim(), &rest[4..]);
                                let year = ["2005", "2004"][next(2)];
                                minute = format!("{day:0>2}/{mon}/{year}:{hm}");
                            }
                        }
                        if next(16) == 0 {
                            tail = [tails[next(tails.len())], " +0100]", " -0000] x"][next(3)];
                        }
                        // After the first `[`, behind a prefix that changes.
                        let head = if after {
                            ["[", "x [", "192.0.2.7 - - [", "192.0.2.77 - - ["][next(4)]
                        } else {
                            ""
                        };
                        let line = format!("{head}{minute}:{:02}{tail}", next(60));
                        fresh.memo.template = usize::MAX;
                        fresh.memo.shift = None;
                        fresh.start_memo = StartMemo::default();
                        let before = memo.memo.time;
                        let a = memo.detect(&line, now);
                        let b = fresh.detect(&line, now);
                        assert_eq!(
                            a.as_ref().map(|m| (m.time, m.span.clone(), m.parsed)),
                            b.as_ref().map(|m| (m.time, m.span.clone(), m.parsed)),
                            "{zone:?} now={now} {dp:?} {line:?}"
                        );
                        // Shifted by the time memo, or by the line-start memo.
                        shifted += usize::from(
                            (memo.memo.shift.is_some()
                                && before.is_some()
                                && before != memo.memo.time)
                                || (memo.start_delta.is_some_and(|d| d != 0)
                                    && memo.start_memo.time.is_some()),
                        );
                    }
                }
            }
        }
        assert!(shifted > 10_000, "{shifted}");
    }

    #[test]
    fn detectors_can_move_between_threads() {
        fn send_sync<T: Send + Sync + Clone>() {}
        send_sync::<DateDetector>();
    }

    #[test]
    fn repeated_dates_follow_now() {
        let mut d = detector(None);
        let line = "Aug 15 10:30:00 host x";
        let t = |d: &mut DateDetector, now: i64| {
            d.detect(line, Timestamp::from_second(now).unwrap())
                .unwrap()
                .time
                .as_second()
        };
        // More than a day ahead of now: last year, also when read again.
        assert_eq!(t(&mut d, NOW), 1_092_565_800);
        assert_eq!(t(&mut d, NOW), 1_092_565_800);
        // An hour later it is within a day: this year.
        assert_eq!(t(&mut d, NOW + 3600), 1_124_101_800);
    }

    #[test]
    fn text_around_the_date() {
        let mut d = detector(None);
        let line = "Aug 14 09:30:00 host sshd[1]: x";
        let m = d.detect(line, now()).unwrap();
        assert_eq!(m.around(line), ("", " host sshd[1]: x"));
        let line = "[14/Aug/2005:09:30:00 +0000] x";
        let m = d.detect(line, now()).unwrap();
        assert_eq!(m.around(line), ("[", "] x"));
    }

    #[test]
    fn none_takes_now_and_cuts_nothing() {
        let mut d = detector(Some("{NONE}"));
        assert!(d.is_none());
        let m = d.detect("anything 2005-08-14 09:30:00", now()).unwrap();
        assert_eq!((m.span, m.parsed, m.time), (0..0, false, now()));
        assert!(!detector(None).is_none());
        assert!(!detector(Some("{NONE}\n{^LN-BEG}")).is_none());
    }

    #[test]
    fn impossible_date_is_cut_but_unparsed() {
        let mut d = detector(None);
        let line = "2005-02-30 10:00:00 sshd[1]: x";
        let m = d.detect(line, now()).unwrap();
        assert_eq!(&line[m.span.clone()], "2005-02-30 10:00:00");
        assert!(!m.parsed);
        assert_eq!(m.time, now());
    }

    #[test]
    fn duplicate_lines_are_reported() {
        let err = DateDetector::new(Some("%H:%M\n%H:%M"), TimeZone::UTC).unwrap_err();
        assert_eq!(
            err.to_string(),
            "datepattern \"%H:%M\": there is already a template named \"24hour:Minute\""
        );
        // Defaults after a custom line skip their duplicates silently.
        let d = DateDetector::new(Some("{^LN-BEG}Epoch\n{^LN-BEG}"), TimeZone::UTC).unwrap();
        assert_eq!(d.template_count(), 17);
        assert_eq!(d.template_name(0), "{^LN-BEG}Epoch");
    }

    #[test]
    fn errors_name_the_line_as_written() {
        let err = DateDetector::new(Some("^(x{DATE}"), TimeZone::UTC).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("datepattern \"^(x{DATE}\": invalid regular expression"),
            "{err}"
        );
        let err = DateDetector::new(Some("^%q {DATE}"), TimeZone::UTC).unwrap_err();
        assert_eq!(
            err.to_string(),
            "datepattern \"^%q {DATE}\": unknown format code \"%q\" at byte 1"
        );
    }

    #[test]
    fn template_lists() {
        assert_eq!(detector(None).template_count(), 31);
        assert_eq!(detector(Some("")).template_count(), 31);
        assert_eq!(detector(Some("{DEFAULT}")).template_count(), 31);
        assert_eq!(detector(Some("{^LN-BEG}")).template_count(), 17);
        assert_eq!(detector(Some("^{DATE}")).template_count(), 17);
        assert_eq!(detector(Some("%H:%M\n  \n{^LN-BEG}")).template_count(), 18);
        assert_eq!(detector(None).template_name(99), "");
    }

    #[test]
    fn default_templates_by_name() {
        let mut d = detector(None);
        let cases = [
            (
                "2005-08-14 09:30:00 host x",
                "{^LN-BEG}ExYear(?P<_sep>[-/.])Month(?P=_sep)Day(?:T|  ?)24hour:Minute:Second(?:[.,]Microseconds)?(?:\\s*Zone offset)?",
                "2005-08-14 09:30:00",
            ),
            (
                "Aug 14 09:30:00 host sshd[1]: x",
                "{^LN-BEG}(?:DAY )?MON Day %k:Minute:Second(?:\\.Microseconds)?(?: ExYear)?",
                "Aug 14 09:30:00",
            ),
            (
                "192.0.2.1 - - [14/Aug/2005:09:30:00 +0000] \"GET /\"",
                "Day(?P<_sep>[-/])MON(?P=_sep)ExYear[ :]?24hour:Minute:Second(?:\\.Microseconds)?(?: Zone offset)?",
                "14/Aug/2005:09:30:00 +0000",
            ),
            ("1124011800.000 x", "{^LN-BEG}Epoch", "1124011800.000"),
            (
                "@40000000431f0f5a00000000 x",
                "{^LN-BEG}TAI64N",
                "@40000000431f0f5a00000000",
            ),
            (
                "050814  9:30:00 [Note] x",
                "{^LN-BEG}ExYear2ExMonthExDay  ?24hour:Minute:Second",
                "050814  9:30:00",
            ),
            (
                "<08/14/05@09:30:00> x",
                "^<Month/Day/ExYear2@24hour:Minute:Second>",
                "<08/14/05@09:30:00>",
            ),
        ];
        for (line, name, text) in cases {
            let m = d.detect(line, now()).unwrap_or_else(|| panic!("{line}"));
            assert_eq!(d.template_name(m.template), name, "{line}");
            assert_eq!(&line[m.span.clone()], text, "{line}");
            assert!(m.parsed, "{line}");
        }
    }

    #[test]
    fn the_winning_template_moves_up_and_is_tried_first() {
        let mut d = detector(None);
        let line = "x [14/Aug/2005:09:30:00 +0000] y";
        let first = d.detect(line, now()).unwrap();
        let hits_before = d.found.iter().sum::<u64>();
        // Same format again: one search (the cached template), no scan of the list.
        let again = d.detect("x [14/Aug/2005:09:31:00 +0000] y", now()).unwrap();
        assert_eq!(again.template, first.template);
        assert_eq!(d.found.iter().sum::<u64>(), hits_before + 1);
        assert_eq!(d.template_hits(first.template), 2);
        // It was moved up from its place near the end of the list.
        let place = d
            .order
            .iter()
            .position(|e| e.template == first.template)
            .unwrap();
        assert!(place < first.template, "{place}");
    }

    #[test]
    fn local_zone_with_dst() {
        let tz = TimeZone::posix("CET-01CEST-02,M3.5.0,M10.5.0").unwrap();
        let mut d = DateDetector::new(None, tz).unwrap();
        // Summer time: +02:00; winter: +01:00; an explicit zone wins.
        let t = |d: &mut DateDetector, l: &str| d.detect(l, now()).unwrap().time.as_second();
        assert_eq!(t(&mut d, "2005-08-14 11:30:00 x"), 1_124_011_800);
        assert_eq!(t(&mut d, "2005-01-14 10:30:00 x"), 1_105_695_000);
        assert_eq!(t(&mut d, "2005-08-14 09:30:00Z x"), 1_124_011_800);
        // In the spring-forward gap: moved forward by the gap.
        assert_eq!(t(&mut d, "2005-03-27 02:30:00 x"), 1_111_887_000);
    }
}
