//! Splitting a byte stream into lines: `\n` ends a line, one `\r` before it is dropped, an
//! unterminated tail is held until more bytes arrive, and no line grows past a cap.
//!
//! The splitter is fed chunks as they are read and never looks at a file itself, so the
//! reader decides where bytes come from and what a position means.

/// The longest line kept by default; the rest of a longer line is dropped and counted.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;

/// Incremental line splitter with a held-back partial line.
#[derive(Debug, Clone)]
pub(crate) struct Splitter {
    /// Bytes of the unterminated line so far, at most `max_line`.
    partial: Vec<u8>,
    /// Bytes of the unterminated line beyond `max_line`, already dropped.
    dropped: u64,
    max_line: usize,
    /// The bytes up to the next `\n` are the rest of a line whose start was not read.
    skipping: bool,
}

/// One complete line handed out by [`Splitter::feed`].
#[derive(Debug)]
pub(crate) struct RawLine<'a> {
    /// The line without its `\n` (and without a `\r` before it), at most `max_line` bytes.
    pub bytes: &'a [u8],
    /// Bytes dropped from this line because it was longer than the cap.
    pub dropped: u64,
    /// Offset just after the line's `\n`, relative to the start of the chunk being fed.
    pub end: usize,
}

impl Splitter {
    pub fn new(max_line: usize) -> Self {
        Splitter {
            partial: Vec::new(),
            dropped: 0,
            max_line: max_line.max(1),
            skipping: false,
        }
    }

    /// Drops everything up to and including the next `\n` instead of handing it out.
    pub fn skip_to_next_line(&mut self) {
        self.skipping = true;
    }

    /// Bytes consumed since the last complete line (held or dropped).
    pub fn pending_len(&self) -> u64 {
        self.partial.len() as u64 + self.dropped
    }

    /// The held bytes of the unterminated line.
    pub fn partial(&self) -> &[u8] {
        &self.partial
    }

    pub fn clear(&mut self) {
        self.partial.clear();
        self.dropped = 0;
        self.skipping = false;
    }

    /// Splits `chunk`, calling `emit` for each complete line; `emit` returns whether it wants
    /// more. Returns how many bytes of `chunk` were consumed: all of it, or up to the end of
    /// the line after which `emit` asked to stop.
    pub fn feed(&mut self, chunk: &[u8], mut emit: impl FnMut(RawLine<'_>) -> bool) -> usize {
        let mut start = 0;
        while start < chunk.len() {
            let Some(nl) = memchr::memchr(b'\n', &chunk[start..]) else {
                self.hold(&chunk[start..]);
                return chunk.len();
            };
            let end = start + nl + 1;
            if self.skipping {
                self.skipping = false;
                self.partial.clear();
                self.dropped = 0;
                start = end;
                continue;
            }
            let raw = &chunk[start..start + nl];
            let piece = raw.strip_suffix(b"\r").unwrap_or(raw);
            let more = if self.partial.is_empty() && self.dropped == 0 {
                let (bytes, dropped) = self.cap(piece);
                emit(RawLine {
                    bytes,
                    dropped,
                    end,
                })
            } else {
                self.hold(piece);
                let mut line = std::mem::take(&mut self.partial);
                let dropped = std::mem::take(&mut self.dropped);
                if raw.is_empty() {
                    // The `\r` arrived with an earlier chunk.
                    strip_cr(&mut line, dropped);
                }
                let more = emit(RawLine {
                    bytes: &line,
                    dropped,
                    end,
                });
                // Keep the allocation for the next partial line.
                line.clear();
                self.partial = line;
                more
            };
            start = end;
            if !more {
                return start;
            }
        }
        chunk.len()
    }

    /// Takes the unterminated line out, for when its file will not grow any more.
    pub fn take_partial(&mut self) -> Option<(Vec<u8>, u64)> {
        if self.skipping {
            self.clear();
            return None;
        }
        if self.partial.is_empty() && self.dropped == 0 {
            return None;
        }
        let mut line = std::mem::take(&mut self.partial);
        let dropped = std::mem::take(&mut self.dropped);
        strip_cr(&mut line, dropped);
        Some((line, dropped))
    }

    fn hold(&mut self, bytes: &[u8]) {
        let room = self.max_line.saturating_sub(self.partial.len());
        let keep = room.min(bytes.len());
        self.partial.extend_from_slice(&bytes[..keep]);
        self.dropped += (bytes.len() - keep) as u64;
    }

    fn cap<'a>(&self, piece: &'a [u8]) -> (&'a [u8], u64) {
        if piece.len() > self.max_line {
            (
                &piece[..self.max_line],
                (piece.len() - self.max_line) as u64,
            )
        } else {
            (piece, 0)
        }
    }
}

/// Drops a trailing `\r`, unless the line was cut (then its real end was dropped anyway).
fn strip_cr(line: &mut Vec<u8>, dropped: u64) {
    if dropped == 0 && line.last() == Some(&b'\r') {
        line.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(s: &mut Splitter, chunk: &[u8]) -> (Vec<(String, u64, usize)>, usize) {
        let mut out = Vec::new();
        let used = s.feed(chunk, |l| {
            out.push((
                String::from_utf8_lossy(l.bytes).into_owned(),
                l.dropped,
                l.end,
            ));
            true
        });
        (out, used)
    }

    #[test]
    fn splits_on_newline_and_strips_one_cr() {
        let mut s = Splitter::new(100);
        let (lines, used) = split_all(&mut s, b"a\nb\r\nc\r\r\n\nd");
        assert_eq!(used, 11);
        let texts: Vec<_> = lines.iter().map(|l| l.0.as_str()).collect();
        assert_eq!(texts, ["a", "b", "c\r", ""]);
        assert_eq!(lines.iter().map(|l| l.2).collect::<Vec<_>>(), [2, 5, 9, 10]);
        assert_eq!(s.partial(), b"d");
        assert_eq!(s.pending_len(), 1);
    }

    #[test]
    fn partial_line_is_completed_by_later_chunks() {
        let mut s = Splitter::new(100);
        assert!(split_all(&mut s, b"hel").0.is_empty());
        assert!(split_all(&mut s, b"lo wor").0.is_empty());
        assert_eq!(s.pending_len(), 9);
        let (lines, _) = split_all(&mut s, b"ld\r\nnext");
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].0, "hello world");
        assert_eq!(lines[0].2, 4, "end is relative to the last chunk");
        assert_eq!(s.partial(), b"next");
    }

    #[test]
    fn a_cr_split_from_its_newline_is_still_stripped() {
        let mut s = Splitter::new(100);
        split_all(&mut s, b"abc\r");
        let (lines, _) = split_all(&mut s, b"\n");
        assert_eq!(lines[0].0, "abc");
    }

    #[test]
    fn long_lines_are_capped_and_counted() {
        let mut s = Splitter::new(4);
        let (lines, _) = split_all(&mut s, b"abcdefgh\nxy\n");
        assert_eq!(lines[0], ("abcd".to_string(), 4, 9));
        assert_eq!(lines[1], ("xy".to_string(), 0, 12));

        // Across chunks: the cap applies to the whole line.
        let (lines, _) = split_all(&mut s, b"abc");
        assert!(lines.is_empty());
        let (lines, _) = split_all(&mut s, b"defg");
        assert!(lines.is_empty());
        assert_eq!(s.pending_len(), 7, "dropped bytes still count as consumed");
        let (lines, _) = split_all(&mut s, b"hi\n");
        assert_eq!(lines[0], ("abcd".to_string(), 5, 3));
        assert_eq!(s.pending_len(), 0);
    }

    #[test]
    fn stops_where_the_consumer_asks() {
        let mut s = Splitter::new(100);
        let mut seen = Vec::new();
        let used = s.feed(b"one\ntwo\nthree\n", |l| {
            seen.push(l.bytes.to_vec());
            seen.len() < 2
        });
        assert_eq!(used, 8);
        assert_eq!(seen, [b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(s.pending_len(), 0);
        // Stopping after a line that completed a partial keeps nothing held.
        let mut s = Splitter::new(100);
        s.feed(b"par", |_| true);
        let used = s.feed(b"t\nrest\n", |_| false);
        assert_eq!(used, 2);
        assert_eq!(s.pending_len(), 0);
    }

    #[test]
    fn take_partial_returns_the_held_line_once() {
        let mut s = Splitter::new(3);
        s.feed(b"abcdef", |_| true);
        assert_eq!(s.take_partial(), Some((b"abc".to_vec(), 3)));
        assert_eq!(s.take_partial(), None);
        s.feed(b"x\r", |_| true);
        assert_eq!(s.take_partial(), Some((b"x".to_vec(), 0)));
    }
}
