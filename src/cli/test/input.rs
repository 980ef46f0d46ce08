//! The LOG argument of `warden test`: a file read in large blocks, standard input, or
//! literal text; handed out line by line without a copy per line.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Bytes read at a time; a longer line grows the buffer.
const BLOCK: usize = 1 << 20;

/// Where the lines come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogInput {
    File(PathBuf),
    Stdin,
    /// The argument itself: one line, or several separated by newlines.
    Literal(String),
}

impl LogInput {
    /// An existing file, `-` for standard input, otherwise the text itself (as
    /// fail2ban-regex reads its LOG argument).
    pub fn from_arg(arg: &str) -> LogInput {
        let path = Path::new(arg);
        if path.is_file() {
            LogInput::File(path.to_path_buf())
        } else if arg == "-" {
            LogInput::Stdin
        } else {
            LogInput::Literal(arg.to_string())
        }
    }

    /// Size in bytes, when known in advance (for the progress bar).
    pub fn size(&self) -> Option<u64> {
        match self {
            LogInput::File(p) => std::fs::metadata(p).ok().map(|m| m.len()),
            LogInput::Stdin => None,
            LogInput::Literal(s) => Some(s.len() as u64),
        }
    }

    /// Calls `line` with each line's 1-based number and text (line ending removed:
    /// trailing `\r` and `\n`, as fail2ban strips them; invalid UTF-8 replaced) and
    /// `progress` with the bytes consumed after each block.
    pub fn for_each_line(
        &self,
        mut progress: impl FnMut(u64),
        mut line: impl FnMut(u64, &str),
    ) -> io::Result<()> {
        match self {
            LogInput::File(p) => {
                let f = File::open(p)
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
                read_lines(f, &mut progress, &mut line)
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))
            }
            LogInput::Stdin => read_lines(io::stdin().lock(), &mut progress, &mut line),
            LogInput::Literal(s) => read_lines(s.as_bytes(), &mut progress, &mut line),
        }
    }
}

fn emit(n: &mut u64, bytes: &[u8], line: &mut impl FnMut(u64, &str)) {
    let bytes = &bytes[..content_len(bytes)];
    match std::str::from_utf8(bytes) {
        Ok(s) => emit_str(n, s, line),
        Err(_) => {
            *n += 1;
            line(*n, &String::from_utf8_lossy(bytes))
        }
    }
}

/// A line already known to be text.
fn emit_str(n: &mut u64, s: &str, line: &mut impl FnMut(u64, &str)) {
    *n += 1;
    line(*n, &s[..content_len(s.as_bytes())]);
}

/// The length of a line without its trailing `\r` and `\n`.
fn content_len(bytes: &[u8]) -> usize {
    let mut end = bytes.len();
    while end > 0 && matches!(bytes[end - 1], b'\r' | b'\n') {
        end -= 1;
    }
    end
}

/// Splits a reader into lines with one reusable buffer.
fn read_lines(
    mut r: impl Read,
    progress: &mut impl FnMut(u64),
    line: &mut impl FnMut(u64, &str),
) -> io::Result<()> {
    let mut buf = vec![0u8; BLOCK];
    let mut start = 0usize;
    let mut end = 0usize;
    let mut n = 0u64;
    let mut consumed = 0u64;
    loop {
        if start > 0 {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
        }
        if end == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let got = match r.read(&mut buf[end..]) {
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if got == 0 {
            if end > start {
                emit(&mut n, &buf[start..end], line);
            }
            consumed += (end - start) as u64;
            progress(consumed);
            return Ok(());
        }
        end += got;
        let mut from = start;
        // The complete lines of the block are checked as text at once (cheaper than line
        // by line); a block with invalid UTF-8 goes line by line, each replaced on its own.
        let last = memchr::memrchr(b'\n', &buf[start..end]);
        match last.map(|i| std::str::from_utf8(&buf[start..start + i])) {
            Some(Ok(text)) => {
                let mut at = 0;
                for i in memchr::memchr_iter(b'\n', text.as_bytes()) {
                    emit_str(&mut n, &text[at..i], line);
                    at = i + 1;
                }
                emit_str(&mut n, &text[at..], line);
                from = start + text.len() + 1;
            }
            _ => {
                for i in memchr::memchr_iter(b'\n', &buf[start..end]) {
                    let nl = start + i;
                    emit(&mut n, &buf[from..nl], line);
                    from = nl + 1;
                }
            }
        }
        consumed += (from - start) as u64;
        start = from;
        progress(consumed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], block_reader: bool) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        // A reader that hands out 3 bytes at a time exercises lines across reads.
        struct Slow<'a>(&'a [u8]);
        impl Read for Slow<'_> {
            fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(3).min(b.len());
                b[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut f = |n, s: &str| out.push((n, s.to_string()));
        if block_reader {
            read_lines(input, &mut |_| {}, &mut f).unwrap();
        } else {
            read_lines(Slow(input), &mut |_| {}, &mut f).unwrap();
        }
        out
    }

    #[test]
    fn splits_lines_and_strips_endings() {
        for block in [true, false] {
            let got = lines(b"a\r\nbb\n\nccc\r\r\nlast", block);
            let want: Vec<(u64, String)> = [(1, "a"), (2, "bb"), (3, ""), (4, "ccc"), (5, "last")]
                .iter()
                .map(|(n, s)| (*n, s.to_string()))
                .collect();
            assert_eq!(got, want);
        }
        assert!(lines(b"", true).is_empty());
        assert_eq!(lines(b"x\n", true), vec![(1, "x".to_string())]);
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let got = lines(b"ok\nbad \xff byte\n", true);
        assert_eq!(got[1].1, "bad \u{fffd} byte");
    }

    #[test]
    fn a_line_longer_than_the_buffer_grows_it() {
        let long = "y".repeat(BLOCK * 2 + 17);
        let text = format!("a\n{long}\nb\n");
        let got = lines(text.as_bytes(), true);
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].1.len(), long.len());
        assert_eq!(got[2].1, "b");
    }
}
