//! Integration tests: one binary, one module per area.

mod support;

mod ledger;
mod ledger_escalation;
mod support_selftest;
