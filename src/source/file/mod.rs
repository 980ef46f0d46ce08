//! Following log files: glob expansion at run time, complete lines with their origin and
//! position, rename-and-create and copytruncate rotation, resume from saved positions.
//!
//! The core ([`FileTailer`]) is synchronous: each [`FileTailer::poll`] reads what is new
//! and returns a bounded [`Batch`]. [`FileSource`] runs it on tokio's blocking pool, woken by
//! `notify` events on the log directories with a polling timer as the fallback.
//! `docs/sources.md` describes the behaviour in full.

mod encoding;
mod identity;
mod lines;
mod pattern;
mod position;
mod reader;
mod rotated;
mod tailer;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use encoding::{Encoding, UnknownEncoding};
pub use lines::DEFAULT_MAX_LINE;
pub use pattern::LogPattern;
pub use position::{FilePosition, RotatedPosition};
pub use tailer::FileTailer;
pub use watch::{FileSource, WakeFilter, WatchOptions};

/// A complete line read from a log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The configured path the line belongs to (also for lines read from a rotated
    /// generation of it).
    pub path: Arc<Path>,
    /// Byte offset just after the line's `\n` in the file it was read from.
    pub offset: u64,
    /// The line without its line ending, decoded, at most `max_line_bytes` long.
    pub text: String,
}

/// Something worth telling about a followed path. Each is also logged where it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A file at the path is followed from `offset`.
    Opened { path: PathBuf, offset: u64 },
    /// The path names a new file (rename-and-create rotation); the old one is read to its
    /// end first.
    Rotated { path: PathBuf },
    /// The file at the path shrank or its first line changed (copytruncate); it is read
    /// again from its start.
    Truncated { path: PathBuf },
    /// The unread part of an older generation of the path is read from `file`.
    Recovering {
        path: PathBuf,
        file: PathBuf,
        offset: u64,
    },
    /// An older generation whose end had not been read could not be found (removed or
    /// compressed while warden was not running).
    Lost { path: PathBuf },
    /// The path does not exist. Reported once until it exists again.
    Missing { path: PathBuf },
    /// The path could not be read. Reported once until it can be read again.
    Error { path: PathBuf, error: String },
}

/// The result of one poll.
#[derive(Debug, Default)]
pub struct Batch {
    /// New complete lines, in file order per path.
    pub lines: Vec<Line>,
    pub notices: Vec<Notice>,
    /// Positions that changed, after the lines of this batch.
    pub positions: Vec<FilePosition>,
    /// Paths no longer followed (their glob no longer matches and nothing is left to read).
    pub forgotten: Vec<PathBuf>,
    /// More is ready: poll again without waiting.
    pub more: bool,
}

impl Batch {
    /// Nothing to hand on.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
            && self.notices.is_empty()
            && self.positions.is_empty()
            && self.forgotten.is_empty()
    }
}

/// Running totals of a tailer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TailStats {
    pub lines: u64,
    pub bytes: u64,
    /// Lines cut at `max_line_bytes`.
    pub capped_lines: u64,
    /// Bytes dropped from those lines.
    pub capped_bytes: u64,
    pub rotations: u64,
    pub truncations: u64,
    /// Older generations whose rest was read after a rotation or a restart.
    pub recovered_files: u64,
    pub lost_files: u64,
}

/// Limits and timings of a tailer.
#[derive(Debug, Clone)]
pub struct TailOptions {
    pub encoding: Encoding,
    /// Longest line kept; the excess is dropped and counted.
    pub max_line_bytes: usize,
    /// Most lines one poll returns.
    pub max_batch_lines: usize,
    /// Most line bytes one poll returns (roughly: the line that crosses it is kept).
    pub max_batch_bytes: usize,
    /// How long a file rotated away is still read after it stopped growing, for writers
    /// that keep writing to the old file until they reopen their log.
    pub linger: Duration,
    /// How often glob patterns are expanded again (and on directory events).
    pub rescan_interval: Duration,
    /// Most rotated-away files kept open per path once they are read to their end.
    pub max_rotated: usize,
}

impl Default for TailOptions {
    fn default() -> Self {
        TailOptions {
            encoding: Encoding::Utf8,
            max_line_bytes: DEFAULT_MAX_LINE,
            max_batch_lines: 4096,
            max_batch_bytes: 4 << 20,
            linger: Duration::from_secs(10),
            rescan_interval: Duration::from_secs(1),
            max_rotated: 8,
        }
    }
}

/// Errors building a file source from configuration.
#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    #[error("empty logpath entry")]
    EmptyLogpath,
    #[error("bad logpath pattern {pattern:?}: {reason}")]
    BadPattern { pattern: String, reason: String },
    #[error(transparent)]
    Encoding(#[from] UnknownEncoding),
}
