//! Custom `datepattern` values: a regular expression with strptime `%` codes.
//!
//! The codes expand to the same sub-expressions fail2ban uses (named groups such as
//! `(?P<d>…)`), the pattern gets fail2ban's word or line boundaries, and the first capture
//! group is the date cut out of the line. The result is compiled with fancy-regex, which
//! understands the Python syntax these patterns use (`(?P=name)` back-references,
//! lookaround, conditionals); the few spellings it reads differently are rewritten first.

use super::error::DateError;
use super::fields::Key;
use super::native::YearRange;

/// Template flags, as fail2ban names them.
pub(crate) const LINE_BEGIN: u8 = 8;
pub(crate) const LINE_END: u8 = 4;
pub(crate) const WORD_BEGIN: u8 = 2;
pub(crate) const WORD_END: u8 = 1;

/// Python's `\w`: is this ASCII byte a regex word character.
fn word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// What a `%` code expands to: its regex and its part of the template name.
fn code_expansion(code: &str, years: YearRange) -> Option<(String, &'static str)> {
    let (re, name): (&str, &'static str) = match code {
        "a" => (r"(?P<a>mon|tue|wed|thu|fri|sat|sun)", "DAY"),
        "A" => (
            r"(?P<A>wednesday|thursday|saturday|tuesday|monday|friday|sunday)",
            "DAYNAME",
        ),
        "b" => (
            r"(?P<b>jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)",
            "MON",
        ),
        "B" => (
            r"(?P<B>september|february|november|december|january|october|august|march|april|june|july|may)",
            "MONTH",
        ),
        "c" => (
            r"(?P<a>mon|tue|wed|thu|fri|sat|sun)\s+(?P<b>jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)\s+(?P<d>3[0-1]|[1-2]\d|0[1-9]|[1-9]| [1-9])\s+(?P<H>2[0-3]|[0-1]\d|\d):(?P<M>[0-5]\d|\d):(?P<S>6[0-1]|[0-5]\d|\d)\s+(?P<Y>\d\d\d\d)",
            "%c",
        ),
        "d" => (r"(?P<d>[1-2]\d|[0 ]?[1-9]|3[0-1])", "Day"),
        "f" => (r"(?P<f>[0-9]{1,6})", "Microseconds"),
        "G" => (r"(?P<G>\d\d\d\d)", "%G"),
        "H" => (r"(?P<H>[0-1]?\d|2[0-3])", "24hour"),
        "I" => (r"(?P<I>1[0-2]|0[1-9]|[1-9])", "12hour"),
        "j" => (
            r"(?P<j>36[0-6]|3[0-5]\d|[1-2]\d\d|0[1-9]\d|00[1-9]|[1-9]\d|0[1-9]|[1-9])",
            "Yearday",
        ),
        "k" => (r" ?(?P<H>[0-2]?\d)", "%k"),
        "l" => (r" ?(?P<I>1?\d)", "%l"),
        "m" => (r"(?P<m>0?[1-9]|1[0-2])", "Month"),
        "M" => (r"(?P<M>[0-5]?\d)", "Minute"),
        "p" => (r"(?P<p>am|pm)", "AMPM"),
        "S" => (r"(?P<S>[0-5]?\d|6[0-1])", "Second"),
        "s" => (r"(?P<s>\d{1,12})", "Epoch"),
        "u" => (r"(?P<u>[1-7])", "%u"),
        "U" => (r"(?P<U>5[0-3]|[0-4]\d|\d)", "Yearweek"),
        "V" => (r"(?P<V>5[0-3]|0[1-9]|[1-4]\d|\d)", "%V"),
        "w" => (r"(?P<w>[0-6])", "Weekday"),
        "W" => (r"(?P<W>5[0-3]|[0-4]\d|\d)", "Yearweek"),
        "x" => (
            r"(?P<m>1[0-2]|0[1-9]|[1-9])/(?P<d>3[0-1]|[1-2]\d|0[1-9]|[1-9]| [1-9])/(?P<y>\d\d)",
            "%x",
        ),
        "X" => (
            r"(?P<H>2[0-3]|[0-1]\d|\d):(?P<M>[0-5]\d|\d):(?P<S>6[0-1]|[0-5]\d|\d)",
            "%X",
        ),
        "y" => (r"(?P<y>\d\d)", "Year2"),
        "Y" => (r"(?P<Y>\d{4})", "Year"),
        "z" => (r"(?P<z>Z|UTC|GMT|[+-][01]\d(?::?\d{2})?)", "Zone offset"),
        "Z" => (r"(?P<Z>Z|[A-Z]{3,5})", "Zone name"),
        "%" => ("%", "%"),
        "ExZ" => (r"(?P<Z>[A-Z](?:[A-Z]{2,4})?)", "ExZone name"),
        "Exz" => (
            r"(?P<z>(?:[A-Z](?:[A-Z]{2,4})?)?[+-][01]\d(?::?\d{2})?|[A-Z](?:[A-Z]{2,4})?)",
            "ExZone offset",
        ),
        "Exd" => (r"(?P<d>[1-2]\d|0[1-9]|3[0-1])", "ExDay"),
        "Exm" => (r"(?P<m>0[1-9]|1[0-2])", "ExMonth"),
        "ExH" => (r"(?P<H>[0-1]\d|2[0-3])", "Ex24hour"),
        "Exk" => (r" ?(?P<H>[0-1]?\d|2[0-3])", "Ex%k"),
        "Exl" => (r" ?(?P<I>1[0-2]|\d)", "Ex%l"),
        "ExM" => (r"(?P<M>[0-5]\d)", "ExMinute"),
        "ExS" => (r"(?P<S>[0-5]\d|6[0-1])", "ExSecond"),
        "ExY" => {
            return Some((format!(r"(?P<Y>{}\d)", years.regex_prefix()), "ExYear"));
        }
        "Exy" => (r"(?P<y>\d{2})", "ExYear2"),
        _ => return None,
    };
    Some((re.to_string(), name))
}

const EX_CODES: [&str; 11] = [
    "ExZ", "Exz", "Exd", "Exm", "ExH", "Exk", "Exl", "ExM", "ExS", "ExY", "Exy",
];

/// Replaces the `%` codes of `pattern`; returns the regex and the template name.
fn expand_codes(pattern: &str, years: YearRange) -> Result<(String, String), DateError> {
    let mut re = String::with_capacity(pattern.len() * 4);
    let mut name = String::with_capacity(pattern.len());
    let mut rest = pattern;
    while let Some(i) = rest.find('%') {
        re.push_str(&rest[..i]);
        name.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let code = EX_CODES
            .iter()
            .find(|c| after.starts_with(**c))
            .map(|c| &after[..c.len()])
            .or_else(|| after.chars().next().map(|c| &after[..c.len_utf8()]));
        let expansion = code.and_then(|c| code_expansion(c, years).map(|e| (c, e)));
        let Some((code, (code_re, code_name))) = expansion else {
            let at = pattern.len() - rest.len() + i;
            let width = if after.starts_with("Ex") { 4 } else { 2 };
            let shown: String = pattern[at..].chars().take(width).collect();
            return Err(DateError::UnknownCode {
                pattern: pattern.to_string(),
                code: shown,
                at,
            });
        };
        re.push_str(&code_re);
        name.push_str(code_name);
        rest = &after[code.len()..];
    }
    re.push_str(rest);
    name.push_str(rest);
    Ok((re, name))
}

/// `(?<!%)%[aAbBpc]`: codes that make fail2ban match the whole pattern ignoring case.
fn has_alpha_code(pattern: &str) -> bool {
    let b = pattern.as_bytes();
    (1..b.len()).any(|i| {
        b[i - 1] == b'%'
            && matches!(b[i], b'a' | b'A' | b'b' | b'B' | b'p' | b'c')
            && (i < 2 || b[i - 2] != b'%')
    })
}

/// Length of a `(?flags)` group (letters, digits or `_` between `(?` and `)`) at the start
/// of `s`, or 0.
fn flag_group_len(s: &str) -> usize {
    let b = s.as_bytes();
    if !s.starts_with("(?") {
        return 0;
    }
    let n = b[2..].iter().take_while(|c| word_byte(**c)).count();
    if n > 0 && b.get(2 + n) == Some(&b')') {
        n + 3
    } else {
        0
    }
}

/// The first global flag group `(?[a-z]+)` anywhere in the regex (fail2ban moves it to the
/// front, where Python requires it).
fn find_global_flags(s: &str) -> Option<(usize, usize)> {
    let b = s.as_bytes();
    let mut from = 0;
    while let Some(i) = s[from..].find("(?").map(|i| i + from) {
        let n = b[i + 2..]
            .iter()
            .take_while(|c| c.is_ascii_lowercase())
            .count();
        if n > 0 && b.get(i + 2 + n) == Some(&b')') {
            return Some((i, i + 3 + n));
        }
        from = i + 2;
    }
    None
}

/// `^\(*(?:\(\?\w+\))?(?:\^|\(*\*\*|\((?:\?:)?\^)`: the pattern opts out of a start
/// boundary (it is anchored, or starts with `**`).
fn no_word_bound_begin(s: &str) -> bool {
    let parens = s.bytes().take_while(|c| *c == b'(').count();
    (0..=parens).rev().any(|k| {
        let after = &s[k..];
        let flags = flag_group_len(after);
        [flags, 0].iter().any(|&f| {
            let r = &after[f..];
            if r.starts_with('^') || r.starts_with("(^") || r.starts_with("(?:^") {
                return true;
            }
            r.trim_start_matches('(').starts_with("**")
        })
    })
}

/// `(?<!\\)(?:\$\)?|\\b|\\s|\*\*\)*)$`: the pattern opts out of an end boundary.
fn no_word_bound_end(s: &str) -> bool {
    let b = s.as_bytes();
    let not_escaped = |start: usize| start == 0 || b[start - 1] != b'\\';
    let ends = |suffix: &str| s.ends_with(suffix) && not_escaped(s.len() - suffix.len());
    if ends("$") || ends("$)") || ends("\\b") || ends("\\s") {
        return true;
    }
    let t = s.trim_end_matches(')');
    t.ends_with("**") && not_escaped(t.len() - 2)
}

/// `(?<!(?:\(\?))(?<!\\)\((?!\?)`: the pattern already has a plain capture group.
fn has_plain_group(s: &str) -> bool {
    let b = s.as_bytes();
    (0..b.len()).any(|i| {
        b[i] == b'('
            && (i == 0 || b[i - 1] != b'\\')
            && b.get(i + 1) != Some(&b'?')
            && !(i >= 2 && &b[i - 2..i] == b"(?")
    })
}

/// Wraps everything between a leading `[(?flags)]^[(?flags)]` and a trailing `$` in a
/// capture group, so that group 1 is the date.
fn wrap_group(s: &str) -> String {
    let mut head = flag_group_len(s);
    if s[head..].starts_with('^') {
        head += 1;
    }
    head += flag_group_len(&s[head..]);
    let tail = usize::from(s.len() > head && s.ends_with('$'));
    format!(
        "{}({}){}",
        &s[..head],
        &s[head..s.len() - tail],
        &s[s.len() - tail..]
    )
}

/// `^(?:\(\?\w+\))?(?:\^|\((?:\?:)?\^(?!\|))`
fn line_bound_begin(s: &str) -> bool {
    let f = flag_group_len(s);
    [f, 0].iter().any(|&f| {
        let r = &s[f..];
        r.starts_with('^')
            || ((r.starts_with("(^") && !r[2..].starts_with('|'))
                || (r.starts_with("(?:^") && !r[4..].starts_with('|')))
    })
}

/// `(?<![\\\|])(?:\$\)?)$`
fn line_bound_end(s: &str) -> bool {
    let b = s.as_bytes();
    let check = |dollar: usize| dollar == 0 || !matches!(b[dollar - 1], b'\\' | b'|');
    (s.ends_with('$') && check(s.len() - 1)) || (s.ends_with("$)") && check(s.len() - 2))
}

/// Removes the `**` markers at the start (after parentheses and flags) and at the end
/// (before closing parentheses).
fn strip_stars(s: &str) -> String {
    let mut out = s.to_string();
    let parens = out.bytes().take_while(|c| *c == b'(').count();
    let mut head = parens + flag_group_len(&out[parens..]);
    head += out[head..].bytes().take_while(|c| *c == b'(').count();
    if out[head..].starts_with("**") {
        out.replace_range(head..head + 2, "");
    }
    let t = out.trim_end_matches(')').len();
    let b = out.as_bytes();
    if t >= 2 && &b[t - 2..t] == b"**" && (t == 2 || b[t - 3] != b'\\') {
        out.replace_range(t - 2..t, "");
    }
    out
}

/// How a template may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Begin {
    /// No boundary added.
    Free,
    /// `(?=^|\b|\W)`.
    Word,
    /// `^(?:\W{0,2})?`: line start, and the name gets `{^LN-BEG}`.
    Line,
}

/// The boundaries fail2ban adds, in its spelling (the flag checks look at this text).
const PY_WORD_BEGIN: &str = r"(?=^|\b|\W)";
const PY_WORD_END: &str = r"(?=\b|\W|$)";
const LINE_BEGIN_PREFIX: &str = r"^(?:\W{0,2})?";
/// Both boundaries hold everywhere except between two word characters (the start one also
/// fails at the end of a non-word line, where no pattern that needs text can match), so
/// they become two half word-boundaries: no lookahead, and the regex stays on the fast
/// engine.
const WORD_BOUND: &str = r"(?:\b{start-half}|\b{end-half})";
const PCRE_WORD_BOUND: &str = r"(?:(?<!\w)|(?!\w))";

/// A regex with fail2ban's boundaries applied: the regex and its flags.
#[derive(Debug, Clone)]
pub(crate) struct Bounded {
    pub regex: String,
    pub flags: u8,
    /// The line-start prefix was added (the name then gets `{^LN-BEG}`).
    pub line_prefixed: bool,
}

/// fail2ban's `DateTemplate.setRegex`: boundaries, group 1, line anchoring flags.
pub(crate) fn bound_regex(regex: &str, begin: Begin, word_end: bool) -> Bounded {
    let mut regex = regex.trim().to_string();
    let mut global = String::new();
    if let Some((a, b)) = find_global_flags(&regex) {
        global = regex[a..b].to_string();
        regex.replace_range(a..b, "");
    }
    let bound_begin = begin != Begin::Free && !no_word_bound_begin(&regex);
    let bound_end = word_end && !no_word_bound_end(&regex);
    if !has_plain_group(&regex) {
        regex = wrap_group(&regex);
    }
    let mut flags = 0;
    if bound_begin {
        if begin == Begin::Line {
            flags |= LINE_BEGIN;
            regex.insert_str(0, LINE_BEGIN_PREFIX);
        } else {
            flags |= WORD_BEGIN;
            regex.insert_str(0, PY_WORD_BEGIN);
        }
    }
    if bound_end {
        flags |= WORD_END;
        regex.push_str(PY_WORD_END);
    }
    if flags & LINE_BEGIN == 0 && line_bound_begin(&regex) {
        flags |= LINE_BEGIN;
    }
    if flags & LINE_END == 0 && line_bound_end(&regex) {
        flags |= LINE_END;
    }
    regex = strip_stars(&regex);
    regex.insert_str(0, &global);
    Bounded {
        regex,
        flags,
        line_prefixed: bound_begin && begin == Begin::Line,
    }
}

/// A datepattern line turned into a regex (fail2ban's `DatePatternRegex`).
#[derive(Debug, Clone)]
pub(crate) struct Expanded {
    pub name: String,
    pub regex: String,
    pub flags: u8,
}

/// Expands one datepattern line: `{UNB}` and `{^LN-BEG}` prefixes, `%` codes, the
/// case-insensitive flag for name codes, boundaries.
pub(crate) fn expand_pattern(pattern: &str, years: YearRange) -> Result<Expanded, DateError> {
    let mut p = pattern;
    let mut begin = Begin::Word;
    let mut word_end = true;
    if let Some(rest) = p.strip_prefix("{UNB}") {
        p = rest;
        begin = Begin::Free;
        word_end = false;
    }
    if begin != Begin::Free
        && let Some(rest) = p.strip_prefix("{^LN-BEG}")
    {
        p = rest;
        begin = Begin::Line;
    }
    let (mut regex, mut name) = expand_codes(p, years)?;
    if has_alpha_code(p) {
        regex.insert_str(0, "(?iu)");
    }
    let bounded = bound_regex(&regex, begin, word_end);
    if bounded.line_prefixed && !name.starts_with("{^LN-BEG}") {
        name.insert_str(0, "{^LN-BEG}");
    }
    Ok(Expanded {
        name,
        regex: bounded.regex,
        flags: bounded.flags,
    })
}

/// `{EPOCH}`/`{LEPOCH}` (any case, not escaped) inside a pattern.
pub(crate) fn find_epoch_placeholders(pattern: &str) -> Vec<std::ops::Range<usize>> {
    let upper = pattern.to_ascii_uppercase();
    let b = pattern.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = upper[from..].find('{').map(|i| i + from) {
        let escaped = i > 0 && b[i - 1] == b'\\';
        let len = if upper[i..].starts_with("{EPOCH}") {
            7
        } else if upper[i..].starts_with("{LEPOCH}") {
            8
        } else {
            0
        };
        if len > 0 && !escaped {
            out.push(i..i + len);
            from = i + len;
        } else {
            from = i + 1;
        }
    }
    out
}

/// A pattern with `{EPOCH}` placeholders (fail2ban's `DateEpoch` with a pattern): the whole
/// match is cut out, the epoch is capture group 2.
pub(crate) fn expand_epoch_pattern(pattern: &str, long: bool) -> Expanded {
    let epoch_re = if long {
        r"\d{10,11}(?:\d{3}(?:\.\d{1,6}|\d{3})?)?"
    } else {
        r"\d{10,11}\b(?:\.\d{3,6})?"
    };
    let mut regex = String::from("(");
    let mut last = 0;
    for r in find_epoch_placeholders(pattern) {
        regex.push_str(&pattern[last..r.start]);
        regex.push('(');
        regex.push_str(epoch_re);
        regex.push(')');
        last = r.end;
    }
    regex.push_str(&pattern[last..]);
    regex.push(')');
    let bounded = bound_regex(&regex, Begin::Word, true);
    Expanded {
        name: pattern.to_string(),
        regex: bounded.regex,
        flags: bounded.flags,
    }
}

/// Rewrites the Python spellings fancy-regex reads differently: `\Z`, a `[` or a doubled
/// set operator inside a class, a `{` that is no repetition, and `(?(name)…)`
/// conditionals; fail2ban's boundary lookaheads become half word-boundaries.
pub(crate) fn python_to_fancy(py: &str) -> String {
    python_to(py, false)
}

/// [`python_to_fancy`] for PCRE2, which has no half word-boundaries (each is spelt as the
/// lookaround it stands for) and no `u` flag (Unicode is what UCP mode gives).
fn python_to_pcre(py: &str) -> String {
    python_to(py, true)
}

fn python_to(py: &str, pcre: bool) -> String {
    let word_bound = if pcre { PCRE_WORD_BOUND } else { WORD_BOUND };
    let c: Vec<char> = py.chars().collect();
    let mut out = String::with_capacity(py.len() + 8);
    let mut i = 0;
    let mut in_class = false;
    let at = |i: usize, text: &str| {
        text.chars()
            .enumerate()
            .all(|(k, t)| c.get(i + k) == Some(&t))
    };
    while i < c.len() {
        let ch = c[i];
        if !in_class && let Some(b) = [PY_WORD_BEGIN, PY_WORD_END].iter().find(|b| at(i, b)) {
            out.push_str(word_bound);
            i += b.chars().count();
            continue;
        }
        if ch == '\\' {
            match c.get(i + 1) {
                Some('Z') if !in_class => out.push_str("\\z"),
                Some(n) => {
                    out.push('\\');
                    out.push(*n);
                }
                None => out.push('\\'),
            }
            i += 2;
            continue;
        }
        if in_class {
            match ch {
                ']' => in_class = false,
                '[' => out.push('\\'),
                '&' | '-' | '~' if c.get(i + 1) == Some(&ch) => {
                    out.push(ch);
                    out.push('\\');
                    out.push(ch);
                    i += 2;
                    continue;
                }
                _ => {}
            }
            out.push(ch);
            i += 1;
            continue;
        }
        match ch {
            '(' if pcre && c.get(i + 1) == Some(&'?') => {
                // Inline flags, `(?iu)` or `(?u:...)`: Python's `u` goes.
                let flags = c[i + 2..]
                    .iter()
                    .take_while(|x| x.is_ascii_alphabetic())
                    .count();
                let end = c.get(i + 2 + flags);
                if flags > 0 && matches!(end, Some(')' | ':' | '-')) {
                    let kept: String = c[i + 2..i + 2 + flags]
                        .iter()
                        .filter(|x| **x != 'u')
                        .collect();
                    i += 2 + flags;
                    if kept.is_empty() && end == Some(&')') {
                        i += 1;
                    } else {
                        out.push_str("(?");
                        out.push_str(&kept);
                    }
                    continue;
                }
                out.push(ch);
            }
            '[' => {
                in_class = true;
                out.push('[');
                i += 1;
                if c.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                // A `]` right at the start is a literal.
                if c.get(i) == Some(&']') {
                    out.push_str("\\]");
                    i += 1;
                }
                continue;
            }
            '(' if c.get(i + 1) == Some(&'?') && c.get(i + 2) == Some(&'(') => {
                let name_end = c[i + 3..].iter().position(|x| *x == ')').map(|p| p + i + 3);
                if let Some(end) = name_end {
                    let name: String = c[i + 3..end].iter().collect();
                    if !name.is_empty()
                        && !name.chars().all(|x| x.is_ascii_digit())
                        && name.chars().all(|x| x.is_alphanumeric() || x == '_')
                    {
                        out.push_str("(?(<");
                        out.push_str(&name);
                        out.push_str(">)");
                        i = end + 1;
                        continue;
                    }
                }
                out.push(ch);
            }
            '{' => {
                if let Some((text, len)) = repetition(&c[i..]) {
                    out.push_str(&text);
                    i += len;
                    continue;
                }
                out.push_str("\\{");
            }
            '}' => out.push_str("\\}"),
            _ => out.push(ch),
        }
        i += 1;
    }
    out
}

/// A Python repetition `{m}`, `{m,}`, `{,n}` or `{m,n}` at the start of `c`, rewritten for
/// fancy-regex, and its length in characters.
fn repetition(c: &[char]) -> Option<(String, usize)> {
    let close = c.iter().position(|x| *x == '}')?;
    let body: String = c[1..close].iter().collect();
    let (lo, hi) = match body.split_once(',') {
        Some((lo, hi)) => (lo, Some(hi)),
        None => (body.as_str(), None),
    };
    let digits = |s: &str| s.chars().all(|x| x.is_ascii_digit());
    if !digits(lo) || !hi.is_none_or(digits) || (lo.is_empty() && hi.is_none_or(str::is_empty)) {
        return None;
    }
    let lo = if lo.is_empty() { "0" } else { lo };
    let text = match hi {
        None => format!("{{{lo}}}"),
        Some(h) => format!("{{{lo},{h}}}"),
    };
    Some((text, close + 1))
}

/// A compiled custom template. PCRE2 (JIT-compiled where the platform allows) runs it when
/// it takes the pattern; fancy-regex, the reference, otherwise or when PCRE2 gives up.
#[derive(Debug)]
pub(crate) struct RegexTemplate {
    re: fancy_regex::Regex,
    pcre: Option<pcre2::bytes::Regex>,
    /// PCRE2 match memory for the next search, given back by [`RegexTemplate::recycle`]
    /// once a match has been read: allocating it costs more than a typical search.
    spare: Option<pcre2::bytes::CaptureLocations>,
    /// Capture index and field of each named group that holds a date field, in order.
    keys: Vec<(usize, Key)>,
    /// Capture index of `%p`, if the pattern has one.
    ampm: Option<usize>,
    /// For `{EPOCH}` patterns: whether milliseconds are allowed (`{LEPOCH}`).
    epoch: Option<bool>,
}

impl Clone for RegexTemplate {
    fn clone(&self) -> Self {
        RegexTemplate {
            re: self.re.clone(),
            pcre: self.pcre.clone(),
            spare: None,
            keys: self.keys.clone(),
            ampm: self.ampm,
            epoch: self.epoch,
        }
    }
}

/// A match of a custom template.
#[derive(Debug)]
pub(crate) struct RegexMatch<'t> {
    pub start: usize,
    pub end: usize,
    /// Capture group 1, `None` when it did not take part in the match.
    pub group: Option<std::ops::Range<usize>>,
    caps: Caps<'t>,
}

/// The groups of a match, from whichever engine found it.
#[derive(Debug)]
enum Caps<'t> {
    Fancy(fancy_regex::Captures<'t, str>),
    Pcre {
        line: &'t str,
        locs: pcre2::bytes::CaptureLocations,
    },
}

impl<'t> Caps<'t> {
    fn get(&self, i: usize) -> Option<&'t str> {
        match self {
            Caps::Fancy(c) => c.get(i).map(|m| m.as_str()),
            Caps::Pcre { line, locs } => locs.get(i).and_then(|(s, e)| line.get(s..e)),
        }
    }

    fn span(&self, i: usize) -> Option<std::ops::Range<usize>> {
        match self {
            Caps::Fancy(c) => c.get(i).map(|m| m.range()),
            Caps::Pcre { locs, .. } => locs.get(i).map(|(s, e)| s..e),
        }
    }
}

/// Backtracking limit per search; a line that needs more is taken as having no date.
const BACKTRACK_LIMIT: usize = 100_000;

impl RegexTemplate {
    pub(crate) fn compile(
        pattern: &str,
        regex: &str,
        epoch: Option<bool>,
    ) -> Result<RegexTemplate, DateError> {
        let translated = python_to_fancy(regex);
        let re = fancy_regex::RegexBuilder::new(&translated)
            .backtrack_limit(BACKTRACK_LIMIT)
            .build()
            .map_err(|e| DateError::Regex {
                pattern: pattern.to_string(),
                reason: e.to_string(),
            })?;
        if re.captures_len() < 2 || (epoch.is_some() && re.captures_len() < 3) {
            return Err(DateError::Regex {
                pattern: pattern.to_string(),
                reason: "no capture group for the date".to_string(),
            });
        }
        let mut keys = Vec::new();
        let mut ampm = None;
        for (i, name) in re.capture_names().enumerate() {
            let Some(key) = name.and_then(Key::from_group) else {
                continue;
            };
            if key == Key::AmPm {
                ampm = Some(i);
            }
            keys.push((i, key));
        }
        // Python's classes are Unicode, as fancy-regex's are by default.
        let pcre = pcre2::bytes::RegexBuilder::new()
            .utf(true)
            .ucp(true)
            .jit_if_available(true)
            .build(&format!(
                "(*LIMIT_MATCH={BACKTRACK_LIMIT}){}",
                python_to_pcre(regex)
            ))
            .ok()
            // Only with the very same groups (the date fields are read by index).
            .filter(|p| {
                p.capture_names().len() == re.captures_len()
                    && p.capture_names()
                        .iter()
                        .map(|n| n.as_deref())
                        .eq(re.capture_names())
            });
        Ok(RegexTemplate {
            re,
            pcre,
            spare: None,
            keys,
            ampm,
            epoch,
        })
    }

    /// Python's `search(line, pos, endpos)`; see [`super::native::Program::search`].
    pub(crate) fn search<'t>(
        &mut self,
        line: &'t str,
        pos: usize,
        endpos: usize,
    ) -> Option<RegexMatch<'t>> {
        let caps = match self.search_pcre(line, pos, endpos) {
            Some(found) => found?,
            None => match self.re.captures_from_pos(&line[..endpos], pos) {
                Ok(Some(c)) => Caps::Fancy(c),
                Ok(None) => return None,
                Err(err) => {
                    tracing::trace!(%err, "Date pattern search gave up");
                    return None;
                }
            },
        };
        let whole = caps.span(0)?;
        let group = caps.span(1);
        Some(RegexMatch {
            start: whole.start,
            end: whole.end,
            group,
            caps,
        })
    }

    /// The search on PCRE2: None when there is no PCRE2 form or PCRE2 gave up (match
    /// limit), else its answer.
    fn search_pcre<'t>(
        &mut self,
        line: &'t str,
        pos: usize,
        endpos: usize,
    ) -> Option<Option<Caps<'t>>> {
        let re = self.pcre.as_ref()?;
        let mut locs = self.spare.take().unwrap_or_else(|| re.capture_locations());
        match re.captures_read_at(&mut locs, &line.as_bytes()[..endpos], pos) {
            Ok(Some(_)) => Some(Some(Caps::Pcre { line, locs })),
            Ok(None) => {
                self.spare = Some(locs);
                Some(None)
            }
            Err(err) => {
                tracing::trace!(%err, "Date pattern search on PCRE2 gave up");
                None
            }
        }
    }

    /// Takes back a match's PCRE2 memory for the next search.
    pub(crate) fn recycle(&mut self, m: RegexMatch<'_>) {
        if let Caps::Pcre { locs, .. } = m.caps {
            self.spare = Some(locs);
        }
    }

    /// The part of the line a match's time depends on: from the first to the last group
    /// that holds a date field (for an epoch pattern, the number).
    pub(crate) fn value_span(&self, m: &RegexMatch<'_>) -> std::ops::Range<usize> {
        if self.epoch.is_some() {
            return m.caps.span(2).unwrap_or(m.start..m.start);
        }
        let mut span: Option<std::ops::Range<usize>> = None;
        for r in self.keys.iter().filter_map(|(i, _)| m.caps.span(*i)) {
            span = Some(match span {
                None => r,
                Some(s) => s.start.min(r.start)..s.end.max(r.end),
            });
        }
        span.unwrap_or(m.start..m.start)
    }

    /// The time of a match.
    pub(crate) fn value(
        &self,
        m: &RegexMatch<'_>,
        now: &super::fields::CivilNow,
        zone: &mut super::fields::LocalZone,
    ) -> Option<jiff::Timestamp> {
        if let Some(long) = self.epoch {
            let text = m.caps.get(2)?;
            let kind = if long {
                super::defaults::Value::LongEpoch
            } else {
                super::defaults::Value::Epoch
            };
            return super::defaults::epoch_value(text, kind);
        }
        let caps = self
            .keys
            .iter()
            .filter_map(|(i, key)| m.caps.get(*i).map(|c| (*key, c)));
        let ampm = self.ampm.map(|i| m.caps.get(i));
        super::fields::Fields::from_captures(caps, ampm).resolve(now, zone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn years() -> YearRange {
        YearRange::for_year(2026)
    }

    fn exp(p: &str) -> Expanded {
        expand_pattern(p, years()).unwrap()
    }

    #[test]
    fn names_follow_fail2ban() {
        assert_eq!(
            exp("^%m/%d/%Y %H:%M:%S").name,
            "^Month/Day/Year 24hour:Minute:Second"
        );
        assert_eq!(
            exp("{^LN-BEG}%H:%M:%S").name,
            "{^LN-BEG}24hour:Minute:Second"
        );
        assert_eq!(
            exp("{^LN-BEG}%b-%d-%Exy %H:%M:%S").name,
            "{^LN-BEG}MON-Day-ExYear2 24hour:Minute:Second"
        );
        assert_eq!(exp("%ExY%Exm%Exd").name, "ExYearExMonthExDay");
        assert_eq!(exp("x%%y").name, "x%y");
    }

    #[test]
    fn boundaries_and_flags() {
        let e = exp("%H:%M:%S");
        assert_eq!(e.flags, WORD_BEGIN | WORD_END);
        assert!(e.regex.starts_with(PY_WORD_BEGIN));
        assert!(e.regex.ends_with(PY_WORD_END));
        assert_eq!(
            python_to_fancy(&e.regex).matches(WORD_BOUND).count(),
            2,
            "{}",
            python_to_fancy(&e.regex)
        );
        let e = exp("^%Y-%m-%d %H:%M:%S");
        assert_eq!(e.flags, LINE_BEGIN | WORD_END);
        assert!(e.regex.starts_with("^((?P<Y>"), "{}", e.regex);
        let e = exp("{^LN-BEG}%H:%M:%S");
        assert_eq!(e.flags, LINE_BEGIN | WORD_END);
        assert!(e.regex.starts_with(LINE_BEGIN_PREFIX));
        let e = exp("{UNB}%H:%M:%S");
        assert_eq!(e.flags, 0);
        assert!(e.regex.starts_with("((?P<H>"));
        let e = exp("%H:%M:%S$");
        assert_eq!(e.flags, WORD_BEGIN | LINE_END);
        assert!(e.regex.ends_with(")$"));
        // `**` opts out of a boundary and disappears.
        let e = exp(r"^I\(()**");
        assert_eq!(e.regex, r"^I\(()");
        // A name code makes the pattern ignore case.
        assert!(exp("%b %d").regex.starts_with("(?iu)"));
        assert!(!exp("%%b %d").regex.starts_with("(?iu)"));
    }

    #[test]
    fn group_one_is_the_date() {
        // No plain group: everything between the anchors is wrapped.
        assert!(exp("^<W>%H:%M:%S").regex.starts_with("^(<W>(?P<H>"));
        // A plain group is kept as group 1.
        let e = exp(r"^[^\[]*\[(%d/%b/%Y)");
        assert!(e.regex.starts_with(r"(?iu)^[^\[]*\[((?P<d>"), "{}", e.regex);
    }

    #[test]
    fn unknown_codes_are_errors_with_position() {
        let err = expand_pattern("%Y-%q", years()).unwrap_err();
        assert_eq!(
            err,
            DateError::UnknownCode {
                pattern: "%Y-%q".into(),
                code: "%q".into(),
                at: 3
            }
        );
        assert!(
            err.to_string()
                .contains("unknown format code \"%q\" at byte 3")
        );
        assert!(expand_pattern("50%", years()).is_err());
        assert!(expand_pattern("%Exq", years()).is_err());
    }

    #[test]
    fn odd_patterns_do_not_panic() {
        for p in [
            "%H 日)", "日**)", "(日**", "é$)", "(?i)日", "**", "()", "{UNB}", "%%",
        ] {
            let _ = expand_pattern(p, years());
        }
    }

    #[test]
    fn python_syntax_is_translated() {
        assert_eq!(python_to_fancy(r"a\Z"), r"a\z");
        assert_eq!(python_to_fancy(r"[[]"), r"[\[]");
        assert_eq!(python_to_fancy(r"[]a]"), r"[\]a]");
        assert_eq!(python_to_fancy(r"[^]a]"), r"[^\]a]");
        assert_eq!(python_to_fancy(r"a{,3}"), r"a{0,3}");
        assert_eq!(python_to_fancy(r"a{2,}"), r"a{2,}");
        assert_eq!(python_to_fancy(r"{DATE}"), r"\{DATE\}");
        assert_eq!(python_to_fancy(r"(?(sq)\])"), r"(?(<sq>)\])");
        assert_eq!(python_to_fancy(r"(?(1)x)"), r"(?(1)x)");
        assert_eq!(python_to_fancy(r"[a&&b]"), r"[a&\&b]");
        assert_eq!(python_to_fancy(r"\d{10,11}"), r"\d{10,11}");
        assert_eq!(python_to_pcre(r"(?iu)a(?u)b(?u:c)"), r"(?i)ab(?:c)");
    }

    #[test]
    fn epoch_patterns() {
        let e = expand_epoch_pattern(r"^\[{EPOCH}\]", false);
        assert_eq!(e.name, r"^\[{EPOCH}\]");
        assert!(e.regex.starts_with(r"(^\[(\d{10,11}"), "{}", e.regex);
        assert_eq!(e.flags & LINE_BEGIN, LINE_BEGIN);
        assert_eq!(find_epoch_placeholders(r"a{lepoch}b\{EPOCH}"), vec![1..9]);
    }

    #[test]
    fn compiled_search_uses_group_one_and_fields() {
        let e = exp(r"^%Y:%m:%d-%H:%M:%S");
        let mut t = RegexTemplate::compile("p", &e.regex, None).unwrap();
        let line = "2005:08:14-10:00:00: x";
        let m = t.search(line, 0, line.len()).unwrap();
        assert_eq!(m.group, Some(0..19));
        let now = jiff::civil::datetime(2005, 8, 14, 12, 0, 0, 0);
        let mut utc = super::super::fields::LocalZone::new(jiff::tz::TimeZone::UTC);
        let now = super::super::fields::CivilNow::new(now);
        let ts = t.value(&m, &now, &mut utc).unwrap();
        assert_eq!(ts.as_second(), 1_124_013_600);
        // `^` holds only at the line start, also when searching from further on.
        assert!(t.search(line, 1, line.len()).is_none());
    }

    #[test]
    fn custom_templates_run_on_pcre2_and_agree_with_fancy_regex() {
        let lines = [
            "192.0.2.1 - - [02/Mar/2026:10:11:12 +0000] \"GET / HTTP/1.1\" 200 1",
            "2026-03-02 10:11:12 host x",
            "2026/03/02 10:11:12.123 x",
            "x 2026.03-02 10:11:12",
            "[02-Mar-2026 10:11:12] y",
            "no date here",
            "épée 2026-03-02T10:11:12Z é",
        ];
        for p in [
            r"^[^\[]*\[(%d(?P<_sep>[-/])%b(?P=_sep)%ExY[ :]?%H:%M:%S(?:\.%f)?(?: %z)?)",
            r"{^LN-BEG}%ExY(?P<_sep>[-/.])%m(?P=_sep)%d[T ]%H:%M:%S(?:[.,]%f)?(?:\s*%z)?",
            "%Y-%m-%dT%H:%M:%S%z",
            "%H:%M:%S",
        ] {
            let e = exp(p);
            let mut t = RegexTemplate::compile(p, &e.regex, None).unwrap();
            assert!(t.pcre.is_some(), "{p}: {}", python_to_pcre(&e.regex));
            let mut fancy = RegexTemplate {
                pcre: None,
                ..t.clone()
            };
            for line in lines {
                for pos in [0, 1, 3] {
                    if !line.is_char_boundary(pos) {
                        continue;
                    }
                    let a = t.search(line, pos, line.len());
                    let b = fancy.search(line, pos, line.len());
                    let key = |m: &Option<RegexMatch>| {
                        m.as_ref().map(|m| {
                            let fields: Vec<Option<String>> = (0..t.re.captures_len())
                                .map(|i| m.caps.get(i).map(str::to_string))
                                .collect();
                            (m.start, m.end, m.group.clone(), fields)
                        })
                    };
                    assert_eq!(key(&a), key(&b), "{p} on {line:?} from {pos}");
                }
            }
        }
    }

    #[test]
    fn bad_regex_is_reported() {
        let e = exp("%H:%M:(%S");
        let err = RegexTemplate::compile("%H:%M:(%S", &e.regex, None).unwrap_err();
        assert!(matches!(err, DateError::Regex { .. }));
        assert!(
            err.to_string()
                .starts_with("datepattern \"%H:%M:(%S\": invalid regular expression")
        );
    }
}
