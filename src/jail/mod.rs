//! Jails: failure windows, ignore lists, ban decisions and escalation.

pub mod portscan;
