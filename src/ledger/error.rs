//! Ledger errors: each names the database file and what was being done.

use std::path::PathBuf;

/// A ledger failure.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("{path}: cannot open ledger: {source}", path = path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "{path}: ledger schema version {found} is newer than this warden knows ({known})",
        path = path.display()
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error(
        "{path}: not a warden ledger: it holds {tables} tables but no ledger schema version",
        path = path.display()
    )]
    Foreign { path: PathBuf, tables: i64 },
    #[error(
        "{path}: cannot switch the ledger to WAL journaling (journal_mode stays {mode})",
        path = path.display()
    )]
    NoWal { path: PathBuf, mode: String },
    #[error("{path}: migration to schema version {version} failed: {source}", path = path.display())]
    Migrate {
        path: PathBuf,
        version: i64,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{path}: {op}: {source}", path = path.display())]
    Sql {
        path: PathBuf,
        /// What was being done, with the target and jail when there is one.
        op: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{path}: corrupt {what} {value:?} in table {table}", path = path.display())]
    Corrupt {
        path: PathBuf,
        table: &'static str,
        what: &'static str,
        value: String,
    },
    #[error("{path}: integrity check failed: {problems}", path = path.display())]
    Integrity { path: PathBuf, problems: String },
    #[error("ledger thread stopped before answering")]
    Closed,
}
