//! A list of translated regexes compiled for matching, with Python's list semantics: the
//! lowest-index regex that matches anywhere in the text wins.
//!
//! Fast patterns share one leftmost-first `regex-automata` automaton without groups. Its
//! answer is the lowest matching index whenever every lower-index fast pattern can only
//! match at the start of the text (the usual case: fail2ban regexes begin with `^`);
//! otherwise an overlapping pass over a `MatchKind::All` automaton finds the lowest index.
//! For trying every regex (check-all), lists whose patterns are all start-anchored use the
//! leftmost-first answer plus the later patterns whose start literals overlap the
//! winner's; other lists use the overlapping pass. Literal screens (start literals in a
//! first-byte table, or literals every match contains) turn most texts away first.
//! Groups always come from the winning pattern compiled alone, run on the span already
//! found: the capture engines cost in proportion to the automaton they run, and one
//! pattern is a small fraction of a filter's. Fallback patterns run on fancy-regex,
//! bounded by a backtrack limit, and only when their fast-engine screen matched the text
//! and their index is below the best fast match.

use std::sync::OnceLock;

use fancy_regex::{BytesMode, RegexBuilder};
use regex_automata::Span;
use regex_automata::dfa::{Automaton as _, StartKind, dense};
use regex_automata::meta;
use regex_automata::nfa::thompson::{self, WhichCaptures};
use regex_automata::util::captures::Captures;
use regex_automata::util::prefilter::Prefilter;
use regex_automata::{Anchored, Input, MatchKind, PatternSet};
use regex_syntax::hir::Look;

use super::translate::{Engine, Translation};

/// Lazy-DFA cache per automaton. Measured with `benches/filter.rs` (sshd-style filter, 21
/// regexes, lines per CPU-second): with ASCII classes 256 KiB gives 0.8 M, 1 MiB and more
/// 1.2 M (flat up to 64 MiB); with Unicode classes up to 2 MiB gives 0.33 M (the lazy DFA
/// keeps clearing its cache and falls back to slower engines), 4 MiB and more 1.0-1.1 M.
/// The Unicode figure leaves room for filters several times that size.
const CACHE_ASCII: usize = 2 * 1024 * 1024;
const CACHE_UNICODE: usize = 16 * 1024 * 1024;

/// One regex of a list.
#[derive(Debug)]
pub struct Entry {
    pub translation: Translation,
    exec: Exec,
    /// The exact pattern on PCRE2 (JIT-compiled where the platform allows): the capture
    /// engine, run only on texts an automaton has already accepted.
    pcre: Option<pcre2::bytes::Regex>,
    /// PCRE2 backtracks through this pattern (conditionals, lookarounds, tempered dots):
    /// its results on the last few texts are remembered (see [`Scratch::memo`]).
    costly: bool,
}

#[derive(Debug)]
enum Exec {
    Fast {
        /// The pattern alone, for its groups.
        single: meta::Regex,
        /// The exact fancy form, for texts with an inner newline when the pattern has a
        /// non-MULTILINE `$`.
        exact: OnceLock<Option<fancy_regex::Regex>>,
    },
    Fallback {
        fancy: fancy_regex::Regex,
    },
}

/// A match of one regex of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// Index of the regex in the list.
    pub index: usize,
    /// Byte spans by group index; group 0 is the whole match and always present.
    pub groups: Vec<Option<(usize, usize)>>,
}

impl Hit {
    pub fn start(&self) -> usize {
        self.groups[0].map(|g| g.0).unwrap_or(0)
    }
    pub fn end(&self) -> usize {
        self.groups[0].map(|g| g.1).unwrap_or(0)
    }
}

/// Counters a caller keeps per source.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MatchStats {
    /// Fallback searches stopped by the backtrack limit (counted as no match).
    pub backtrack_limit_hits: u64,
    /// Fallback searches run.
    pub fallback_runs: u64,
}

/// Reusable search memory for one list, kept by the caller (one per source), so matching
/// a line allocates nothing in the engines.
#[derive(Debug)]
pub struct Scratch {
    combined: Option<meta::Cache>,
    fast_all: Option<(meta::Cache, PatternSet)>,
    screens: Option<(meta::Cache, PatternSet)>,
    singles: Vec<Option<(meta::Cache, Captures)>>,
    locs: Vec<Option<pcre2::bytes::CaptureLocations>>,
    candidates: Vec<usize>,
    any: Option<meta::Cache>,
    /// Every fast entry matching the current text ([`PatternList::search_next`]), valid
    /// until [`Scratch::forget`].
    all: Vec<usize>,
    all_ready: bool,
    /// Whether the text of `all` has a newline before its last byte.
    all_inner_newline: bool,
    /// The groups of an entry of `all`, already found by the screen.
    found: Option<Hit>,
    /// Per entry, how texts that begin like it alone fared lately: positive when most
    /// did not match it (its automaton then answers "no" before PCRE2 looks for groups).
    misses: Vec<i8>,
    /// Group vectors of hits given back, for the next PCRE2 hit.
    spare: VecPool<Option<(usize, usize)>>,
    /// What PCRE2 found for costly patterns on the last texts it read: logs repeat a
    /// line whole (sshd writes the same failure for each try of a connection), and such
    /// a pattern costs thousands of instructions a line where comparing texts costs tens.
    memo: Vec<PcreMemo>,
    memo_next: usize,
}

/// A PCRE2 search of a costly pattern: the pattern, where it started in which text,
/// and the groups it found (None: no match).
#[derive(Debug)]
struct PcreMemo {
    index: usize,
    start: usize,
    text: Vec<u8>,
    groups: Option<Vec<Option<(usize, usize)>>>,
}

/// How many searches of costly patterns a [`Scratch`] remembers.
const PCRE_MEMO: usize = 4;

/// Emptied vectors kept for reuse: matches come one after another and each needs a
/// vector of about the same size, so a few suffice.
#[derive(Debug)]
pub(super) struct VecPool<T>(Vec<Vec<T>>);

impl<T> Default for VecPool<T> {
    fn default() -> Self {
        VecPool(Vec::new())
    }
}

impl<T> VecPool<T> {
    /// How many vectors a pool keeps.
    const KEEP: usize = 4;

    /// An empty vector, with memory when one was given back.
    pub(super) fn take(&mut self) -> Vec<T> {
        self.0.pop().unwrap_or_default()
    }

    /// Takes back a vector that is done with (emptied here; kept if it has memory and
    /// the pool has room).
    pub(super) fn give(&mut self, mut v: Vec<T>) {
        if v.capacity() > 0 && self.0.len() < Self::KEEP {
            v.clear();
            self.0.push(v);
        }
    }
}

impl Scratch {
    /// The text changed: candidates found for the old one no longer hold.
    pub fn forget(&mut self) {
        self.all_ready = false;
        if let Some(hit) = self.found.take() {
            self.recycle(hit);
        }
    }

    /// Keeps what a PCRE2 search of a costly pattern found, in place of the oldest.
    fn remember(&mut self, index: usize, start: usize, text: &[u8], hit: Option<&Hit>) {
        let slot = ring_slot(&mut self.memo, &mut self.memo_next, PCRE_MEMO, || {
            PcreMemo {
                index,
                start,
                text: Vec::new(),
                groups: None,
            }
        });
        let m = &mut self.memo[slot];
        m.index = index;
        m.start = start;
        m.text.clear();
        m.text.extend_from_slice(text);
        match hit {
            Some(h) => {
                let g = m.groups.get_or_insert_with(Vec::new);
                g.clear();
                g.extend_from_slice(&h.groups);
            }
            None => m.groups = None,
        }
    }

    /// Takes back a hit of this scratch's list once its groups are read: its memory
    /// serves a later hit.
    pub fn recycle(&mut self, hit: Hit) {
        self.spare.give(hit.groups);
    }

    /// Records that no entry matches the current text; false, for a screen to return.
    fn nothing_matches(&mut self) -> bool {
        self.all.clear();
        self.all_ready = true;
        false
    }
}

/// How far [`Scratch::misses`] counts either way: after this many texts in a row, the
/// other outcome takes as many to change the order back.
const MISS_MEMORY: i8 = 16;

/// A compile failure of one regex of the list.
#[derive(Debug, Clone)]
pub struct CompileFailure {
    pub index: usize,
    pub message: String,
}

#[derive(Debug)]
struct Automaton {
    re: meta::Regex,
    /// Entry index by pattern id.
    entry_of: Vec<usize>,
}

/// A compiled list of regexes.
#[derive(Debug)]
pub struct PatternList {
    entries: Vec<Entry>,
    /// Leftmost-first, all fast patterns, no groups.
    combined: Option<Automaton>,
    /// `MatchKind::All`, all fast patterns, no groups: built when first needed (only
    /// texts that no single-pattern path decides reach it; never without fast patterns).
    /// None when it cannot be built (each fast pattern is then tried alone).
    fast_all: OnceLock<Option<Automaton>>,
    /// The fast patterns, for `fast_all`.
    fast_hirs: Vec<regex_syntax::hir::Hir>,
    /// `MatchKind::All`, the screens of the fallback patterns.
    screens: Option<Automaton>,
    /// Every fast pattern and every fallback screen: a text it rejects matches nothing.
    any: Option<meta::Regex>,
    /// Literals of which every match of every fast pattern and fallback screen contains
    /// one (see [`required_literals`]): a text without any of them matches nothing, and a
    /// literal search says so faster than the automaton, which must read the whole text
    /// when a pattern is not anchored. None when a pattern has no such literals.
    required: Option<Prefilter>,
    /// When every fast pattern and fallback screen is tied to the text's start: literals
    /// of which every match begins with one. A text that begins with none matches nothing,
    /// and an anchored literal check says so in a few nanoseconds, where the automaton
    /// search costs a call and a walk into the text (most lines of a log begin with none).
    prefixes: Option<StartLiterals>,
    /// When every fast pattern is tied to the text's start: for each fast entry, the
    /// later fast entries that may match the same text (their start literals are not
    /// exclusive). In check-all mode the leftmost-first automaton then names the lowest
    /// entry that matches, and only those need their own test, where an overlapping
    /// search costs about twice a leftmost-first one.
    co_match: Option<Vec<Vec<usize>>>,
    /// Entry index of each fast pattern, in the order of the start literals' patterns
    /// (fast patterns first, then fallback screens).
    fast_entries: Vec<usize>,
    /// For each entry index, whether an unanchored fast pattern comes before it.
    unanchored_before: Vec<bool>,
    /// Fallback entries without a screen (always run when in range).
    unscreened: Vec<usize>,
    fallback_indices: Vec<usize>,
    any_plain_dollar: bool,
    unicode: bool,
    backtrack_limit: usize,
}

/// Whether `hay` has a newline before its last byte (a multi-line text).
fn inner_newline(hay: &[u8]) -> bool {
    hay.get(..hay.len().saturating_sub(1))
        .is_some_and(|h| memchr::memchr(b'\n', h).is_some())
}

fn meta_config(kind: MatchKind, groups: bool, unicode: bool) -> meta::Config {
    meta::Config::new()
        .match_kind(kind)
        .utf8_empty(false)
        .which_captures(match (groups, kind) {
            (true, _) => WhichCaptures::All,
            // Match spans still need the implicit group when the lazy DFA gives up.
            (false, MatchKind::LeftmostFirst) => WhichCaptures::Implicit,
            (false, _) => WhichCaptures::None,
        })
        .hybrid_cache_capacity(if unicode { CACHE_UNICODE } else { CACHE_ASCII })
}

fn build(
    hirs: &[&regex_syntax::hir::Hir],
    kind: MatchKind,
    groups: bool,
    unicode: bool,
) -> Result<meta::Regex, String> {
    meta::Builder::new()
        .configure(meta_config(kind, groups, unicode))
        .build_many_from_hir(hirs)
        .map_err(|e| e.to_string())
}

fn build_fancy(
    pattern: &str,
    unicode: bool,
    backtrack_limit: usize,
) -> Result<fancy_regex::Regex, String> {
    RegexBuilder::new(pattern)
        .bytes_mode(if unicode {
            BytesMode::UnicodeBytes
        } else {
            BytesMode::Ascii
        })
        .backtrack_limit(backtrack_limit)
        .build()
        .map_err(|e| e.to_string())
}

impl PatternList {
    /// Compiles translated regexes, in list order.
    pub fn compile(
        translations: Vec<Translation>,
        unicode: bool,
        backtrack_limit: usize,
    ) -> Result<PatternList, CompileFailure> {
        let mut fast_hirs = Vec::new();
        let mut fast_entries = Vec::new();
        let mut screen_hirs = Vec::new();
        let mut screen_entries = Vec::new();
        let mut entries = Vec::with_capacity(translations.len());
        let mut unscreened = Vec::new();
        let mut fallback_indices = Vec::new();
        for (index, tr) in translations.into_iter().enumerate() {
            let exec = match tr.engine {
                Engine::Fast => {
                    let Some((_, hir)) = &tr.fast else {
                        unreachable!("fast translation without a fast form")
                    };
                    let single = build(&[hir], MatchKind::LeftmostFirst, true, unicode)
                        .map_err(|message| CompileFailure { index, message })?;
                    fast_hirs.push(hir.clone());
                    fast_entries.push(index);
                    Exec::Fast {
                        single,
                        exact: OnceLock::new(),
                    }
                }
                Engine::Fallback => {
                    let fancy = build_fancy(&tr.fancy, tr.fancy_unicode, backtrack_limit)
                        .map_err(|message| CompileFailure { index, message })?;
                    match &tr.screen {
                        Some((_, hir)) => {
                            screen_hirs.push(hir.clone());
                            screen_entries.push(index);
                        }
                        None => unscreened.push(index),
                    }
                    fallback_indices.push(index);
                    Exec::Fallback { fancy }
                }
            };
            let pcre = tr
                .pcre
                .as_ref()
                .and_then(|form| build_pcre(form, backtrack_limit));
            let costly = tr.engine == Engine::Fallback || tr.fast_groups.is_some();
            entries.push(Entry {
                translation: tr,
                exec,
                pcre,
                costly,
            });
        }
        let automaton = |hirs: &[regex_syntax::hir::Hir],
                         of: &[usize],
                         kind,
                         groups|
         -> Result<Option<Automaton>, CompileFailure> {
            if hirs.is_empty() {
                return Ok(None);
            }
            let refs: Vec<&regex_syntax::hir::Hir> = hirs.iter().collect();
            let re = build(&refs, kind, groups, unicode).map_err(|message| CompileFailure {
                index: of[0],
                message,
            })?;
            Ok(Some(Automaton {
                re,
                entry_of: of.to_vec(),
            }))
        };
        let combined = automaton(&fast_hirs, &fast_entries, MatchKind::LeftmostFirst, false)?;
        let screens = automaton(&screen_hirs, &screen_entries, MatchKind::All, false)?;
        // Without screens the first-match automaton over every pattern is `combined`.
        let any = if screen_hirs.is_empty() {
            combined.as_ref().map(|a| a.re.clone())
        } else {
            let all: Vec<regex_syntax::hir::Hir> =
                fast_hirs.iter().chain(&screen_hirs).cloned().collect();
            let of: Vec<usize> = fast_entries
                .iter()
                .chain(&screen_entries)
                .copied()
                .collect();
            automaton(&all, &of, MatchKind::LeftmostFirst, false)?.map(|a| a.re)
        };
        // Start-anchored patterns fail within a few bytes on the automaton; the literal
        // screen pays off when one is not anchored.
        let anchored = entries.iter().all(|e| {
            e.translation.start_anchored
                || (e.translation.engine == Engine::Fallback
                    && e.translation.screen.as_ref().is_some_and(|(_, h)| {
                        h.properties()
                            .look_set_prefix()
                            .contains(regex_syntax::hir::Look::Start)
                    }))
        });
        let required = if unscreened.is_empty() && !anchored {
            let mut needles: Vec<Vec<u8>> = Vec::new();
            let mut all = true;
            for hir in fast_hirs.iter().chain(&screen_hirs) {
                match required_literals(hir) {
                    Some(lits) => needles.extend(lits),
                    None => {
                        all = false;
                        break;
                    }
                }
            }
            needles.sort_unstable();
            needles.dedup();
            (all && !needles.is_empty() && needles.len() <= MAX_REQUIRED)
                .then(|| Prefilter::new(MatchKind::LeftmostFirst, &needles))
                .flatten()
                .filter(Prefilter::is_fast)
        } else {
            None
        };
        // The start literals of each fast pattern, then of each fallback screen.
        let sets: Vec<Option<Vec<Vec<u8>>>> = fast_hirs
            .iter()
            .chain(&screen_hirs)
            .map(start_literals)
            .collect();
        let total: usize = sets.iter().flatten().map(Vec::len).sum();
        let prefixes = (unscreened.is_empty()
            && !sets.is_empty()
            && sets.iter().all(Option::is_some)
            && total <= MAX_REQUIRED)
            .then(|| StartLiterals::new(sets.iter().flatten().cloned().collect()));
        let co_match = fast_hirs
            .iter()
            .all(|h| h.properties().look_set_prefix().contains(Look::Start))
            .then(|| {
                let exclusive = |a: &Option<Vec<Vec<u8>>>, b: &Option<Vec<Vec<u8>>>| match (a, b) {
                    (Some(a), Some(b)) => a
                        .iter()
                        .all(|x| b.iter().all(|y| !x.starts_with(y) && !y.starts_with(x))),
                    _ => false,
                };
                let mut by_entry = vec![Vec::new(); entries.len()];
                for (i, &ei) in fast_entries.iter().enumerate() {
                    by_entry[ei] = (i + 1..fast_entries.len())
                        .filter(|&j| !exclusive(&sets[i], &sets[j]))
                        .map(|j| fast_entries[j])
                        .collect();
                }
                by_entry
            });
        let mut unanchored_before = Vec::with_capacity(entries.len());
        let mut seen = false;
        for e in &entries {
            unanchored_before.push(seen);
            if e.translation.engine == Engine::Fast && !e.translation.start_anchored {
                seen = true;
            }
        }
        let any_plain_dollar = entries
            .iter()
            .any(|e| e.translation.engine == Engine::Fast && e.translation.plain_dollar);
        Ok(PatternList {
            entries,
            combined,
            fast_all: OnceLock::new(),
            fast_hirs,
            screens,
            any,
            required,
            prefixes,
            co_match,
            fast_entries,
            unanchored_before,
            unscreened,
            fallback_indices,
            any_plain_dollar,
            unicode,
            backtrack_limit,
        })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Search memory for this list.
    pub fn scratch(&self) -> Scratch {
        Scratch {
            combined: self.combined.as_ref().map(|a| a.re.create_cache()),
            fast_all: None,
            screens: self
                .screens
                .as_ref()
                .map(|a| (a.re.create_cache(), PatternSet::new(a.re.pattern_len()))),
            singles: self
                .entries
                .iter()
                .map(|e| match &e.exec {
                    Exec::Fast { single, .. } => {
                        Some((single.create_cache(), single.create_captures()))
                    }
                    Exec::Fallback { .. } => None,
                })
                .collect(),
            candidates: Vec::new(),
            any: self.any.as_ref().map(|re| re.create_cache()),
            locs: self
                .entries
                .iter()
                .map(|e| e.pcre.as_ref().map(|re| re.capture_locations()))
                .collect(),
            all: Vec::new(),
            all_ready: false,
            all_inner_newline: false,
            misses: vec![0; self.entries.len()],
            spare: VecPool::default(),
            memo: Vec::new(),
            memo_next: 0,
            found: None,
        }
    }

    /// False when no regex of the list can match `hay` (one automaton pass over the fast
    /// patterns and the fallback screens); true when one may.
    pub fn may_match(&self, scratch: &mut Scratch, hay: &[u8]) -> bool {
        if !self.unscreened.is_empty() {
            return true;
        }
        if self.screened_out(hay, self.starts(hay)) {
            return false;
        }
        match (&self.any, scratch.any.as_mut()) {
            (Some(re), Some(cache)) => re
                .search_half_with(cache, &Input::new(hay).earliest(true))
                .is_some(),
            _ => false,
        }
    }

    /// [`PatternList::may_match`] for a caller about to try every regex on `hay`
    /// ([`PatternList::search_next`]): the fast entries that match are found with the same
    /// automaton pass that screens the text, and kept in `scratch` for the search.
    ///
    /// `one_line`: the caller knows `hay` has no newline before its last byte.
    pub fn may_match_all(&self, scratch: &mut Scratch, hay: &[u8], one_line: bool) -> bool {
        // Only read when a regex may match (a screened-out text leaves `all` empty).
        scratch.all_inner_newline = false;
        let starts = self.starts(hay);
        if self.screened_out(hay, starts) {
            return scratch.nothing_matches();
        }
        scratch.all_inner_newline = !one_line && inner_newline(hay);
        scratch.found = None;
        // A text that begins like one fast pattern only (and no fallback to consider): that
        // pattern's own exact search, with its groups, is the whole answer when it matches.
        if self.co_match.is_some()
            && self.fallback_indices.is_empty()
            && !scratch.all_inner_newline
            && let Some(Starts::One(p)) = starts
            && let Some(&index) = self.fast_entries.get(p)
        {
            // Where such texts mostly do not match, the pattern's automaton (linear, no
            // groups) tells first: a PCRE2 search that fails can backtrack a long way.
            if scratch.misses[index] > 0 && !self.fast_matches(scratch, index, hay) {
                scratch.misses[index] = (scratch.misses[index] + 1).min(MISS_MEMORY);
                return scratch.nothing_matches();
            }
            let outcome = self.run_pcre(scratch, index, hay, 0);
            let miss = &mut scratch.misses[index];
            *miss = match &outcome {
                Some(Ok(Some(_))) => (*miss - 1).max(-MISS_MEMORY),
                _ => (*miss + 1).min(MISS_MEMORY),
            };
            match outcome {
                Some(Ok(Some(hit))) => {
                    scratch.all.clear();
                    scratch.all.push(index);
                    scratch.found = Some(hit);
                    scratch.all_ready = true;
                    return true;
                }
                // On one line of ASCII text, where classes, case folding and `.` read
                // the same in every mode, PCRE2 running the pattern as written and
                // finding nothing is the answer: no other pattern can match either.
                Some(Ok(None)) if hay.is_ascii() => {
                    return scratch.nothing_matches();
                }
                // No PCRE2 form, a limit reached, or text where the modes may differ:
                // the automaton decides.
                _ => {}
            }
        }
        match (&self.co_match, &self.combined, scratch.combined.as_mut()) {
            (Some(co), Some(combined), Some(cache)) if !scratch.all_inner_newline => {
                scratch.all.clear();
                let winner = combined
                    .re
                    .search_half_with(cache, &Input::new(hay))
                    .map(|m| combined.entry_of[m.pattern().as_usize()]);
                if let Some(w) = winner {
                    scratch.all.push(w);
                    for &j in &co[w] {
                        if self.fast_matches(scratch, j, hay) {
                            scratch.all.push(j);
                        }
                    }
                }
            }
            _ => {
                self.fast_candidates(scratch, hay);
                scratch.all.clear();
                scratch.all.extend_from_slice(&scratch.candidates);
            }
        }
        scratch.all_ready = true;
        if !scratch.all.is_empty() || !self.unscreened.is_empty() {
            return true;
        }
        match (&self.screens, scratch.screens.as_mut()) {
            (Some(screens), Some((cache, set))) => {
                set.clear();
                screens
                    .re
                    .which_overlapping_matches_with(cache, &Input::new(hay), set);
                !set.is_empty()
            }
            _ => false,
        }
    }

    /// Which patterns `hay` begins like, when the list has start literals.
    fn starts(&self, hay: &[u8]) -> Option<Starts> {
        self.prefixes.as_ref().map(|p| p.starts(hay))
    }

    /// True when the literal screens show that no regex can match `hay` (`starts`: what
    /// [`PatternList::starts`] said of it).
    fn screened_out(&self, hay: &[u8], starts: Option<Starts>) -> bool {
        self.unscreened.is_empty()
            && (starts == Some(Starts::None)
                || self
                    .required
                    .as_ref()
                    .is_some_and(|pre| pre.find(hay, Span::from(0..hay.len())).is_none()))
    }

    /// Heap bytes of the compiled automata (fancy-regex does not report its size).
    pub fn memory_usage(&self) -> usize {
        let fast_all = self.fast_all.get().and_then(Option::as_ref);
        let autos = [self.combined.as_ref(), fast_all, self.screens.as_ref()]
            .into_iter()
            .flatten()
            .map(|a| a.re.memory_usage())
            .sum::<usize>();
        let singles = self
            .entries
            .iter()
            .map(|e| match &e.exec {
                Exec::Fast { single, .. } => single.memory_usage(),
                Exec::Fallback { .. } => 0,
            })
            .sum::<usize>();
        autos + singles
    }

    /// The lowest-index regex at or after `from` that matches `hay`.
    pub fn search(&self, hay: &[u8], from: usize, stats: &mut MatchStats) -> Option<Hit> {
        self.search_with(&mut self.scratch(), hay, from, stats)
    }

    /// [`PatternList::search`] with caller-kept search memory (from [`PatternList::scratch`]).
    pub fn search_with(
        &self,
        scratch: &mut Scratch,
        hay: &[u8],
        from: usize,
        stats: &mut MatchStats,
    ) -> Option<Hit> {
        if from >= self.entries.len() {
            return None;
        }
        let inner_newline = inner_newline(hay);
        let fast = if inner_newline && self.any_plain_dollar {
            self.fast_generic(scratch, hay, from, true, stats)
        } else if from == 0 {
            self.fast_first(scratch, hay, stats)
        } else {
            self.fast_generic(scratch, hay, from, false, stats)
        };
        let limit = fast.as_ref().map(|h| h.index).unwrap_or(self.entries.len());
        if let Some(hit) = self.fallback_below(scratch, hay, from, limit, stats) {
            return Some(hit);
        }
        fast
    }

    /// [`PatternList::search_with`] for trying every regex of the list in turn on one
    /// text (fail2ban's check-all): the fast entries that match are found once, with one
    /// automaton pass, and kept in `scratch` until [`Scratch::forget`].
    pub fn search_next(
        &self,
        scratch: &mut Scratch,
        hay: &[u8],
        from: usize,
        stats: &mut MatchStats,
    ) -> Option<Hit> {
        if from >= self.entries.len() {
            return None;
        }
        if !scratch.all_ready {
            self.fast_candidates(scratch, hay);
            scratch.all.clear();
            scratch.all.extend_from_slice(&scratch.candidates);
            scratch.all_ready = true;
            scratch.all_inner_newline = inner_newline(hay);
        }
        let inner_newline = scratch.all_inner_newline;
        let all = std::mem::take(&mut scratch.all);
        let fast = all
            .iter()
            .filter(|&&i| i >= from)
            .find_map(|&i| self.fast_exact(scratch, i, hay, inner_newline, stats));
        scratch.all = all;
        let limit = fast.as_ref().map(|h| h.index).unwrap_or(self.entries.len());
        if let Some(hit) = self.fallback_below(scratch, hay, from, limit, stats) {
            return Some(hit);
        }
        fast
    }

    /// Every regex that matches `hay`, in list order.
    pub fn search_all(&self, hay: &[u8], stats: &mut MatchStats) -> Vec<Hit> {
        let mut scratch = self.scratch();
        let mut hits = Vec::new();
        let mut from = 0;
        while let Some(h) = self.search_with(&mut scratch, hay, from, stats) {
            from = h.index + 1;
            hits.push(h);
        }
        hits
    }

    fn fast_first(&self, scratch: &mut Scratch, hay: &[u8], stats: &mut MatchStats) -> Option<Hit> {
        let combined = self.combined.as_ref()?;
        let cache = scratch.combined.as_mut()?;
        let m = combined.re.search_with(cache, &Input::new(hay))?;
        let winner = combined.entry_of[m.pattern().as_usize()];
        if self.unanchored_before[winner] {
            // An unanchored pattern with a lower index may match further right.
            self.fast_candidates(scratch, hay);
            let lowest = *scratch.candidates.first()?;
            if lowest != winner {
                return self.fast_exact(scratch, lowest, hay, false, stats);
            }
        }
        // The winner's exact pattern on PCRE2, from the start found: the same match, with
        // groups.
        if let Some(hit) = self.pcre_at(scratch, winner, hay, m.start(), Some((m.start(), m.end())))
        {
            return Some(hit);
        }
        // Else the winner's own automaton, on the span found.
        let Exec::Fast { single, .. } = &self.entries[winner].exec else {
            return None;
        };
        let (cache, caps) = scratch.singles[winner].as_mut()?;
        let input = Input::new(hay)
            .span(m.start()..m.end())
            .anchored(Anchored::Yes);
        single.search_captures_with(cache, &input, caps);
        caps.is_match()
            .then(|| fast_hit(&self.entries[winner].translation, winner, caps))
    }

    fn fast_generic(
        &self,
        scratch: &mut Scratch,
        hay: &[u8],
        from: usize,
        inner_newline: bool,
        stats: &mut MatchStats,
    ) -> Option<Hit> {
        self.fast_candidates(scratch, hay);
        let candidates = std::mem::take(&mut scratch.candidates);
        let hit = candidates
            .iter()
            .filter(|&&i| i >= from)
            .find_map(|&i| self.fast_exact(scratch, i, hay, inner_newline, stats));
        scratch.candidates = candidates;
        hit
    }

    /// Fills `scratch.candidates` with the fast entries whose pattern matches somewhere in
    /// `hay`, ascending.
    fn fast_candidates(&self, scratch: &mut Scratch, hay: &[u8]) {
        scratch.candidates.clear();
        if self.fast_entries.is_empty() {
            return;
        }
        let built = self.fast_all.get_or_init(|| {
            let refs: Vec<&regex_syntax::hir::Hir> = self.fast_hirs.iter().collect();
            match build(&refs, MatchKind::All, false, self.unicode) {
                Ok(re) => Some(Automaton {
                    re,
                    entry_of: self.fast_entries.clone(),
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "No automaton over all patterns; each is tried");
                    None
                }
            }
        });
        let Some(all) = built else {
            for &i in &self.fast_entries {
                if self.fast_matches(scratch, i, hay) {
                    scratch.candidates.push(i);
                }
            }
            return;
        };
        let (cache, set) = scratch
            .fast_all
            .get_or_insert_with(|| (all.re.create_cache(), PatternSet::new(all.re.pattern_len())));
        set.clear();
        all.re
            .which_overlapping_matches_with(cache, &Input::new(hay), set);
        scratch
            .candidates
            .extend(set.iter().map(|p| all.entry_of[p.as_usize()]));
    }

    /// Whether fast entry `index` matches `hay` (its own automaton, no groups).
    fn fast_matches(&self, scratch: &mut Scratch, index: usize, hay: &[u8]) -> bool {
        let Exec::Fast { single, .. } = &self.entries[index].exec else {
            return false;
        };
        let Some((cache, _)) = scratch.singles[index].as_mut() else {
            return false;
        };
        single.search_half_with(cache, &Input::new(hay)).is_some()
    }

    /// Groups of fast entry `index`, known to match (or, with an inner newline and a
    /// plain `$`, possibly only matching the fast form).
    fn fast_exact(
        &self,
        scratch: &mut Scratch,
        index: usize,
        hay: &[u8],
        inner_newline: bool,
        stats: &mut MatchStats,
    ) -> Option<Hit> {
        if let Some(hit) = scratch.found.take_if(|h| h.index == index) {
            return Some(hit);
        }
        let entry = &self.entries[index];
        let Exec::Fast { single, exact } = &entry.exec else {
            return None;
        };
        // PCRE2 runs the exact pattern, also on texts with inner newlines.
        if let Some(hit) = self.pcre_at(scratch, index, hay, 0, None) {
            return Some(hit);
        }
        if inner_newline && entry.translation.plain_dollar {
            let exact = exact.get_or_init(|| {
                build_fancy(
                    &entry.translation.fancy,
                    entry.translation.fancy_unicode,
                    self.backtrack_limit,
                )
                .ok()
            });
            if let Some(re) = exact {
                return run_fancy(re, index, hay, stats);
            }
        }
        let (cache, caps) = scratch.singles[index].as_mut()?;
        single.search_captures_with(cache, &Input::new(hay), caps);
        caps.is_match()
            .then(|| fast_hit(&entry.translation, index, caps))
    }

    /// The lowest fallback entry in `from..limit` that matches.
    fn fallback_below(
        &self,
        scratch: &mut Scratch,
        hay: &[u8],
        from: usize,
        limit: usize,
        stats: &mut MatchStats,
    ) -> Option<Hit> {
        if !self
            .fallback_indices
            .iter()
            .any(|&i| i >= from && i < limit)
        {
            return None;
        }
        let mut candidates = std::mem::take(&mut scratch.candidates);
        candidates.clear();
        candidates.extend(
            self.unscreened
                .iter()
                .copied()
                .filter(|&i| i >= from && i < limit),
        );
        if let (Some(screens), Some((cache, set))) = (&self.screens, scratch.screens.as_mut()) {
            set.clear();
            screens
                .re
                .which_overlapping_matches_with(cache, &Input::new(hay), set);
            candidates.extend(
                set.iter()
                    .map(|p| screens.entry_of[p.as_usize()])
                    .filter(|&i| i >= from && i < limit),
            );
        }
        candidates.sort_unstable();
        let hit = candidates.iter().find_map(|&i| {
            let Exec::Fallback { fancy } = &self.entries[i].exec else {
                return None;
            };
            match self.run_pcre(scratch, i, hay, 0) {
                Some(Ok(found)) => {
                    stats.fallback_runs += 1;
                    found
                }
                // No PCRE2 form, or it gave up: the bounded backtracking engine decides.
                _ => run_fancy(fancy, i, hay, stats),
            }
        });
        scratch.candidates = candidates;
        hit
    }

    /// Runs entry `index`'s PCRE2 pattern from `start`: None when it has none or PCRE2
    /// gave up (match limit, JIT stack), else its answer.
    fn run_pcre(
        &self,
        scratch: &mut Scratch,
        index: usize,
        hay: &[u8],
        start: usize,
    ) -> Option<Result<Option<Hit>, ()>> {
        let entry = &self.entries[index];
        let re = entry.pcre.as_ref()?;
        let locs = scratch.locs.get_mut(index)?.as_mut()?;
        if entry.costly
            && let Some(m) = scratch
                .memo
                .iter()
                .find(|m| m.index == index && m.start == start && m.text == hay)
        {
            return Some(Ok(m.groups.as_ref().map(|found| {
                let mut groups = scratch.spare.take();
                groups.extend_from_slice(found);
                Hit { index, groups }
            })));
        }
        match re.captures_read_at(locs, hay, start) {
            Ok(found) => {
                let hit = found.map(|_| Hit {
                    index,
                    groups: pcre_spans(locs, scratch.spare.take()),
                });
                if entry.costly {
                    scratch.remember(index, start, hay, hit.as_ref());
                }
                Some(Ok(hit))
            }
            Err(e) => {
                tracing::trace!(regex = index, error = %e, "PCRE2 gave up; another engine decides");
                Some(Err(()))
            }
        }
    }

    /// The groups of fast entry `index`, which an automaton found matching (the leftmost
    /// match from `from`, spanning `want` when known), from PCRE2; None when PCRE2 cannot
    /// tell or does not find that very match.
    fn pcre_at(
        &self,
        scratch: &mut Scratch,
        index: usize,
        hay: &[u8],
        from: usize,
        want: Option<(usize, usize)>,
    ) -> Option<Hit> {
        let hit = self.run_pcre(scratch, index, hay, from)?.ok()??;
        let same = want.is_none_or(|w| hit.groups[0] == Some(w));
        same.then_some(hit)
    }

    /// Whether the list was compiled with Unicode classes.
    pub fn unicode(&self) -> bool {
        self.unicode
    }
}

/// Literals of which every match of `hir` begins with one, when `hir` is tied to the
/// text's start (`^`, not multi-line) and has a finite set of at most [`MAX_REQUIRED`]
/// non-empty prefixes (`regex-syntax`'s extractor: every match begins with one of them
/// when the set is finite, exact or not).
fn start_literals(hir: &regex_syntax::hir::Hir) -> Option<Vec<Vec<u8>>> {
    if !hir.properties().look_set_prefix().contains(Look::Start) {
        return None;
    }
    let lits = extracted(hir, regex_syntax::hir::literal::ExtractKind::Prefix)?;
    (!lits.is_empty() && lits.len() <= MAX_REQUIRED && lits.iter().all(|l| !l.is_empty()))
        .then_some(lits)
}

/// The literals `regex-syntax`'s extractor finds at the start or the end of `hir`, when
/// their set is finite.
fn extracted(
    hir: &regex_syntax::hir::Hir,
    kind: regex_syntax::hir::literal::ExtractKind,
) -> Option<Vec<Vec<u8>>> {
    let seq = regex_syntax::hir::literal::Extractor::new()
        .kind(kind)
        .extract(hir);
    Some(
        seq.literals()?
            .iter()
            .map(|l| l.as_bytes().to_vec())
            .collect(),
    )
}

/// A set of literals, tested against the start of a text: the literals with the text's
/// first two bytes (and those of one byte), compared in turn.
#[derive(Debug)]
struct StartLiterals {
    /// (literal, pattern it starts), sorted and deduplicated, so that the literals of one
    /// first byte are together, and among them those of one second byte.
    lits: Vec<(Vec<u8>, usize)>,
    /// Runs of `lits` with the same first two bytes: (second byte, None for a literal of
    /// one byte; start; end).
    runs: Vec<(Option<u8>, u16, u16)>,
    /// For each first byte, the range of `runs` that begin with it.
    by_first: Box<[(u16, u16); 256]>,
}

/// Which patterns a text begins like, by their start literals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Starts {
    None,
    /// Exactly one pattern (its position in the list the literals were made from).
    One(usize),
    Several,
}

impl StartLiterals {
    fn new(sets: Vec<Vec<Vec<u8>>>) -> StartLiterals {
        let mut lits: Vec<(Vec<u8>, usize)> = sets
            .into_iter()
            .enumerate()
            .flat_map(|(p, set)| set.into_iter().map(move |l| (l, p)))
            .collect();
        lits.sort_unstable();
        lits.dedup();
        let mut runs: Vec<(Option<u8>, u16, u16)> = Vec::new();
        let mut by_first = Box::new([(0u16, 0u16); 256]);
        let mut last: Option<(u8, Option<u8>)> = None;
        for (i, (l, _)) in lits.iter().enumerate() {
            let head = (l[0], l.get(1).copied());
            if last != Some(head) {
                let e = &mut by_first[usize::from(l[0])];
                if e.0 == e.1 {
                    e.0 = runs.len() as u16;
                }
                e.1 = runs.len() as u16 + 1;
                runs.push((head.1, i as u16, i as u16));
                last = Some(head);
            }
            if let Some(run) = runs.last_mut() {
                run.2 = i as u16 + 1;
            }
        }
        StartLiterals {
            lits,
            runs,
            by_first,
        }
    }

    fn starts(&self, hay: &[u8]) -> Starts {
        let Some(&b) = hay.first() else {
            return Starts::None;
        };
        let second = hay.get(1).copied();
        let (s, e) = self.by_first[usize::from(b)];
        let mut found = Starts::None;
        for &(run_second, rs, re) in &self.runs[usize::from(s)..usize::from(e)] {
            // A one-byte literal's run, or the run of the text's second byte.
            if run_second.is_some() && run_second != second {
                continue;
            }
            for (l, p) in &self.lits[usize::from(rs)..usize::from(re)] {
                if hay.starts_with(l) {
                    found = match found {
                        Starts::None => Starts::One(*p),
                        Starts::One(q) if q == *p => found,
                        _ => return Starts::Several,
                    };
                }
            }
        }
        found
    }
}

/// The most literals a list's literal screen holds.
const MAX_REQUIRED: usize = 128;
/// The shortest literal worth a literal screen: shorter ones occur in most texts.
const MIN_REQUIRED_LEN: usize = 3;

/// Literals of which every match of `hir` contains one, the best of: its prefixes, its
/// suffixes (both from `regex-syntax`'s extractor, which guarantees every match starts,
/// resp. ends, with one of them when the set is finite), and each literal piece of its
/// top-level sequence (which every match contains). Best is the set whose shortest
/// literal is longest; None when none has literals of at least [`MIN_REQUIRED_LEN`] bytes.
fn required_literals(hir: &regex_syntax::hir::Hir) -> Option<Vec<Vec<u8>>> {
    use regex_syntax::hir::HirKind;
    use regex_syntax::hir::literal::ExtractKind;
    let shortest = |lits: &[Vec<u8>]| lits.iter().map(Vec::len).min().unwrap_or(0);
    let mut best: Option<Vec<Vec<u8>>> = None;
    let mut consider = |lits: Vec<Vec<u8>>| {
        let n = shortest(&lits);
        if !lits.is_empty()
            && lits.len() <= MAX_REQUIRED
            && n >= MIN_REQUIRED_LEN
            && best.as_ref().is_none_or(|b| n > shortest(b))
        {
            best = Some(lits);
        }
    };
    for kind in [ExtractKind::Prefix, ExtractKind::Suffix] {
        if let Some(lits) = extracted(hir, kind) {
            consider(lits);
        }
    }
    if let HirKind::Concat(items) = hir.kind() {
        for it in items {
            if let HirKind::Literal(l) = it.kind() {
                consider(vec![l.0.to_vec()]);
            }
        }
    }
    best
}

/// Finds where a prefregex's trailing `<F-CONTENT>.+</F-CONTENT>$` starts with one DFA
/// search (see [`super::translate::ContentPrefix`]).
#[derive(Debug)]
pub struct ContentFinder {
    re: meta::Regex,
    /// The same search on a fully built DFA, when it is small (the common prefixes are a
    /// few hundred kilobytes): about twice as fast as the lazy DFA behind `re`, which
    /// every line of a source pays for.
    dense: Option<dense::DFA<Vec<u32>>>,
    /// The part before the content with its groups: cheaper than the whole prefregex for
    /// the groups a failregex match needs (its span is only the line's prefix).
    groups: meta::Regex,
    /// The same on PCRE2, run on the text before the content.
    groups_pcre: Option<pcre2::bytes::Regex>,
    /// The group search looks at the byte after its span (assertions at its end).
    peeks: bool,
    min: u32,
}

/// Line prefixes whose groups a [`ContentFinder`] remembers: the lines of one session
/// (one `sshd[pid]`) share their prefix and come close together.
const PREFIX_MEMO: usize = 8;

/// Search memory of a [`ContentFinder`], per source, with the groups of the last few
/// prefixes.
#[derive(Debug)]
pub struct ContentCache {
    find: meta::Cache,
    groups: meta::Cache,
    caps: Captures,
    locs: Option<pcre2::bytes::CaptureLocations>,
    /// (content start, the bytes the group search saw, its groups).
    recent: Vec<(usize, Vec<u8>, Option<Hit>)>,
    next: usize,
    /// The last dense search: the bytes it read (all of the text when `whole`) and the
    /// end it found. A text that begins with the same bytes gets the same answer: lines
    /// of a log mostly begin alike (host, daemon and pid) up to where the DFA gives up.
    find_memo: Option<(Vec<u8>, bool, Option<usize>)>,
}

/// What a [`ContentFinder`] learnt about a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentStart {
    /// The prefregex cannot match.
    NoMatch,
    /// The prefregex matches and its content starts here and ends before the final `\n`.
    At(usize),
    /// Only a full search can tell.
    Unknown,
}

impl ContentFinder {
    pub fn new(prefix: &super::translate::ContentPrefix, unicode: bool) -> Result<Self, String> {
        let looks = prefix.groups_hir.properties().look_set();
        let peeks = !looks
            .remove(Look::Start)
            .remove(Look::StartLF)
            .remove(Look::StartCRLF)
            .is_empty();
        Ok(ContentFinder {
            re: build(&[&prefix.hir], MatchKind::LeftmostFirst, false, unicode)?,
            dense: build_dense(&prefix.hir),
            groups: build(
                &[&prefix.groups_hir],
                MatchKind::LeftmostFirst,
                true,
                unicode,
            )?,
            groups_pcre: if peeks {
                None
            } else {
                prefix
                    .pcre
                    .as_ref()
                    .and_then(|f| build_pcre(f, super::pipeline::DEFAULT_BACKTRACK_LIMIT))
            },
            peeks,
            min: prefix.min,
        })
    }

    pub fn cache(&self) -> ContentCache {
        ContentCache {
            find: self.re.create_cache(),
            groups: self.groups.create_cache(),
            caps: self.groups.create_captures(),
            locs: self.groups_pcre.as_ref().map(|re| re.capture_locations()),
            recent: Vec::new(),
            next: 0,
            find_memo: None,
        }
    }

    pub fn memory_usage(&self) -> usize {
        self.re.memory_usage()
            + self.groups.memory_usage()
            + self.dense.as_ref().map_or(0, |d| d.memory_usage())
    }

    /// Groups of the part before the content, for a text [`ContentFinder::find`] placed.
    /// Group indices are those of the whole prefregex.
    pub fn groups<'c>(
        &self,
        cache: &'c mut ContentCache,
        hay: &[u8],
        content_start: usize,
    ) -> Option<&'c Hit> {
        // The search sees the text before the content and, for assertions at its end, one
        // byte more.
        let seen = if self.peeks {
            content_start + 1
        } else {
            content_start
        };
        let key = &hay[..seen.min(hay.len())];
        if let Some(i) = cache
            .recent
            .iter()
            .position(|(at, k, _)| *at == content_start && k.as_slice() == key)
        {
            return cache.recent[i].2.as_ref();
        }
        let slot = ring_slot(&mut cache.recent, &mut cache.next, PREFIX_MEMO, || {
            (0, Vec::new(), None)
        });
        // The new entry takes the place, and the memory, of the oldest.
        let entry = &mut cache.recent[slot];
        entry.0 = content_start;
        entry.1.clear();
        entry.1.extend_from_slice(key);
        let spans = entry.2.take().map(|h| h.groups).unwrap_or_default();
        let via_pcre = match (&self.groups_pcre, cache.locs.as_mut()) {
            (Some(re), Some(locs)) => match re.captures_read_at(locs, &hay[..content_start], 0) {
                Ok(found) => Some(found.map(|_| Hit {
                    index: 0,
                    groups: pcre_spans(locs, spans),
                })),
                Err(_) => None,
            },
            _ => None,
        };
        let hit = match via_pcre {
            Some(hit) => hit,
            None => {
                let input = Input::new(hay).span(0..content_start);
                self.groups
                    .search_captures_with(&mut cache.groups, &input, &mut cache.caps);
                cache.caps.is_match().then(|| hit_from(0, &cache.caps))
            }
        };
        cache.recent[slot].2 = hit;
        cache.recent[slot].2.as_ref()
    }

    /// `hay` must be one line followed by `\n`, with no other newline: `Unknown`
    /// otherwise. `one_line` says the caller knows there is no other (not looked for).
    pub fn find(&self, cache: &mut ContentCache, hay: &[u8], one_line: bool) -> ContentStart {
        let Some(last) = hay.len().checked_sub(1) else {
            return ContentStart::Unknown;
        };
        debug_assert!(!one_line || !hay[..last].contains(&b'\n'));
        if hay[last] != b'\n' || (!one_line && memchr::memchr(b'\n', &hay[..last]).is_some()) {
            return ContentStart::Unknown;
        }
        // Only the end of the match is needed: no reverse scan for its start.
        let end = match &self.dense {
            Some(dfa) => match dense_end(dfa, &mut cache.find_memo, hay) {
                Some(end) => end,
                // A dense DFA built without quit bytes cannot fail; answer safely anyway.
                None => return ContentStart::Unknown,
            },
            None => self
                .re
                .search_half_with(&mut cache.find, &Input::new(hay))
                .map(|m| m.offset()),
        };
        match end {
            None => ContentStart::NoMatch,
            Some(end) if end + self.min as usize <= last => ContentStart::At(end),
            Some(_) => ContentStart::Unknown,
        }
    }
}

/// The end of the leftmost-first match of `dfa` in `hay` (None inside: no match), through
/// `memo`; None when the DFA gave up (a quit byte).
fn dense_end(
    dfa: &dense::DFA<Vec<u32>>,
    memo: &mut Option<(Vec<u8>, bool, Option<usize>)>,
    hay: &[u8],
) -> Option<Option<usize>> {
    if let Some((key, whole, end)) = memo.as_ref() {
        let same = if *whole {
            hay == key.as_slice()
        } else {
            hay.len() >= key.len() && hay[..key.len()] == **key
        };
        if same {
            return Some(*end);
        }
    }
    // regex-automata's search loop, keeping where it stopped: matches are reported one
    // byte late (a match state entered on byte `i` means a match ending at `i`).
    let mut sid = dfa.start_state_forward(&Input::new(hay)).ok()?;
    let mut end = None;
    let mut dead_at = None;
    for (i, &b) in hay.iter().enumerate() {
        sid = dfa.next_state(sid, b);
        if dfa.is_special_state(sid) {
            if dfa.is_match_state(sid) {
                end = Some(i);
            } else if dfa.is_dead_state(sid) {
                dead_at = Some(i);
                break;
            } else if dfa.is_quit_state(sid) {
                return None;
            }
        }
    }
    if dead_at.is_none() {
        sid = dfa.next_eoi_state(sid);
        if dfa.is_match_state(sid) {
            end = Some(hay.len());
        }
    }
    let (seen, whole) = match dead_at {
        Some(i) => (&hay[..=i], false),
        None => (hay, true),
    };
    match memo {
        Some((key, w, e)) => {
            key.clear();
            key.extend_from_slice(seen);
            *w = whole;
            *e = end;
        }
        None => *memo = Some((seen.to_vec(), whole, end)),
    }
    Some(end)
}

/// Largest dense DFA a [`ContentFinder`] builds (else it keeps the lazy DFA).
const DENSE_LIMIT: usize = 2 * 1024 * 1024;

/// A dense leftmost-first DFA for `hir` without groups, or None when it would be larger
/// than [`DENSE_LIMIT`] (or the pattern needs what a DFA cannot do, e.g. Unicode word
/// boundaries).
fn build_dense(hir: &regex_syntax::hir::Hir) -> Option<dense::DFA<Vec<u32>>> {
    let nfa = thompson::Compiler::new()
        .configure(
            thompson::Config::new()
                .utf8(false)
                .which_captures(WhichCaptures::None),
        )
        .build_from_hir(hir)
        .ok()?;
    dense::Builder::new()
        .configure(
            dense::Config::new()
                .match_kind(MatchKind::LeftmostFirst)
                .start_kind(StartKind::Unanchored)
                .minimize(false)
                .dfa_size_limit(Some(DENSE_LIMIT))
                .determinize_size_limit(Some(2 * DENSE_LIMIT)),
        )
        .build_from_nfa(&nfa)
        .ok()
}

/// A fast entry's hit with groups by Python index (a rewritten pattern may hold several
/// copies of a group, of which at most one takes part in a match).
fn fast_hit(tr: &Translation, index: usize, caps: &Captures) -> Hit {
    let Some(map) = &tr.fast_groups else {
        return hit_from(index, caps);
    };
    let mut groups = vec![None; tr.names.len().max(1)];
    groups[0] = caps.get_group(0).map(|s| (s.start, s.end));
    for (k, &py) in map.iter().enumerate() {
        if let Some(sp) = caps.get_group(k + 1)
            && let Some(slot) = groups.get_mut(py)
        {
            *slot = Some((sp.start, sp.end));
        }
    }
    Hit { index, groups }
}

/// PCRE2 for a pattern's PCRE form, limited like the backtracking engine; None when
/// PCRE2 refuses it.
fn build_pcre(
    form: &super::translate::PcreForm,
    backtrack_limit: usize,
) -> Option<pcre2::bytes::Regex> {
    let limit = backtrack_limit.clamp(1, u32::MAX as usize);
    pcre2::bytes::RegexBuilder::new()
        .jit_if_available(true)
        .utf(form.utf)
        .ucp(form.ucp)
        .build(&format!("(*LIMIT_MATCH={limit}){}", form.pattern))
        .map_err(
            |e| tracing::debug!(pattern = %form.pattern, error = %e, "PCRE2 refuses a pattern"),
        )
        .ok()
}

/// The spans of a PCRE2 match's groups, written into `spans` (its memory reused).
fn pcre_spans(
    locs: &pcre2::bytes::CaptureLocations,
    mut spans: Vec<Option<(usize, usize)>>,
) -> Vec<Option<(usize, usize)>> {
    spans.clear();
    spans.extend((0..locs.len()).map(|g| locs.get(g)));
    spans
}

/// The slot of a ring of at most `cap` entries for a new entry: a new one (made by `new`)
/// until the ring is full, then the oldest, `next` turning round.
fn ring_slot<T>(ring: &mut Vec<T>, next: &mut usize, cap: usize, new: impl FnOnce() -> T) -> usize {
    if ring.len() < cap {
        ring.push(new());
        ring.len() - 1
    } else {
        let slot = *next;
        *next = (slot + 1) % cap;
        slot
    }
}

fn hit_from(index: usize, caps: &Captures) -> Hit {
    let groups = (0..caps.group_len())
        .map(|g| caps.get_group(g).map(|s| (s.start, s.end)))
        .collect();
    Hit { index, groups }
}

fn run_fancy(
    re: &fancy_regex::Regex,
    index: usize,
    hay: &[u8],
    stats: &mut MatchStats,
) -> Option<Hit> {
    stats.fallback_runs += 1;
    match re.captures(hay) {
        Ok(Some(c)) => Some(Hit {
            index,
            groups: (0..c.len())
                .map(|g| c.get(g).map(|m| (m.start(), m.end())))
                .collect(),
        }),
        Ok(None) => None,
        Err(e) => {
            stats.backtrack_limit_hits += 1;
            tracing::trace!(regex = index, error = %e, "Backtracking search stopped; counted as no match");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::translate::{TranslateOptions, translate};
    use super::*;

    fn list(patterns: &[&str]) -> PatternList {
        let trs = patterns
            .iter()
            .map(|p| translate(p, TranslateOptions::default()).unwrap())
            .collect();
        PatternList::compile(trs, false, 10_000).unwrap()
    }

    fn first(l: &PatternList, hay: &str) -> Option<usize> {
        l.search(hay.as_bytes(), 0, &mut MatchStats::default())
            .map(|h| h.index)
    }

    /// Texts built from pieces that the patterns below share or nearly share.
    fn texts(n: usize) -> Vec<String> {
        let pieces = [
            "Failed ",
            "password ",
            "publickey ",
            "for ",
            "invalid user ",
            "User ",
            "root ",
            "from ",
            "198.51.100.7 ",
            "port 22 ",
            "x",
            "Fail",
            "F",
            "U",
            "Received ",
            "",
            " ",
            "disconnect ",
            "11: ",
            "[preauth]",
            "web1 sshd[12]: ",
            "web1 CRON[3]: ",
            "error: ",
        ];
        let mut next = crate::test_rng(0x853c_49e6_748f_ea9bu64);
        (0..n)
            .map(|_| {
                let mut t: String = (0..next(7)).map(|_| pieces[next(pieces.len())]).collect();
                t.push('\n');
                t
            })
            .collect()
    }

    /// The start-literal table finds what comparing every literal finds: literals of one
    /// byte and longer, texts shorter than them, shared first bytes.
    #[test]
    fn start_literals_agree_with_comparing_each() {
        let mut next = crate::test_rng(0x0123_4567_89ab_cdefu64);
        let alphabet = b"abc\0";
        let word = |next: &mut dyn FnMut(usize) -> usize, max: usize| -> Vec<u8> {
            (0..1 + next(max))
                .map(|_| alphabet[next(alphabet.len())])
                .collect()
        };
        let mut several = 0;
        for _ in 0..300 {
            let sets: Vec<Vec<Vec<u8>>> = (0..1 + next(4))
                .map(|_| (0..1 + next(4)).map(|_| word(&mut next, 5)).collect())
                .collect();
            let table = StartLiterals::new(sets.clone());
            for _ in 0..50 {
                let mut hay = if next(2) == 0 {
                    word(&mut next, 7)
                } else {
                    let set = &sets[next(sets.len())];
                    let mut h = set[next(set.len())].clone();
                    h.extend(word(&mut next, 3));
                    h
                };
                hay.truncate(next(hay.len() + 1));
                let mut want = Starts::None;
                for (p, set) in sets.iter().enumerate() {
                    if set.iter().any(|l| hay.starts_with(l)) {
                        want = match want {
                            Starts::None => Starts::One(p),
                            _ => Starts::Several,
                        };
                    }
                }
                several += usize::from(want == Starts::Several);
                assert_eq!(table.starts(&hay), want, "{sets:?} {hay:?}");
            }
        }
        assert!(several > 100, "{several}");
    }

    /// A pool hands back empty vectors with their memory, keeps at most its limit, and
    /// keeps none without memory.
    #[test]
    fn vec_pool_reuses_memory_up_to_its_limit() {
        let mut pool: VecPool<u32> = VecPool::default();
        pool.give(Vec::new());
        assert_eq!(pool.take().capacity(), 0);
        for n in 0..VecPool::<u32>::KEEP + 2 {
            pool.give(vec![7; n + 1]);
        }
        let mut kept = 0;
        loop {
            let v = pool.take();
            if v.capacity() == 0 {
                break;
            }
            assert!(v.is_empty());
            kept += 1;
        }
        assert_eq!(kept, VecPool::<u32>::KEEP);
    }

    /// Costly patterns answer a repeated text from the memo: the same hits, groups
    /// included, as PCRE2 run afresh on each pattern, with several costly patterns
    /// matching one text and more distinct texts than the memo holds.
    #[test]
    fn memo_of_costly_patterns_gives_what_pcre2_finds() {
        let l = list(&[
            r"^Failed (?:(?! from ).)*? from (?P<host>\S+)(?: port (?P<port>\d+))?",
            r"^Failed (?P<how>\S+) for (?P<cond_inv>invalid user )?(?P<user>(?P<cond_user>\S+)|(?(cond_inv)(?:(?! from ).)*?|[^:]+)) from (?P<host>\S+)(?(cond_user) port|(?:(?:(?! from ).)*)$)",
            r"^(?:Failed|Received) (?:(?! port ).)*(?P<rest> port \d+)?",
            r"^Failed password",
        ]);
        assert!(l.entries[..3].iter().all(|e| e.costly) && !l.entries[3].costly);
        assert_eq!(l.entries[1].translation.engine, Engine::Fast);
        let distinct = [
            "Failed password for root from 198.51.100.7 port 22\n",
            "Failed password for invalid user x from 198.51.100.8 port 23\n",
            "Failed publickey for root from 2001:db8::1\n",
            "Received disconnect from 198.51.100.7 port 22\n",
            "Failed none for a from b from c port 1\n",
            "Received nothing\n",
            "Failed password for root from 198.51.100.7 port 24\n",
        ];
        // Each pattern on PCRE2 alone, nothing remembered.
        let fresh = |t: &str| -> Vec<Hit> {
            l.entries
                .iter()
                .enumerate()
                .filter_map(|(index, e)| {
                    let re = e.pcre.as_ref().unwrap();
                    let mut locs = re.capture_locations();
                    re.captures_read_at(&mut locs, t.as_bytes(), 0)
                        .unwrap()
                        .map(|_| Hit {
                            index,
                            groups: (0..locs.len()).map(|g| locs.get(g)).collect(),
                        })
                })
                .collect()
        };
        let mut next = crate::test_rng(0x2545_f491_4f6c_dd1du64);
        let mut scratch = l.scratch();
        let mut stats = MatchStats::default();
        let mut several = 0;
        for _ in 0..400 {
            let t = distinct[next(distinct.len())];
            let want = fresh(t);
            scratch.forget();
            let mut got = Vec::new();
            let mut from = 0;
            while let Some(h) = l.search_next(&mut scratch, t.as_bytes(), from, &mut stats) {
                from = h.index + 1;
                got.push(h);
            }
            assert_eq!(got, want, "{t:?}");
            scratch.forget();
            let first = l.search_with(&mut scratch, t.as_bytes(), 0, &mut stats);
            assert_eq!(first.as_ref(), want.first(), "{t:?}");
            several += usize::from(want.len() > 2);
        }
        assert!(several > 100, "{several}");
        assert_eq!(scratch.memo.len(), PCRE_MEMO);
    }

    /// The check-all screen (start literals, then the leftmost-first automaton and the
    /// entries whose start literals overlap the winner's) finds exactly the entries that
    /// match, in order: the same as trying each regex in turn.
    #[test]
    fn check_all_screen_finds_every_matching_regex() {
        let l = list(&[
            r"^Failed password for (?P<user>\S+) from (?P<host>\S+)",
            r"^Failed \S+ for (?:invalid user )?(?P<user>\S+)",
            r"^Fail",
            r"^User (?P<user>\S+)",
            r"^(?:Received|User) \S+",
            r"^Received disconnect from (?P<host>\S+) port \d+",
            r"^F.*x$",
            r"^Accepted (?P<how>\S+) (?:for|from) (?P<host>\S+)",
        ]);
        assert!(l.co_match.is_some() && l.prefixes.is_some());
        // Entry 0 ("Failed password") may co-match 1 ("Failed "), 2 ("Fail") and 6 ("F").
        assert_eq!(l.co_match.as_ref().unwrap()[0], vec![1, 2, 6]);
        let mut scratch = l.scratch();
        let mut stats = MatchStats::default();
        let mut several = 0;
        let mut alone = 0;
        let fixed = [
            "Accepted key for 198.51.100.7\n",
            "Accepted publickey from web1 port 22\n",
            "Accepted key\n",
            "Accepted \n",
        ];
        for t in texts(5000).into_iter().chain(fixed.map(String::from)) {
            let hay = t.as_bytes();
            let want: Vec<usize> = l
                .search_all(hay, &mut stats)
                .iter()
                .map(|h| h.index)
                .collect();
            scratch.forget();
            let may = l.may_match_all(&mut scratch, hay, false);
            let mut got = Vec::new();
            let mut from = 0;
            while let Some(h) = l.search_next(&mut scratch, hay, from, &mut stats) {
                from = h.index + 1;
                got.push(h.index);
            }
            assert_eq!(got, want, "{t:?}");
            assert_eq!(may, !want.is_empty(), "{t:?}");
            several += usize::from(want.len() > 1);
            alone += usize::from(want == [7]);
        }
        assert!(several > 100, "{several}");
        // Texts that begin like one pattern only: its own search decided.
        assert!(alone >= 2, "{alone}");
    }

    /// Patterns not all tied to the start keep the overlapping search and no literal screen.
    #[test]
    fn unanchored_lists_keep_the_overlapping_search() {
        let l = list(&[r"^Failed (?P<user>\S+)", r"port (?P<port>\d+)"]);
        assert!(l.co_match.is_none() && l.prefixes.is_none());
        let mut scratch = l.scratch();
        let hay = b"Failed root from 198.51.100.7 port 22\n";
        assert!(l.may_match_all(&mut scratch, hay, true));
        let mut stats = MatchStats::default();
        assert_eq!(
            l.search_next(&mut scratch, hay, 0, &mut stats)
                .map(|h| h.index),
            Some(0)
        );
        assert_eq!(
            l.search_next(&mut scratch, hay, 1, &mut stats)
                .map(|h| h.index),
            Some(1)
        );
    }

    /// The dense DFA and its memo of line starts find the content where the lazy DFA does.
    #[test]
    fn content_finder_dense_search_agrees_with_the_lazy_one() {
        let prefix = super::super::translate::content_prefix(
            r"^(?P<mlfid>\s*(?:\S+ )?(?:sshd|CRON)(?:\[\d+\])?: )(?:(?:error|fatal): )?(?P<content>.+)$",
            TranslateOptions::default(),
        )
        .unwrap();
        let dense = ContentFinder::new(&prefix, false).unwrap();
        assert!(dense.dense.is_some());
        let mut lazy = ContentFinder::new(&prefix, false).unwrap();
        lazy.dense = None;
        let (mut dc, mut lc) = (dense.cache(), lazy.cache());
        let mut found = 0;
        let mut one_line = 0;
        for t in texts(5000) {
            let a = dense.find(&mut dc, t.as_bytes(), false);
            assert_eq!(a, lazy.find(&mut lc, t.as_bytes(), false), "{t:?}");
            found += usize::from(matches!(a, ContentStart::At(k) if k > 0));
            // A caller that vouches for a single line gets the same answer.
            if t.len() > 1 && !t.as_bytes()[..t.len() - 1].contains(&b'\n') {
                one_line += 1;
                assert_eq!(dense.find(&mut dc, t.as_bytes(), true), a, "{t:?}");
            }
        }
        assert!(found > 300, "{found}");
        assert!(one_line > 1000, "{one_line}");
    }

    #[test]
    fn lowest_index_wins_even_when_it_matches_further_right() {
        let l = list(&["b", "a"]);
        assert_eq!(first(&l, "ab\n"), Some(0));
        let l = list(&["^x", "c", "a"]);
        assert_eq!(first(&l, "abc\n"), Some(1));
        assert_eq!(first(&l, "ab\n"), Some(2));
        assert_eq!(first(&l, "xab\n"), Some(0));
        assert_eq!(first(&l, "zz\n"), None);
    }

    #[test]
    fn fallback_and_fast_merge_by_index() {
        let l = list(&["^a(?=b)", "^a", r"^(c)\1"]);
        assert_eq!(l.entries()[0].translation.engine, Engine::Fallback);
        assert_eq!(l.entries()[1].translation.engine, Engine::Fast);
        assert_eq!(first(&l, "ab\n"), Some(0));
        assert_eq!(first(&l, "ac\n"), Some(1));
        assert_eq!(first(&l, "cc\n"), Some(2));
        let mut stats = MatchStats::default();
        let all: Vec<usize> = l
            .search_all(b"ab\n", &mut stats)
            .iter()
            .map(|h| h.index)
            .collect();
        assert_eq!(all, vec![0, 1]);
        // The screen keeps the backtracking engine away from lines that cannot match.
        let mut stats = MatchStats::default();
        l.search(b"zzz\n", 0, &mut stats);
        assert_eq!(stats.fallback_runs, 0);
    }

    #[test]
    fn groups_come_from_the_winning_pattern() {
        let l = list(&[r"x(?P<a>\d+)", r"^(?P<b>\w+) (\d)"]);
        let h = l
            .search(b"foo 7 x12\n", 0, &mut MatchStats::default())
            .unwrap();
        assert_eq!(h.index, 0);
        assert_eq!(h.groups, vec![Some((6, 9)), Some((7, 9))]);
        let h = l.search(b"foo 7\n", 0, &mut MatchStats::default()).unwrap();
        assert_eq!(h.groups, vec![Some((0, 5)), Some((0, 3)), Some((4, 5))]);
        let h = l
            .search(b"foo 7 x12\n", 1, &mut MatchStats::default())
            .unwrap();
        assert_eq!(h.index, 1);
        assert_eq!(h.groups[1], Some((0, 3)));
    }

    #[test]
    fn plain_dollar_is_exact_with_inner_newlines() {
        let l = list(&["a$", "b"]);
        assert_eq!(first(&l, "xa\n"), Some(0));
        // Python: `$` only at the end or before the final newline.
        assert_eq!(first(&l, "a\nb\n"), Some(1));
        assert_eq!(first(&l, "b\na\n"), Some(0));
        assert_eq!(first(&l, "a\nc\n"), None);
    }

    #[test]
    fn backtrack_limit_counts_as_no_match() {
        // The screen (lookbehind dropped) accepts the line, the exact pattern backtracks
        // exponentially before failing.
        let l = list(&[r"^(a*)*\1$(?<=y)"]);
        let hay = format!("{}\n", "a".repeat(40));
        let mut stats = MatchStats::default();
        assert_eq!(l.search(hay.as_bytes(), 0, &mut stats), None);
        assert_eq!(stats.backtrack_limit_hits, 1);
    }
}
