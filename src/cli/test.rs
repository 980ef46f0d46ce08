//! `warden test`: warden's fail2ban-regex.

use clap::Args;

use super::{Cli, CliError, CliResult, EXIT_FAILURE};

#[derive(Debug, Args)]
pub struct TestArgs {
    /// A log file, or a literal log line.
    pub log: String,
    /// A filter name from the configuration, a filter file, or a literal regex,
    /// optionally followed by `[key=value, ...]`.
    pub filter: String,
    /// An optional literal ignoreregex (or ignore filter).
    pub ignoreregex: Option<String>,
    /// One JSON object per failure, then a summary object.
    #[arg(long)]
    pub json: bool,
    /// Reference time for year inference: epoch seconds or RFC 3339.
    #[arg(long)]
    pub now: Option<String>,
}

pub fn run(_cli: &Cli, _args: &TestArgs) -> CliResult {
    Err(CliError::new(
        EXIT_FAILURE,
        anyhow::anyhow!("test is not built yet"),
    ))
}
