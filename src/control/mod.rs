//! The control socket protocol shared by the daemon and the command-line client.
