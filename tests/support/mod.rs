//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod daemon;
pub mod fail2ban;
pub mod netns;
pub mod pcap;
#[cfg(feature = "sim")]
pub mod pfctl;
pub mod samples;
