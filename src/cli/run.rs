//! `warden run`: the daemon.

use clap::Args;

use super::{Cli, CliError, CliResult, EXIT_FAILURE};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Stay in the foreground and log to stderr unless logtarget says otherwise.
    #[arg(long, short = 'f')]
    pub foreground: bool,
    /// Directory for the database when warden.conf names none that is writable.
    #[arg(long, env = "WARDEN_DATA_DIR")]
    pub data_dir: Option<std::path::PathBuf>,
    /// Firewall backend for jails whose banaction is `auto`: auto, pf, nftables or log.
    #[arg(long, default_value = "auto")]
    pub backend: String,
}

pub fn run(_cli: &Cli, _args: &RunArgs) -> CliResult {
    Err(CliError::new(
        EXIT_FAILURE,
        anyhow::anyhow!("the daemon is not built yet"),
    ))
}
