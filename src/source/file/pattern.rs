//! `logpath` entries: a path or glob pattern, optionally followed by `head` or `tail`, and
//! their expansion into the files to follow.
//!
//! Patterns are expanded again and again while running (fail2ban expands them once at
//! start), so a file that matches later is followed from its first byte.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

use glob::{MatchOptions, Pattern};

use super::FileSourceError;
use super::rotated::{is_compressed, rotated_base};

/// Python's `glob` semantics: `*` does not match a leading dot.
const MATCH: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: true,
};

/// One `logpath` entry.
#[derive(Debug, Clone)]
pub struct LogPattern {
    /// The path or pattern as written (without the `head`/`tail` word).
    pub spec: String,
    /// `tail`: a file found at start without a saved position is read from its end.
    pub tail: bool,
    pattern: Option<Pattern>,
}

impl LogPattern {
    /// Parses `"/var/log/auth.log"`, `"/var/log/nginx/*.log tail"` and the like. A last
    /// word other than `head`/`tail` is part of the path (so paths may contain spaces).
    pub fn parse(entry: &str) -> Result<Self, FileSourceError> {
        let entry = entry.trim();
        let (spec, tail) = match entry.rsplit_once(char::is_whitespace) {
            Some((p, w)) if w.eq_ignore_ascii_case("tail") => (p.trim_end(), true),
            Some((p, w)) if w.eq_ignore_ascii_case("head") => (p.trim_end(), false),
            _ => (entry, false),
        };
        if spec.is_empty() {
            return Err(FileSourceError::EmptyLogpath);
        }
        let pattern = if spec.contains(['*', '?', '[']) {
            Some(Pattern::new(spec).map_err(|e| FileSourceError::BadPattern {
                pattern: spec.to_string(),
                reason: e.msg.to_string(),
            })?)
        } else {
            None
        };
        Ok(LogPattern {
            spec: spec.to_string(),
            tail,
            pattern,
        })
    }

    /// A single path rather than a glob.
    pub fn is_literal(&self) -> bool {
        self.pattern.is_none()
    }

    /// Whether `path` is (or matches) this entry.
    pub fn matches(&self, path: &Path) -> bool {
        match &self.pattern {
            Some(p) => p.matches_path_with(path, MATCH),
            None => path == Path::new(&self.spec),
        }
    }

    /// The regular files this entry names now. A literal path is returned even when it does
    /// not exist, so its absence is noticed and its appearance picked up.
    pub fn expand(&self) -> Vec<PathBuf> {
        let Some(_) = &self.pattern else {
            return vec![PathBuf::from(&self.spec)];
        };
        let Ok(paths) = glob::glob_with(&self.spec, MATCH) else {
            return Vec::new();
        };
        paths
            .filter_map(Result::ok)
            .filter(|p| p.is_file())
            .filter(|p| !p.file_name().is_some_and(is_compressed))
            .collect()
    }

    /// The directory whose entries decide what this entry names: the parent of a literal
    /// path, or the longest leading part of a glob without wildcards.
    pub fn watch_dir(&self) -> PathBuf {
        let path = Path::new(&self.spec);
        if self.pattern.is_none() {
            return parent_or_dot(path);
        }
        let mut dir = PathBuf::new();
        for comp in path.components() {
            let s = comp.as_os_str().to_string_lossy();
            if s.contains(['*', '?', '[']) {
                break;
            }
            dir.push(comp);
        }
        if dir.as_os_str().is_empty() || dir == path {
            return parent_or_dot(path);
        }
        if matches!(path.components().next(), Some(Component::RootDir)) && dir == Path::new("/") {
            return dir;
        }
        dir
    }
}

fn parent_or_dot(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Drops matches that are rotated generations of other matches (`x.log.1` when `x.log`
/// matched too): a pattern such as `/var/log/app/*` would otherwise follow every rotated
/// file as a log of its own and read it again at each rotation.
pub(crate) fn drop_rotated_siblings(paths: BTreeSet<PathBuf>) -> BTreeSet<PathBuf> {
    let keep: Vec<bool> = paths
        .iter()
        .map(|p| {
            let (Some(dir), Some(name)) = (p.parent(), p.file_name()) else {
                return true;
            };
            !candidate_bases(name).any(|base| paths.contains(&dir.join(base)))
        })
        .collect();
    paths
        .into_iter()
        .zip(keep)
        .filter_map(|(p, k)| k.then_some(p))
        .collect()
}

/// Every base name `name` could be a rotated generation of.
fn candidate_bases(name: &OsStr) -> impl Iterator<Item = &OsStr> {
    let bytes = name.as_encoded_bytes();
    (1..bytes.len()).filter_map(move |i| {
        if !matches!(bytes[i], b'.' | b'-' | b'_') {
            return None;
        }
        // Names that are not UTF-8 are never taken for rotated generations.
        let base = OsStr::new(std::str::from_utf8(&bytes[..i]).ok()?);
        rotated_base(base, name).then_some(base)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_head_and_tail_words() {
        let p = LogPattern::parse("/var/log/auth.log").unwrap();
        assert!(!p.tail && p.is_literal());
        let p = LogPattern::parse("  /var/log/nginx/*.log   tail ").unwrap();
        assert!(p.tail && !p.is_literal());
        assert_eq!(p.spec, "/var/log/nginx/*.log");
        let p = LogPattern::parse("/var/log/x HEAD").unwrap();
        assert!(!p.tail);
        assert_eq!(p.spec, "/var/log/x");
        let p = LogPattern::parse("/srv/my logs/app.log").unwrap();
        assert_eq!(
            p.spec, "/srv/my logs/app.log",
            "other last words belong to the path"
        );
        assert_eq!(LogPattern::parse("tail").unwrap().spec, "tail");
        assert!(matches!(
            LogPattern::parse(""),
            Err(FileSourceError::EmptyLogpath)
        ));
        let err = LogPattern::parse("/var/log/[a.log").unwrap_err();
        assert!(err.to_string().contains("/var/log/[a.log"), "{err}");
    }

    #[test]
    fn watch_dir_is_the_literal_prefix() {
        let d = |s: &str| LogPattern::parse(s).unwrap().watch_dir();
        assert_eq!(d("/var/log/auth.log"), Path::new("/var/log"));
        assert_eq!(d("/var/log/nginx/*.log"), Path::new("/var/log/nginx"));
        assert_eq!(d("/var/log/*/access.log"), Path::new("/var/log"));
        assert_eq!(d("/*.log"), Path::new("/"));
        assert_eq!(d("auth.log"), Path::new("."));
        assert_eq!(d("*.log"), Path::new("."));
    }

    #[test]
    fn matching_follows_python_glob() {
        let p = LogPattern::parse("/var/log/*.log").unwrap();
        assert!(p.matches(Path::new("/var/log/a.log")));
        assert!(!p.matches(Path::new("/var/log/.hidden.log")));
        assert!(!p.matches(Path::new("/var/log/sub/a.log")));
        let l = LogPattern::parse("/var/log/a.log").unwrap();
        assert!(l.matches(Path::new("/var/log/a.log")));
        assert!(!l.matches(Path::new("/var/log/b.log")));
    }

    #[test]
    fn rotated_generations_of_other_matches_are_dropped() {
        let set: BTreeSet<PathBuf> = [
            "/l/app.log",
            "/l/app.log.1",
            "/l/app.log-20240101",
            "/l/other.log.2",
            "/l/app.logger",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        let kept: Vec<_> = drop_rotated_siblings(set).into_iter().collect();
        assert_eq!(
            kept,
            ["/l/app.log", "/l/app.logger", "/l/other.log.2"]
                .iter()
                .map(PathBuf::from)
                .collect::<Vec<_>>()
        );
    }
}
