//! Integration tests: one binary, one module per area.

mod support;

#[cfg(feature = "sim")]
mod pf;
#[cfg(feature = "sim")]
mod pfctl_sim;
mod support_selftest;
