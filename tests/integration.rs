//! Integration tests: one binary, one module per area.

mod support;

mod config_check;
mod config_compat;
mod config_samples;
mod support_selftest;
