//! Filters: tag expansion, regex translation from Python's dialect, the matching engines,
//! and the per-line pipeline (prefregex, failregexes, ignoreregexes, multi-line buffer,
//! session merging). Dates are cut out of lines before they get here.
//!
//! - `tags`: fail2ban's `<HOST>`, `<F-USER>`, ... shorthands.
//! - `pyre`: a parser for Python's `re` dialect.
//! - `translate`: which engine runs a pattern, and the pattern written for it.
//! - `engine`: compiled regex lists with Python's "first in list order wins".
//! - `addr`: failure ids to addresses as fail2ban reads them.
//! - `pipeline`: [`Filter`], [`FilterState`] and what a line produces.

pub mod addr;
pub mod engine;
pub mod pipeline;
pub mod pyre;
pub mod tags;
pub mod translate;

pub use engine::MatchStats;
pub use pipeline::{
    DEFAULT_BACKTRACK_LIMIT, EngineInfo, Failure, Filter, FilterError, FilterSpec, FilterState,
    LineParts, LineResult, RegexKind, UseDnsMode,
};
pub use translate::Engine;
