//! Jails: failure windows, ignore lists, ban decisions and escalation.

pub mod escalation;
pub mod ignore;
pub mod portscan;
pub mod window;
