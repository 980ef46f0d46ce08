//! Integration tests: one binary, one module per area.

mod support;

mod filter;
mod filter_compat;
mod filter_props;
mod support_selftest;
