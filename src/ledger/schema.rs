//! The ledger's schema and its versioned migrations (`PRAGMA user_version`).
//!
//! Migration N brings a database from version N-1 to N. Each runs in its own
//! `BEGIN IMMEDIATE` transaction together with the version bump, so a crash or a
//! concurrent opener leaves the file at one version or the next, never in between.
//! Migrations are append-only: once released, a migration's text never changes.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};
use tracing::info;

use super::LedgerError;

/// Version 1: holds, ban history, file positions and journal cursors.
const V1: &str = r#"
-- One row per (target, jail): the jail's latest ban of the target. The row stays after
-- the ban ends (ended set) so that the ban count survives for escalation, until purge.
CREATE TABLE holds (
    target   TEXT    NOT NULL,  -- canonical key, see target.rs
    jail     TEXT    NOT NULL,
    start    INTEGER NOT NULL,  -- epoch seconds
    expires  INTEGER,           -- epoch seconds; NULL for a permanent ban
    bantime  INTEGER NOT NULL,  -- seconds after escalation; -1 permanent
    bancount INTEGER NOT NULL,  -- bans of the target in this jail, this one included
    failures INTEGER NOT NULL,
    matches  TEXT,              -- JSON array of the last dbmaxmatches lines; NULL if none
    fields   TEXT,              -- JSON object of captured fields; NULL if none
    origin   TEXT    NOT NULL,  -- filter, manual, restored, recidive, remote
    ended    INTEGER,           -- NULL while the hold stands; expiry or unban time after
    UNIQUE (target, jail)
);
CREATE INDEX holds_expiry ON holds (expires) WHERE ended IS NULL;

-- Every (key width, prefix length) a hold has used, so that finding the networks that
-- contain an address takes one lookup per prefix length in use, not one per possible
-- prefix length. Rows for lengths no hold uses any more go at purge.
CREATE TABLE prefixes (
    width INTEGER NOT NULL,     -- key length: 19 for IPv4, 43 for IPv6
    plen  INTEGER NOT NULL,
    PRIMARY KEY (width, plen)
) WITHOUT ROWID;

-- One row per ban event. AUTOINCREMENT keeps ids increasing even after deletions, so an
-- id is a safe cursor for readers of the stream (the recidive jail).
CREATE TABLE bans (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    target   TEXT    NOT NULL,
    jail     TEXT    NOT NULL,
    at       INTEGER NOT NULL,
    bantime  INTEGER NOT NULL,
    bancount INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    origin   TEXT    NOT NULL
);
CREATE INDEX bans_at ON bans (at);
CREATE INDEX bans_target ON bans (target, at);

-- Where each reader stopped in each file. Paths are stored as bytes: Unix paths need
-- not be UTF-8.
CREATE TABLE positions (
    owner    TEXT    NOT NULL,  -- the jail (or reader) the position belongs to
    path     BLOB    NOT NULL,
    device   INTEGER NOT NULL,
    inode    INTEGER NOT NULL,
    checksum BLOB    NOT NULL,  -- of the first line, to recognise a replaced file
    offset   INTEGER NOT NULL,
    updated  INTEGER NOT NULL,
    PRIMARY KEY (owner, path)
) WITHOUT ROWID;

-- Opaque resume tokens of other sources: journalctl cursors, ledger event ids.
CREATE TABLE cursors (
    owner   TEXT    NOT NULL,
    source  TEXT    NOT NULL,
    cursor  TEXT    NOT NULL,
    updated INTEGER NOT NULL,
    PRIMARY KEY (owner, source)
) WITHOUT ROWID;
"#;

/// Every migration, in order: index i brings the schema to version i + 1.
pub(crate) const MIGRATIONS: &[&str] = &[V1];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The database's `user_version`.
pub(crate) fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// Applies the migrations the database lacks; returns the final version.
pub(crate) fn migrate(
    conn: &mut Connection,
    path: &Path,
    migrations: &[&str],
) -> Result<i64, LedgerError> {
    let known = migrations.len() as i64;
    let open_err = |source| LedgerError::Open {
        path: path.to_path_buf(),
        source,
    };
    let found = version(conn).map_err(open_err)?;
    if found > known {
        return Err(LedgerError::TooNew {
            path: path.to_path_buf(),
            found,
            known,
        });
    }
    for (i, sql) in migrations.iter().enumerate() {
        let target = i as i64 + 1;
        let fail = |source| LedgerError::Migrate {
            path: path.to_path_buf(),
            version: target,
            source,
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        // Another process may have migrated while this one waited for the write lock.
        let current = version(&tx).map_err(fail)?;
        if current >= target {
            continue;
        }
        tx.execute_batch(sql).map_err(fail)?;
        tx.pragma_update(None, "user_version", target)
            .map_err(fail)?;
        tx.commit().map_err(fail)?;
        info!(path = %path.display(), version = target, "Migrated the ledger schema.");
    }
    Ok(known)
}
