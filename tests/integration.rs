//! Integration tests: one binary, one module per area.

mod support;

mod filter_compat;
mod support_selftest;
