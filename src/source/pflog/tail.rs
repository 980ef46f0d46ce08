//! Following the pcap file pflogd keeps appending to (`/var/log/pflog`).
//!
//! pflogd buffers packets and writes whole buffers, so the last record of the file can be
//! torn at any moment: it is left unconsumed until the rest arrives. Rotation is
//! rename-and-reopen: newsyslog renames the file and signals pflogd, which flushes into the
//! renamed file, closes it and creates a new one with a fresh pcap header. A different
//! device/inode at the path is therefore the sign that the old file is complete: it is read
//! to its end, then the new one is read from its start. A file that shrank in place was
//! truncated (copytruncate) and is read again from the start.
//!
//! The API is synchronous: the daemon calls [`PflogTail::poll`] when a file notification
//! or a timer wakes it, and stores [`PflogTail::position`] to resume after a restart.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::error::{ErrorKind, Location, PflogError};
use super::event::PflogEvent;
use super::reader::{Item, StreamDecoder};

/// Records returned by one poll at most, unless configured otherwise, so a large backlog
/// is handed over in bounded batches.
pub const DEFAULT_BATCH: usize = 4096;

/// A place in a pflog file that survives restarts: the file's identity and the offset just
/// after the last record handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PflogPosition {
    pub dev: u64,
    pub ino: u64,
    pub offset: u64,
}

/// Where to begin in the file found at the path when the tail starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// Every record in the file.
    Beginning,
    /// Only records that start after the file's size at opening.
    End,
    /// After a saved position, if the file is still the one it names and is not shorter;
    /// from the beginning otherwise (the file was rotated or truncated meanwhile).
    Resume(PflogPosition),
}

/// The result of one poll.
#[derive(Debug, Default)]
pub struct Polled {
    /// Records in file order; an `Err` is a record or file that could not be read (with
    /// its location). The tail carries on after every error: a file whose framing is lost
    /// is abandoned until it is rotated away.
    pub items: Vec<Result<PflogEvent, PflogError>>,
    /// True when the batch limit stopped the poll before the end of the available data:
    /// poll again without waiting for a wake-up.
    pub more: bool,
}

struct Current {
    file: File,
    dev: u64,
    ino: u64,
    dec: StreamDecoder,
    /// Records starting before this offset are passed over (resume, start at end).
    skip_until: u64,
}

/// A following reader of one pflog pcap file path.
pub struct PflogTail {
    path: PathBuf,
    source: Arc<str>,
    /// How to start in the first file opened; later files (after rotation) are read whole.
    start: Option<StartAt>,
    current: Option<Current>,
    batch: usize,
}

enum Drained {
    /// The batch limit was reached.
    Full,
    /// Everything the file holds now was consumed (a torn last record may remain).
    Eof,
}

impl PflogTail {
    /// Follows `path`. Nothing is opened yet: a missing file is waited for.
    pub fn new(path: impl Into<PathBuf>, start: StartAt) -> PflogTail {
        let path = path.into();
        PflogTail {
            source: path.display().to_string().into(),
            path,
            start: Some(start),
            current: None,
            batch: DEFAULT_BATCH,
        }
    }

    /// Sets the most records one poll returns (at least 1).
    pub fn with_batch_limit(mut self, batch: usize) -> PflogTail {
        self.batch = batch.max(1);
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The position after the last record returned, None before a file was opened.
    pub fn position(&self) -> Option<PflogPosition> {
        self.current.as_ref().map(|c| PflogPosition {
            dev: c.dev,
            ino: c.ino,
            offset: c.dec.offset().max(c.skip_until),
        })
    }

    /// Reads what was appended since the last poll, following rotation.
    pub fn poll(&mut self) -> Polled {
        let mut out = Polled::default();
        // Bounded: each turn either returns or replaces the current file, and a file is
        // only replaced when the path shows a different one.
        for _ in 0..4 {
            if self.current.is_none() {
                match self.open() {
                    Ok(Some(c)) => self.current = Some(c),
                    Ok(None) => return out,
                    Err(e) => {
                        out.items.push(Err(e));
                        return out;
                    }
                }
            }
            let Some(cur) = self.current.as_mut() else {
                return out;
            };
            if let Drained::Full = drain(cur, &mut out.items, self.batch) {
                out.more = true;
                return out;
            }
            match std::fs::metadata(&self.path) {
                Ok(m) if (m.dev(), m.ino()) != (cur.dev, cur.ino) => {
                    // The old file is complete once a new one exists; bytes flushed into it
                    // between the drain above and the check are read now.
                    if let Drained::Full = drain(cur, &mut out.items, self.batch) {
                        out.more = true;
                        return out;
                    }
                    if cur.dec.pending() > 0 && !cur.dec.failed() {
                        let kind = ErrorKind::Abandoned {
                            have: cur.dec.pending(),
                        };
                        let record = Some(cur.dec.records());
                        out.items.push(Err(cur.dec.error(kind, record, false)));
                    }
                    tracing::debug!(
                        path = %self.path.display(),
                        old_inode = cur.ino,
                        new_inode = m.ino(),
                        "Pflog file rotated, reading the new file."
                    );
                    self.current = None;
                    self.start = Some(StartAt::Beginning);
                }
                Ok(m) if m.len() < cur.dec.read_offset() => {
                    tracing::debug!(
                        path = %self.path.display(),
                        size = m.len(),
                        "Pflog file shrank, reading it again from the start."
                    );
                    self.current = None;
                    self.start = Some(StartAt::Beginning);
                }
                Ok(_) => return out,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return out,
                Err(e) => {
                    out.items.push(Err(self.io_error(e)));
                    return out;
                }
            }
        }
        out.more = true;
        out
    }

    fn io_error(&self, e: io::Error) -> PflogError {
        PflogError {
            location: Location {
                source: self.source.clone(),
                record: None,
                offset: None,
            },
            kind: ErrorKind::Io(e),
            fatal: false,
        }
    }

    fn open(&mut self) -> Result<Option<Current>, PflogError> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io_error(e)),
        };
        let meta = file.metadata().map_err(|e| self.io_error(e))?;
        let (dev, ino, len) = (meta.dev(), meta.ino(), meta.len());
        let skip_until = match self.start.take().unwrap_or(StartAt::Beginning) {
            StartAt::Beginning => 0,
            StartAt::End => len,
            StartAt::Resume(p) if (p.dev, p.ino) == (dev, ino) && p.offset <= len => p.offset,
            StartAt::Resume(p) => {
                tracing::info!(
                    path = %self.path.display(),
                    saved_inode = p.ino,
                    inode = ino,
                    "Saved pflog position belongs to another file, reading this one whole."
                );
                0
            }
        };
        Ok(Some(Current {
            file,
            dev,
            ino,
            dec: StreamDecoder::new(self.source.clone()),
            skip_until,
        }))
    }
}

fn drain(
    cur: &mut Current,
    items: &mut Vec<Result<PflogEvent, PflogError>>,
    batch: usize,
) -> Drained {
    loop {
        if items.len() >= batch {
            return Drained::Full;
        }
        if cur.dec.failed() {
            return Drained::Eof;
        }
        let decode = cur.dec.offset() >= cur.skip_until;
        match cur.dec.next_item(decode) {
            Item::Event(ev) => items.push(Ok(ev)),
            Item::Skipped => {}
            Item::Error(e) => items.push(Err(e)),
            Item::NeedMore { need, .. } => match cur.dec.fill(&mut cur.file, need) {
                Ok(0) => return Drained::Eof,
                Ok(_) => {}
                Err(e) => {
                    let err = cur.dec.error(ErrorKind::Io(e), None, false);
                    items.push(Err(err));
                    return Drained::Eof;
                }
            },
        }
    }
}
