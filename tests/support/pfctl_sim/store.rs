//! The state file on disk: an exclusive `flock` on `STATE.lock` serialises invocations
//! (read, modify, write back by rename), and `--sim-seed` merges JSON into it.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde_json::Value;

use crate::state::State;

pub struct Lock(#[allow(dead_code)] Flock<File>);

fn sidecar(state: &Path, suffix: &str) -> PathBuf {
    let mut s = state.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

pub fn counts_path(state: &Path) -> PathBuf {
    sidecar(state, ".fail-counts")
}

/// Blocks until this process owns the state.
pub fn lock(state: &Path) -> Result<Lock, String> {
    let path = sidecar(state, ".lock");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Flock::lock(f, FlockArg::LockExclusive)
        .map(Lock)
        .map_err(|(_, e)| format!("{}: flock: {e}", path.display()))
}

/// The raw JSON of the state file; a missing file is an empty object.
pub fn load_value(state: &Path) -> Result<Value, String> {
    match std::fs::read(state) {
        Ok(b) if b.iter().all(u8::is_ascii_whitespace) => Ok(Value::Object(Default::default())),
        Ok(b) => serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", state.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Value::Object(Default::default())),
        Err(e) => Err(format!("{}: {e}", state.display())),
    }
}

pub fn from_value(v: Value, origin: &str) -> Result<State, String> {
    let mut st: State = serde_json::from_value(v).map_err(|e| format!("{origin}: {e}"))?;
    st.normalise().map_err(|e| format!("{origin}: {e}"))?;
    Ok(st)
}

pub fn load(state: &Path) -> Result<State, String> {
    from_value(load_value(state)?, &state.display().to_string())
}

pub fn save(state: &Path, st: &State) -> Result<(), String> {
    let mut text = serde_json::to_string_pretty(st).map_err(|e| e.to_string())?;
    text.push('\n');
    let tmp = sidecar(state, &format!(".tmp{}", std::process::id()));
    std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, state).map_err(|e| format!("{}: {e}", state.display()))
}

/// Objects merge key by key; any other value in `patch` replaces the old one.
pub fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                match b.get_mut(&k) {
                    Some(old) if old.is_object() && v.is_object() => merge(old, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, p) => *b = p,
    }
}
