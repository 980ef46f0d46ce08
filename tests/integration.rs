//! Integration tests: one binary, one module per area.

mod support;

mod source_file;
mod support_selftest;
