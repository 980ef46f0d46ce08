//! A list of translated regexes compiled for matching, with Python's list semantics: the
//! lowest-index regex that matches anywhere in the text wins.
//!
//! Fast patterns share one leftmost-first `regex-automata` automaton without groups. Its
//! answer is the lowest matching index whenever every lower-index fast pattern can only
//! match at the start of the text (the usual case: fail2ban regexes begin with `^`);
//! otherwise an overlapping pass over a `MatchKind::All` automaton finds the lowest index.
//! Groups always come from the winning pattern compiled alone, run on the span already
//! found: the capture engines cost in proportion to the automaton they run, and one
//! pattern is a small fraction of a filter's. Fallback patterns run on fancy-regex,
//! bounded by a backtrack limit, and only when their fast-engine screen matched the text
//! and their index is below the best fast match.

use std::sync::OnceLock;

use fancy_regex::{BytesMode, RegexBuilder};
use regex_automata::Span;
use regex_automata::meta;
use regex_automata::nfa::thompson::WhichCaptures;
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
}

impl Scratch {
    /// The text changed: candidates found for the old one no longer hold.
    pub fn forget(&mut self) {
        self.all_ready = false;
    }
}

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
    /// `MatchKind::All`, all fast patterns, no groups.
    fast_all: Option<Automaton>,
    /// `MatchKind::All`, the screens of the fallback patterns.
    screens: Option<Automaton>,
    /// Every fast pattern and every fallback screen: a text it rejects matches nothing.
    any: Option<meta::Regex>,
    /// Literals of which every match of every fast pattern and fallback screen contains
    /// one (see [`required_literals`]): a text without any of them matches nothing, and a
    /// literal search says so faster than the automaton, which must read the whole text
    /// when a pattern is not anchored. None when a pattern has no such literals.
    required: Option<Prefilter>,
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
        .is_some_and(|h| h.contains(&b'\n'))
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
            entries.push(Entry {
                translation: tr,
                exec,
                pcre,
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
        let fast_all = automaton(&fast_hirs, &fast_entries, MatchKind::All, false)?;
        let screens = automaton(&screen_hirs, &screen_entries, MatchKind::All, false)?;
        let any = {
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
            fast_all,
            screens,
            any,
            required,
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
            fast_all: self
                .fast_all
                .as_ref()
                .map(|a| (a.re.create_cache(), PatternSet::new(a.re.pattern_len()))),
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
        }
    }

    /// False when no regex of the list can match `hay` (one automaton pass over the fast
    /// patterns and the fallback screens); true when one may.
    pub fn may_match(&self, scratch: &mut Scratch, hay: &[u8]) -> bool {
        if !self.unscreened.is_empty() {
            return true;
        }
        if let Some(pre) = &self.required
            && pre.find(hay, Span::from(0..hay.len())).is_none()
        {
            return false;
        }
        match (&self.any, scratch.any.as_mut()) {
            (Some(re), Some(cache)) => re
                .search_half_with(cache, &Input::new(hay).earliest(true))
                .is_some(),
            _ => false,
        }
    }

    /// Heap bytes of the compiled automata (fancy-regex does not report its size).
    pub fn memory_usage(&self) -> usize {
        let autos = [&self.combined, &self.fast_all, &self.screens]
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
        }
        let inner_newline = inner_newline(hay);
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
        let (Some(all), Some((cache, set))) = (&self.fast_all, scratch.fast_all.as_mut()) else {
            return;
        };
        set.clear();
        all.re
            .which_overlapping_matches_with(cache, &Input::new(hay), set);
        scratch
            .candidates
            .extend(set.iter().map(|p| all.entry_of[p.as_usize()]));
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
        let re = self.entries[index].pcre.as_ref()?;
        let locs = scratch.locs.get_mut(index)?.as_mut()?;
        match re.captures_read_at(locs, hay, start) {
            Ok(Some(_)) => Some(Ok(Some(Hit {
                index,
                groups: (0..locs.len()).map(|g| locs.get(g)).collect(),
            }))),
            Ok(None) => Some(Ok(None)),
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
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
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
        let seq = Extractor::new().kind(kind).extract(hir);
        if let Some(lits) = seq.literals() {
            consider(lits.iter().map(|l| l.as_bytes().to_vec()).collect());
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
        }
    }

    pub fn memory_usage(&self) -> usize {
        self.re.memory_usage() + self.groups.memory_usage()
    }

    /// Groups of the part before the content, for a text [`ContentFinder::find`] placed.
    /// Group indices are those of the whole prefregex.
    pub fn groups(
        &self,
        cache: &mut ContentCache,
        hay: &[u8],
        content_start: usize,
    ) -> Option<Hit> {
        // The search sees the text before the content and, for assertions at its end, one
        // byte more.
        let seen = if self.peeks {
            content_start + 1
        } else {
            content_start
        };
        let key = &hay[..seen.min(hay.len())];
        if let Some((_, _, hit)) = cache
            .recent
            .iter()
            .find(|(at, k, _)| *at == content_start && k.as_slice() == key)
        {
            return hit.clone();
        }
        let via_pcre = match (&self.groups_pcre, cache.locs.as_mut()) {
            (Some(re), Some(locs)) => match re.captures_read_at(locs, &hay[..content_start], 0) {
                Ok(found) => Some(found.map(|_| Hit {
                    index: 0,
                    groups: (0..locs.len()).map(|g| locs.get(g)).collect(),
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
        let entry = (content_start, key.to_vec(), hit.clone());
        if cache.recent.len() < PREFIX_MEMO {
            cache.recent.push(entry);
        } else {
            cache.recent[cache.next] = entry;
            cache.next = (cache.next + 1) % PREFIX_MEMO;
        }
        hit
    }

    /// `hay` must be one line followed by `\n`, with no other newline.
    pub fn find(&self, cache: &mut ContentCache, hay: &[u8]) -> ContentStart {
        let Some(last) = hay.len().checked_sub(1) else {
            return ContentStart::Unknown;
        };
        if hay[last] != b'\n' || hay[..last].contains(&b'\n') {
            return ContentStart::Unknown;
        }
        // Only the end of the match is needed: no reverse scan for its start.
        match self.re.search_half_with(&mut cache.find, &Input::new(hay)) {
            None => ContentStart::NoMatch,
            Some(m) if m.offset() + self.min as usize <= last => ContentStart::At(m.offset()),
            Some(_) => ContentStart::Unknown,
        }
    }
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
