//! `warden pflog`: print the records of a pflog pcap file, one per line, in a form close
//! to `tcpdump -n -e -r` (local time, like tcpdump) or as JSON objects.

use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use jiff::tz::TimeZone;

use super::{Cli, CliError, CliResult, EXIT_FAILURE};
use crate::source::pflog::PflogReader;

#[derive(Debug, Args)]
pub struct PflogArgs {
    /// A pcap file written by pflogd (link type 117).
    pub file: std::path::PathBuf,
    /// One JSON object per record.
    #[arg(long)]
    pub json: bool,
}

pub fn run(_cli: &Cli, args: &PflogArgs) -> CliResult {
    let reader = PflogReader::open(&args.file).map_err(|e| CliError::new(EXIT_FAILURE, e))?;
    let tz = TimeZone::system();
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(64 * 1024, stdout.lock());
    let mut records = 0u64;
    let mut bad = 0u64;
    let mut line = String::with_capacity(256);
    for item in reader {
        match item {
            Ok(ev) => {
                records += 1;
                if args.json {
                    serde_json::to_writer(&mut out, &ev).context("cannot write JSON")?;
                    out.write_all(b"\n")?;
                } else {
                    // Formatting into a String first spares the writer one call per piece.
                    let offset = tz.to_offset(ev.time).seconds();
                    line.clear();
                    let _ = writeln!(line, "{}", ev.tcpdump_line(offset));
                    out.write_all(line.as_bytes())?;
                }
            }
            Err(e) => {
                bad += 1;
                out.flush()?;
                eprintln!("warden: {e}");
            }
        }
    }
    out.flush()?;
    if bad > 0 {
        return Err(CliError::new(
            EXIT_FAILURE,
            anyhow::anyhow!(
                "{}: {bad} error(s), {records} record(s) printed",
                args.file.display()
            ),
        ));
    }
    Ok(ExitCode::SUCCESS)
}
