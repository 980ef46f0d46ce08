//! Log sources: file tailing with rotation, the systemd journal, pflog pcap files.

pub mod file;
pub mod journal;
pub mod pflog;
