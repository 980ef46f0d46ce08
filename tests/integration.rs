//! Integration tests: one binary, one module per area.

mod support;

mod config_check;
mod config_compat;
mod config_samples;
mod ledger;
mod ledger_escalation;
#[cfg(feature = "sim")]
mod pfctl_sim;
mod support_selftest;
