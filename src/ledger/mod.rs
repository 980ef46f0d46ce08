//! The ban ledger: every ban per (address, jail) in SQLite, the single source of truth for
//! what the firewall must hold.
