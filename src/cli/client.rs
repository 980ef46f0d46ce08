//! Client verbs that talk to the daemon over the control socket (fail2ban-client's verbs).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use super::{Cli, CliError, CliResult, EXIT_NO_DAEMON, fmt_time};
use crate::control::client::{ClientError, request};
use crate::control::protocol::{Answer, BanEntry, Request};

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

/// How long the client waits for an answer (a reload may restart firewall actions).
const TIMEOUT: Duration = Duration::from_secs(120);

/// The control socket: `--socket`, else `socket` from warden.conf of the configuration in
/// use (or, for a user other than root who cannot use its directory, the per-user socket
/// the daemon falls back to: see `daemon::paths`), else the default.
pub fn socket_path(cli: &Cli) -> PathBuf {
    if let Some(s) = &cli.socket {
        return s.clone();
    }
    crate::daemon::paths::client_socket(&crate::config::daemon_settings_for(cli.config.as_deref()))
}

fn call(cli: &Cli, req: Request) -> Result<Answer, CliError> {
    let socket = socket_path(cli);
    request(&socket, &req, TIMEOUT).map_err(|e| match e {
        ClientError::NotRunning { .. } => CliError::new(EXIT_NO_DAEMON, e),
        other => CliError::new(super::EXIT_FAILURE, other),
    })
}

fn print_json<T: Serialize>(v: &T) -> CliResult {
    println!(
        "{}",
        serde_json::to_string_pretty(v).map_err(anyhow::Error::from)?
    );
    Ok(ExitCode::SUCCESS)
}

fn unexpected(a: &Answer) -> CliError {
    CliError::new(
        super::EXIT_FAILURE,
        anyhow::anyhow!("unexpected answer from the daemon: {a:?}"),
    )
}

fn fmt_remaining(now: i64, b: &BanEntry) -> String {
    match b.expires {
        None => "permanent".into(),
        Some(e) => {
            let left = (e - now).max(0);
            format!(
                "until {} ({}h{:02}m{:02}s left)",
                fmt_time(e),
                left / 3600,
                left % 3600 / 60,
                left % 60
            )
        }
    }
}

pub fn status(cli: &Cli, a: &StatusArgs) -> CliResult {
    let answer = call(
        cli,
        Request::Status {
            jail: a.jail.clone(),
        },
    )?;
    if a.json {
        return print_json(&answer);
    }
    match answer {
        Answer::Status(s) => {
            println!("Status");
            println!("|- Number of jail:\t{}", s.jails.len());
            let names: Vec<&str> = s.jails.iter().map(|j| j.name.as_str()).collect();
            println!("|- Jail list:\t{}", names.join(", "));
            if !s.pending_firewall_errors.is_empty() {
                println!("|- Firewall errors being retried:");
                for e in &s.pending_firewall_errors {
                    println!("|    {e}");
                }
            }
            println!(
                "`- Uptime:\t{}s (pid {}, warden {})",
                s.uptime, s.pid, s.version
            );
            Ok(ExitCode::SUCCESS)
        }
        Answer::Jail(j) => {
            println!("Status for the jail: {}", j.name);
            println!("|- Filter");
            println!("|  |- Currently failed:\t{}", j.filter.currently_failed);
            println!("|  |- Total failed:\t{}", j.filter.total_failed);
            println!(
                "|  |- Lines read/matched:\t{}/{}",
                j.filter.lines_read, j.filter.lines_matched
            );
            println!("|  `- File list:\t{}", j.filter.sources.join(" "));
            println!("`- Actions");
            println!("   |- Currently banned:\t{}", j.actions.currently_banned);
            println!("   |- Total banned:\t{}", j.actions.total_banned);
            println!("   |- Banned IP list:\t{}", j.actions.banned.join(" "));
            println!("   |- Firewall:\t{}", j.actions.actions.join("; "));
            for e in &j.actions.errors {
                println!("   |- Firewall error being retried:\t{e}");
            }
            if j.actions.kills.is_empty() {
                println!("   `- States killed:\t0");
            } else {
                let total: u64 = j.actions.kills.iter().map(|k| k.killed).sum();
                println!("   `- States killed:\t{total}");
                for (i, k) in j.actions.kills.iter().enumerate() {
                    let branch = if i + 1 == j.actions.kills.len() {
                        "`-"
                    } else {
                        "|-"
                    };
                    println!(
                        "      {branch} {}: {} ({}) at {}",
                        k.target,
                        k.killed,
                        k.scope,
                        fmt_time(k.time)
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        other => Err(unexpected(&other)),
    }
}

/// Reports the addresses the daemon refused; failure when there were any.
fn report_invalid(invalid: &[String]) -> ExitCode {
    for b in invalid {
        eprintln!("warden: {b}");
    }
    if invalid.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::EXIT_FAILURE)
    }
}

pub fn ban(cli: &Cli, a: &BanArgs) -> CliResult {
    let answer = call(
        cli,
        Request::Ban {
            jail: a.jail.clone(),
            addrs: a.addrs.clone(),
        },
    )?;
    if a.json {
        return print_json(&answer);
    }
    let Answer::Ban(o) = answer else {
        return Err(unexpected(&answer));
    };
    for b in &o.banned {
        println!("banned {b} in {}", a.jail);
    }
    for b in &o.already {
        println!("{b} was already banned in {} (ban renewed)", a.jail);
    }
    Ok(report_invalid(&o.invalid))
}

pub fn unban(cli: &Cli, a: &UnbanArgs) -> CliResult {
    let answer = call(
        cli,
        Request::Unban {
            addrs: a.addrs.clone(),
            jail: a.jail.clone(),
            all: a.all,
        },
    )?;
    if a.json {
        return print_json(&answer);
    }
    let Answer::Unban(o) = answer else {
        return Err(unexpected(&answer));
    };
    for u in &o.unbanned {
        println!("unbanned {u}");
    }
    for n in &o.not_banned {
        println!("{n} is not banned");
    }
    Ok(report_invalid(&o.invalid))
}

pub fn banned(cli: &Cli, a: &BannedArgs) -> CliResult {
    let answer = call(
        cli,
        Request::Banned {
            addrs: a.addrs.clone(),
        },
    )?;
    if a.json {
        return print_json(&answer);
    }
    let Answer::Banned(list) = answer else {
        return Err(unexpected(&answer));
    };
    if list.bans.is_empty() {
        println!("no bans");
    }
    for b in &list.bans {
        println!(
            "{}\t{}\t{}\tbanned {} (#{}, {})",
            b.target,
            b.jail,
            fmt_remaining(list.now, b),
            fmt_time(b.start),
            b.bancount,
            b.origin
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn reload(cli: &Cli, a: &ReloadArgs) -> CliResult {
    let answer = call(
        cli,
        Request::Reload {
            jail: a.jail.clone(),
        },
    )?;
    if a.json {
        return print_json(&answer);
    }
    let Answer::Reload(o) = answer else {
        return Err(unexpected(&answer));
    };
    for (what, list) in [
        ("added", &o.added),
        ("removed", &o.removed),
        ("changed", &o.changed),
        ("unchanged", &o.unchanged),
    ] {
        if !list.is_empty() {
            println!("{what}: {}", list.join(", "));
        }
    }
    for e in &o.errors {
        eprintln!("warden: {e}");
    }
    Ok(if o.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::EXIT_USAGE)
    })
}

pub fn stop(cli: &Cli, a: &SimpleArgs) -> CliResult {
    let answer = call(cli, Request::Stop)?;
    if a.json {
        return print_json(&answer);
    }
    println!("Shutdown successful");
    Ok(ExitCode::SUCCESS)
}

pub fn ping(cli: &Cli, a: &SimpleArgs) -> CliResult {
    let answer = call(cli, Request::Ping)?;
    if a.json {
        return print_json(&answer);
    }
    println!("Server replied: pong");
    Ok(ExitCode::SUCCESS)
}

pub fn version(cli: &Cli, a: &SimpleArgs) -> CliResult {
    let client = env!("CARGO_PKG_VERSION");
    let daemon = call(cli, Request::Version);
    if a.json {
        #[derive(Serialize)]
        struct Both {
            client: &'static str,
            daemon: Option<Answer>,
        }
        return print_json(&Both {
            client,
            daemon: daemon.ok(),
        });
    }
    println!("warden {client}");
    match daemon {
        Ok(Answer::Version(v)) => {
            println!("daemon {} (protocol {})", v.version, v.protocol);
            Ok(ExitCode::SUCCESS)
        }
        Ok(other) => Err(unexpected(&other)),
        Err(e) => {
            eprintln!("warden: {:#}", e.error);
            Ok(ExitCode::from(e.code))
        }
    }
}

pub fn metrics(cli: &Cli, a: &SimpleArgs) -> CliResult {
    let answer = call(cli, Request::Metrics)?;
    if a.json {
        return print_json(&answer);
    }
    let Answer::Metrics { text } = answer else {
        return Err(unexpected(&answer));
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}
