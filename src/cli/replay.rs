//! `warden replay`: jails over existing logs with simulated time.

use clap::Args;

use super::{Cli, CliError, CliResult, EXIT_FAILURE};

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Log files to replay; each is matched to the jails whose logpath names it.
    #[arg(required = true)]
    pub logs: Vec<std::path::PathBuf>,
    /// Only these jails.
    #[arg(long = "jail", short = 'j')]
    pub jails: Vec<String>,
    /// Print the timeline and summary as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(_cli: &Cli, _args: &ReplayArgs) -> CliResult {
    Err(CliError::new(
        EXIT_FAILURE,
        anyhow::anyhow!("replay is not built yet"),
    ))
}
