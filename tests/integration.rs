//! Integration tests: one binary, one module per area.

mod support;

mod support_selftest;
