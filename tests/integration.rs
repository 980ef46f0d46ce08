//! Integration tests: one binary, one module per area.

mod support;

mod config_check;
mod config_compat;
mod config_samples;
mod conformance;
mod daemon;
mod daemon_sources;
mod date_compat;
mod date_props;
mod date_zone;
mod e2e_nft;
#[cfg(feature = "sim")]
mod e2e_pf;
mod filter;
mod filter_compat;
mod filter_props;
mod ledger;
mod ledger_escalation;
mod nft;
#[cfg(feature = "sim")]
mod pf;
#[cfg(feature = "sim")]
mod pfctl_sim;
mod pflog;
mod pflog_props;
mod replay;
mod source_file;
mod source_file_model;
mod source_journal;
mod support_selftest;
