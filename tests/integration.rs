//! Integration tests: one binary, one module per area.

mod support;

mod nft;
mod support_selftest;
