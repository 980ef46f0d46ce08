//! The daemon: task wiring, reload on SIGHUP, clean shutdown.
