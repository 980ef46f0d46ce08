//! `warden run`: the daemon.

use std::process::ExitCode;

use clap::Args;

use super::{Cli, CliError, CliResult, EXIT_FAILURE, EXIT_USAGE};
use crate::daemon::{self, RunOptions};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Stay attached to the terminal. warden never forks, with or without this flag: under
    /// a service manager it runs in the foreground as well (systemd `Type=simple`).
    #[arg(long, short = 'f')]
    pub foreground: bool,
    /// Directory for the database when warden.conf names none that is writable.
    #[arg(long, env = "WARDEN_DATA_DIR")]
    pub data_dir: Option<std::path::PathBuf>,
    /// Firewall backend for jails whose banaction is `auto`: auto, pf, nftables or log.
    #[arg(long, default_value = "auto")]
    pub backend: String,
}

pub fn run(cli: &Cli, args: &RunArgs) -> CliResult {
    let opts = RunOptions {
        config: cli.config.clone(),
        socket: cli.socket.clone(),
        data_dir: args.data_dir.clone(),
        backend: args.backend.clone(),
    };
    match daemon::run(opts) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            let code = if e.is_usage() {
                EXIT_USAGE
            } else {
                EXIT_FAILURE
            };
            Err(CliError::new(code, e))
        }
    }
}
