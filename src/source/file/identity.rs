//! What makes a log file the same file over time: its device and inode while it stays on
//! disk, and a checksum of its first line, because inode numbers are reused as soon as a
//! file is deleted.
//!
//! The checksum is SHA-1 over the first line including its line ending, in lowercase hex:
//! exactly what fail2ban stores in the `firstlinemd5` column of its database (the name is
//! historical), so positions can be carried over from it.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};

/// Device and inode of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct FileKey {
    pub dev: u64,
    pub ino: u64,
}

impl FileKey {
    pub fn of(meta: &Metadata) -> Self {
        FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// Modification time in nanoseconds since the epoch (for ordering rotated files).
pub(crate) fn mtime_ns(meta: &Metadata) -> i128 {
    meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128
}

/// Modification and status-change times in nanoseconds: any write, truncation or rename of
/// the file moves at least one of them (within the clock's granularity).
pub(crate) fn stamp(meta: &Metadata) -> (i128, i128) {
    (
        mtime_ns(meta),
        meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
    )
}

/// The start of a file, up to the end of its first line or `cap` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub bytes: Vec<u8>,
    /// The first line is complete: it ends with `\n` or filled the cap.
    pub complete: bool,
}

impl Head {
    /// The identity checksum; None while the first line is still being written.
    pub fn hash(&self) -> Option<String> {
        self.complete.then(|| line_hash(&self.bytes))
    }

    /// Whether one head could be the beginning of the other: the same file seen at two
    /// moments, or a copy of it. An empty head says nothing and is compatible with none.
    pub fn compatible(&self, other: &Head) -> bool {
        let n = self.bytes.len().min(other.bytes.len());
        n > 0 && self.bytes[..n] == other.bytes[..n]
    }
}

/// Reads the head of a file without moving any file cursor.
pub(crate) fn read_head(file: &File, cap: usize) -> io::Result<Head> {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let want = chunk.len().min(cap - bytes.len());
        let n = read_at_retry(file, &mut chunk[..want], bytes.len() as u64)?;
        if n == 0 {
            return Ok(Head {
                bytes,
                complete: false,
            });
        }
        if let Some(i) = memchr::memchr(b'\n', &chunk[..n]) {
            bytes.extend_from_slice(&chunk[..=i]);
            return Ok(Head {
                bytes,
                complete: true,
            });
        }
        bytes.extend_from_slice(&chunk[..n]);
        if bytes.len() >= cap {
            return Ok(Head {
                bytes,
                complete: true,
            });
        }
    }
}

/// SHA-1 of the bytes in lowercase hex.
pub(crate) fn line_hash(bytes: &[u8]) -> String {
    sha1_smol::Sha1::from(bytes).hexdigest()
}

/// `read_at` that retries on EINTR.
pub(crate) fn read_at_retry(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    loop {
        match file.read_at(buf, offset) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn hash_matches_fail2ban_sha1_of_the_first_line() {
        // sha1(b"Jan  1 00:00:00 host sshd[1]: x\n"), computed independently with Python's
        // hashlib, the function fail2ban uses.
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"Jan  1 00:00:00 host sshd[1]: x\nsecond\n")
            .unwrap();
        let head = read_head(&f, 1024).unwrap();
        assert!(head.complete);
        assert_eq!(head.bytes, b"Jan  1 00:00:00 host sshd[1]: x\n");
        assert_eq!(
            head.hash().unwrap(),
            "0dfc35215e73ae8c36f4258e8f5bc72600ce1b31"
        );
        assert_eq!(
            line_hash(b"abc"),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }

    #[test]
    fn incomplete_first_line_has_no_hash_until_cap() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"partial").unwrap();
        let head = read_head(&f, 1024).unwrap();
        assert!(!head.complete);
        assert_eq!(head.hash(), None);
        let head = read_head(&f, 4).unwrap();
        assert!(
            head.complete,
            "a first line longer than the cap counts as complete"
        );
        assert_eq!(head.bytes, b"part");
        let empty = tempfile::tempfile().unwrap();
        assert_eq!(read_head(&empty, 10).unwrap().bytes, b"");
    }

    #[test]
    fn heads_are_compatible_when_one_extends_the_other() {
        let a = Head {
            bytes: b"abc".to_vec(),
            complete: false,
        };
        let b = Head {
            bytes: b"abcdef\n".to_vec(),
            complete: true,
        };
        let c = Head {
            bytes: b"abX".to_vec(),
            complete: false,
        };
        assert!(a.compatible(&b) && b.compatible(&a));
        assert!(!a.compatible(&c));
        let empty = Head {
            bytes: vec![],
            complete: false,
        };
        assert!(!empty.compatible(&a) && !a.compatible(&empty));
    }
}
