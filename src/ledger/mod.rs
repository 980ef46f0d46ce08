//! The ban ledger: every ban per (address, jail) in SQLite, the single source of truth for
//! what the firewall must hold.
//!
//! A *hold* is one jail's ban of one target (a host or a network). The firewall entry for
//! a target exists while at least one jail holds it. The daemon's use, in order:
//!
//! 1. At start: [`Ledger::open`], then [`LedgerHandle::spawn`]; [`Ledger::expire_due`] to
//!    close what expired while the daemon was down; [`Ledger::active`] to reconcile every
//!    jail's firewall entries (`Action::start`).
//! 2. On a ban decision: [`Ledger::record_ban`] (with the jail's [`Escalate`] when
//!    `bantime.increment` is on), and only after it returns, the firewall; an
//!    [`Outcome::AlreadyHeld`] needs no firewall call.
//! 3. The unban timer sleeps until [`Ledger::next_expiry`], then takes
//!    [`Ledger::expire_due`]; for each ended hold, [`Ledger::holders`] tells whether
//!    another jail still holds the target (or a network around it).
//! 4. Hourly: [`Ledger::housekeeping`] (purge after `dbpurgeage`, free-page reclaim).
//! 5. Sources save where they are with [`Ledger::set_positions`] / [`Ledger::set_cursor`];
//!    the recidive jail follows [`Ledger::bans_after`] with its cursor.
//!
//! `docs/ledger.md` describes the schema, the durability choice and the measured sizes.
//!
//! [`Escalate`]: crate::jail::escalation::Escalate

mod error;
mod handle;
mod history;
mod holds;
mod positions;
mod schema;
mod store;
pub mod target;

pub use error::LedgerError;
pub use handle::{LedgerHandle, LedgerThread};
pub use history::{BanEvent, OUTDATED_FACTOR, Purged};
pub use holds::{Hold, JailCounts, NewBan, Origin, Outcome, Prior, Recorded};
pub use positions::Position;
pub use schema::SCHEMA_VERSION;
pub use store::{Durability, Housekeeping, Ledger, LedgerOptions, LedgerSize};

#[cfg(test)]
mod tests;
