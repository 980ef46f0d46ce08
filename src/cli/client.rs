//! Client verbs that talk to the daemon over the control socket.

use clap::Args;

use super::{Cli, CliError, CliResult, EXIT_FAILURE};

#[derive(Debug, Args)]
pub struct SimpleArgs {
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// A jail name; without it, the daemon-wide status.
    pub jail: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BanArgs {
    pub jail: String,
    #[arg(required = true)]
    pub addrs: Vec<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct UnbanArgs {
    /// Addresses or networks to unban.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub addrs: Vec<String>,
    /// Only lift this jail's hold.
    #[arg(long, short = 'j')]
    pub jail: Option<String>,
    /// Lift every ban.
    #[arg(long)]
    pub all: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BannedArgs {
    pub addrs: Vec<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReloadArgs {
    pub jail: Option<String>,
    #[arg(long)]
    pub json: bool,
}

fn unbuilt() -> CliResult {
    Err(CliError::new(
        EXIT_FAILURE,
        anyhow::anyhow!("the control client is not built yet"),
    ))
}

pub fn status(_cli: &Cli, _a: &StatusArgs) -> CliResult {
    unbuilt()
}
pub fn ban(_cli: &Cli, _a: &BanArgs) -> CliResult {
    unbuilt()
}
pub fn unban(_cli: &Cli, _a: &UnbanArgs) -> CliResult {
    unbuilt()
}
pub fn banned(_cli: &Cli, _a: &BannedArgs) -> CliResult {
    unbuilt()
}
pub fn reload(_cli: &Cli, _a: &ReloadArgs) -> CliResult {
    unbuilt()
}
pub fn stop(_cli: &Cli, _a: &SimpleArgs) -> CliResult {
    unbuilt()
}
pub fn ping(_cli: &Cli, _a: &SimpleArgs) -> CliResult {
    unbuilt()
}
pub fn version(_cli: &Cli, _a: &SimpleArgs) -> CliResult {
    unbuilt()
}
