//! Rotated generations of a log: the files next to it named like logrotate names them
//! (`auth.log.1`, `auth.log-20240101`), and their order from oldest to newest.
//!
//! Compressed generations (`.gz`, `.xz`, ...) cannot be followed and are not listed; a name
//! with letters after the base (`auth.log.old`, `auth.log.bak`) is not a generation either.

use std::cmp::Ordering;
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};

use super::identity::{FileKey, mtime_ns};

const COMPRESSED: [&str; 8] = [".gz", ".bz2", ".xz", ".zst", ".lz4", ".lzma", ".lzo", ".Z"];

/// Whether a file name is that of a compressed file.
pub(crate) fn is_compressed(name: &OsStr) -> bool {
    let n = name.as_encoded_bytes();
    COMPRESSED.iter().any(|ext| n.ends_with(ext.as_bytes()))
}

/// Whether `name` is a rotated generation of `base`: `base`, one of `.-_`, a digit, then
/// only digits and `.-_`.
pub(crate) fn rotated_base(base: &OsStr, name: &OsStr) -> bool {
    rotation_number(base, name).is_some()
}

/// For a generation name, `Some(Some(n))` for `base.n`, `Some(None)` for other rotated forms
/// (dates), None when `name` is not a generation of `base`.
fn rotation_number(base: &OsStr, name: &OsStr) -> Option<Option<u64>> {
    let rest = name
        .as_encoded_bytes()
        .strip_prefix(base.as_encoded_bytes())?;
    let (&sep, tail) = rest.split_first()?;
    if !matches!(sep, b'.' | b'-' | b'_') || !tail.first()?.is_ascii_digit() {
        return None;
    }
    if !tail
        .iter()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'))
    {
        return None;
    }
    // logrotate numbers with `.n`; a long run of digits is a date (`dateformat .%Y%m%d`).
    let number = if sep == b'.' && tail.len() <= 6 && tail.iter().all(u8::is_ascii_digit) {
        std::str::from_utf8(tail).ok()?.parse().ok()
    } else {
        None
    };
    Some(number)
}

/// A rotated generation found on disk.
#[derive(Debug, Clone)]
pub(crate) struct Sibling {
    pub path: PathBuf,
    pub name: OsString,
    pub key: FileKey,
    pub size: u64,
    pub mtime: i128,
    /// `n` of a `base.n` name.
    pub number: Option<u64>,
}

/// Oldest first: by modification time; on a tie (coarse clocks), `base.2` before `base.1`,
/// otherwise by name (dates sort chronologically).
pub(crate) fn generation_order(a: &Sibling, b: &Sibling) -> Ordering {
    a.mtime
        .cmp(&b.mtime)
        .then_with(|| match (a.number, b.number) {
            (Some(x), Some(y)) => y.cmp(&x),
            _ => a.name.cmp(&b.name),
        })
}

/// Lists the rotated generations of `path`, oldest first. The directory is read until two
/// reads in a row agree, so a rotation running at the same moment does not hide a file.
pub(crate) fn list_siblings(path: &Path) -> io::Result<Vec<Sibling>> {
    let mut prev = list_once(path)?;
    for _ in 0..4 {
        let next = list_once(path)?;
        let same = next.len() == prev.len()
            && next
                .iter()
                .zip(&prev)
                .all(|(a, b)| a.key == b.key && a.name == b.name && a.size == b.size);
        prev = next;
        if same {
            break;
        }
    }
    Ok(prev)
}

fn list_once(path: &Path) -> io::Result<Vec<Sibling>> {
    let (Some(base), dir) = (path.file_name(), path.parent()) else {
        return Ok(Vec::new());
    };
    let dir = match dir {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(number) = rotation_number(base, &name) else {
            continue;
        };
        let p = entry.path();
        // A generation renamed away between the listing and the stat is caught by the
        // second listing.
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        out.push(Sibling {
            path: p,
            name,
            key: FileKey::of(&meta),
            size: meta.len(),
            mtime: mtime_ns(&meta),
            number,
        });
    }
    out.sort_by(generation_order);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    #[test]
    fn recognises_logrotate_names() {
        assert_eq!(
            rotation_number(os("auth.log"), os("auth.log.1")),
            Some(Some(1))
        );
        assert_eq!(
            rotation_number(os("auth.log"), os("auth.log.12")),
            Some(Some(12))
        );
        assert_eq!(
            rotation_number(os("auth.log"), os("auth.log-20240101")),
            Some(None)
        );
        assert_eq!(
            rotation_number(os("auth.log"), os("auth.log-2024-01-01")),
            Some(None)
        );
        assert_eq!(
            rotation_number(os("auth.log"), os("auth.log_1")),
            Some(None)
        );
        assert_eq!(
            rotation_number(os("auth.log"), os("auth.log.20240101")),
            Some(None)
        );
        for no in [
            "auth.log",
            "auth.log.",
            "auth.log.1.gz",
            "auth.log.old",
            "auth.log.bak1",
            "auth.logx.1",
            "auth.log1",
            "other.log.1",
        ] {
            assert_eq!(rotation_number(os("auth.log"), os(no)), None, "{no}");
        }
        assert!(is_compressed(os("a.log.1.gz")) && is_compressed(os("a.Z")));
        assert!(!is_compressed(os("a.log.1")));
    }

    #[test]
    fn lists_generations_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("app.log");
        for name in [
            "app.log",
            "app.log.1",
            "app.log.2",
            "app.log.3.gz",
            "app.log.old",
        ] {
            std::fs::write(dir.path().join(name), name).unwrap();
        }
        std::fs::create_dir(dir.path().join("app.log.9")).unwrap();
        let list = list_siblings(&base).unwrap();
        let names: Vec<_> = list
            .iter()
            .map(|s| s.name.to_string_lossy().into_owned())
            .collect();
        // Same second on a fast machine: the numbers decide; otherwise mtime does, and the
        // files were written in the order .1, .2 so .2 is newer. Either way both are listed.
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.contains(&"app.log.1".to_string()));
        assert!(names.contains(&"app.log.2".to_string()));
    }

    #[test]
    fn ties_on_mtime_order_by_number_then_name() {
        let s = |name: &str, number, mtime| Sibling {
            path: PathBuf::from(name),
            name: OsString::from(name),
            key: FileKey { dev: 0, ino: 0 },
            size: 0,
            mtime,
            number,
        };
        let mut v = [
            s("a.1", Some(1), 5),
            s("a.3", Some(3), 5),
            s("a.2", Some(2), 5),
            s("a.9", Some(9), 7),
        ];
        v.sort_by(generation_order);
        let names: Vec<_> = v.iter().map(|s| s.name.to_str().unwrap()).collect();
        assert_eq!(names, ["a.3", "a.2", "a.1", "a.9"]);
        let mut d = [s("a-20240102", None, 1), s("a-20240101", None, 1)];
        d.sort_by(generation_order);
        assert_eq!(d[0].name, "a-20240101");
    }
}
