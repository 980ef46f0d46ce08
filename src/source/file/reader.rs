//! One open log file: reads complete lines from a byte offset on, holding back an
//! unfinished last line, with the offset after the last line handed out as its position.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::identity::{FileKey, Head, read_at_retry, read_head, stamp};
use super::lines::Splitter;
use super::{Encoding, Line, RotatedPosition, TailStats};

/// Where to start reading a newly opened file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    Offset(u64),
    /// After the last complete line (the `tail` of a `logpath`).
    End,
}

/// Collects the lines of one poll, up to its limits.
#[derive(Debug)]
pub(crate) struct Sink {
    pub lines: Vec<Line>,
    bytes: usize,
    max_lines: usize,
    max_bytes: usize,
    pub capped_lines: u64,
    pub capped_bytes: u64,
}

impl Sink {
    pub fn new(max_lines: usize, max_bytes: usize) -> Self {
        Sink {
            lines: Vec::new(),
            bytes: 0,
            max_lines: max_lines.max(1),
            max_bytes: max_bytes.max(1),
            capped_lines: 0,
            capped_bytes: 0,
        }
    }

    pub fn full(&self) -> bool {
        self.lines.len() >= self.max_lines || self.bytes >= self.max_bytes
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Takes back lines pushed since `len` (they turned out to come from a file that was
    /// truncated while it was read).
    pub fn truncate(&mut self, len: usize) {
        for l in self.lines.drain(len..) {
            self.bytes -= l.text.len();
        }
    }

    pub fn push(&mut self, line: Line, dropped: u64) -> bool {
        if dropped > 0 {
            self.capped_lines += 1;
            self.capped_bytes += dropped;
        }
        self.bytes += line.text.len();
        self.lines.push(line);
        !self.full()
    }

    pub fn add_stats(&self, stats: &mut TailStats) {
        stats.lines += self.lines.len() as u64;
        stats.bytes += self.bytes as u64;
        stats.capped_lines += self.capped_lines;
        stats.capped_bytes += self.capped_bytes;
    }
}

/// A file being read.
#[derive(Debug)]
pub(crate) struct Reader {
    pub file: File,
    pub key: FileKey,
    /// Checksum of the first line, once it is complete.
    pub hash: Option<String>,
    /// After the last complete line handed out.
    pub offset: u64,
    /// Where the next read starts (`offset` plus the bytes of the held partial line).
    pub pos: u64,
    pub splitter: Splitter,
    /// Size at the last look.
    pub size_seen: u64,
    /// When the file last gave new bytes (or was opened).
    pub last_growth: Instant,
    /// The last read reached the end of the file.
    pub at_eof: bool,
    /// Bytes were read since the file was queued (its place in the queue is settled).
    pub started: bool,
    /// Modification and change times at the last look. While nothing has been read from
    /// the file, a change may be lines written, copied away and truncated before the look:
    /// then only the copy holds them.
    pub stamp: (i128, i128),
    /// Where the file was found, for messages.
    pub found_at: PathBuf,
    max_line: usize,
}

impl Reader {
    pub fn open(path: &Path, start: Start, max_line: usize, now: Instant) -> io::Result<Reader> {
        Reader::with_file(File::open(path)?, path, start, max_line, now)
    }

    /// A reader for a file already open (found at `path`).
    pub fn with_file(
        file: File,
        path: &Path,
        start: Start,
        max_line: usize,
        now: Instant,
    ) -> io::Result<Reader> {
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        let size = meta.len();
        let head = read_head(&file, max_line)?;
        let mut splitter = Splitter::new(max_line);
        let offset = match start {
            Start::Offset(o) => o.min(size),
            Start::End => {
                let (offset, mid_line) = end_of_last_line(&file, size, max_line)?;
                if mid_line {
                    splitter.skip_to_next_line();
                }
                offset
            }
        };
        let pos = offset;
        Ok(Reader {
            file,
            key: FileKey::of(&meta),
            hash: head.hash(),
            offset,
            pos,
            splitter,
            size_seen: size,
            last_growth: now,
            at_eof: false,
            started: false,
            stamp: stamp(&meta),
            found_at: path.to_path_buf(),
            max_line,
        })
    }

    /// Reads up to the end of the file or until the sink is full. Returns whether the end
    /// was reached.
    pub fn read(
        &mut self,
        sink: &mut Sink,
        origin: &Arc<Path>,
        encoding: Encoding,
        scratch: &mut [u8],
        now: Instant,
    ) -> io::Result<bool> {
        loop {
            if sink.full() {
                return Ok(false);
            }
            let n = read_at_retry(&self.file, scratch, self.pos)?;
            if n == 0 {
                return Ok(true);
            }
            self.last_growth = now;
            self.started = true;
            let base = self.pos;
            let used = self.splitter.feed(&scratch[..n], |raw| {
                let line = Line {
                    path: origin.clone(),
                    offset: base + raw.end as u64,
                    text: encoding.decode(raw.bytes),
                };
                sink.push(line, raw.dropped)
            });
            self.pos += used as u64;
            self.offset = self.pos - self.splitter.pending_len();
            if self.pos > self.size_seen {
                self.size_seen = self.pos;
            }
        }
    }

    /// Hands out the held unfinished line as a line: its file will not grow any more.
    pub fn flush_partial(&mut self, sink: &mut Sink, origin: &Arc<Path>, encoding: Encoding) {
        if let Some((bytes, dropped)) = self.splitter.take_partial() {
            sink.push(
                Line {
                    path: origin.clone(),
                    offset: self.pos,
                    text: encoding.decode(&bytes),
                },
                dropped,
            );
        }
        self.offset = self.pos;
    }

    /// Starts over at the beginning (the file was truncated).
    pub fn reset(&mut self, now: Instant) {
        self.offset = 0;
        self.pos = 0;
        self.splitter.clear();
        self.hash = None;
        self.size_seen = 0;
        self.last_growth = now;
        self.at_eof = false;
    }

    pub fn head(&self) -> io::Result<Head> {
        read_head(&self.file, self.max_line)
    }

    pub fn identity(&self) -> RotatedPosition {
        RotatedPosition {
            dev: self.key.dev,
            inode: self.key.ino,
            first_line_hash: self.hash.clone(),
            offset: self.offset,
        }
    }
}

/// The offset just after the last `\n` of the file, looking back at most `window` bytes,
/// and whether the file ends in the middle of a line that started before the window.
fn end_of_last_line(file: &File, size: u64, window: usize) -> io::Result<(u64, bool)> {
    if size == 0 {
        return Ok((0, false));
    }
    let from = size.saturating_sub(window as u64);
    let mut buf = vec![0u8; (size - from) as usize];
    let mut got = 0;
    while got < buf.len() {
        let n = read_at_retry(file, &mut buf[got..], from + got as u64)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    buf.truncate(got);
    match memchr::memrchr(b'\n', &buf) {
        Some(i) => Ok((from + i as u64 + 1, false)),
        None if from == 0 => Ok((0, false)),
        None => Ok((size, true)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn origin() -> Arc<Path> {
        Arc::from(Path::new("/log"))
    }

    fn read_all(r: &mut Reader) -> Vec<(String, u64)> {
        let mut sink = Sink::new(1000, 1 << 20);
        let mut scratch = vec![0u8; 7];
        r.read(
            &mut sink,
            &origin(),
            Encoding::Utf8,
            &mut scratch,
            Instant::now(),
        )
        .unwrap();
        sink.lines.into_iter().map(|l| (l.text, l.offset)).collect()
    }

    #[test]
    fn reads_lines_with_offsets_and_holds_the_partial_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        let mut f = File::create(&p).unwrap();
        f.write_all(b"first line\nsecond\r\nthi").unwrap();
        let mut r = Reader::open(&p, Start::Offset(0), 1024, Instant::now()).unwrap();
        assert_eq!(
            read_all(&mut r),
            [("first line".to_string(), 11), ("second".to_string(), 19)]
        );
        assert_eq!((r.offset, r.pos), (19, 22));
        assert!(r.hash.is_some());
        f.write_all(b"rd\n").unwrap();
        assert_eq!(read_all(&mut r), [("third".to_string(), 25)]);
        assert_eq!((r.offset, r.pos), (25, 25));
    }

    #[test]
    fn resumes_at_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        std::fs::write(&p, b"a\nb\nc\n").unwrap();
        let mut r = Reader::open(&p, Start::Offset(2), 1024, Instant::now()).unwrap();
        assert_eq!(
            read_all(&mut r),
            [("b".to_string(), 4), ("c".to_string(), 6)]
        );
    }

    #[test]
    fn tail_start_skips_existing_lines_and_a_cut_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        std::fs::write(&p, b"old\nolder\npart").unwrap();
        let mut r = Reader::open(&p, Start::End, 1024, Instant::now()).unwrap();
        assert_eq!(r.offset, 10, "after the last complete line");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"ial\nnew\n")
            .unwrap();
        assert_eq!(
            read_all(&mut r),
            [("partial".to_string(), 18), ("new".to_string(), 22)],
            "a line being written at start is complete when it is read"
        );

        // No newline within the window: start at the end and drop the rest of that line.
        std::fs::write(&p, b"xxxxxxxxxxxxxxxxxxxx").unwrap();
        let mut r = Reader::open(&p, Start::End, 8, Instant::now()).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"yy\nnext\n")
            .unwrap();
        assert_eq!(read_all(&mut r), [("next".to_string(), 28)]);
    }

    #[test]
    fn sink_limits_stop_reading_between_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        std::fs::write(&p, b"1\n2\n3\n4\n").unwrap();
        let mut r = Reader::open(&p, Start::Offset(0), 1024, Instant::now()).unwrap();
        let mut sink = Sink::new(3, 1 << 20);
        let mut scratch = vec![0u8; 64];
        let eof = r
            .read(
                &mut sink,
                &origin(),
                Encoding::Utf8,
                &mut scratch,
                Instant::now(),
            )
            .unwrap();
        assert!(!eof);
        assert_eq!(sink.lines.len(), 3);
        assert_eq!((r.offset, r.pos), (6, 6));
        let mut sink = Sink::new(3, 1 << 20);
        assert!(
            r.read(
                &mut sink,
                &origin(),
                Encoding::Utf8,
                &mut scratch,
                Instant::now()
            )
            .unwrap()
        );
        assert_eq!(sink.lines[0].text, "4");
        sink.truncate(0);
        assert!(sink.lines.is_empty() && !sink.full());
    }

    #[test]
    fn flush_partial_emits_the_held_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        std::fs::write(&p, b"a\ntail-without-newline").unwrap();
        let mut r = Reader::open(&p, Start::Offset(0), 1024, Instant::now()).unwrap();
        read_all(&mut r);
        let mut sink = Sink::new(10, 1000);
        r.flush_partial(&mut sink, &origin(), Encoding::Utf8);
        assert_eq!(sink.lines[0].text, "tail-without-newline");
        assert_eq!(sink.lines[0].offset, 22);
        assert_eq!(r.offset, 22);
    }
}
