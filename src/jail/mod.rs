//! Jails: failure windows, ignore lists, ban decisions and escalation.
//!
//! - [`core`]: one jail's "failure → maybe ban" logic, shared by the daemon and replay.
//! - [`window`]: the sliding failure window with its memory bound.
//! - [`ignore`], [`dns`], [`target`], [`timing`]: what is counted, for which target, at
//!   what time.
//! - [`escalation`]: the `bantime.increment` rules.
//! - [`portscan`]: the port-scan detector of pflog jails.

pub mod core;
pub mod dns;
pub mod escalation;
pub mod ignore;
pub mod portscan;
pub mod target;
pub mod timing;
pub mod window;

pub use self::core::{
    BanRequest, JailCore, JailRules, NoPriors, Offense, PriorSource, RulesError, Verdict,
};
