//! `warden replay`: jails over existing logs with simulated time.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

use clap::Args;

use super::{Cli, CliError, CliResult, EXIT_USAGE, fmt_time};
use crate::config::ConfigLocation;
use crate::daemon::replay::{Report, replay};

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Log files to replay; each is matched to the jails whose logpath names it.
    #[arg(required = true)]
    pub logs: Vec<std::path::PathBuf>,
    /// Only these jails (they read every given log).
    #[arg(long = "jail", short = 'j')]
    pub jails: Vec<String>,
    /// Print the timeline and summary as JSON.
    #[arg(long)]
    pub json: bool,
}

fn duration(secs: i64) -> String {
    if secs < 0 {
        return "permanent".into();
    }
    let mut rest = secs;
    let mut out = String::new();
    for (unit, len) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if rest >= len || (unit == "s" && out.is_empty()) {
            let _ = write!(out, "{}{unit}", rest / len);
            rest %= len;
        }
    }
    out
}

/// The timeline and the summary as text.
pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let jw = r
        .jails
        .iter()
        .map(|j| j.jail.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let tw = r
        .events
        .iter()
        .map(|e| e.target.len())
        .max()
        .unwrap_or(7)
        .max(7);
    let _ = writeln!(
        o,
        "{:<19}  {:<jw$}  {:<5}  {:<tw$}  {:>8}  {:>8}",
        "TIME", "JAIL", "EVENT", "ADDRESS", "FAILURES", "BANTIME"
    );
    for e in &r.events {
        let (failures, bantime) = if e.event == "ban" {
            (e.failures.to_string(), duration(e.bantime))
        } else {
            (String::new(), String::new())
        };
        let _ = writeln!(
            o,
            "{:<19}  {:<jw$}  {:<5}  {:<tw$}  {:>8}  {:>8}",
            fmt_time(e.time),
            e.jail,
            e.event,
            e.target,
            failures,
            bantime
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{:<jw$}  {:>10}  {:>10}  {:>6}  {:>9}  {:>13}",
        "JAIL", "LINES", "FAILURES", "BANS", "ADDRESSES", "BANNED AT END"
    );
    for j in &r.jails {
        let _ = writeln!(
            o,
            "{:<jw$}  {:>10}  {:>10}  {:>6}  {:>9}  {:>13}",
            j.jail, j.lines, j.failures, j.bans, j.addresses, j.banned_at_end
        );
    }
    o
}

pub fn run(cli: &Cli, args: &ReplayArgs) -> CliResult {
    let location = ConfigLocation::resolve(cli.config.as_deref());
    let config = location.load().map_err(|e| CliError::new(EXIT_USAGE, e))?;
    for d in &config.errors {
        eprintln!("warden: {d}");
    }
    let report = replay(&config, &args.logs, &args.jails, jiff::Timestamp::now())
        .map_err(|e| CliError::new(EXIT_USAGE, e))?;
    let text = if args.json {
        let mut s = serde_json::to_string_pretty(&report)?;
        s.push('\n');
        s
    } else {
        render(&report)
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
