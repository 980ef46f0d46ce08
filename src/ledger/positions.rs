//! Where readers stopped: file positions (with the identity of the file they belong to)
//! and opaque cursors of other sources (journalctl cursors, ledger event ids).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::store::sql_err_with;
use super::{Ledger, LedgerError};
use crate::Epoch;

/// A reader's position in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub path: PathBuf,
    pub device: u64,
    pub inode: u64,
    /// Checksum of the file's first line, to tell a replaced file from the same one.
    pub checksum: Vec<u8>,
    /// Byte offset of the next line to read.
    pub offset: u64,
}

impl Ledger {
    /// The position `owner` saved for `path`.
    pub fn position(&self, owner: &str, path: &Path) -> Result<Option<Position>, LedgerError> {
        let op = || format!("read position of {} for {owner}", path.display());
        self.conn
            .prepare_cached(
                "SELECT device, inode, checksum, offset FROM positions \
                 WHERE owner = ?1 AND path = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![owner, path.as_os_str().as_bytes()], |r| {
                    Ok(Position {
                        path: path.to_path_buf(),
                        device: r.get::<_, i64>(0)? as u64,
                        inode: r.get::<_, i64>(1)? as u64,
                        checksum: r.get(2)?,
                        offset: r.get::<_, i64>(3)? as u64,
                    })
                })
                .optional()
            })
            .map_err(sql_err_with(&self.path, op))
    }

    /// Every position `owner` saved, by path.
    pub fn positions(&self, owner: &str) -> Result<Vec<Position>, LedgerError> {
        let op = || format!("read positions for {owner}");
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT path, device, inode, checksum, offset FROM positions \
                 WHERE owner = ?1 ORDER BY path",
            )
            .map_err(sql_err_with(&self.path, op))?;
        stmt.query_map(params![owner], |r| {
            Ok(Position {
                path: PathBuf::from(OsStr::from_bytes(&r.get::<_, Vec<u8>>(0)?)),
                device: r.get::<_, i64>(1)? as u64,
                inode: r.get::<_, i64>(2)? as u64,
                checksum: r.get(3)?,
                offset: r.get::<_, i64>(4)? as u64,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(sql_err_with(&self.path, op))
    }

    /// Saves `owner`'s positions in one transaction.
    pub fn set_positions(
        &mut self,
        owner: &str,
        positions: &[Position],
        now: Epoch,
    ) -> Result<(), LedgerError> {
        let path = &self.path;
        let op = || format!("save positions for {owner}");
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err_with(path, op))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO positions \
                     (owner, path, device, inode, checksum, offset, updated) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(sql_err_with(path, op))?;
            for p in positions {
                // u64 values go through i64 bit for bit; the cast back restores them.
                stmt.execute(params![
                    owner,
                    p.path.as_os_str().as_bytes(),
                    p.device as i64,
                    p.inode as i64,
                    p.checksum,
                    p.offset as i64,
                    now
                ])
                .map_err(sql_err_with(path, op))?;
            }
        }
        tx.commit().map_err(sql_err_with(path, op))
    }

    /// Saves one position.
    pub fn set_position(
        &mut self,
        owner: &str,
        position: &Position,
        now: Epoch,
    ) -> Result<(), LedgerError> {
        self.set_positions(owner, std::slice::from_ref(position), now)
    }

    /// Deletes `owner`'s position for `path`, or all of `owner`'s positions.
    pub fn forget_positions(
        &mut self,
        owner: &str,
        path: Option<&Path>,
    ) -> Result<usize, LedgerError> {
        let op = || format!("forget positions for {owner}");
        self.conn
            .execute(
                "DELETE FROM positions WHERE owner = ?1 AND (?2 IS NULL OR path = ?2)",
                params![owner, path.map(|p| p.as_os_str().as_bytes())],
            )
            .map_err(sql_err_with(&self.path, op))
    }

    /// The cursor `owner` saved for `source`.
    pub fn cursor(&self, owner: &str, source: &str) -> Result<Option<String>, LedgerError> {
        let op = || format!("read cursor {source} for {owner}");
        self.conn
            .prepare_cached("SELECT cursor FROM cursors WHERE owner = ?1 AND source = ?2")
            .and_then(|mut s| s.query_row(params![owner, source], |r| r.get(0)).optional())
            .map_err(sql_err_with(&self.path, op))
    }

    /// Saves `owner`'s cursor for `source`.
    pub fn set_cursor(
        &mut self,
        owner: &str,
        source: &str,
        cursor: &str,
        now: Epoch,
    ) -> Result<(), LedgerError> {
        let op = || format!("save cursor {source} for {owner}");
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO cursors (owner, source, cursor, updated) \
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut s| s.execute(params![owner, source, cursor, now]))
            .map(|_| ())
            .map_err(sql_err_with(&self.path, op))
    }

    /// Deletes `owner`'s cursors.
    pub fn forget_cursors(&mut self, owner: &str) -> Result<usize, LedgerError> {
        let op = || format!("forget cursors for {owner}");
        self.conn
            .execute("DELETE FROM cursors WHERE owner = ?1", params![owner])
            .map_err(sql_err_with(&self.path, op))
    }
}
