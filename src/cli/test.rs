//! `warden test`: warden's fail2ban-regex. Runs a filter (from the configuration, a filter
//! file, or a literal regex) over a log file or a literal line the way fail2ban-regex does —
//! every failregex tried on every line, dates found and cut out with the filter's
//! datepattern, no findtime cut-off — and reports what matched, with which regex and
//! engine, and what did not.
//!
//! Exit status: 0 when at least one line matched, 1 when none did, 2 for bad usage, a
//! filter that does not load or compile (with its file and line), or an unreadable log.

mod input;
mod report;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, anyhow};
use clap::{Args, ValueEnum};
use jiff::Timestamp;

use super::{Cli, CliError, CliResult, EXIT_FAILURE, EXIT_USAGE};
use crate::config::{self, ConfigLocation, FilterConfig, Span};
use crate::date::{self, DateDetector};
use crate::filter::{
    Filter, FilterError, LineProcessor, LineResult, RegexKind, SessionClock, UseDnsMode,
};
use input::LogInput;
use report::{Out, Stats};

/// Files at least this large get a progress bar (when stderr is a terminal).
const PROGRESS_MIN_BYTES: u64 = 32 << 20;

#[derive(Debug, Args)]
pub struct TestArgs {
    /// A log file, `-` for standard input, or literal log text (one line, or several
    /// separated by newlines).
    pub log: String,
    /// A filter name from the configuration (`sshd`, `sshd[mode=aggressive]`), a filter
    /// file (`./my.conf[logtype=journal]`), or a literal failregex.
    pub filter: String,
    /// A literal ignoreregex, added to the filter's.
    pub ignoreregex: Option<String>,
    /// Date pattern replacing the filter's `datepattern`.
    #[arg(short = 'd', long)]
    pub datepattern: Option<String>,
    /// Zone of dates that carry none (default: TZ, else the system zone).
    #[arg(long, visible_alias = "TZ")]
    pub timezone: Option<String>,
    /// How `<HOST>` matches host names (default: the filter's `usedns`, else warn).
    #[arg(long, value_enum)]
    pub usedns: Option<UseDnsArg>,
    /// Report failure ids as written (`usedns = raw`).
    #[arg(short = 'r', long)]
    pub raw: bool,
    /// Lines buffered for multi-line regexes, replacing the filter's `maxlines`.
    #[arg(short = 'L', long)]
    pub maxlines: Option<usize>,
    /// Stop at the first failregex that matches a line (as the daemon does) instead of
    /// trying them all.
    #[arg(long)]
    pub no_check_all: bool,
    /// Print only failures, one per line: `id`, `ip`, `msg`, `row`, a field name
    /// (`user`), or a template such as `'<time> <ip> <F-USER>'`. Implies --no-check-all.
    #[arg(short = 'o', long, value_name = "FORMAT")]
    pub out: Option<String>,
    /// One JSON object per failure, then a summary object.
    #[arg(long, conflicts_with = "out")]
    pub json: bool,
    /// Reference time for year inference: epoch seconds or RFC 3339 (default: now).
    #[arg(long)]
    pub now: Option<String>,
    /// List every matched line.
    #[arg(long)]
    pub print_all_matched: bool,
    /// List every missed line, not only the first few.
    #[arg(long, conflicts_with = "print_no_missed")]
    pub print_all_missed: bool,
    /// List every ignored line, not only the first few.
    #[arg(long, conflicts_with = "print_no_ignored")]
    pub print_all_ignored: bool,
    /// Do not list missed lines.
    #[arg(long)]
    pub print_no_missed: bool,
    /// Do not list ignored lines.
    #[arg(long)]
    pub print_no_ignored: bool,
    /// Never show a progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UseDnsArg {
    Yes,
    Warn,
    No,
    Raw,
}

impl From<UseDnsArg> for UseDnsMode {
    fn from(u: UseDnsArg) -> Self {
        match u {
            UseDnsArg::Yes => UseDnsMode::Yes,
            UseDnsArg::Warn => UseDnsMode::Warn,
            UseDnsArg::No => UseDnsMode::No,
            UseDnsArg::Raw => UseDnsMode::Raw,
        }
    }
}

/// Where the filter came from, for the settings report.
#[derive(Debug)]
pub(crate) enum FilterOrigin {
    /// A filter of the configuration, by name.
    Named { location: ConfigLocation },
    /// A filter file given by path.
    File(PathBuf),
    /// A literal failregex.
    Regex,
}

fn usage(e: impl Into<anyhow::Error>) -> CliError {
    CliError::new(EXIT_USAGE, e)
}

pub fn run(cli: &Cli, args: &TestArgs) -> CliResult {
    let now = match &args.now {
        Some(s) => parse_now(s).map_err(usage)?,
        None => Timestamp::now(),
    };
    let zone = match &args.timezone {
        Some(z) => date::parse_timezone(z).map_err(|e| usage(anyhow!("--timezone {z:?}: {e}")))?,
        None => date::local_zone(),
    };
    let location = ConfigLocation::resolve(cli.config.as_deref());
    let (mut fc, origin) = resolve_filter(&location, &args.filter)?;
    if let Some(ig) = &args.ignoreregex {
        fc.ignoreregex.push(ig.clone());
    }
    if let Some(dp) = &args.datepattern {
        fc.datepattern = Some(dp.clone());
    }
    if let Some(n) = args.maxlines {
        if n == 0 {
            return Err(usage(anyhow!("--maxlines must be at least 1")));
        }
        fc.maxlines = n;
    }
    let usedns = if args.raw {
        UseDnsMode::Raw
    } else if let Some(u) = args.usedns {
        u.into()
    } else {
        match fc
            .options
            .get("usedns")
            .map(|v| v.trim().to_ascii_lowercase())
        {
            Some(v) if v == "yes" => UseDnsMode::Yes,
            Some(v) if v == "no" => UseDnsMode::No,
            Some(v) if v == "raw" => UseDnsMode::Raw,
            _ => UseDnsMode::Warn,
        }
    };
    let spec = crate::filter::spec_from_config(&fc, usedns);
    let filter = Filter::compile(&spec).map_err(|e| usage(filter_error(&fc, &e)))?;
    // `--now` decides the year of dates without one; the years a four-digit year field
    // accepts follow the clock, as in fail2ban.
    let dates = DateDetector::new(fc.datepattern.as_deref(), zone.clone()).map_err(|e| {
        let at = fc
            .file
            .as_ref()
            .filter(|_| args.datepattern.is_none())
            .map(|f| format!("{}: ", f.display()))
            .unwrap_or_default();
        usage(anyhow!("{at}datepattern: {e}"))
    })?;
    let filter = Arc::new(filter);
    let mut processor = LineProcessor::new(filter.clone(), dates);
    processor.check_all = !args.no_check_all && args.out.is_none();
    processor.live = false;
    processor.set_session_clock(SessionClock::Wall);
    // The log is read as lines split at newlines.
    processor.set_split_lines(true);
    // The summary only counts failures; their fields are printed by --json and --out.
    processor.set_details(args.json || args.out.is_some());

    let log = LogInput::from_arg(&args.log);
    let out_format = args.out.as_deref().map(Out::parse);
    let text = args.out.is_none() && !args.json;
    let mut stdout = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    if text {
        let settings = report::Settings {
            filter: &fc,
            origin: &origin,
            ignoreregex: args.ignoreregex.as_deref(),
            maxlines: fc.maxlines,
            datepattern: fc.datepattern.as_deref(),
            log: &log,
            zone: &zone,
            now,
            now_given: args.now.is_some(),
        };
        report::write_settings(&mut stdout, &settings)?;
        stdout.flush()?;
    }

    let progress = match log.size() {
        Some(size)
            if size >= PROGRESS_MIN_BYTES
                && !args.no_progress
                && std::io::stderr().is_terminal() =>
        {
            let bar = indicatif::ProgressBar::new(size);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            Some(bar)
        }
        _ => None,
    };

    let limits = report::ListLimits {
        matched: args.print_all_matched.then_some(usize::MAX),
        missed: if args.print_no_missed {
            Some(0)
        } else if args.print_all_missed {
            Some(usize::MAX)
        } else {
            None
        },
        ignored: if args.print_no_ignored {
            Some(0)
        } else if args.print_all_ignored {
            Some(usize::MAX)
        } else {
            None
        },
    };
    let mut stats = Stats::new(&filter, limits);
    let mut resolver = Resolver::default();
    let mut write_error: Option<std::io::Error> = None;
    let started = Instant::now();
    let read = log.for_each_line(
        |bytes| {
            if let Some(b) = &progress {
                b.set_position(bytes);
            }
        },
        |lineno, line| {
            // fail2ban-regex skips blank lines and comments.
            if line.is_empty() || line.starts_with('#') || write_error.is_some() {
                return;
            }
            let mut p = processor.process(line, now);
            resolve_names(&mut p, &mut resolver);
            let state = processor.state();
            let class = stats.count(
                line,
                &p,
                state.last_ignore_hits(),
                state.prefregex_matched(),
            );
            stats.consumed(state.last_consumed());
            if class != report::Class::Matched {
                return;
            }
            let LineResult::Matched(failures) = &p.result else {
                return;
            };
            let r = if args.json {
                report::write_json_failures(&mut stdout, lineno, p.time, failures)
            } else if let Some(fmt) = &out_format {
                fmt.write(&mut stdout, p.time, failures)
            } else {
                Ok(())
            };
            if let Err(e) = r {
                write_error = Some(e);
            }
        },
    );
    let elapsed = started.elapsed();
    if let Some(b) = progress {
        b.finish_and_clear();
    }
    if let Some(e) = write_error {
        return Err(CliError::new(EXIT_FAILURE, e));
    }
    read.map_err(|e| CliError::new(EXIT_USAGE, anyhow!("reading the log: {e}")))?;
    stats.elapsed = elapsed;

    if args.json {
        report::write_json_summary(&mut stdout, &stats, &filter, &fc, processor.dates())?;
    } else if text {
        report::write_results(&mut stdout, &stats, &filter, &fc, processor.dates())?;
    }
    stdout.flush()?;
    Ok(if stats.matched > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    })
}

/// Host names looked up once each (fail2ban-regex resolves `usedns = yes/warn` names).
#[derive(Debug, Default)]
struct Resolver {
    cache: std::collections::HashMap<String, Vec<std::net::IpAddr>>,
}

impl Resolver {
    fn lookup(&mut self, host: &str) -> &[std::net::IpAddr] {
        self.cache
            .entry(host.to_string())
            .or_insert_with(|| crate::jail::dns::system_lookup(host))
    }
}

/// Replaces failures whose id is a host name by one failure per address the name has;
/// a name without addresses yields no failure.
fn resolve_names(p: &mut crate::filter::Processed, resolver: &mut Resolver) {
    let LineResult::Matched(fs) = &mut p.result else {
        return;
    };
    if !fs.iter().any(|f| f.needs_dns) {
        return;
    }
    let mut out = Vec::with_capacity(fs.len());
    for f in fs.drain(..) {
        if !f.needs_dns {
            out.push(f);
            continue;
        }
        for ip in resolver.lookup(&f.id) {
            let mut r = f.clone();
            r.id = ip.to_string();
            r.addr = Some(*ip);
            r.needs_dns = false;
            out.push(r);
        }
    }
    if out.is_empty() {
        p.result = LineResult::Missed;
    } else {
        *fs = out;
    }
}

/// `--now`: epoch seconds (possibly fractional) or an RFC 3339 timestamp.
fn parse_now(s: &str) -> anyhow::Result<Timestamp> {
    let t = s.trim();
    if let Ok(secs) = t.parse::<i64>() {
        return Timestamp::from_second(secs).with_context(|| format!("--now {s:?}"));
    }
    if let Ok(secs) = t.parse::<f64>()
        && secs.is_finite()
    {
        let ns = (secs * 1e9).round() as i128;
        return Timestamp::from_nanosecond(ns).with_context(|| format!("--now {s:?}"));
    }
    t.parse::<Timestamp>()
        .with_context(|| format!("--now {s:?}: want epoch seconds or an RFC 3339 time"))
}

/// fail2ban-regex's test for "this names a filter": a word, path and/or `[options]`.
fn filter_shaped(s: &str) -> bool {
    let (name, rest) = match s.find('[') {
        Some(i) => (&s[..i], Some(&s[i..])),
        None => (s, None),
    };
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '/' | '-' | '.'))
        && rest.is_none_or(|r| r.ends_with(']'))
}

/// Whether `name` is a filter of the configuration at `location`.
fn in_config(location: &ConfigLocation, name: &str) -> bool {
    let candidates = [
        format!("filter.d/{name}.conf"),
        format!("filter.d/{name}.local"),
    ];
    match location {
        ConfigLocation::Dir(d) => candidates.iter().any(|c| d.join(c).is_file()),
        ConfigLocation::Embedded => config::embedded_files()
            .iter()
            .any(|(p, _)| candidates.iter().any(|c| c == p)),
    }
}

/// The FILTER argument as a filter configuration: a named filter, a filter file, or a
/// literal regex. A name that is neither a filter nor a file is taken as a regex, as
/// fail2ban-regex does, unless it carries `[options]`.
fn resolve_filter(
    location: &ConfigLocation,
    arg: &str,
) -> Result<(FilterConfig, FilterOrigin), CliError> {
    if filter_shaped(arg) {
        let name = arg.split('[').next().unwrap_or(arg);
        let options = &arg[name.len()..];
        let pathlike = name.contains('/') || name.ends_with(".conf") || name.ends_with(".local");
        let stem = name
            .strip_suffix(".conf")
            .or_else(|| name.strip_suffix(".local"))
            .unwrap_or(name);
        let spec_origin = if pathlike && Path::new(name).is_file() {
            Some((arg.to_string(), FilterOrigin::File(PathBuf::from(name))))
        } else if !name.contains('/') && in_config(location, stem) {
            Some((
                format!("{stem}{options}"),
                FilterOrigin::Named {
                    location: location.clone(),
                },
            ))
        } else if !options.is_empty() || pathlike && name.contains('/') {
            let what = if pathlike && name.contains('/') {
                format!("filter file {name} not found")
            } else {
                format!("filter `{stem}` not found in {location}/filter.d")
            };
            return Err(usage(anyhow!(what)));
        } else {
            None
        };
        if let Some((spec, origin)) = spec_origin {
            let fc = config::load_filter(location, &spec).map_err(|errors| {
                let text: Vec<String> = errors.iter().map(|d| d.to_string()).collect();
                usage(anyhow!("{}", text.join("\n")))
            })?;
            return Ok((fc, origin));
        }
    }
    let span = Span {
        file: "(command line)".into(),
        line: 0,
    };
    Ok((
        FilterConfig {
            name: "(command line)".into(),
            file: None,
            args: BTreeMap::new(),
            prefregex: None,
            failregex: vec![arg.to_string()],
            ignoreregex: Vec::new(),
            maxlines: 1,
            datepattern: None,
            journalmatch: Vec::new(),
            options: BTreeMap::new(),
            failregex_spans: vec![span],
        },
        FilterOrigin::Regex,
    ))
}

/// A compile error with the place of the regex: the failregex's file and line, else the
/// filter file.
fn filter_error(fc: &FilterConfig, e: &FilterError) -> anyhow::Error {
    let failregex = match e {
        FilterError::Regex {
            kind: RegexKind::Failregex,
            index,
            ..
        }
        | FilterError::NoFailureId { index, .. } => Some(*index),
        FilterError::Empty {
            kind: RegexKind::Failregex,
            index,
        } => Some(*index),
        _ => None,
    };
    let at = failregex
        .and_then(|i| fc.failregex_spans.get(i))
        .filter(|s| s.line > 0 || fc.file.is_some())
        .map(|s| s.to_string())
        .or_else(|| fc.file.as_ref().map(|f| f.display().to_string()));
    match at {
        Some(at) => anyhow!("{at}: {e}"),
        None => anyhow!("{e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_accepts_epoch_and_rfc3339() {
        assert_eq!(parse_now("1124013600").unwrap().as_second(), 1_124_013_600);
        assert_eq!(
            parse_now("1124013600.5").unwrap().as_millisecond(),
            1_124_013_600_500
        );
        assert_eq!(
            parse_now("2005-08-14T10:00:00Z").unwrap().as_second(),
            1_124_013_600
        );
        assert!(parse_now("yesterday").is_err());
    }

    #[test]
    fn filter_shapes() {
        assert!(filter_shaped("sshd"));
        assert!(filter_shaped("sshd[mode=aggressive]"));
        assert!(filter_shaped("/etc/fail2ban/filter.d/sshd.conf"));
        assert!(filter_shaped("./my-filter.local[logtype=journal]"));
        assert!(!filter_shaped("^Failed .* from <HOST>"));
        assert!(!filter_shaped("sshd[mode=x"));
        assert!(!filter_shaped(""));
    }

    #[test]
    fn unknown_names_are_regexes_unless_they_have_options() {
        let loc = ConfigLocation::Embedded;
        let (fc, origin) = resolve_filter(&loc, "sshd").unwrap();
        assert!(matches!(origin, FilterOrigin::Named { .. }));
        assert!(fc.failregex.len() > 3);
        let (fc, origin) = resolve_filter(&loc, "no-such-filter").unwrap();
        assert!(matches!(origin, FilterOrigin::Regex));
        assert_eq!(fc.failregex, vec!["no-such-filter".to_string()]);
        let e = resolve_filter(&loc, "no-such-filter[mode=x]").unwrap_err();
        assert_eq!(e.code, EXIT_USAGE);
        assert!(e.error.to_string().contains("not found"), "{}", e.error);
        let e = resolve_filter(&loc, "./missing/dir/x.conf").unwrap_err();
        assert!(e.error.to_string().contains("not found"), "{}", e.error);
    }
}
