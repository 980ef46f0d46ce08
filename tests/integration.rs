//! Integration tests: one binary, one module per area.

mod support;

mod source_file;
mod source_file_model;
mod source_journal;
mod support_selftest;
