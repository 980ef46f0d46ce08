//! warden: an intrusion-prevention daemon in the fail2ban tradition.
//!
//! It reads logs, recognises abuse, and bans the source address in the host firewall.
//! The data path is: sources → filters → jails → ledger → firewall, with a control socket
//! for the command-line client. `docs/DESIGN.md` is the map of the modules below.

pub mod alloc;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod date;
pub mod exec;
pub mod filter;
pub mod firewall;
pub mod jail;
pub mod ledger;
pub mod source;

/// Seconds since the Unix epoch, the unit of every ban and failure time kept by jails and
/// the ledger. Sub-second precision only matters inside date parsing.
pub type Epoch = i64;

/// The current wall-clock time in epoch seconds.
pub fn now_epoch() -> Epoch {
    jiff::Timestamp::now().as_second()
}

/// A small deterministic generator for unit tests (xorshift64): `next(n)` is in `0..n`.
#[cfg(test)]
pub(crate) fn test_rng(mut seed: u64) -> impl FnMut(usize) -> usize {
    move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    }
}
