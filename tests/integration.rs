//! Integration tests: one binary, one module per area.

mod support;

mod pflog;
mod pflog_props;
mod support_selftest;
