//! The pid file: written at start, locked for the daemon's lifetime, removed at exit.
//!
//! The lock (`flock`) is what tells a live daemon from a stale file: a daemon that died,
//! even by `kill -9`, leaves the file but not the lock, so the next start takes it over
//! without being fooled by a recycled pid.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// A pid file that cannot be taken.
#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    #[error("another warden is running (pid {pid}, pid file {})", path.display())]
    Running { path: PathBuf, pid: String },
    #[error("pid file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The daemon's locked pid file; dropping it removes the file.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    lock: Option<Flock<File>>,
}

impl PidFile {
    /// Takes the pid file at `path` (creating its directory), or says which daemon holds
    /// it. A stale file is replaced.
    pub fn acquire(path: &Path) -> Result<PidFile, PidFileError> {
        let io = |source| PidFileError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
            .map_err(io)?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((mut file, errno)) => {
                if errno == nix::errno::Errno::EWOULDBLOCK {
                    let mut pid = String::new();
                    let _ = file.read_to_string(&mut pid);
                    return Err(PidFileError::Running {
                        path: path.to_path_buf(),
                        pid: pid.trim().to_string(),
                    });
                }
                return Err(io(std::io::Error::from(errno)));
            }
        };
        let stale = lock.metadata().map(|m| m.len() > 0).unwrap_or(false);
        if stale {
            tracing::info!(path = %path.display(), "Replacing a stale pid file.");
        }
        lock.set_len(0).map_err(io)?;
        lock.rewind().map_err(io)?;
        writeln!(lock, "{}", std::process::id()).map_err(io)?;
        lock.flush().map_err(io)?;
        Ok(PidFile {
            path: path.to_path_buf(),
            lock: Some(lock),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Remove while still holding the lock, so no second daemon can take the file in
        // between and have it deleted under it.
        let _ = std::fs::remove_file(&self.path);
        drop(self.lock.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_pid_file_is_refused_and_a_stale_one_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/warden.pid");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "999999\n").unwrap();
        let first = PidFile::acquire(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().trim(),
            std::process::id().to_string()
        );
        // flock locks belong to the open file description, so a second open in the same
        // process conflicts just as another process would.
        match PidFile::acquire(&path) {
            Err(PidFileError::Running { pid, .. }) => {
                assert_eq!(pid, std::process::id().to_string())
            }
            other => panic!("{other:?}"),
        }
        drop(first);
        assert!(!path.exists(), "removed at exit");
        let again = PidFile::acquire(&path).unwrap();
        assert!(again.path().exists());
    }
}
