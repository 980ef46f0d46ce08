//! `warden pflog`: print the records of a pflog pcap file.

use clap::Args;

use super::{Cli, CliError, CliResult, EXIT_FAILURE};

#[derive(Debug, Args)]
pub struct PflogArgs {
    /// A pcap file written by pflogd (link type 117).
    pub file: std::path::PathBuf,
    /// One JSON object per record.
    #[arg(long)]
    pub json: bool,
}

pub fn run(_cli: &Cli, _args: &PflogArgs) -> CliResult {
    Err(CliError::new(
        EXIT_FAILURE,
        anyhow::anyhow!("pflog is not built yet"),
    ))
}
