//! The control socket protocol shared by the daemon and the command-line client.

pub mod client;
pub mod protocol;
