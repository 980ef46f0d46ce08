//! The control socket protocol shared by the daemon and the command-line client, and the
//! daemon's server side of it.

pub mod client;
pub mod protocol;
pub mod server;
