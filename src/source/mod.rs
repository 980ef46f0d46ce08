//! Log sources: file tailing with rotation, the systemd journal, pflog pcap files.

pub mod pflog;
