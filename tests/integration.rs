//! Integration tests: one binary, one module per area.

mod support;

mod date_compat;
mod date_props;
mod date_zone;
mod support_selftest;
