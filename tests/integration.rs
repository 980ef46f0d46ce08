//! Integration tests: one binary, one module per area.

mod support;

mod date_compat;
mod support_selftest;
