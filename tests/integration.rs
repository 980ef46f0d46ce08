//! Integration tests: one binary, one module per area.

mod support;

mod config_compat;
mod support_selftest;
