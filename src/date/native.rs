//! The native matcher for fail2ban's default date templates.
//!
//! Each template is a short program of date fields (`%d`, `%b`, `%H`, …), literals and
//! optional parts. A small backtracking matcher runs it at each candidate position, trying
//! the alternatives of every field in the order a backtracking regex engine would, so the
//! span and the field values are the ones fail2ban's regular expressions produce, including
//! the trailing word-boundary check that makes `12:34:567` fall back to shorter fields.
//! Positions are byte offsets into UTF-8 text; every field is ASCII, so a match always
//! starts and ends on character boundaries.

use std::ops::Range;

use super::fields::{Fields, Key};

/// The captures a program can record, one per strptime field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Slot {
    Year,
    Year2,
    Month,
    Day,
    Hour,
    Hour12,
    Minute,
    Second,
    Fraction,
    MonthAbbr,
    WeekdayAbbr,
    AmPm,
    Zone,
}

const NSLOTS: usize = 13;
const UNSET: (u32, u32) = (u32::MAX, u32::MAX);

impl Slot {
    fn key(self) -> Key {
        match self {
            Slot::Year => Key::Year,
            Slot::Year2 => Key::Year2,
            Slot::Month => Key::Month,
            Slot::Day => Key::Day,
            Slot::Hour => Key::Hour,
            Slot::Hour12 => Key::Hour12,
            Slot::Minute => Key::Minute,
            Slot::Second => Key::Second,
            Slot::Fraction => Key::Fraction,
            Slot::MonthAbbr => Key::MonthAbbr,
            Slot::WeekdayAbbr => Key::WeekdayAbbr,
            Slot::AmPm => Key::AmPm,
            Slot::Zone => Key::Zone,
        }
    }
}

/// A date field with the alternatives of fail2ban's expansion of its format code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    /// `%ExY`: a four-digit year whose first three digits lie in the detector's range.
    ExYear,
    /// `%Exy`: two digits.
    Year2,
    /// `%m`: `0?[1-9]|1[0-2]`.
    Month,
    /// `%Exm`: `0[1-9]|1[0-2]`.
    ExMonth,
    /// `%d`: `[1-2]\d|[0 ]?[1-9]|3[0-1]`.
    Day,
    /// `%Exd`: `[1-2]\d|0[1-9]|3[0-1]`.
    ExDay,
    /// `%H`: `[0-1]?\d|2[0-3]`.
    Hour,
    /// `%ExH`: `[0-1]\d|2[0-3]`.
    ExHour,
    /// The hour of `%k` (its optional leading blank is a separate node): `[0-2]?\d`.
    KHour,
    /// `%M`: `[0-5]?\d`.
    Minute,
    /// `%ExM`: `[0-5]\d`.
    ExMinute,
    /// `%S`: `[0-5]?\d|6[0-1]`.
    Second,
    /// `%ExS`: `[0-5]\d|6[0-1]`.
    ExSecond,
    /// `%f`: one to six digits.
    Fraction,
    /// `%b`: English month abbreviation, any case.
    MonthAbbr,
    /// `%a`: English weekday abbreviation, any case.
    WeekdayAbbr,
    /// `%p`: `am` or `pm`, any case.
    AmPm,
    /// `%I`: `1[0-2]|0[1-9]|[1-9]`.
    Hour12,
    /// `%z`: `Z|UTC|GMT|[+-][01]\d(?::?\d{2})?`; `ci` when the template ignores case.
    ZoneOffset { ci: bool },
    /// `%Z` in a case-insensitive template: `Z|[A-Za-z]{3,5}`.
    ZoneName,
}

/// Candidate lengths of one field at one position, most preferred first.
#[derive(Default)]
struct Cands {
    len: [u8; 8],
    n: usize,
}

/// Membership in a short byte list (at most three bytes), without a memchr call.
#[inline]
fn in_set(set: &[u8], b: u8) -> bool {
    match *set {
        [x] => x == b,
        [x, y] => x == b || y == b,
        [x, y, z] => x == b || y == b || z == b,
        _ => set.contains(&b),
    }
}

/// False when `nodes` starts with a literal or byte set that `next` cannot satisfy.
#[inline]
fn fits_next(nodes: &[Node], next: Option<&u8>) -> bool {
    match nodes.first() {
        Some(Node::Lit(b)) => next == Some(b),
        Some(Node::OneOf(set)) => next.is_some_and(|c| in_set(set, *c)),
        _ => true,
    }
}

/// False when `nodes` starts with something that cannot match at the start of `s`
/// (a literal, a byte set, or a field with no candidate).
#[inline]
fn can_start(nodes: &[Node], s: &[u8], years: YearRange) -> bool {
    match nodes.first() {
        Some(Node::F(f)) => {
            let mut c = Cands::default();
            f.candidates(s, years, &mut c);
            c.n > 0
        }
        _ => fits_next(nodes, s.first()),
    }
}

impl Cands {
    fn retain(&mut self, keep: impl Fn(u8) -> bool) {
        let mut n = 0;
        for i in 0..self.n {
            if keep(self.len[i]) {
                self.len[n] = self.len[i];
                n += 1;
            }
        }
        self.n = n;
    }

    fn push(&mut self, l: u8) {
        // The same length twice would replay the same state; keep the first.
        if l > 0 && !self.len[..self.n].contains(&l) && self.n < self.len.len() {
            self.len[self.n] = l;
            self.n += 1;
        }
    }
}

#[inline]
fn dig(c: u8) -> bool {
    c.is_ascii_digit()
}

#[inline]
fn within(c: u8, lo: u8, hi: u8) -> bool {
    (lo..=hi).contains(&c)
}

const MONTH_ABBRS: [&[u8; 3]; 12] = [
    b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec",
];
const WEEKDAY_ABBRS: [&[u8; 3]; 7] = [b"mon", b"tue", b"wed", b"thu", b"fri", b"sat", b"sun"];

fn word3(at: &[u8], list: &[&[u8; 3]]) -> bool {
    at.len() >= 3 && list.iter().any(|w| at[..3].eq_ignore_ascii_case(&w[..]))
}

fn eq_ci(at: &[u8], word: &[u8], ci: bool) -> bool {
    at.len() >= word.len()
        && if ci {
            at[..word.len()].eq_ignore_ascii_case(word)
        } else {
            &at[..word.len()] == word
        }
}

/// The accepted `%ExY` years, as a range of their first three digits: fail2ban accepts
/// years from 2000 to the end of the decade three years from now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct YearRange {
    lo: u16,
    hi: u16,
}

impl YearRange {
    /// The range fail2ban builds when started in `year`.
    pub(crate) fn for_year(year: i16) -> YearRange {
        let hi = (i32::from(year).max(2001) + 3) / 10;
        YearRange {
            lo: 200,
            hi: hi as u16,
        }
    }

    /// The regex fragment for `%ExY`'s three leading digits.
    pub(crate) fn regex_prefix(&self) -> String {
        let alts: Vec<String> = (self.lo..=self.hi).map(|p| p.to_string()).collect();
        format!("(?:{})", alts.join("|"))
    }

    fn accepts(&self, d: &[u8]) -> bool {
        if d.len() < 4 || !d[..4].iter().all(|c| dig(*c)) {
            return false;
        }
        let prefix =
            u16::from(d[0] - b'0') * 100 + u16::from(d[1] - b'0') * 10 + u16::from(d[2] - b'0');
        (self.lo..=self.hi).contains(&prefix)
    }
}

impl Field {
    fn slot(self) -> Slot {
        match self {
            Field::ExYear => Slot::Year,
            Field::Year2 => Slot::Year2,
            Field::Month | Field::ExMonth => Slot::Month,
            Field::Day | Field::ExDay => Slot::Day,
            Field::Hour | Field::ExHour | Field::KHour => Slot::Hour,
            Field::Minute | Field::ExMinute => Slot::Minute,
            Field::Second | Field::ExSecond => Slot::Second,
            Field::Fraction => Slot::Fraction,
            Field::MonthAbbr => Slot::MonthAbbr,
            Field::WeekdayAbbr => Slot::WeekdayAbbr,
            Field::AmPm => Slot::AmPm,
            Field::Hour12 => Slot::Hour12,
            Field::ZoneOffset { .. } | Field::ZoneName => Slot::Zone,
        }
    }

    /// How many bytes from its position [`Field::candidates`] may read.
    fn lookahead(self) -> usize {
        match self {
            Field::ExYear => 4,
            Field::Fraction | Field::ZoneOffset { .. } => 6,
            Field::ZoneName => 5,
            Field::MonthAbbr | Field::WeekdayAbbr => 3,
            _ => 2,
        }
    }

    /// The lengths this field can take at the start of `s`, in backtracking order.
    fn candidates(self, s: &[u8], years: YearRange, out: &mut Cands) {
        let c0 = s.first().copied().unwrap_or(0);
        let c1 = s.get(1).copied().unwrap_or(0);
        match self {
            Field::ExYear => {
                if years.accepts(s) {
                    out.push(4);
                }
            }
            Field::Year2 => {
                if dig(c0) && dig(c1) {
                    out.push(2);
                }
            }
            Field::Month => {
                if c0 == b'0' && within(c1, b'1', b'9') {
                    out.push(2);
                }
                if within(c0, b'1', b'9') {
                    out.push(1);
                }
                if c0 == b'1' && within(c1, b'0', b'2') {
                    out.push(2);
                }
            }
            Field::ExMonth => {
                if (c0 == b'0' && within(c1, b'1', b'9')) || (c0 == b'1' && within(c1, b'0', b'2'))
                {
                    out.push(2);
                }
            }
            Field::Day => {
                if within(c0, b'1', b'2') && dig(c1) {
                    out.push(2);
                }
                if (c0 == b'0' || c0 == b' ') && within(c1, b'1', b'9') {
                    out.push(2);
                }
                if within(c0, b'1', b'9') {
                    out.push(1);
                }
                if c0 == b'3' && within(c1, b'0', b'1') {
                    out.push(2);
                }
            }
            Field::ExDay => {
                if (within(c0, b'1', b'2') && dig(c1))
                    || (c0 == b'0' && within(c1, b'1', b'9'))
                    || (c0 == b'3' && within(c1, b'0', b'1'))
                {
                    out.push(2);
                }
            }
            Field::Hour => {
                if within(c0, b'0', b'1') && dig(c1) {
                    out.push(2);
                }
                if dig(c0) {
                    out.push(1);
                }
                if c0 == b'2' && within(c1, b'0', b'3') {
                    out.push(2);
                }
            }
            Field::ExHour => {
                if (within(c0, b'0', b'1') && dig(c1)) || (c0 == b'2' && within(c1, b'0', b'3')) {
                    out.push(2);
                }
            }
            Field::KHour => {
                if within(c0, b'0', b'2') && dig(c1) {
                    out.push(2);
                }
                if dig(c0) {
                    out.push(1);
                }
            }
            Field::Minute => {
                if within(c0, b'0', b'5') && dig(c1) {
                    out.push(2);
                }
                if dig(c0) {
                    out.push(1);
                }
            }
            Field::ExMinute => {
                if within(c0, b'0', b'5') && dig(c1) {
                    out.push(2);
                }
            }
            Field::Second => {
                if within(c0, b'0', b'5') && dig(c1) {
                    out.push(2);
                }
                if dig(c0) {
                    out.push(1);
                }
                if c0 == b'6' && within(c1, b'0', b'1') {
                    out.push(2);
                }
            }
            Field::ExSecond => {
                if (within(c0, b'0', b'5') && dig(c1)) || (c0 == b'6' && within(c1, b'0', b'1')) {
                    out.push(2);
                }
            }
            Field::Fraction => {
                let run = s.iter().take(6).take_while(|c| dig(**c)).count();
                for l in (1..=run).rev() {
                    out.push(l as u8);
                }
            }
            Field::MonthAbbr => {
                if word3(s, &MONTH_ABBRS) {
                    out.push(3);
                }
            }
            Field::WeekdayAbbr => {
                if word3(s, &WEEKDAY_ABBRS) {
                    out.push(3);
                }
            }
            Field::AmPm => {
                if eq_ci(s, b"am", true) || eq_ci(s, b"pm", true) {
                    out.push(2);
                }
            }
            Field::Hour12 => {
                if (c0 == b'1' && within(c1, b'0', b'2')) || (c0 == b'0' && within(c1, b'1', b'9'))
                {
                    out.push(2);
                }
                if within(c0, b'1', b'9') {
                    out.push(1);
                }
            }
            Field::ZoneOffset { ci } => {
                if eq_ci(s, b"Z", ci) {
                    out.push(1);
                } else if eq_ci(s, b"UTC", ci) || eq_ci(s, b"GMT", ci) {
                    out.push(3);
                } else if (c0 == b'+' || c0 == b'-')
                    && within(c1, b'0', b'1')
                    && s.len() > 2
                    && dig(s[2])
                {
                    let rest = &s[3..];
                    if rest.len() >= 3 && rest[0] == b':' && dig(rest[1]) && dig(rest[2]) {
                        out.push(6);
                    }
                    if rest.len() >= 2 && dig(rest[0]) && dig(rest[1]) {
                        out.push(5);
                    }
                    out.push(3);
                }
            }
            Field::ZoneName => {
                if c0 == b'Z' || c0 == b'z' {
                    out.push(1);
                }
                let run = s
                    .iter()
                    .take(5)
                    .take_while(|c| c.is_ascii_alphabetic())
                    .count();
                for l in (3..=run).rev() {
                    out.push(l as u8);
                }
            }
        }
    }

    /// Bytes a match of this field can start with.
    fn first_bytes(self, years: YearRange, set: &mut ByteSet) {
        match self {
            Field::ExYear => {
                for p in years.lo..=years.hi {
                    set.add(b'0' + (p / 100) as u8);
                }
            }
            Field::Day => {
                set.add_range(b'0', b'9');
                set.add(b' ');
            }
            Field::MonthAbbr => MONTH_ABBRS.iter().for_each(|w| set.add_ci(w[0])),
            Field::WeekdayAbbr => WEEKDAY_ABBRS.iter().for_each(|w| set.add_ci(w[0])),
            Field::AmPm => {
                set.add_ci(b'a');
                set.add_ci(b'p');
            }
            Field::ZoneOffset { ci } => {
                for c in [b'Z', b'U', b'G'] {
                    if ci { set.add_ci(c) } else { set.add(c) }
                }
                set.add(b'+');
                set.add(b'-');
            }
            Field::ZoneName => {
                set.add_range(b'a', b'z');
                set.add_range(b'A', b'Z');
            }
            _ => set.add_range(b'0', b'9'),
        }
    }
}

/// One step of a template program.
#[derive(Debug)]
pub(crate) enum Node {
    /// A date field, recorded in its slot.
    F(Field),
    /// One literal byte.
    Lit(u8),
    /// One byte of a set.
    OneOf(&'static [u8]),
    /// One byte of a set, remembered as the separator (`(?P<_sep>[-/])`).
    Sep(&'static [u8]),
    /// The remembered separator again (`(?P=_sep)`).
    SepRef,
    /// `\s*`. Every template follows it with a zone, which cannot start with a blank, so
    /// only the longest run can lead to a match and shorter ones are not tried.
    Ws,
    /// `\d{min,max}`, greedy, not recorded.
    Digits(u8, u8),
    /// Exactly this many lower-case hexadecimal digits.
    Hex(u8),
    /// `\b`.
    WordBoundary,
    /// `(?:…)?`, greedy.
    Opt(&'static [Node]),
    /// `(?:…|…)`, first alternative first.
    Alt(&'static [&'static [Node]]),
}

/// Where a match may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// Anywhere not inside a word: `(?=^|\b|\W)`.
    Word,
    /// Anywhere.
    Any,
    /// At the line start, after at most two non-word characters: `^(?:\W{0,2})?`. The
    /// skipped characters are not part of the date.
    LineBegin,
    /// At the very start of the line: `^`.
    Caret,
    /// fail2ban's unanchored `EPOCH`: at the line start, right after a `[` opening the
    /// line, or right after `audit(` (SELinux).
    Epoch,
    /// Right after the first occurrence of this byte (an ASCII character): what a
    /// datepattern `^[^X]*X({DATE})` leaves to the date, since `[^X]*` cannot run past the
    /// first `X`. The match starts at the line start; the date is what follows the `X`.
    AfterFirst(u8),
}

/// A 256-bit set of bytes.
#[derive(Debug, Clone, Default)]
pub(crate) struct ByteSet([u64; 4]);

impl ByteSet {
    fn add(&mut self, b: u8) {
        self.0[usize::from(b >> 6)] |= 1 << (b & 63);
    }
    fn add_ci(&mut self, b: u8) {
        self.add(b.to_ascii_lowercase());
        self.add(b.to_ascii_uppercase());
    }
    fn add_range(&mut self, lo: u8, hi: u8) {
        (lo..=hi).for_each(|b| self.add(b));
    }
    fn add_all(&mut self) {
        self.0 = [u64::MAX; 4];
    }
    #[inline]
    fn contains(&self, b: u8) -> bool {
        self.0[usize::from(b >> 6)] & (1 << (b & 63)) != 0
    }
}

/// Adds the bytes a match of `nodes` can start with; true when `nodes` can match empty.
fn first_bytes(nodes: &[Node], years: YearRange, set: &mut ByteSet) -> bool {
    for node in nodes {
        let nullable = match node {
            Node::F(f) => {
                f.first_bytes(years, set);
                false
            }
            Node::Lit(b) => {
                set.add(*b);
                false
            }
            Node::OneOf(bs) | Node::Sep(bs) => {
                bs.iter().for_each(|b| set.add(*b));
                false
            }
            Node::SepRef => {
                set.add_all();
                false
            }
            Node::Ws => {
                // ASCII blanks, and any non-ASCII lead byte for Unicode spaces.
                for b in [
                    b' ', b'\t', b'\n', 0x0b, 0x0c, b'\r', 0x1c, 0x1d, 0x1e, 0x1f,
                ] {
                    set.add(b);
                }
                set.add_range(0x80, 0xff);
                true
            }
            Node::Digits(min, _) => {
                set.add_range(b'0', b'9');
                *min == 0
            }
            Node::Hex(n) => {
                set.add_range(b'0', b'9');
                set.add_range(b'a', b'f');
                *n == 0
            }
            Node::WordBoundary => true,
            Node::Opt(inner) => {
                first_bytes(inner, years, set);
                true
            }
            Node::Alt(alts) => {
                let mut any = false;
                for a in *alts {
                    any |= first_bytes(a, years, set);
                }
                any
            }
        };
        if !nullable {
            return false;
        }
    }
    true
}

/// Python's `\w` for text: letters, digits (any script) and `_`.
#[inline]
pub(crate) fn is_word(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || c == '_'
    } else {
        c.is_alphanumeric()
    }
}

/// Python's `\s` for text.
#[inline]
fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

#[inline]
fn char_before(hay: &str, i: usize) -> Option<char> {
    match hay.as_bytes()[..i].last() {
        None => None,
        Some(b) if b.is_ascii() => Some(char::from(*b)),
        Some(_) => hay[..i].chars().next_back(),
    }
}

#[inline]
fn char_at(hay: &str, i: usize) -> Option<char> {
    match hay.as_bytes().get(i) {
        None => None,
        Some(b) if b.is_ascii() => Some(char::from(*b)),
        Some(_) => hay[i..].chars().next(),
    }
}

#[inline]
fn word_before(hay: &str, i: usize) -> bool {
    char_before(hay, i).is_some_and(is_word)
}

#[inline]
fn word_at(hay: &str, i: usize) -> bool {
    char_at(hay, i).is_some_and(is_word)
}

/// `(?=\b|\W|$)` at `i`, which is also `(?=^|\b|\W)` at a position with text after it:
/// false only between two word characters.
#[inline]
fn boundary_ok(hay: &str, i: usize) -> bool {
    !(word_before(hay, i) && word_at(hay, i))
}

/// The positions of `line` where a word-bounded template may start: an ASCII byte that is
/// not between two word characters. Computed once per line for all templates.
pub(crate) fn word_starts(line: &str, out: &mut Vec<u32>) {
    out.clear();
    for (p, b) in line.bytes().enumerate() {
        if b.is_ascii() && boundary_ok(line, p) {
            out.push(p as u32);
        }
    }
}

/// The continuation of a match: the nodes still to run after the current group.
struct Cont<'c> {
    nodes: &'static [Node],
    next: Option<&'c Cont<'c>>,
}

/// Longest list of fields one path can record.
const TRAIL: usize = 16;

struct Run<'h> {
    hay: &'h str,
    years: YearRange,
    caps: [(u32, u32); NSLOTS],
    /// The separator of `(?P<_sep>…)`; every path sets it before it is compared again, so
    /// backtracking needs not restore it.
    sep: u8,
    /// The slots recorded on the current path, cleared again on backtracking. A program
    /// records each slot at most once per path, so clearing means unsetting.
    trail: [u8; TRAIL],
    trail_len: usize,
    /// One past the last byte any attempt looked at (a multi-byte character counts
    /// four): the result depends on no byte from here on.
    seen: usize,
}

impl Run<'_> {
    /// Records that the bytes up to `end` (exclusive) were looked at.
    #[inline]
    fn touch(&mut self, end: usize) {
        self.seen = self.seen.max(end);
    }

    fn set_cap(&mut self, slot: Slot, value: (u32, u32)) {
        let i = slot as usize;
        if self.caps[i] == UNSET && self.trail_len < TRAIL {
            self.trail[self.trail_len] = slot as u8;
            self.trail_len += 1;
        }
        debug_assert!(self.trail_len <= TRAIL);
        self.caps[i] = value;
    }

    fn set_sep(&mut self, c: u8) {
        self.sep = c;
    }

    fn undo(&mut self, mark: usize) {
        while self.trail_len > mark {
            self.trail_len -= 1;
            self.caps[usize::from(self.trail[self.trail_len])] = UNSET;
        }
    }

    /// Runs `nodes`, then the continuation `k`, from `pos`; returns the end of the first
    /// successful path. Straight-line steps loop; only real choices recurse.
    fn m<'a>(
        &mut self,
        mut nodes: &'static [Node],
        mut k: Option<&'a Cont<'a>>,
        mut pos: usize,
    ) -> Option<usize> {
        let mark = self.trail_len;
        let bytes = self.hay.as_bytes();
        let result = 'run: loop {
            let Some((node, rest)) = nodes.split_first() else {
                match k {
                    Some(c) => {
                        nodes = c.nodes;
                        k = c.next;
                        continue;
                    }
                    None => {
                        self.touch(pos + 4);
                        break boundary_ok(self.hay, pos).then_some(pos);
                    }
                }
            };
            match node {
                Node::Lit(_) | Node::OneOf(_) | Node::Sep(_) | Node::SepRef => self.touch(pos + 1),
                Node::Ws | Node::WordBoundary => self.touch(pos + 4),
                Node::Hex(n) => self.touch(pos + usize::from(*n)),
                Node::F(field) => self.touch(pos + field.lookahead()),
                Node::Digits(_, max) => self.touch(pos + usize::from(*max)),
                Node::Opt(inner) => match inner.first() {
                    Some(Node::F(field)) => self.touch(pos + field.lookahead()),
                    _ => self.touch(pos + 1),
                },
                Node::Alt(_) => {}
            }
            match node {
                Node::Lit(b) => {
                    if bytes.get(pos) != Some(b) {
                        break None;
                    }
                    pos += 1;
                }
                Node::OneOf(set) => match bytes.get(pos) {
                    Some(b) if in_set(set, *b) => pos += 1,
                    _ => break None,
                },
                Node::Sep(set) => match bytes.get(pos) {
                    Some(b) if in_set(set, *b) => {
                        self.set_sep(*b);
                        pos += 1;
                    }
                    _ => break None,
                },
                Node::SepRef => {
                    if bytes.get(pos) != Some(&self.sep) {
                        break None;
                    }
                    pos += 1;
                }
                Node::Ws => {
                    while let Some(c) = char_at(self.hay, pos) {
                        if !is_space(c) {
                            break;
                        }
                        pos += c.len_utf8();
                        self.touch(pos + 4);
                    }
                }
                Node::Hex(n) => {
                    let n = usize::from(*n);
                    let ok = bytes.len() >= pos + n
                        && bytes[pos..pos + n]
                            .iter()
                            .all(|c| dig(*c) || within(*c, b'a', b'f'));
                    if !ok {
                        break None;
                    }
                    pos += n;
                }
                Node::WordBoundary => {
                    if word_before(self.hay, pos) == word_at(self.hay, pos) {
                        break None;
                    }
                }
                Node::F(field) => {
                    let mut cands = Cands::default();
                    field.candidates(&bytes[pos..], self.years, &mut cands);
                    if cands.n > 1 {
                        // `fits_next` reads the byte after each candidate.
                        self.touch(pos + field.lookahead() + 1);
                        // Drop lengths the next literal rules out at once: it saves a
                        // recursion per field and changes no result.
                        cands.retain(|l| fits_next(rest, bytes.get(pos + usize::from(l))));
                    }
                    let slot = field.slot();
                    match cands.n {
                        0 => break None,
                        1 => {
                            let end = pos + usize::from(cands.len[0]);
                            self.set_cap(slot, (pos as u32, end as u32));
                            pos = end;
                        }
                        _ => {
                            for &l in &cands.len[..cands.n] {
                                let end = pos + usize::from(l);
                                let m2 = self.trail_len;
                                self.set_cap(slot, (pos as u32, end as u32));
                                if let Some(e) = self.m(rest, k, end) {
                                    break 'run Some(e);
                                }
                                self.undo(m2);
                            }
                            break None;
                        }
                    }
                }
                Node::Digits(min, max) => {
                    let run = bytes[pos..]
                        .iter()
                        .take(usize::from(*max))
                        .take_while(|c| dig(**c))
                        .count();
                    let min = usize::from(*min);
                    if run < min {
                        break None;
                    }
                    if run == min {
                        pos += run;
                    } else {
                        for n in (min..=run).rev() {
                            if let Some(e) = self.m(rest, k, pos + n) {
                                break 'run Some(e);
                            }
                        }
                        break None;
                    }
                }
                Node::Opt(inner) => {
                    if !can_start(inner, &bytes[pos..], self.years) {
                        // The optional part cannot start here: skip it.
                        nodes = rest;
                        continue;
                    }
                    let c = Cont {
                        nodes: rest,
                        next: k,
                    };
                    let m2 = self.trail_len;
                    if let Some(e) = self.m(inner, Some(&c), pos) {
                        break Some(e);
                    }
                    self.undo(m2);
                }
                Node::Alt(alts) => {
                    let c = Cont {
                        nodes: rest,
                        next: k,
                    };
                    for a in *alts {
                        let m2 = self.trail_len;
                        if let Some(e) = self.m(a, Some(&c), pos) {
                            break 'run Some(e);
                        }
                        self.undo(m2);
                    }
                    break None;
                }
            }
            nodes = rest;
        };
        if result.is_none() {
            self.undo(mark);
        }
        result
    }
}

/// A match of a native template.
#[derive(Debug, Clone)]
pub(crate) struct NativeMatch {
    /// Start of the whole match (before skipped leading non-word characters).
    pub start: usize,
    /// The date itself: what fail2ban cuts out of the line.
    pub group: Range<usize>,
    caps: [(u32, u32); NSLOTS],
    /// One past the last byte of the line the search looked at (before or after the
    /// match): another line with the same bytes up to here gets the same match.
    pub seen: usize,
}

impl NativeMatch {
    /// Where the two digits of the seconds field are, when they are two digits 00–59:
    /// another line that differs from this one only in those two digits (each 00–59)
    /// gets the same match. `text` is the line from byte `origin` on; the place returned
    /// is in `text`.
    pub(crate) fn second_digits(&self, text: &[u8], origin: usize) -> Option<usize> {
        let (s, e) = self.caps[Slot::Second as usize];
        let at = (s as usize).checked_sub(origin)?;
        (s != u32::MAX && e == s + 2 && two_digit_second(text, at).is_some()).then_some(at)
    }

    /// [`NativeMatch::second_digits`], when the date also names its month and day, and
    /// either carries no zone or carries a zone and a year: then another date that
    /// differs only in those digits is this one's time plus the difference of the seconds
    /// (within a stretch without zone transitions).
    pub(crate) fn shiftable_second(&self, text: &[u8], origin: usize) -> Option<usize> {
        let set = |slot: Slot| self.caps[slot as usize] != UNSET;
        let calendar = set(Slot::Day) && (set(Slot::Month) || set(Slot::MonthAbbr));
        let year = set(Slot::Year) || set(Slot::Year2);
        if !calendar || (set(Slot::Zone) && !year) {
            return None;
        }
        self.second_digits(text, origin)
    }

    /// The same match for a line whose date begins `by` bytes further along (its text
    /// from there on being the same); the match still starts at the line start.
    pub(crate) fn move_by(&mut self, by: isize) {
        let at = |x: usize| x.checked_add_signed(by).unwrap_or(0);
        self.group = at(self.group.start)..at(self.group.end);
        self.seen = self.seen.checked_add_signed(by).unwrap_or(usize::MAX);
        for c in self.caps.iter_mut().filter(|c| **c != UNSET) {
            c.0 = at(c.0 as usize) as u32;
            c.1 = at(c.1 as usize) as u32;
        }
    }

    /// The recorded fields, in slot order.
    pub(crate) fn fields(&self, line: &str) -> Fields {
        let caps = self
            .caps
            .iter()
            .enumerate()
            .filter(|(_, c)| **c != UNSET)
            .map(|(i, c)| (SLOTS[i].key(), &line[c.0 as usize..c.1 as usize]));
        let ampm = self.caps[Slot::AmPm as usize];
        let ampm = (ampm != UNSET).then(|| Some(&line[ampm.0 as usize..ampm.1 as usize]));
        Fields::from_captures(caps, ampm)
    }
}

/// The value of two digits 00–59 at `at`.
pub(crate) fn two_digit_second(b: &[u8], at: usize) -> Option<i64> {
    match b.get(at..at + 2)? {
        [t @ b'0'..=b'5', u @ b'0'..=b'9'] => Some(i64::from((t - b'0') * 10 + (u - b'0'))),
        _ => None,
    }
}

/// When `a` and `b` are alike but for two seconds digits at `at` (each pair 00–59): `a`'s
/// seconds minus `b`'s.
pub(crate) fn seconds_apart(a: &[u8], b: &[u8], at: usize) -> Option<i64> {
    if a.len() != b.len() || a.get(..at) != b.get(..at) || a.get(at + 2..) != b.get(at + 2..) {
        return None;
    }
    Some(two_digit_second(a, at)? - two_digit_second(b, at)?)
}

const SLOTS: [Slot; NSLOTS] = [
    Slot::Year,
    Slot::Year2,
    Slot::Month,
    Slot::Day,
    Slot::Hour,
    Slot::Hour12,
    Slot::Minute,
    Slot::Second,
    Slot::Fraction,
    Slot::MonthAbbr,
    Slot::WeekdayAbbr,
    Slot::AmPm,
    Slot::Zone,
];

/// A compiled native template: a program and where it may start.
#[derive(Debug, Clone)]
pub(crate) struct Program {
    nodes: &'static [Node],
    start: Start,
    first: ByteSet,
    years: YearRange,
}

impl Program {
    pub(crate) fn new(nodes: &'static [Node], start: Start, years: YearRange) -> Program {
        let mut first = ByteSet::default();
        if first_bytes(nodes, years, &mut first) {
            first.add_all();
        }
        Program {
            nodes,
            start,
            first,
            years,
        }
    }

    /// Where a search tied to the line start begins to read the date in `line`, when the
    /// line allows a match at all: the result depends on the bytes from there on only
    /// (and on those before being free of the `X` of [`Start::AfterFirst`]).
    pub(crate) fn origin(&self, line: &str) -> Option<usize> {
        match self.start {
            Start::LineBegin | Start::Caret => Some(0),
            Start::AfterFirst(x) => memchr::memchr(x, line.as_bytes()).map(|i| i + 1),
            Start::Word | Start::Any | Start::Epoch => None,
        }
    }

    fn run<'h>(&self, hay: &'h str) -> Run<'h> {
        Run {
            hay,
            years: self.years,
            caps: [UNSET; NSLOTS],
            sep: 0,
            trail: [0; TRAIL],
            trail_len: 0,
            seen: 0,
        }
    }

    /// The leftmost match in `line[pos..endpos]`, like Python's `search(line, pos,
    /// endpos)`: the text after `endpos` is invisible, the text before `pos` is still seen
    /// by boundary checks, and `^` holds only at the true line start. `pos` and `endpos`
    /// must be character boundaries.
    /// Whether a match may start anywhere not inside a word.
    pub(crate) fn word_bounded(&self) -> bool {
        self.start == Start::Word
    }

    #[cfg(test)]
    pub(crate) fn search(&self, line: &str, pos: usize, endpos: usize) -> Option<NativeMatch> {
        self.search_in(line, pos, endpos, None)
    }

    /// [`Program::search`], given the line's [`word_starts`] when they are known: a
    /// word-bounded template then visits only those positions.
    pub(crate) fn search_in(
        &self,
        line: &str,
        pos: usize,
        endpos: usize,
        starts: Option<&[u32]>,
    ) -> Option<NativeMatch> {
        let hay = &line[..endpos];
        let bytes = hay.as_bytes();
        // One run for all start positions: a failed attempt unwinds its captures, so the
        // state is clean for the next one.
        let mut run: Option<Run<'_>> = None;
        let mut try_at = |p: usize| {
            let r = run.get_or_insert_with(|| self.run(hay));
            let end = r.m(self.nodes, None, p)?;
            Some((end, r.caps, r.seen))
        };
        // Only a search tied to the line start reports how far it looked; the others scan
        // the line.
        let found = |start: usize, p: usize, (end, caps, seen): (usize, _, usize)| NativeMatch {
            start,
            group: p..end,
            caps,
            seen: if matches!(
                self.start,
                Start::LineBegin | Start::Caret | Start::AfterFirst(_)
            ) {
                // The start skipped at most two characters and looked at the next byte.
                seen.max(p + 1)
                    .max(if self.start == Start::LineBegin { 8 } else { 0 })
            } else {
                usize::MAX
            },
        };
        match self.start {
            Start::Word if starts.is_some() => {
                let starts = starts.unwrap_or_default();
                let from = starts.partition_point(|p| (*p as usize) < pos);
                for &p in &starts[from..] {
                    let p = p as usize;
                    if p >= bytes.len() {
                        break;
                    }
                    if !self.first.contains(bytes[p]) {
                        continue;
                    }
                    if let Some(r) = try_at(p) {
                        return Some(found(p, p, r));
                    }
                }
                None
            }
            Start::Word | Start::Any => {
                for (p, &b) in bytes.iter().enumerate().skip(pos) {
                    if !self.first.contains(b) {
                        continue;
                    }
                    // Every first byte is ASCII, hence a character boundary.
                    if self.start == Start::Word && !boundary_ok(hay, p) {
                        continue;
                    }
                    if let Some(r) = try_at(p) {
                        return Some(found(p, p, r));
                    }
                }
                None
            }
            Start::Epoch => {
                for (p, &b) in bytes.iter().enumerate().skip(pos) {
                    if !dig(b) {
                        continue;
                    }
                    let allowed = p == 0
                        || (p == 1 && bytes[0] == b'[')
                        || (p >= 6 && &bytes[p - 6..p] == b"audit(" && !word_before(hay, p - 6));
                    if !allowed {
                        continue;
                    }
                    if let Some(r) = try_at(p) {
                        return Some(found(p, p, r));
                    }
                }
                None
            }
            Start::Caret => {
                if pos != 0 {
                    return None;
                }
                try_at(0).map(|r| found(0, 0, r))
            }
            Start::AfterFirst(_) => {
                if pos != 0 {
                    return None;
                }
                let p = self.origin(hay)?;
                if p < bytes.len() && !self.first.contains(bytes[p]) {
                    return None;
                }
                try_at(p).map(|r| found(0, p, r))
            }
            Start::LineBegin => {
                if pos != 0 {
                    return None;
                }
                // Greedy `\W{0,2}`: skip two non-word characters, then one, then none.
                let mut starts = [0usize; 3];
                let mut n = 1;
                let mut at = 0;
                for _ in 0..2 {
                    match char_at(hay, at) {
                        Some(c) if !is_word(c) => {
                            at += c.len_utf8();
                            starts[n] = at;
                            n += 1;
                        }
                        _ => break,
                    }
                }
                for &p in starts[..n].iter().rev() {
                    if p < bytes.len() && !self.first.contains(bytes[p]) {
                        continue;
                    }
                    if let Some(r) = try_at(p) {
                        return Some(found(0, p, r));
                    }
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn years() -> YearRange {
        YearRange::for_year(2026)
    }

    #[test]
    fn year_range_follows_the_decade_three_years_ahead() {
        assert_eq!(YearRange::for_year(2026).hi, 202);
        assert_eq!(YearRange::for_year(2027).hi, 203);
        assert_eq!(YearRange::for_year(2026).regex_prefix(), "(?:200|201|202)");
        assert!(years().accepts(b"2005"));
        assert!(years().accepts(b"2029"));
        assert!(!years().accepts(b"2030"));
        assert!(!years().accepts(b"1999"));
    }
}
