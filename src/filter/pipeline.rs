//! The per-line filter pipeline (without date detection), as fail2ban 1.0.2 runs it.
//!
//! For each line whose date has been cut out:
//!
//! 1. With `maxlines > 1` the line joins a buffer of the last `maxlines` lines; the regexes
//!    see the buffer joined with `\n`. The text always ends with `\n`, as in fail2ban.
//! 2. When there are fewer ignoreregexes than failregexes minus two, the ignoreregexes are
//!    tried first, on the whole text (fail2ban's shortcut; it changes which text they see
//!    when a prefregex replaces the content, so it is kept).
//! 3. The prefregex must match. Its `<F-CONTENT>` capture replaces the text the
//!    failregexes see; its other groups are merged under the failregex's groups.
//! 4. The failregexes are tried in list order, the first match wins (or every one, in
//!    check-all mode, as `fail2ban-regex` and fail2ban's sample tests run).
//! 5. A match is dropped when an ignoreregex matches the matched lines.
//! 6. `<F-MLFID>` failures are merged through a session cache of at most 100 entries kept
//!    5 minutes (`F-MLFFORGET` ends a session, `F-MLFGAINED` a successful login that
//!    cancels pending failures, `F-NOFAIL` a match that is not a failure by itself).
//! 7. The failure id comes from `fid`, `ip4`, `ip6` or `dns`; `F-ALT_*` groups fill empty
//!    groups, `F-TUPLE_*` groups combine into one id.
//!
//! Differences by design: the session cache expires by the time given with each line
//! (fail2ban uses the wall clock), so replaying an old log behaves as it did live; host
//! names are never resolved here — a failure carrying one says so (`needs_dns`) and the
//! jail resolves it.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::sync::Arc;

use compact_str::CompactString as Text;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

pub use crate::config::model::UseDns as UseDnsMode;

use super::addr::{self, Cidr, Converted};
use super::engine::{
    ContentCache, ContentFinder, ContentStart, Hit, MatchStats, PatternList, Scratch, VecPool,
};
use super::tags;
use super::translate::{self, Engine, TranslateOptions, Translation};

/// Backtracking steps a fallback regex may take on one text before the search is
/// abandoned and counted as no match.
pub const DEFAULT_BACKTRACK_LIMIT: usize = 200_000;

/// fail2ban's multi-line session cache: entries and lifetime.
const MLFID_MAX_ENTRIES: usize = 100;
const MLFID_MAX_AGE: SignedDuration = SignedDuration::from_secs(5 * 60);

/// What a filter is made of: regexes as written in `filter.d` (tags not yet expanded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterSpec {
    pub prefregex: Option<String>,
    pub failregex: Vec<String>,
    pub ignoreregex: Vec<String>,
    /// Lines kept for multi-line matching (1 = single-line).
    pub maxlines: usize,
    pub usedns: UseDnsMode,
    /// Unicode `\w`, `\d`, `\s`, `\b` and case folding (fail2ban's Python default) instead
    /// of ASCII. Slower; only needed when a filter relies on non-ASCII classes.
    pub unicode: bool,
    pub backtrack_limit: usize,
}

impl Default for FilterSpec {
    fn default() -> Self {
        FilterSpec {
            prefregex: None,
            failregex: Vec::new(),
            ignoreregex: Vec::new(),
            maxlines: 1,
            usedns: UseDnsMode::Warn,
            unicode: false,
            backtrack_limit: DEFAULT_BACKTRACK_LIMIT,
        }
    }
}

/// Which list a regex belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RegexKind {
    Prefregex,
    Failregex,
    Ignoreregex,
}

impl fmt::Display for RegexKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RegexKind::Prefregex => "prefregex",
            RegexKind::Failregex => "failregex",
            RegexKind::Ignoreregex => "ignoreregex",
        })
    }
}

/// How one regex of a filter is run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EngineInfo {
    pub kind: RegexKind,
    pub index: usize,
    pub engine: Engine,
    /// Why the fallback engine runs it (empty for the fast engine).
    pub reason: String,
    /// The pattern as the engine runs it.
    pub pattern: String,
    /// The pattern after tag expansion, in Python's dialect.
    pub expanded: String,
}

/// A filter that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("{kind} {index}: {message} in {regex:?}")]
    Regex {
        kind: RegexKind,
        index: usize,
        regex: String,
        message: String,
    },
    #[error("{kind} {index}: empty regex")]
    Empty { kind: RegexKind, index: usize },
    #[error(
        "failregex {index}: no failure id; the regex or the prefregex needs <HOST>, <ADDR>, \
         <IP4>, <IP6>, <DNS>, <F-ID> or <F-MLFID>: {regex:?}"
    )]
    NoFailureId { index: usize, regex: String },
    #[error("maxlines must be at least 1")]
    MaxLines,
}

/// A group name, interned: names compare by a number, and copying one costs nothing (a
/// line's failure handles a dozen).
#[derive(Clone, Copy)]
struct Name {
    id: u32,
    text: &'static str,
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        self.id == other.id
    }
}

impl Eq for Name {}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Name) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Names sort by their text, as fail2ban sorts group names.
impl Ord for Name {
    fn cmp(&self, other: &Name) -> std::cmp::Ordering {
        self.text.cmp(other.text)
    }
}

impl std::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        self.text
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.text.fmt(f)
    }
}

/// The names the pipeline itself asks for, with the first numbers of the interner.
mod key {
    use super::Name;
    const fn k(id: u32, text: &'static str) -> Name {
        Name { id, text }
    }
    pub(super) const ALL: [Name; 11] = [
        CONTENT, FID, NOFAIL, MLFGAINED, MLFFORGET, MLFID, USER, IP4, IP6, DNS, CIDR,
    ];
    pub(super) const CONTENT: Name = k(0, "content");
    pub(super) const FID: Name = k(1, "fid");
    pub(super) const NOFAIL: Name = k(2, "nofail");
    pub(super) const MLFGAINED: Name = k(3, "mlfgained");
    pub(super) const MLFFORGET: Name = k(4, "mlfforget");
    pub(super) const MLFID: Name = k(5, "mlfid");
    pub(super) const USER: Name = k(6, "user");
    pub(super) const IP4: Name = k(7, "ip4");
    pub(super) const IP6: Name = k(8, "ip6");
    pub(super) const DNS: Name = k(9, "dns");
    pub(super) const CIDR: Name = k(10, "cidr");
}

/// The one [`Name`] of `s`. Names come from filter files, so the interner holds no
/// more than the distinct group names ever configured, also across reloads.
fn name(s: &str) -> Name {
    type Names = std::collections::HashMap<&'static str, u32>;
    static NAMES: std::sync::Mutex<Option<Names>> = std::sync::Mutex::new(None);
    let mut names = NAMES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let map = names.get_or_insert_with(|| key::ALL.iter().map(|n| (n.text, n.id)).collect());
    if let Some((&text, &id)) = map.get_key_value(s) {
        return Name { id, text };
    }
    let text: &'static str = Box::leak(s.into());
    let id = map.len() as u32;
    map.insert(text, id);
    Name { id, text }
}

/// Group handling of one compiled regex.
#[derive(Debug)]
struct RegexMeta {
    /// Python group names by group index.
    names: Vec<Option<Name>>,
    /// `alt_*` groups: (group name, target name), sorted as fail2ban sorts them.
    alts: Vec<(Name, Name)>,
    /// `tuple_*` groups: (group name, target name), sorted.
    tuples: Vec<(Name, Name)>,
    /// Group indices of `skiplinesN`, in N order.
    skiplines: Vec<usize>,
}

impl RegexMeta {
    /// The most groups a match of the regex carries (its own, `alt_*` and `tuple_*`
    /// targets).
    fn most_groups(&self) -> usize {
        self.names.len() + self.alts.len() + self.tuples.len()
    }

    /// Every name a match's groups can carry (its own and the `alt_*`/`tuple_*` targets).
    fn out_names(&self) -> impl Iterator<Item = Name> + '_ {
        let targets = self.alts.iter().chain(&self.tuples).map(|(_, t)| *t);
        self.names.iter().flatten().copied().chain(targets)
    }

    fn new(tr: &Translation) -> RegexMeta {
        let mut alts = Vec::new();
        let mut tuples = Vec::new();
        for n in tr.names.iter().flatten() {
            if n.len() <= "alt_".len() {
                continue;
            }
            if let Some(target) = complex_target(n, "alt_") {
                alts.push((name(n), name(&target)));
            } else if let Some(target) = complex_target(n, "tuple_") {
                tuples.push((name(n), name(&target)));
            }
        }
        alts.sort();
        tuples.sort();
        let mut skiplines = Vec::new();
        for n in 0.. {
            let want = format!("{}{n}", tags::SKIPLINES_GROUP);
            match tr
                .names
                .iter()
                .position(|x| x.as_deref() == Some(want.as_str()))
            {
                Some(i) => skiplines.push(i),
                None => break,
            }
        }
        RegexMeta {
            names: tr.names.iter().map(|n| n.as_deref().map(name)).collect(),
            alts,
            tuples,
            skiplines,
        }
    }
}

/// `alt_user_1` → `user`, `alt_user1` → `user1`, `tuple_id` → `fid` (fail2ban's
/// `^(alt_|tuple_)(.*?)(?:_\d+)?$` with the `id`/`port` aliases).
fn complex_target(name: &str, prefix: &str) -> Option<String> {
    let rest = name.strip_prefix(prefix)?;
    let b = rest.as_bytes();
    // The shortest stem whose remainder is empty or `_` followed by digits only.
    let stem_len = (0..=b.len())
        .find(|&i| {
            i == b.len()
                || (b[i] == b'_' && i + 1 < b.len() && b[i + 1..].iter().all(u8::is_ascii_digit))
        })
        .unwrap_or(b.len());
    Some(tags::field_group_name(&rest[..stem_len]))
}

#[derive(Debug)]
struct CompiledList {
    list: PatternList,
    meta: Vec<RegexMeta>,
}

/// A compiled filter: immutable, shared by every source of a jail.
#[derive(Debug)]
pub struct Filter {
    maxlines: usize,
    usedns: UseDnsMode,
    prefregex: Option<CompiledList>,
    /// Finds a trailing `<F-CONTENT>` of the prefregex without a capture engine.
    content_finder: Option<ContentFinder>,
    failregex: CompiledList,
    /// By failregex: none of its group names is one of the prefregex's.
    fail_apart: Vec<bool>,
    /// The most groups a failregex match adds to the prefregex's.
    fail_groups_room: usize,
    ignoreregex: CompiledList,
    engines: Vec<EngineInfo>,
}

/// The groups that give a failure its id (a failregex needs one, or the prefregex).
const ID_GROUPS: [Name; 5] = [key::FID, key::IP4, key::IP6, key::DNS, key::MLFID];

impl Filter {
    /// Expands tags, translates and compiles every regex of `spec`. The error names the
    /// regex (list and index) and the cause.
    pub fn compile(spec: &FilterSpec) -> Result<Filter, FilterError> {
        if spec.maxlines == 0 {
            return Err(FilterError::MaxLines);
        }
        let mut engines = Vec::new();
        let mut compile_list = |kind: RegexKind,
                                regexes: &[String],
                                multiline: bool|
         -> Result<CompiledList, FilterError> {
            let mut trs = Vec::with_capacity(regexes.len());
            for (index, raw) in regexes.iter().enumerate() {
                let expanded = tags::localise_global_flags(&tags::expand(raw, spec.usedns));
                if expanded.trim_start().is_empty() {
                    return Err(FilterError::Empty { kind, index });
                }
                let tr = translate::translate(
                    &expanded,
                    TranslateOptions {
                        multiline,
                        unicode: spec.unicode,
                    },
                )
                .map_err(|e| FilterError::Regex {
                    kind,
                    index,
                    regex: raw.clone(),
                    message: e.to_string(),
                })?;
                engines.push(EngineInfo {
                    kind,
                    index,
                    engine: tr.engine,
                    reason: tr.reason.clone(),
                    pattern: tr.final_pattern().to_string(),
                    expanded,
                });
                trs.push(tr);
            }
            let meta = trs.iter().map(RegexMeta::new).collect();
            let list =
                PatternList::compile(trs, spec.unicode, spec.backtrack_limit).map_err(|f| {
                    FilterError::Regex {
                        kind,
                        index: f.index,
                        regex: regexes[f.index].clone(),
                        message: f.message,
                    }
                })?;
            Ok(CompiledList { list, meta })
        };
        let prefregex = match &spec.prefregex {
            Some(p) => Some(compile_list(
                RegexKind::Prefregex,
                std::slice::from_ref(p),
                false,
            )?),
            None => None,
        };
        let failregex = compile_list(RegexKind::Failregex, &spec.failregex, spec.maxlines > 1)?;
        let ignoreregex = compile_list(RegexKind::Ignoreregex, &spec.ignoreregex, false)?;
        let has_id = |m: &RegexMeta| m.names.iter().flatten().any(|n| ID_GROUPS.contains(n));
        let pref_has_id = prefregex.as_ref().is_some_and(|p| has_id(&p.meta[0]));
        if !pref_has_id && let Some(index) = failregex.meta.iter().position(|m| !has_id(m)) {
            return Err(FilterError::NoFailureId {
                index,
                regex: spec.failregex[index].clone(),
            });
        }
        // The content shortcut needs one-line texts.
        // The prefregex's expansion is the first engine entry's.
        let content_finder = match (&spec.prefregex, spec.maxlines) {
            (Some(_), 1) => translate::content_prefix(
                &engines[0].expanded,
                TranslateOptions {
                    multiline: false,
                    unicode: spec.unicode,
                },
            )
            .and_then(|cp| ContentFinder::new(&cp, spec.unicode).ok()),
            _ => None,
        };
        // A failregex whose groups never share a name with the prefregex's joins them
        // without looking each one up.
        let pre_names: Vec<Name> = prefregex
            .iter()
            .flat_map(|pre| pre.meta.iter().flat_map(RegexMeta::out_names))
            .collect();
        let fail_apart = failregex
            .meta
            .iter()
            .map(|m| m.out_names().all(|n| !pre_names.contains(&n)))
            .collect();
        let fail_groups_room = failregex
            .meta
            .iter()
            .map(RegexMeta::most_groups)
            .max()
            .unwrap_or(0);
        Ok(Filter {
            maxlines: spec.maxlines,
            usedns: spec.usedns,
            prefregex,
            content_finder,
            failregex,
            fail_apart,
            fail_groups_room,
            ignoreregex,
            engines,
        })
    }

    /// How each regex is run, prefregex first, then failregexes and ignoreregexes in order.
    pub fn engines(&self) -> Vec<EngineInfo> {
        self.engines.clone()
    }

    /// Heap bytes of the compiled fast-engine automata.
    pub fn memory_usage(&self) -> usize {
        self.prefregex
            .iter()
            .chain([&self.failregex, &self.ignoreregex])
            .map(|l| l.list.memory_usage())
            .sum::<usize>()
            + self
                .content_finder
                .as_ref()
                .map_or(0, ContentFinder::memory_usage)
    }

    pub fn failregex_count(&self) -> usize {
        self.failregex.list.len()
    }

    pub fn maxlines(&self) -> usize {
        self.maxlines
    }

    fn raw_ids(&self) -> bool {
        self.usedns == UseDnsMode::Raw
    }
}

/// A line split around its date, as date detection leaves it: the regexes see
/// `before + after`, a failure's `matches` keep the whole line.
#[derive(Debug, Clone, Copy, Default)]
pub struct LineParts<'a> {
    pub before: &'a str,
    pub date: &'a str,
    pub after: &'a str,
}

/// One line of the multi-line buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BufLine {
    /// The text regexes see (the date cut out).
    text: Arc<str>,
    /// The original line.
    full: Arc<str>,
}

impl BufLine {
    /// The buffer line of `p`; `scratch` is memory to join parts in. Without `full`, the
    /// line as written is not kept (`full` is the text regexes see): for a caller that
    /// never reads a failure's lines.
    fn new(p: LineParts, scratch: &mut String, full: bool) -> BufLine {
        let mut joined = |parts: &[&str]| -> Arc<str> {
            scratch.clear();
            parts.iter().for_each(|x| scratch.push_str(x));
            Arc::from(scratch.as_str())
        };
        let text: Arc<str> = if p.before.is_empty() {
            Arc::from(p.after)
        } else {
            joined(&[p.before, p.after])
        };
        let full = if p.date.is_empty() || !full {
            text.clone()
        } else {
            joined(&[p.before, p.date, p.after])
        };
        BufLine { text, full }
    }

    fn content(s: &str) -> BufLine {
        let a: Arc<str> = Arc::from(s);
        BufLine {
            text: a.clone(),
            full: a,
        }
    }
}

fn join(lines: &[BufLine]) -> String {
    let mut s = String::with_capacity(lines.iter().map(|l| l.text.len() + 1).sum());
    for (i, l) in lines.iter().enumerate() {
        if i > 0 {
            s.push('\n');
        }
        s.push_str(&l.text);
    }
    s.push('\n');
    s
}

/// A group value: a capture, or several combined by `F-TUPLE_*`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Str(Text),
    Tuple(Vec<Option<String>>),
}

impl Value {
    fn truthy(&self) -> bool {
        match self {
            Value::Str(s) => !s.is_empty(),
            Value::Tuple(t) => !t.is_empty(),
        }
    }
    /// The text fail2ban would show (`str()` of a string or of a tuple).
    fn text(&self) -> String {
        match self {
            Value::Str(s) => s.to_string(),
            Value::Tuple(t) => {
                let parts: Vec<String> = t
                    .iter()
                    .map(|v| match v {
                        Some(s) => py_repr(s),
                        None => "None".to_string(),
                    })
                    .collect();
                if parts.len() == 1 {
                    format!("({},)", parts[0])
                } else {
                    format!("({})", parts.join(", "))
                }
            }
        }
    }
}

/// Python's `repr` of a string.
fn py_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

fn truthy(v: Option<&Option<Value>>) -> bool {
    matches!(v, Some(Some(x)) if x.truthy())
}

/// A failure's named groups. A match has a handful, so a vector searched by name beats a
/// tree.
#[derive(Debug, Clone, Default)]
struct Groups(Vec<(Name, Option<Value>)>);

impl Groups {
    fn get(&self, k: Name) -> Option<&Option<Value>> {
        self.0.iter().find(|(n, _)| *n == k).map(|(_, v)| v)
    }

    /// Sets a group, replacing its value if it is there.
    fn insert(&mut self, k: Name, v: Option<Value>) {
        match self.0.iter_mut().find(|(n, _)| *n == k) {
            Some(slot) => slot.1 = v,
            None => self.0.push((k, v)),
        }
    }

    fn remove(&mut self, k: Name) -> Option<Option<Value>> {
        let i = self.0.iter().position(|(n, _)| *n == k)?;
        Some(self.0.remove(i).1)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = (&Name, &Option<Value>)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// Moves `other`'s groups that have a value here, those values winning (`other` is
    /// left empty, its memory kept).
    fn extend_set(&mut self, other: &mut Groups) {
        self.0.reserve(other.0.len());
        for (k, v) in other.0.drain(..) {
            if v.is_some() {
                self.insert(k, v);
            }
        }
    }

    /// Moves `other`'s groups here, none of which is here yet.
    fn append(&mut self, other: &mut Groups) {
        debug_assert!(other.0.iter().all(|(k, _)| self.get(*k).is_none()));
        self.0.append(&mut other.0);
    }

    /// Moves `other`'s groups here, its values winning.
    fn extend(&mut self, other: &mut Groups) {
        self.0.reserve(other.0.len());
        for (k, v) in other.0.drain(..) {
            self.insert(k, v);
        }
    }
}

impl IntoIterator for Groups {
    type Item = (Name, Option<Value>);
    type IntoIter = std::vec::IntoIter<(Name, Option<Value>)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// fail2ban's failure dictionary: the regex groups plus the keys the pipeline adds.
#[derive(Debug, Clone, Default)]
struct FailData {
    groups: Groups,
    users: Option<BTreeSet<Text>>,
    matches: Option<Vec<BufLine>>,
    nofail_matches: Option<Vec<BufLine>>,
    mlfpending: bool,
    /// Boxed: rarely set, and the failure is moved about whole several times a line.
    ip: Option<Box<Converted>>,
}

impl FailData {
    fn get_str(&self, k: Name) -> Option<Text> {
        // Not through `get_text`: cloning a stored value copies its inline bytes as they
        // are, where building one from the text measures it again.
        match self.groups.get(k) {
            Some(Some(Value::Str(s))) => Some(s.clone()),
            Some(Some(v)) => Some(Text::from(v.text())),
            _ => None,
        }
    }

    /// [`FailData::get_str`] without a copy when the value is a plain string.
    fn get_text(&self, k: Name) -> Option<Cow<'_, str>> {
        match self.groups.get(k) {
            Some(Some(Value::Str(s))) => Some(Cow::Borrowed(s)),
            Some(Some(v)) => Some(Cow::Owned(v.text())),
            _ => None,
        }
    }
}

/// A failure found in a line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The failure id as fail2ban reports it: a normalised address (with `/prefix` when a
    /// CIDR was captured), a host name, or raw `<F-ID>` text. Empty for a pending failure.
    pub id: String,
    /// The address, when the id is one.
    pub addr: Option<std::net::IpAddr>,
    /// Prefix length, when a CIDR narrower than one address was captured.
    pub prefix: Option<u8>,
    /// The id is a host name the jail must resolve (`usedns = yes/warn`).
    pub needs_dns: bool,
    #[serde(serialize_with = "serialize_time")]
    pub time: Timestamp,
    /// Index of the failregex that matched.
    pub regex: usize,
    /// Every named group with a value (F-* groups lowercased without `F-`), plus `ip` when
    /// the id is not the address.
    pub fields: BTreeMap<String, String>,
    /// Users of a multi-line session (`F-MLFID`); for a single-line failure the user is in
    /// `fields["user"]`, as in fail2ban.
    pub users: BTreeSet<String>,
    /// The original lines behind this failure (several for merged sessions).
    pub matches: Vec<String>,
    /// An `F-NOFAIL` match: helps a session but is no failure by itself (check-all only).
    pub nofail: bool,
    /// A session failure still waiting for its address (check-all only).
    pub pending: bool,
}

fn serialize_time<S: serde::Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(t)
}

/// What a line produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum LineResult {
    /// Nothing matched (or a match yielded no usable id).
    Missed,
    /// An ignoreregex dropped the match; or, with `ignoreregex: None`, the failregex
    /// matched but produced no failure (`F-NOFAIL`, or a session still waiting for its
    /// address; only outside check-all mode, which reports those as failures).
    Ignored {
        ignoreregex: Option<usize>,
        failregex: Option<usize>,
    },
    /// Failures, in failregex order (one unless in check-all mode).
    Matched(Vec<Failure>),
}

#[derive(Debug)]
struct MlfidEntry {
    /// Insertion sequence number (position in the FIFO order).
    seq: u64,
    expires: Timestamp,
    data: FailData,
}

/// fail2ban's `Utils.Cache` for sessions: insertion-ordered, FIFO eviction that drops
/// expired entries first, expiry fixed when an entry is set.
#[derive(Debug, Default)]
struct MlfidCache {
    map: hashbrown::HashMap<Text, MlfidEntry>,
    /// Keys in insertion order; entries whose sequence number no longer matches the map
    /// are stale (removed or re-inserted) and skipped.
    order: VecDeque<(u64, Text)>,
    seq: u64,
}

impl MlfidCache {
    /// Removes a live entry to work on it; [`MlfidCache::restore`] puts it back in its
    /// place. An expired entry is dropped.
    fn take(&mut self, key: &str, now: Timestamp) -> Option<MlfidEntry> {
        let e = self.map.remove(key)?;
        (e.expires > now).then_some(e)
    }

    fn restore(&mut self, key: Text, entry: MlfidEntry) {
        self.map.insert(key, entry);
    }

    fn set(&mut self, key: Text, data: FailData, now: Timestamp) {
        if self.map.len() >= MLFID_MAX_ENTRIES {
            while let Some((seq, k)) = self.order.pop_front() {
                let live = self.map.get(&k).is_some_and(|e| e.seq == seq);
                if !live {
                    continue;
                }
                let e = self.map.remove(&k);
                if e.is_some_and(|e| e.expires > now) && self.map.len() < MLFID_MAX_ENTRIES {
                    break;
                }
            }
        }
        let expires = now + MLFID_MAX_AGE;
        match self.map.get_mut(&key) {
            // Re-setting a key keeps its place in the order, as in a Python dict.
            Some(e) => {
                e.data = data;
                e.expires = expires;
            }
            None => {
                self.seq += 1;
                self.order.push_back((self.seq, key.clone()));
                self.map.insert(
                    key,
                    MlfidEntry {
                        seq: self.seq,
                        expires,
                        data,
                    },
                );
            }
        }
        if self.order.len() > 2 * self.map.len() + 16 {
            let map = &self.map;
            self.order
                .retain(|(seq, k)| map.get(k).is_some_and(|e| e.seq == *seq));
        }
    }
}

/// What becomes of a session's merged failure once the line is done with it.
#[derive(Debug)]
enum Keep {
    /// Not cached (the session ended).
    Drop,
    /// A new session entry.
    Set,
    /// Back into its old place, with its old expiry.
    Restore { seq: u64, expires: Timestamp },
}

/// The clock that ages the session cache (`F-MLFID` entries live five minutes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SessionClock {
    /// The time given with each line: replaying an old log ages sessions as they aged
    /// when it was written (the daemon).
    #[default]
    LineTime,
    /// The wall clock, as fail2ban keeps it (fail2ban-regex and its sample tests: a run
    /// over a whole log takes less than the lifetime, so sessions end only by count).
    Wall,
}

/// Per-source state: the multi-line buffer and the session cache.
#[derive(Debug)]
pub struct FilterState {
    session_clock: SessionClock,
    /// The caller's lines never hold a newline (see [`FilterState::set_split_lines`]).
    split_lines: bool,
    filter: Arc<Filter>,
    buffer: Vec<BufLine>,
    mlfid: MlfidCache,
    stats: MatchStats,
    prefregex_matched: Option<bool>,
    /// Ignoreregexes that matched during the last line, once per match (what
    /// fail2ban-regex counts).
    ignore_hits: Vec<usize>,
    /// Earlier lines (as written) that the last line's match took out of the multi-line
    /// buffer.
    consumed: Vec<Arc<str>>,
    /// The buffer before the last line, for `consumed` (multi-line only).
    previous: Vec<Arc<str>>,
    /// The text of the line being screened (kept to reuse its memory).
    quick_text: String,
    /// Memory to join line parts in.
    join_buf: String,
    /// Failures carry their fields, users and matched lines (off: only what counting
    /// them needs: id, regex, nofail, pending).
    details: bool,
    pre_scratch: Option<Scratch>,
    /// What the content finder found in the current line's text, when the screen already
    /// ran it (the full run then needs no second search).
    known_content: Option<ContentStart>,
    /// `cannot_match` left the failregexes that match the text it screened in
    /// `fail_scratch` (check-all mode, single-line filters).
    screened: bool,
    fail_scratch: Scratch,
    ignore_scratch: Scratch,
    content_cache: Option<ContentCache>,
    /// Emptied group vectors, for the next match's groups.
    spare_groups: VecPool<(Name, Option<Value>)>,
}

impl FilterState {
    pub fn new(filter: Arc<Filter>) -> Self {
        FilterState {
            session_clock: SessionClock::LineTime,
            split_lines: false,
            pre_scratch: filter.prefregex.as_ref().map(|p| p.list.scratch()),
            known_content: None,
            screened: false,
            content_cache: filter.content_finder.as_ref().map(ContentFinder::cache),
            fail_scratch: filter.failregex.list.scratch(),
            ignore_scratch: filter.ignoreregex.list.scratch(),
            filter,
            buffer: Vec::new(),
            mlfid: MlfidCache::default(),
            stats: MatchStats::default(),
            prefregex_matched: None,
            ignore_hits: Vec::new(),
            consumed: Vec::new(),
            previous: Vec::new(),
            quick_text: String::new(),
            join_buf: String::new(),
            details: true,
            spare_groups: VecPool::default(),
        }
    }

    /// An empty group vector, with memory when one was given back.
    fn fresh_groups(&mut self) -> Groups {
        Groups(self.spare_groups.take())
    }

    /// Takes back a group vector that is done with, for [`FilterState::fresh_groups`].
    fn recycle_groups(&mut self, g: Groups) {
        self.spare_groups.give(g.0);
    }

    /// Whether failures carry their fields, users and matched lines (default: yes). A
    /// caller that only counts failures can spare building them.
    pub fn set_details(&mut self, on: bool) {
        self.details = on;
    }

    /// Chooses the clock of the session cache.
    pub fn set_session_clock(&mut self, clock: SessionClock) {
        self.session_clock = clock;
    }

    /// Whether every line given holds no newline (a reader that splits its input at
    /// newlines): the prefregex's content is then found, and the failregexes screened,
    /// without looking for one.
    pub fn set_split_lines(&mut self, on: bool) {
        self.split_lines = on;
    }

    fn session_now(&self, line_time: Timestamp) -> Timestamp {
        match self.session_clock {
            SessionClock::LineTime => line_time,
            SessionClock::Wall => coarse_now(),
        }
    }

    /// The ignoreregexes that matched during the last line (an index per match; in
    /// check-all mode one ignoreregex may match once per failregex match).
    pub fn last_ignore_hits(&self) -> &[usize] {
        &self.ignore_hits
    }

    /// In multi-line mode: the earlier lines (as written) that the last line's match (or
    /// ignore) took out of the buffer, i.e. that turned out to belong to a match.
    pub fn last_consumed(&self) -> &[Arc<str>] {
        &self.consumed
    }

    pub fn filter(&self) -> &Arc<Filter> {
        &self.filter
    }

    /// Fallback searches stopped by the backtrack limit so far (each counted as no match).
    pub fn backtrack_limit_hits(&self) -> u64 {
        self.stats.backtrack_limit_hits
    }

    /// Fallback-engine searches run so far.
    pub fn fallback_runs(&self) -> u64 {
        self.stats.fallback_runs
    }

    /// Whether the prefregex matched the last line (None without a prefregex, or when the
    /// line stopped before it).
    pub fn prefregex_matched(&self) -> Option<bool> {
        self.prefregex_matched
    }

    /// Processes a line whose date was cut out. `time` is the line's time (the failure
    /// time and the session-cache clock). `check_all` tries every failregex.
    pub fn process(
        &mut self,
        line_without_date: &str,
        time: Timestamp,
        check_all: bool,
    ) -> LineResult {
        self.process_parts(
            LineParts {
                before: "",
                date: "",
                after: line_without_date,
            },
            time,
            check_all,
        )
    }

    /// Like [`FilterState::process`], keeping the date text for the failure's `matches`.
    pub fn process_parts(
        &mut self,
        parts: LineParts,
        time: Timestamp,
        check_all: bool,
    ) -> LineResult {
        self.ignore_hits.clear();
        self.consumed.clear();
        let mut text = std::mem::take(&mut self.quick_text);
        self.known_content = None;
        self.screened = false;
        if self.filter.maxlines == 1 {
            let result = if self.cannot_match(parts, &mut text, check_all) {
                LineResult::Missed
            } else {
                self.run_line(parts, time, check_all, &mut text)
            };
            self.quick_text = text;
            return result;
        }
        // The lines that stay in the buffer when this one arrives (the oldest goes when
        // it is full).
        let full = self.buffer.len() >= self.filter.maxlines;
        self.previous.clear();
        self.previous.extend(
            self.buffer
                .iter()
                .skip(usize::from(full))
                .map(|l| l.full.clone()),
        );
        let result = self.run_line(parts, time, check_all, &mut text);
        self.quick_text = text;
        let buffer = &self.buffer;
        self.consumed.extend(
            self.previous
                .iter()
                // fail2ban compares lines by value.
                .filter(|p| !buffer.iter().any(|b| b.full == **p))
                .cloned(),
        );
        result
    }

    /// The common case of a single-line filter, decided without building anything: the
    /// prefregex cannot match, or no failregex can match what it leaves. True when the
    /// line is missed for sure.
    fn cannot_match(&mut self, parts: LineParts, text: &mut String, check_all: bool) -> bool {
        let filter = self.filter.clone();
        let f = &*filter;
        let nfail = f.failregex.list.len();
        let nignore = f.ignoreregex.list.len();
        // The text the regexes see; `run_line` reuses it.
        text.clear();
        text.push_str(parts.before);
        text.push_str(parts.after);
        text.push('\n');
        if nignore > 0 && nignore + 2 < nfail {
            // The ignoreregexes run first on every line.
            return false;
        }
        let mut off = 0;
        self.prefregex_matched = None;
        if let Some(pre) = &f.prefregex {
            match (&f.content_finder, self.content_cache.as_mut()) {
                (Some(finder), Some(cache)) => match *self.known_content.insert(finder.find(
                    cache,
                    text.as_bytes(),
                    self.split_lines,
                )) {
                    ContentStart::NoMatch => {
                        self.prefregex_matched = Some(false);
                        return true;
                    }
                    ContentStart::At(k) if text.is_char_boundary(k) => {
                        if k + 1 < text.len() {
                            off = k;
                        }
                    }
                    _ => return false,
                },
                _ => {
                    let Some(scratch) = self.pre_scratch.as_mut() else {
                        return false;
                    };
                    if !pre.list.may_match(scratch, text.as_bytes()) {
                        self.prefregex_matched = Some(false);
                        return true;
                    }
                    return false;
                }
            }
        }
        let hay = &text.as_bytes()[off..];
        let may = if check_all {
            // The fast failregexes that match are kept for `run_line`'s first search.
            self.screened = true;
            // The content finder, which placed `off`, accepts one-line texts only; a
            // reader that splits at newlines gives no others.
            let one_line = self.split_lines || f.content_finder.is_some();
            f.failregex
                .list
                .may_match_all(&mut self.fail_scratch, hay, one_line)
        } else {
            f.failregex.list.may_match(&mut self.fail_scratch, hay)
        };
        if may {
            return false;
        }
        if f.prefregex.is_some() {
            self.prefregex_matched = Some(true);
        }
        true
    }

    /// Runs a line; `text` is memory for the text the regexes see (for a single-line
    /// filter it already holds it, from [`FilterState::cannot_match`]).
    fn run_line(
        &mut self,
        parts: LineParts,
        time: Timestamp,
        check_all: bool,
        text: &mut String,
    ) -> LineResult {
        let filter = self.filter.clone();
        let f = &*filter;
        // The session cache's clock, read once for the line.
        let session_now = self.session_now(time);
        // Lines as written serve failures' `matches`, and in multi-line mode the lines a
        // match consumed.
        let line = BufLine::new(parts, &mut self.join_buf, self.details || f.maxlines > 1);
        // The buffer as it was when the line arrived (matched lines are taken from it).
        let org_lines: Vec<BufLine>;
        let org: &[BufLine] = if f.maxlines > 1 {
            self.buffer.push(line.clone());
            if self.buffer.len() > f.maxlines {
                let excess = self.buffer.len() - f.maxlines;
                self.buffer.drain(..excess);
            }
            org_lines = self.buffer.clone();
            &org_lines
        } else {
            self.buffer.clear();
            self.buffer.push(line.clone());
            std::slice::from_ref(&line)
        };
        // The regexes see `text[off..]`; `stale` when the buffer changed since it was
        // joined. In single-line mode the prefregex's content is the tail of the line, so
        // it is an offset, not a copy.
        if f.maxlines > 1 {
            *text = join(org);
        }
        let mut off = 0usize;
        let mut stale = false;
        let mut text_is_line = true;
        self.prefregex_matched = None;

        let nfail = f.failregex.list.len();
        let nignore = f.ignoreregex.list.len();
        if nignore > 0
            && nignore + 2 < nfail
            && let Some(ig) = self.ignore_line(text, None, check_all)
        {
            return LineResult::Ignored {
                ignoreregex: Some(ig),
                failregex: None,
            };
        }

        // The prefregex's groups; `None` until a failregex match needs them when the
        // content was found without running a capture engine.
        let mut pre_groups: Option<Groups> = Some(Groups::default());
        let mut content_start = None;
        if f.prefregex.is_some() {
            let quick = match (
                self.known_content.take(),
                &f.content_finder,
                self.content_cache.as_mut(),
            ) {
                (Some(known), _, _) => known,
                (None, Some(finder), Some(cache)) => {
                    finder.find(cache, text.as_bytes(), self.split_lines)
                }
                _ => ContentStart::Unknown,
            };
            match quick {
                ContentStart::NoMatch => {
                    self.prefregex_matched = Some(false);
                    return LineResult::Missed;
                }
                // Byte-wide classes can end the part before the content inside a
                // multi-byte character; the full search handles that case.
                ContentStart::At(k) if text.is_char_boundary(k) => {
                    self.prefregex_matched = Some(true);
                    pre_groups = None;
                    content_start = Some(k);
                    // An empty content replaces nothing (fail2ban tests it for truth).
                    if k + 1 < text.len() {
                        off = k;
                    }
                }
                ContentStart::At(_) | ContentStart::Unknown => {
                    let Some(groups) = self.prefregex_groups(text) else {
                        self.prefregex_matched = Some(false);
                        return LineResult::Missed;
                    };
                    self.prefregex_matched = Some(true);
                    let (mut groups, content_span) = groups;
                    let content = groups.remove(key::CONTENT).flatten();
                    if let Some(c) = content.filter(Value::truthy) {
                        match content_span {
                            Some((s, e))
                                if f.maxlines == 1
                                    && e + 1 == text.len()
                                    && text.is_char_boundary(s) =>
                            {
                                off = s
                            }
                            _ => {
                                self.buffer = vec![BufLine::content(&c.text())];
                                stale = true;
                            }
                        }
                    }
                    pre_groups = Some(groups);
                }
            }
        }

        let mut failures: Vec<Failure> = Vec::new();
        let mut ignored: Option<(usize, usize)> = None;
        let mut from = 0;
        loop {
            if stale {
                *text = join(&self.buffer);
                off = 0;
                stale = false;
                text_is_line = false;
            }
            let hay = &text[off..];
            if (from == 0 && !std::mem::take(&mut self.screened)) || f.maxlines > 1 {
                // A new text (a multi-line match changes the buffer every time); a text
                // `cannot_match` screened in check-all mode keeps what it found.
                self.fail_scratch.forget();
            }
            let found = if check_all {
                f.failregex.list.search_next(
                    &mut self.fail_scratch,
                    hay.as_bytes(),
                    from,
                    &mut self.stats,
                )
            } else {
                f.failregex.list.search_with(
                    &mut self.fail_scratch,
                    hay.as_bytes(),
                    from,
                    &mut self.stats,
                )
            };
            let Some(hit) = found else {
                break;
            };
            let index = hit.index;
            from = index + 1;
            let meta = &f.failregex.meta[index];
            let mut groups = groups_but(&hit, meta, hay, None, 0, self.fresh_groups());
            // Without details nobody reads the lines of a one-line match.
            let (matched, unmatched) = if !self.details && org.len() <= 1 {
                (Vec::new(), Vec::new())
            } else {
                split_lines(hay, &hit, org, meta)
            };
            self.fail_scratch.recycle(hit);

            if nignore > 0
                && let Some(ig) = self.ignore_line(hay, Some((&matched, &unmatched)), check_all)
            {
                ignored = Some((ig, index));
                // In single-line mode an ignored match leaves the buffer as it was.
                stale = f.maxlines > 1;
                if !check_all {
                    break;
                }
                continue;
            }
            let pre = match pre_groups.take() {
                Some(g) => g,
                None => {
                    let line = if text_is_line { None } else { Some(join(org)) };
                    let line = line.as_deref().unwrap_or(text.as_str());
                    let into = self.fresh_groups();
                    match (
                        &f.content_finder,
                        self.content_cache.as_mut(),
                        content_start,
                    ) {
                        (Some(finder), Some(cache), Some(k)) => finder
                            .groups(cache, line.as_bytes(), k)
                            .zip(f.prefregex.as_ref())
                            .map(|(hit, pre)| {
                                groups_but(
                                    hit,
                                    &pre.meta[0],
                                    line,
                                    Some(key::CONTENT),
                                    f.fail_groups_room,
                                    into,
                                )
                            }),
                        _ => self.prefregex_groups(line).map(|(mut g, _)| {
                            g.remove(key::CONTENT);
                            g
                        }),
                    }
                    .unwrap_or_default()
                }
            };
            // The prefregex's groups go into this failure; a later failregex match of the
            // line (check-all) reads them again.
            let merged = if pre.is_empty() {
                pre_groups = Some(pre);
                groups
            } else {
                let mut merged = pre;
                if f.fail_apart[index] {
                    merged.append(&mut groups);
                } else {
                    merged.extend(&mut groups);
                }
                self.recycle_groups(groups);
                merged
            };
            if !check_all || f.maxlines > 1 {
                if unmatched.is_empty() {
                    // Keeps the buffer's room for the next line.
                    self.buffer.clear();
                } else {
                    self.buffer = unmatched;
                }
                stale = true;
            }
            let mut fail = FailData {
                groups: merged,
                ..FailData::default()
            };
            let mlfid = fail.get_str(key::MLFID);
            let has_mlfid = mlfid.is_some();
            // The session the failure belongs to, stored back when the line is done.
            let mut session: Option<(Text, Keep)> = None;
            if let Some(key) = mlfid {
                // Without details nobody reads a session's lines.
                let matched: &[BufLine] = if self.details { &matched } else { &[] };
                let (merged, keep) = self.merge_failure(&key, fail, matched, session_now);
                fail = merged;
                if truthy(fail.groups.get(key::NOFAIL)) && !check_all {
                    self.keep_session(key, keep, fail, session_now);
                    return LineResult::Ignored {
                        ignoreregex: None,
                        failregex: Some(index),
                    };
                }
                session = Some((key, keep));
            } else {
                fail.matches = Some(matched);
            }

            let raw_ids = f.raw_ids();
            let default_cidr = if raw_ids {
                Cidr::Raw
            } else {
                Cidr::Unspecified
            };
            let fid = fail.groups.get(key::FID).cloned().flatten();
            let cidr_of = |fail: &FailData, family: Cidr| -> Option<Cidr> {
                match fail.get_text(key::CIDR).filter(|c| !c.is_empty()) {
                    None => Some(family),
                    Some(c) => c
                        .trim()
                        .parse::<u64>()
                        .ok()
                        .map(|n| Cidr::Prefix(n.min(u32::MAX as u64) as u32)),
                }
            };
            let mut id_source: Option<(Value, Cidr, bool)> = None;
            if let Some(ip4) = fail.get_str(key::IP4) {
                match cidr_of(&fail, Cidr::V4) {
                    Some(c) => id_source = Some((Value::Str(ip4), c, true)),
                    None => {
                        return self.end_session(session, fail, session_now, LineResult::Missed);
                    }
                }
            } else if let Some(ip6) = fail.get_str(key::IP6) {
                match cidr_of(&fail, Cidr::V6) {
                    Some(c) => id_source = Some((Value::Str(ip6), c, true)),
                    None => {
                        return self.end_session(session, fail, session_now, LineResult::Missed);
                    }
                }
            } else if let Some(dns) = fail.get_str(key::DNS) {
                id_source = Some((Value::Str(dns), default_cidr, raw_ids));
            } else {
                if fid.is_none() && !has_mlfid {
                    // fail2ban logs an error and goes on with the next failregex.
                    tracing::trace!(regex = index, "Failregex matched without a failure id");
                    continue;
                }
                if let Some(v) = &fid {
                    id_source = Some((v.clone(), default_cidr, true));
                }
            }

            // At most one id per match.
            let mut ids: Option<(Converted, bool)> = None;
            let pending = id_source.is_none();
            match id_source {
                None => {
                    fail.mlfpending = true;
                    if !check_all {
                        let r = LineResult::Ignored {
                            ignoreregex: None,
                            failregex: Some(index),
                        };
                        return self.end_session(session, fail, session_now, r);
                    }
                    ids = Some((
                        Converted {
                            text: String::new(),
                            addr: None,
                            prefix: None,
                        },
                        false,
                    ));
                }
                Some((ip, cidr, true)) => {
                    let same = match &fid {
                        None => true,
                        Some(v) => *v == ip,
                    };
                    let result = if same {
                        convert_value(&ip, cidr)
                    } else {
                        convert_value(&ip, cidr).and_then(|ipc| {
                            fail.ip = Some(Box::new(ipc));
                            convert_value(fid.as_ref().unwrap_or(&ip), default_cidr)
                        })
                    };
                    match result {
                        Ok(c) => ids = Some((c, false)),
                        Err(e) => {
                            // fail2ban raises here and loses the whole line.
                            tracing::trace!(regex = index, error = %e, "Unreadable failure id; line dropped");
                            return self.end_session(
                                session,
                                fail,
                                session_now,
                                LineResult::Missed,
                            );
                        }
                    }
                }
                Some((host, _, false)) => {
                    let host = host.text();
                    match addr::search_ip(&host) {
                        Some(c) => ids = Some((c, false)),
                        None if matches!(f.usedns, UseDnsMode::Yes | UseDnsMode::Warn) => {
                            ids = Some((
                                Converted {
                                    text: host,
                                    addr: None,
                                    prefix: None,
                                },
                                true,
                            ))
                        }
                        None => {}
                    }
                }
            }
            if let Some((c, needs_dns)) = ids {
                if failures.capacity() == 0 {
                    // Mostly the line's only failure: no room for more (a growing vector
                    // would take four failures' worth).
                    failures.reserve_exact(1);
                }
                failures.push(make_failure(
                    &fail,
                    c,
                    needs_dns,
                    pending,
                    index,
                    time,
                    self.details,
                ));
            }
            match session {
                Some((key, keep)) => self.keep_session(key, keep, fail, session_now),
                None => self.recycle_groups(fail.groups),
            }
            if !check_all {
                break;
            }
        }
        if !failures.is_empty() {
            LineResult::Matched(failures)
        } else if let Some((ig, fr)) = ignored {
            LineResult::Ignored {
                ignoreregex: Some(ig),
                failregex: Some(fr),
            }
        } else {
            LineResult::Missed
        }
    }

    /// The prefregex's groups on `text`, with the span of its content group.
    #[allow(clippy::type_complexity)]
    fn prefregex_groups(&mut self, text: &str) -> Option<(Groups, Option<(usize, usize)>)> {
        let filter = self.filter.clone();
        let pre = filter.prefregex.as_ref()?;
        let scratch = self.pre_scratch.as_mut()?;
        let hit = pre
            .list
            .search_with(scratch, text.as_bytes(), 0, &mut self.stats)?;
        let meta = &pre.meta[0];
        let span = meta
            .names
            .iter()
            .position(|n| *n == Some(key::CONTENT))
            .and_then(|i| hit.groups.get(i).copied().flatten());
        let into = self.fresh_groups();
        let groups = groups_but(&hit, meta, text, None, filter.fail_groups_room, into);
        if let Some(scratch) = self.pre_scratch.as_mut() {
            scratch.recycle(hit);
        }
        Some((groups, span))
    }

    /// Runs the ignoreregexes; with a failregex match in multi-line mode only on the lines
    /// it matched, and a hit drops those lines from the buffer.
    fn ignore_line(
        &mut self,
        text: &str,
        fail_lines: Option<(&Vec<BufLine>, &Vec<BufLine>)>,
        check_all: bool,
    ) -> Option<usize> {
        let filter = self.filter.clone();
        let f = &*filter;
        let own;
        let text = match fail_lines {
            Some((matched, _)) if f.maxlines > 1 => {
                own = join(matched);
                own.as_str()
            }
            _ => text,
        };
        let mut found = None;
        let mut from = 0;
        while let Some(h) = f.ignoreregex.list.search_with(
            &mut self.ignore_scratch,
            text.as_bytes(),
            from,
            &mut self.stats,
        ) {
            found = Some(h.index);
            self.ignore_hits.push(h.index);
            from = h.index + 1;
            self.ignore_scratch.recycle(h);
            if (!check_all || f.maxlines > 1)
                && let Some((_, unmatched)) = fail_lines
            {
                self.buffer = unmatched.clone();
            }
            if !check_all {
                break;
            }
        }
        found
    }

    /// fail2ban's `_mergeFailure`: returns the merged failure and what to do with it once
    /// the line is done (fail2ban keeps the dictionary in the cache and changes it in
    /// place; here it is taken out and put back, see [`FilterState::keep_session`]).
    fn merge_failure(
        &mut self,
        key: &str,
        mut fail: FailData,
        matched: &[BufLine],
        now: Timestamp,
    ) -> (FailData, Keep) {
        const NOFAIL: u8 = 1;
        const FORGET: u8 = 2;
        const PREV_NOFAIL: u8 = 4;
        const GAINED: u8 = 8;
        let mut flags = 0u8;
        if truthy(fail.groups.get(key::MLFGAINED)) {
            flags |= GAINED | NOFAIL;
            if !truthy(fail.groups.get(key::NOFAIL)) {
                let g = fail.groups.get(key::MLFGAINED).cloned().flatten();
                fail.groups.insert(key::NOFAIL, g);
            }
        } else if truthy(fail.groups.get(key::NOFAIL)) {
            flags |= NOFAIL;
        }
        if fail
            .groups
            .remove(key::MLFFORGET)
            .flatten()
            .is_some_and(|v| v.truthy())
        {
            flags |= FORGET;
        }
        let user = fail.get_str(key::USER).filter(|u| !u.is_empty());
        let user = user.as_deref();
        let keep;
        let many_users;
        if let Some(entry) = self.mlfid.take(key, now) {
            let mut cached = entry.data;
            update_users(&mut cached, user);
            many_users = cached.users.as_ref().is_some_and(|u| u.len() > 1);
            if cached
                .groups
                .remove(key::NOFAIL)
                .flatten()
                .is_some_and(|v| v.truthy())
            {
                flags |= PREV_NOFAIL;
            }
            if cached
                .groups
                .remove(key::MLFGAINED)
                .flatten()
                .is_some_and(|v| v.truthy())
            {
                flags |= PREV_NOFAIL;
            }
            if flags & GAINED != 0 {
                cached.mlfpending = false;
            }
            if flags & PREV_NOFAIL == 0 && !cached.mlfpending {
                cached.matches = None;
            }
            cached.groups.extend_set(&mut fail.groups);
            self.recycle_groups(std::mem::take(&mut fail.groups));
            fail = cached;
            keep = if flags & FORGET != 0 {
                Keep::Drop
            } else {
                Keep::Restore {
                    seq: entry.seq,
                    expires: entry.expires,
                }
            };
        } else if flags & FORGET == 0 {
            update_users(&mut fail, user);
            many_users = fail.users.as_ref().is_some_and(|u| u.len() > 1);
            keep = Keep::Set;
        } else {
            many_users = false;
            keep = Keep::Drop;
        }
        let pending = std::mem::take(&mut fail.mlfpending);
        if pending || many_users {
            fail.groups.remove(key::NOFAIL);
            fail.groups.remove(key::MLFGAINED);
            flags &= !(GAINED | NOFAIL);
        }
        if flags & NOFAIL == 0 {
            let mut m = fail.nofail_matches.take().unwrap_or_default();
            m.extend(fail.matches.take().unwrap_or_default());
            if flags & GAINED == 0 {
                m.extend(matched.iter().cloned());
            }
            fail.matches = Some(m);
        } else if flags & (NOFAIL | FORGET) == NOFAIL {
            let mut m = fail.nofail_matches.take().unwrap_or_default();
            m.extend(matched.iter().cloned());
            fail.nofail_matches = Some(m);
        }
        (fail, keep)
    }

    /// Stores the session back (if any) and returns `result`.
    fn end_session(
        &mut self,
        session: Option<(Text, Keep)>,
        fail: FailData,
        now: Timestamp,
        result: LineResult,
    ) -> LineResult {
        if let Some((key, keep)) = session {
            self.keep_session(key, keep, fail, now);
        }
        result
    }

    /// Stores a session's failure back after the line changed it.
    fn keep_session(&mut self, key: Text, keep: Keep, fail: FailData, now: Timestamp) {
        match keep {
            Keep::Drop => self.recycle_groups(fail.groups),
            Keep::Set => self.mlfid.set(key, fail, now),
            Keep::Restore { seq, expires } => self.mlfid.restore(
                key,
                MlfidEntry {
                    seq,
                    expires,
                    data: fail,
                },
            ),
        }
    }
}

/// The wall clock to the kernel's tick (a few milliseconds), which it keeps without asking
/// the hardware: sessions live minutes, and the clock is read for every matched line.
// `time_t` is narrower than 64 bits on some of these targets.
#[allow(clippy::useless_conversion)]
fn coarse_now() -> Timestamp {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    {
        use nix::time::{ClockId, clock_gettime};
        if let Ok(t) = clock_gettime(ClockId::CLOCK_REALTIME_COARSE)
            && let Ok(nanos) = i32::try_from(t.tv_nsec())
            && let Ok(ts) = Timestamp::new(i64::from(t.tv_sec()), nanos)
        {
            return ts;
        }
    }
    Timestamp::now()
}

/// fail2ban's `_updateUsers`: adds the user to the session's set, creating it.
fn update_users(fail: &mut FailData, user: Option<&str>) {
    if let Some(u) = user {
        let users = fail.users.get_or_insert_with(BTreeSet::new);
        if !users.contains(u) {
            users.insert(Text::from(u));
        }
    }
}

fn convert_value(v: &Value, cidr: Cidr) -> Result<Converted, String> {
    match v {
        Value::Str(s) => addr::convert(s, cidr),
        // A tuple id is always kept raw.
        Value::Tuple(_) => Ok(Converted {
            text: v.text(),
            addr: None,
            prefix: None,
        }),
    }
}

#[allow(clippy::too_many_arguments)]
fn make_failure(
    fail: &FailData,
    id: Converted,
    needs_dns: bool,
    pending: bool,
    regex: usize,
    time: Timestamp,
    details: bool,
) -> Failure {
    let nofail = truthy(fail.groups.get(key::NOFAIL));
    if !details {
        return Failure {
            id: id.text,
            addr: id.addr,
            prefix: id.prefix,
            needs_dns,
            time,
            regex,
            fields: BTreeMap::new(),
            users: BTreeSet::new(),
            matches: Vec::new(),
            nofail,
            pending,
        };
    }
    let mut fields: BTreeMap<String, String> = fail
        .groups
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_string(), v.text())))
        .collect();
    if let Some(ip) = &fail.ip {
        fields.insert("ip".to_string(), ip.text.clone());
    }
    Failure {
        id: id.text,
        addr: id.addr,
        prefix: id.prefix,
        needs_dns,
        time,
        regex,
        fields,
        users: fail.users.iter().flatten().map(Text::to_string).collect(),
        matches: fail
            .matches
            .iter()
            .flatten()
            .map(|l| l.full.to_string())
            .collect(),
        nofail,
        pending,
    }
}

/// Named groups of a hit, with fail2ban's `alt_*` and `tuple_*` handling, without the
/// group named `skip` (not even as unset), with `room` for more groups (a failregex's,
/// joining a prefregex's); written into `g`, whose memory is reused.
fn groups_but(
    hit: &Hit,
    meta: &RegexMeta,
    text: &str,
    skip: Option<Name>,
    room: usize,
    mut g: Groups,
) -> Groups {
    g.0.clear();
    g.0.reserve(meta.most_groups() + room);
    for (i, name) in meta.names.iter().enumerate() {
        if let Some(name) = name {
            if skip == Some(*name) {
                continue;
            }
            let v = hit.groups.get(i).copied().flatten().map(|(s, e)| {
                // Byte-mode classes may end a group inside a multi-byte character.
                Value::Str(match text.get(s..e) {
                    Some(t) => Text::from(t),
                    None => Text::from_utf8_lossy(&text.as_bytes()[s..e]),
                })
            });
            // Names are distinct within a regex.
            g.0.push((*name, v));
        }
    }
    for (k, n) in &meta.alts {
        let v = g.get(*k).cloned().flatten();
        if v.as_ref().is_some_and(Value::truthy) && !truthy(g.get(*n)) {
            g.insert(*n, v);
        }
    }
    for (k, n) in &meta.tuples {
        let v = g.get(*k).cloned().flatten().map(|v| v.text());
        let t = match g.get(*n).cloned().flatten() {
            Some(Value::Tuple(mut t)) => {
                t.push(v);
                t
            }
            Some(Value::Str(s)) => vec![Some(s.into_string()), v],
            None => vec![None, v],
        };
        g.insert(*n, Some(Value::Tuple(t)));
    }
    g
}

/// The buffer lines a match covers and the ones it leaves (fail2ban's `Regex.search`:
/// lines are counted in the searched text and taken from the original buffer).
fn split_lines(
    text: &str,
    hit: &Hit,
    org: &[BufLine],
    meta: &RegexMeta,
) -> (Vec<BufLine>, Vec<BufLine>) {
    if org.len() <= 1 {
        return (org.to_vec(), Vec::new());
    }
    let b = text.as_bytes();
    let (start, end) = (hit.start(), hit.end());
    let upto = (start + 1).min(b.len());
    let line_start = b[..upto]
        .iter()
        .rposition(|&c| c == b'\n')
        .map(|i| i + 1)
        .unwrap_or(0);
    let search_from = if end == 0 {
        b.len().saturating_sub(1)
    } else {
        end - 1
    };
    let line_end = b
        .get(search_from..)
        .and_then(|s| s.iter().position(|&c| c == b'\n'))
        .map(|i| search_from + i + 1)
        .unwrap_or(b.len());
    let count = |upto: usize| b[..upto].iter().filter(|&&c| c == b'\n').count();
    let (lc1, lc2) = (count(line_start), count(line_end));
    let clamp = |n: usize| n.min(org.len());
    let mut matched: Vec<BufLine> = org[clamp(lc1)..clamp(lc2).max(clamp(lc1))].to_vec();
    let mut unmatched: Vec<BufLine> = org[..clamp(lc1)].to_vec();
    let mut skipped = String::new();
    for &g in &meta.skiplines {
        if let Some(Some((s, e))) = hit.groups.get(g) {
            skipped.push_str(&String::from_utf8_lossy(&text.as_bytes()[*s..*e]));
        }
    }
    let mut n = 0usize;
    for line in py_splitlines(&skipped) {
        if let Some(m) = matched[n.min(matched.len())..]
            .iter()
            .position(|l| &*l.text == line)
        {
            unmatched.push(matched.remove(n + m));
            n += m;
        }
    }
    unmatched.extend_from_slice(&org[clamp(lc2)..]);
    (matched, unmatched)
}

/// Python's `str.splitlines()`.
fn py_splitlines(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut it = s.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        let brk = matches!(
            c,
            '\n' | '\r'
                | '\x0b'
                | '\x0c'
                | '\x1c'
                | '\x1d'
                | '\x1e'
                | '\u{85}'
                | '\u{2028}'
                | '\u{2029}'
        );
        if brk {
            out.push(&s[start..i]);
            let mut next = i + c.len_utf8();
            if c == '\r'
                && let Some(&(j, '\n')) = it.peek()
            {
                it.next();
                next = j + 1;
            }
            start = next;
        }
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The session clock reads the wall clock (to the kernel's tick), not another clock.
    #[test]
    fn coarse_clock_is_the_wall_clock() {
        let before = Timestamp::now();
        let t = coarse_now();
        let after = Timestamp::now();
        let slack = jiff::SignedDuration::from_millis(50);
        assert!(
            t >= before - slack && t <= after + slack,
            "{before} {t} {after}"
        );
    }

    /// Interned names: one number per text, the pipeline's own keys among them, order
    /// by text.
    #[test]
    fn names_are_interned_once() {
        for (i, k) in key::ALL.iter().enumerate() {
            assert_eq!(k.id as usize, i, "{k:?}");
            assert_eq!(name(k.text), *k);
            let copy = String::from(k.text);
            assert_eq!(name(&copy).id, k.id);
        }
        let a = name("alt_user_one");
        let b = name(&String::from("alt_user_one"));
        let c = name("alt_user_two");
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.id >= key::ALL.len() as u32 && c.id >= key::ALL.len() as u32);
        assert!(a < c && key::CIDR < key::USER);
        assert_eq!(&*c, "alt_user_two");
    }
    #[test]
    fn complex_names() {
        assert_eq!(
            complex_target("alt_user_1", "alt_").as_deref(),
            Some("user")
        );
        assert_eq!(
            complex_target("alt_user1", "alt_").as_deref(),
            Some("user1")
        );
        assert_eq!(
            complex_target("alt_user_1_2", "alt_").as_deref(),
            Some("user_1")
        );
        assert_eq!(complex_target("tuple_id", "tuple_").as_deref(), Some("fid"));
        assert_eq!(
            complex_target("tuple_port_2", "tuple_").as_deref(),
            Some("fport")
        );
        assert_eq!(complex_target("user", "alt_"), None);
    }

    #[test]
    fn python_repr_and_splitlines() {
        assert_eq!(py_repr("a'b"), "\"a'b\"");
        assert_eq!(py_repr("a\"b'"), "'a\"b\\''");
        assert_eq!(py_repr("x\ny\\"), "'x\\ny\\\\'");
        assert_eq!(
            py_splitlines("a\nb\r\nc\rd\x0ce\n"),
            vec!["a", "b", "c", "d", "e"]
        );
        assert_eq!(py_splitlines(""), Vec::<&str>::new());
        assert_eq!(
            Value::Tuple(vec![Some("a".into()), None]).text(),
            "('a', None)"
        );
    }

    #[test]
    fn filter_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Filter>();
        check::<FilterState>();
    }
}
