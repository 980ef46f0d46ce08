//! Where configuration files come from: a directory on disk or the tree compiled into the
//! binary. The loader sees both through one interface, so the embedded configuration and
//! `/etc/warden` are read by the same code.
//!
//! Paths handed to a source are logical: relative to the configuration root
//! (`filter.d/sshd.conf`), or absolute for includes that name an absolute file.

use std::io;
use std::path::{Component, Path, PathBuf};

/// Read access to a configuration tree.
pub trait FileSource {
    /// The file's text; `Ok(None)` when there is no such file.
    fn read(&self, path: &Path) -> io::Result<Option<String>>;
    /// Whether a regular file exists at `path`.
    fn is_file(&self, path: &Path) -> bool;
    /// Names of the regular files directly inside `dir` (not sorted).
    fn list(&self, dir: &Path) -> Vec<String>;
    /// How to name `path` in messages.
    fn display(&self, path: &Path) -> PathBuf;
    /// The root as shown in `Config::dir`.
    fn root(&self) -> PathBuf;
}

/// A configuration directory on disk.
#[derive(Debug, Clone)]
pub struct DirSource {
    root: PathBuf,
}

impl DirSource {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DirSource { root: root.into() }
    }

    fn full(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.root.join(path)
        }
    }
}

impl FileSource for DirSource {
    fn read(&self, path: &Path) -> io::Result<Option<String>> {
        let full = self.full(path);
        if !full.is_file() {
            return Ok(None);
        }
        let bytes = std::fs::read(&full)?;
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.utf8_error()))
    }

    fn is_file(&self, path: &Path) -> bool {
        self.full(path).is_file()
    }

    fn list(&self, dir: &Path) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(self.full(dir)) else {
            return Vec::new();
        };
        rd.filter_map(|e| e.ok())
            .filter(|e| e.path().is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect()
    }

    fn display(&self, path: &Path) -> PathBuf {
        self.full(path)
    }

    fn root(&self) -> PathBuf {
        self.root.clone()
    }
}

/// A configuration tree held in memory: `(relative path, text)` pairs.
#[derive(Debug, Clone)]
pub struct MemSource {
    name: PathBuf,
    files: Vec<(PathBuf, &'static str)>,
}

/// The name `Config::dir` carries for the configuration compiled into the binary.
pub const EMBEDDED_NAME: &str = "(embedded)";

impl MemSource {
    pub fn new(name: impl Into<PathBuf>, files: &[(&'static str, &'static str)]) -> Self {
        MemSource {
            name: name.into(),
            files: files
                .iter()
                .map(|(p, t)| (normalize(Path::new(p)), *t))
                .collect(),
        }
    }

    fn find(&self, path: &Path) -> Option<&'static str> {
        let p = normalize(path);
        self.files.iter().find(|(f, _)| *f == p).map(|(_, t)| *t)
    }
}

impl FileSource for MemSource {
    fn read(&self, path: &Path) -> io::Result<Option<String>> {
        Ok(self.find(path).map(str::to_string))
    }

    fn is_file(&self, path: &Path) -> bool {
        self.find(path).is_some()
    }

    fn list(&self, dir: &Path) -> Vec<String> {
        let dir = normalize(dir);
        self.files
            .iter()
            .filter(|(f, _)| f.parent() == Some(dir.as_path()))
            .filter_map(|(f, _)| f.file_name()?.to_str().map(str::to_string))
            .collect()
    }

    fn display(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.name.join(path)
        }
    }

    fn root(&self) -> PathBuf {
        self.name.clone()
    }
}

/// Lexical normalisation: drops `.` and folds `dir/..`, so that includes such as
/// `../filter.d/common.conf` name the same file however they are written.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out: Vec<Component> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir) => {}
                _ => out.push(c),
            },
            other => out.push(other),
        }
    }
    out.iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_folds_parent_and_current_components() {
        assert_eq!(
            normalize(Path::new("filter.d/./../filter.d/common.conf")),
            PathBuf::from("filter.d/common.conf")
        );
        assert_eq!(normalize(Path::new("/a/../../b")), PathBuf::from("/b"));
        assert_eq!(normalize(Path::new("../x")), PathBuf::from("../x"));
    }

    #[test]
    fn mem_source_lists_only_direct_children() {
        let src = MemSource::new(
            EMBEDDED_NAME,
            &[
                ("jail.conf", "a"),
                ("jail.d/b.conf", "b"),
                ("jail.d/sub/c.conf", "c"),
            ],
        );
        let mut names = src.list(Path::new("jail.d"));
        names.sort();
        assert_eq!(names, vec!["b.conf".to_string()]);
        assert!(src.is_file(Path::new("./jail.conf")));
        assert_eq!(
            src.display(Path::new("jail.conf")),
            PathBuf::from("(embedded)/jail.conf")
        );
    }
}
