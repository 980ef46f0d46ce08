//! Filters: tag expansion, regex translation from Python's dialect, the matching engines,
//! and the per-line pipeline (prefregex, failregexes, ignoreregexes, multi-line buffer,
//! session merging). Dates are cut out of lines before they get here.
//!
//! - `tags`: fail2ban's `<HOST>`, `<F-USER>`, ... shorthands.
//! - `pyre`: a parser for Python's `re` dialect.
//! - `translate`: which engine runs a pattern, and the pattern written for it.
//! - `rewrite`: conditionals and tempered dots rewritten for the fast engine.
//! - `engine`: compiled regex lists with Python's "first in list order wins".
//! - `addr`: failure ids to addresses as fail2ban reads them.
//! - `pipeline`: [`Filter`], [`FilterState`] and what a line produces.
//! - `processor`: date detection and the pipeline together, per source.
//!
//! # Differences from fail2ban
//!
//! The stock filters and their sample logs give the same matches, groups and failures as
//! fail2ban 1.0.2 (see `tests/filter_compat.rs`). Known differences, all deliberate:
//!
//! - `\d`, `\w`, `\s`, `\b` and case-insensitivity are ASCII unless a filter sets
//!   `unicode = true` (Python's are Unicode; Unicode classes make the fast engine several
//!   times larger). Matching runs on bytes, so a byte-wide class (`[^"]`, `.`) that stops
//!   inside a multi-byte character yields a group with a replacement character.
//! - `(?P<name>...)` also accepts `-` in names (fail2ban's `<F-MY-FIELD>` gives
//!   `my-field`, which Python rejects); lookbehinds need not be fixed-width; `\N{...}` is
//!   not supported.
//! - The daemon's session cache (`F-MLFID`) expires by line time, not wall-clock time
//!   (offline runs choose fail2ban's wall clock: [`SessionClock`]).
//! - Host names are not resolved here: a failure carries `needs_dns` and the jail
//!   resolves it.
//! - A backtracking search that reaches the backtrack limit counts as no match.

pub mod addr;
pub mod engine;
pub mod pipeline;
pub mod processor;
pub mod pyre;
pub mod rewrite;
pub mod tags;
pub mod translate;

pub use engine::MatchStats;
pub use pipeline::{
    DEFAULT_BACKTRACK_LIMIT, EngineInfo, Failure, Filter, FilterError, FilterSpec, FilterState,
    LineParts, LineResult, RegexKind, SessionClock, UseDnsMode,
};
pub use processor::{LineProcessor, Processed, ProcessorError, spec_from_config};
pub use translate::Engine;
