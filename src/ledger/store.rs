//! Opening the ledger file, its durability settings, and housekeeping (size, purge,
//! vacuum, integrity).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tracing::{debug, info};

use super::schema::{self, MIGRATIONS};
use super::{LedgerError, Purged};
use crate::Epoch;
use crate::config::model::DaemonSettings;

/// How long a statement waits for another process's write lock (an offline command
/// running beside the daemon) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The WAL file is cut back to this size after a checkpoint, so that a burst of writes
/// (a purge of a large history) does not leave a large file behind.
const WAL_SIZE_LIMIT: i64 = 4 * 1024 * 1024;

/// How much of the file may be free pages before housekeeping hands them back.
const FREE_RATIO_TO_RECLAIM: f64 = 0.10;

/// What SQLite does at each commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=NORMAL` in WAL mode: a commit is written to the WAL before it returns,
    /// so it survives the process being killed at any point; only a power loss or kernel
    /// crash can lose the commits since the last checkpoint (never corrupt the file).
    #[default]
    Normal,
    /// `synchronous=FULL`: every commit is also flushed to the disk before it returns, so
    /// it survives a power loss too, at the price of one fsync per commit.
    Full,
}

impl Durability {
    fn pragma(self) -> &'static str {
        match self {
            Durability::Normal => "NORMAL",
            Durability::Full => "FULL",
        }
    }
}

/// Settings of the ledger (from `warden.conf`'s `dbpurgeage` and `dbmaxmatches`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerOptions {
    /// Seconds of ban history kept; see [`Ledger::purge`].
    pub purge_age: i64,
    /// How many matched lines a hold keeps (the last ones); 0 keeps none.
    pub max_matches: u32,
    pub durability: Durability,
}

impl Default for LedgerOptions {
    fn default() -> LedgerOptions {
        LedgerOptions {
            purge_age: 86_400,
            max_matches: 10,
            durability: Durability::Normal,
        }
    }
}

impl LedgerOptions {
    pub fn from_settings(settings: &DaemonSettings) -> LedgerOptions {
        LedgerOptions {
            purge_age: settings.dbpurgeage,
            max_matches: settings.dbmaxmatches,
            durability: Durability::Normal,
        }
    }
}

/// The ban ledger: one SQLite connection, owned by one thread (see
/// [`super::LedgerHandle`] for use from async code).
pub struct Ledger {
    pub(super) conn: Connection,
    pub(super) path: PathBuf,
    pub(super) opts: LedgerOptions,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("path", &self.path)
            .field("opts", &self.opts)
            .finish()
    }
}

/// Sizes of the ledger, for status output and housekeeping decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerSize {
    /// The main database file.
    pub file_bytes: u64,
    /// Free pages inside it (reclaimable by vacuum).
    pub free_bytes: u64,
    /// The write-ahead log beside it.
    pub wal_bytes: u64,
    /// Hold rows, active or kept for escalation.
    pub holds: u64,
    /// Ban history rows.
    pub events: u64,
}

/// What [`Ledger::housekeeping`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Housekeeping {
    pub purged: Purged,
    /// Free pages handed back to the file system.
    pub reclaimed_pages: u64,
}

impl Ledger {
    /// Opens (creating if needed) the ledger at `path` and brings its schema up to date.
    pub fn open(path: &Path, opts: LedgerOptions) -> Result<Ledger, LedgerError> {
        Ledger::open_with(path, opts, MIGRATIONS)
    }

    pub(crate) fn open_with(
        path: &Path,
        opts: LedgerOptions,
        migrations: &[&str],
    ) -> Result<Ledger, LedgerError> {
        let open_err = |source| LedgerError::Open {
            path: path.to_path_buf(),
            source,
        };
        let created = !path.exists();
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
        if created {
            // The ledger keeps log lines; they are for root's eyes only. SQLite gives the
            // -wal and -shm files the same mode.
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        // Room for every statement the ledger prepares, so none is compiled twice.
        conn.set_prepared_statement_cache_capacity(64);

        let version = schema::version(&conn).map_err(open_err)?;
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .map_err(open_err)?;
        if version == 0 && tables > 0 {
            return Err(LedgerError::Foreign {
                path: path.to_path_buf(),
                tables,
            });
        }
        if version == 0 {
            // Only takes effect before the first table exists: lets housekeeping return
            // freed pages without rewriting the whole file.
            conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
                .map_err(open_err)?;
        }
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(LedgerError::NoWal {
                path: path.to_path_buf(),
                mode,
            });
        }
        conn.pragma_update(None, "synchronous", opts.durability.pragma())
            .map_err(open_err)?;
        let _: i64 = conn
            .query_row(
                &format!("PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}"),
                [],
                |r| r.get(0),
            )
            .map_err(open_err)?;

        let version = schema::migrate(&mut conn, path, migrations)?;
        info!(path = %path.display(), version, "Opened the ledger.");
        Ok(Ledger {
            conn,
            path: path.to_path_buf(),
            opts,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn options(&self) -> &LedgerOptions {
        &self.opts
    }

    /// The schema version of the open file.
    pub fn schema_version(&self) -> Result<i64, LedgerError> {
        schema::version(&self.conn).map_err(self.sql("read schema version"))
    }

    /// Closes the connection, checkpointing the WAL into the main file.
    pub fn close(self) -> Result<(), LedgerError> {
        let path = self.path.clone();
        self.conn.close().map_err(|(_, source)| LedgerError::Sql {
            path,
            op: "close".into(),
            source,
        })
    }

    /// Sizes of the file, its WAL, and the row counts.
    pub fn size(&self) -> Result<LedgerSize, LedgerError> {
        let pragma = |name: &str| -> Result<u64, LedgerError> {
            self.conn
                .query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0))
                .map(|v| v.max(0) as u64)
                .map_err(self.sql("read size"))
        };
        let page = pragma("page_size")?;
        let count = |table: &str| -> Result<u64, LedgerError> {
            self.conn
                .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| {
                    r.get::<_, i64>(0)
                })
                .map(|v| v.max(0) as u64)
                .map_err(self.sql("count rows"))
        };
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        Ok(LedgerSize {
            file_bytes: pragma("page_count")? * page,
            free_bytes: pragma("freelist_count")? * page,
            wal_bytes: std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0),
            holds: count("holds")?,
            events: count("bans")?,
        })
    }

    /// The periodic upkeep (hourly, like fail2ban's purge): purges old history and ended
    /// holds, hands free pages back when they are a noticeable part of the file, and lets
    /// SQLite refresh its query statistics.
    pub fn housekeeping(&mut self, now: Epoch) -> Result<Housekeeping, LedgerError> {
        let purged = self.purge(now)?;
        let size = self.size()?;
        let mut reclaimed_pages = 0;
        let incremental: i64 = self
            .conn
            .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
            .map_err(self.sql("read auto_vacuum"))?;
        if incremental == 2
            && size.free_bytes > 0
            && size.free_bytes as f64 >= size.file_bytes as f64 * FREE_RATIO_TO_RECLAIM
        {
            let before = self.free_pages()?;
            // Frees one page per step: it must be stepped to the end.
            self.conn
                .prepare("PRAGMA incremental_vacuum")
                .and_then(|mut s| {
                    let mut rows = s.query([])?;
                    while rows.next()?.is_some() {}
                    Ok(())
                })
                .map_err(self.sql("incremental vacuum"))?;
            reclaimed_pages = before.saturating_sub(self.free_pages()?);
        }
        self.conn
            .execute_batch("PRAGMA optimize")
            .map_err(self.sql("optimize"))?;
        debug!(
            history = purged.events,
            holds = purged.holds,
            reclaimed_pages,
            "Ledger housekeeping done."
        );
        Ok(Housekeeping {
            purged,
            reclaimed_pages,
        })
    }

    /// Rewrites the whole file without free space (`VACUUM`) and truncates the WAL.
    /// Returns the file size before and after. Takes time proportional to the file;
    /// meant for an explicit command, not the daemon's timer.
    pub fn vacuum(&mut self) -> Result<(u64, u64), LedgerError> {
        let before = self.size()?.file_bytes;
        // A database created before incremental auto-vacuum was set gets it here.
        self.conn
            .pragma_update(None, "auto_vacuum", "INCREMENTAL")
            .map_err(self.sql("vacuum"))?;
        self.conn
            .execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")
            .map_err(self.sql("vacuum"))?;
        let after = self.size()?.file_bytes;
        info!(path = %self.path.display(), before, after, "Vacuumed the ledger.");
        Ok((before, after))
    }

    /// Runs SQLite's `integrity_check`; an error lists what it found.
    pub fn check_integrity(&self) -> Result<(), LedgerError> {
        let mut stmt = self
            .conn
            .prepare("PRAGMA integrity_check")
            .map_err(self.sql("integrity check"))?;
        let rows: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(self.sql("integrity check"))?;
        if rows.len() == 1 && rows[0] == "ok" {
            Ok(())
        } else {
            Err(LedgerError::Integrity {
                path: self.path.clone(),
                problems: rows.join("; "),
            })
        }
    }

    fn free_pages(&self) -> Result<u64, LedgerError> {
        self.conn
            .query_row("PRAGMA freelist_count", [], |r| r.get::<_, i64>(0))
            .map(|v| v.max(0) as u64)
            .map_err(self.sql("read freelist"))
    }

    /// Maps an SQLite error to one naming the file and the operation.
    pub(super) fn sql<'a>(
        &'a self,
        op: &'a str,
    ) -> impl FnOnce(rusqlite::Error) -> LedgerError + 'a {
        sql_err(&self.path, op)
    }
}

/// Maps an SQLite error to one naming the file and the operation.
pub(super) fn sql_err<'a>(
    path: &'a Path,
    op: &'a str,
) -> impl FnOnce(rusqlite::Error) -> LedgerError + 'a {
    move |source| LedgerError::Sql {
        path: path.to_path_buf(),
        op: op.to_string(),
        source,
    }
}

/// Like [`sql_err`], with the operation text (naming a target or jail) built only on
/// failure.
pub(super) fn sql_err_with<'a>(
    path: &'a Path,
    op: impl FnOnce() -> String + 'a,
) -> impl FnOnce(rusqlite::Error) -> LedgerError + 'a {
    move |source| LedgerError::Sql {
        path: path.to_path_buf(),
        op: op(),
        source,
    }
}
