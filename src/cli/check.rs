//! `warden check`: load a configuration directory and print the resolved jails.

use clap::Args;

use super::{Cli, CliError, CliResult, EXIT_FAILURE};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Print the resolved configuration as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also print jails that are not enabled.
    #[arg(long)]
    pub all: bool,
}

pub fn run(_cli: &Cli, _args: &CheckArgs) -> CliResult {
    Err(CliError::new(
        EXIT_FAILURE,
        anyhow::anyhow!("check is not built yet"),
    ))
}
