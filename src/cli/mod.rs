//! The command line: one subcommand per file, all of them behind the `warden` binary.
//!
//! Exit codes (documented in the README): 0 success, 1 runtime failure, 2 usage or
//! configuration error, 3 the daemon is not running (client verbs), 4 `warden test` or
//! `warden check` found no match / found errors where that is the question asked.

mod check;
mod client;
mod pflog;
mod replay;
mod run;
mod test;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit status for a command that failed while running.
pub const EXIT_FAILURE: u8 = 1;
/// Exit status for bad usage or a configuration that does not load.
pub const EXIT_USAGE: u8 = 2;
/// Exit status of a client verb when no daemon answers on the socket.
pub const EXIT_NO_DAEMON: u8 = 3;

/// An error that the binary turns into a message and a documented exit status.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub error: anyhow::Error,
}

impl CliError {
    pub fn new(code: u8, error: impl Into<anyhow::Error>) -> Self {
        CliError {
            code,
            error: error.into(),
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError::new(EXIT_FAILURE, e)
    }
}

pub type CliResult = Result<ExitCode, CliError>;

#[derive(Debug, Parser)]
#[command(
    name = "warden",
    version,
    about = "Intrusion prevention: read logs, find abuse, ban the source in the firewall",
    propagate_version = true
)]
pub struct Cli {
    /// Configuration directory (fail2ban layout). Default: /etc/warden if it exists,
    /// else the configuration embedded in the binary.
    #[arg(long, short = 'c', global = true, env = "WARDEN_CONFIG")]
    pub config: Option<PathBuf>,

    /// Control socket path, overriding `socket` in warden.conf.
    #[arg(long, short = 's', global = true, env = "WARDEN_SOCKET")]
    pub socket: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: watch logs, ban and unban.
    Run(run::RunArgs),
    /// Load a configuration directory and print the resolved jails.
    Check(check::CheckArgs),
    /// Run a filter over a log file or a line (like fail2ban-regex).
    Test(test::TestArgs),
    /// Run jails over existing logs with simulated time; touches no firewall.
    Replay(replay::ReplayArgs),
    /// Print the records of a pflog pcap file.
    Pflog(pflog::PflogArgs),
    /// Show the daemon's jails, or one jail in detail.
    Status(client::StatusArgs),
    /// Ban addresses in a jail.
    Ban(client::BanArgs),
    /// Lift bans.
    Unban(client::UnbanArgs),
    /// List banned addresses, or the bans of given addresses.
    Banned(client::BannedArgs),
    /// Reload the configuration (all jails, or one).
    Reload(client::ReloadArgs),
    /// Stop the daemon.
    Stop(client::SimpleArgs),
    /// Check that the daemon answers.
    Ping(client::SimpleArgs),
    /// Print the client's and the daemon's versions.
    Version(client::SimpleArgs),
    /// Print the daemon's counters in the OpenMetrics text format.
    Metrics(client::SimpleArgs),
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(ref a) => run::run(&cli, a),
        Command::Check(ref a) => check::run(&cli, a),
        Command::Test(ref a) => test::run(&cli, a),
        Command::Replay(ref a) => replay::run(&cli, a),
        Command::Pflog(ref a) => pflog::run(&cli, a),
        Command::Status(ref a) => client::status(&cli, a),
        Command::Ban(ref a) => client::ban(&cli, a),
        Command::Unban(ref a) => client::unban(&cli, a),
        Command::Banned(ref a) => client::banned(&cli, a),
        Command::Reload(ref a) => client::reload(&cli, a),
        Command::Stop(ref a) => client::stop(&cli, a),
        Command::Ping(ref a) => client::ping(&cli, a),
        Command::Version(ref a) => client::version(&cli, a),
        Command::Metrics(ref a) => client::metrics(&cli, a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e.error) {
                return ExitCode::SUCCESS;
            }
            eprintln!("warden: {:#}", e.error);
            ExitCode::from(e.code)
        }
    }
}

/// An epoch second as local date and time, for people to read.
fn fmt_time(epoch: i64) -> String {
    jiff::Timestamp::from_second(epoch)
        .map(|t| {
            t.to_zoned(crate::date::local_zone())
                .strftime("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|_| epoch.to_string())
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
