//! `warden check`: load a configuration directory and print the resolved jails.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::anyhow;
use clap::Args;
use serde::Serialize;

use super::{Cli, CliError, CliResult, EXIT_USAGE};
use crate::config::{
    ActionConfig, Config, ConfigLocation, DaemonSettings, Diagnostic, FilterConfig, JailConfig,
    LogBackend, UseDns,
};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Print the resolved configuration as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also print jails that are not enabled.
    #[arg(long)]
    pub all: bool,
}

/// What `--json` prints: the configuration with the jails the listing shows.
#[derive(Serialize)]
struct Report<'a> {
    dir: &'a std::path::Path,
    daemon: &'a DaemonSettings,
    jails: Vec<&'a JailConfig>,
    errors: &'a [Diagnostic],
    warnings: &'a [Diagnostic],
}

pub fn run(cli: &Cli, args: &CheckArgs) -> CliResult {
    let location = ConfigLocation::resolve(cli.config.as_deref());
    let config = location.load().map_err(|e| CliError::new(EXIT_USAGE, e))?;
    let jails: Vec<&JailConfig> = config
        .jails
        .iter()
        .filter(|j| args.all || j.enabled)
        .collect();
    let out = if args.json {
        let report = Report {
            dir: &config.dir,
            daemon: &config.daemon,
            jails,
            errors: &config.errors,
            warnings: &config.warnings,
        };
        let mut s = serde_json::to_string_pretty(&report)?;
        s.push('\n');
        s
    } else {
        listing(&config, &jails, args.all)
    };
    print_out(&out)?;
    if config.errors.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    if !args.json {
        let mut err = String::new();
        for d in &config.errors {
            let _ = writeln!(err, "{d}");
        }
        eprint!("{err}");
    }
    let n = config.errors.len();
    Err(CliError::new(
        EXIT_USAGE,
        anyhow!(
            "{n} error{} in the configuration at {}",
            if n == 1 { "" } else { "s" },
            config.dir.display()
        ),
    ))
}

fn print_out(s: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(s.as_bytes())?;
    stdout.flush()
}

/// Seconds as fail2ban-style units (`10m`, `1d 12h`), `-1` as permanent.
fn human(secs: i64) -> String {
    if secs < 0 {
        return "permanent".into();
    }
    if secs == 0 {
        return "0s".into();
    }
    let mut rest = secs;
    let mut parts = Vec::new();
    for (unit, len) in [
        ("w", 604_800),
        ("d", 86_400),
        ("h", 3600),
        ("m", 60),
        ("s", 1),
    ] {
        if rest >= len {
            parts.push(format!("{}{unit}", rest / len));
            rest %= len;
        }
    }
    parts.join(" ")
}

fn listing(config: &Config, jails: &[&JailConfig], all: bool) -> String {
    let mut o = String::new();
    let enabled = config.jails.iter().filter(|j| j.enabled).count();
    let _ = writeln!(
        o,
        "configuration {} ({} jails, {} enabled)",
        config.dir.display(),
        config.jails.len(),
        enabled
    );
    let d = &config.daemon;
    let _ = writeln!(
        o,
        "daemon: socket {}, pidfile {}, database {} (purge after {}, {} matches kept), log {} to {}",
        d.socket.display(),
        d.pidfile.display(),
        d.dbfile.display(),
        human(d.dbpurgeage),
        d.dbmaxmatches,
        d.loglevel,
        d.logtarget
    );
    if jails.is_empty() {
        let _ = writeln!(
            o,
            "\nno {}jail{}",
            if all { "" } else { "enabled " },
            if all { "" } else { " (--all lists every jail)" }
        );
    }
    for j in jails {
        jail(&mut o, j);
    }
    if !config.warnings.is_empty() {
        let _ = writeln!(o, "\nwarnings:");
        for w in &config.warnings {
            let _ = writeln!(o, "  {w}");
        }
    }
    let _ = writeln!(
        o,
        "\n{} error{}, {} warning{}",
        config.errors.len(),
        if config.errors.len() == 1 { "" } else { "s" },
        config.warnings.len(),
        if config.warnings.len() == 1 { "" } else { "s" }
    );
    o
}

fn jail(o: &mut String, j: &JailConfig) {
    let _ = writeln!(
        o,
        "\n[{}] {}  ({})",
        j.name,
        if j.enabled { "enabled" } else { "disabled" },
        j.span
    );
    filter(o, &j.filter);
    let backend = match &j.backend {
        LogBackend::Auto => "auto".to_string(),
        LogBackend::Polling => "polling".to_string(),
        LogBackend::Notify => "inotify".to_string(),
        LogBackend::Systemd(opts) if opts.is_empty() => "systemd".to_string(),
        LogBackend::Systemd(opts) => format!(
            "systemd[{}]",
            opts.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        LogBackend::Pflog => "pflog".to_string(),
        LogBackend::Ledger => "ledger (bans recorded by the other jails)".to_string(),
    };
    let _ = writeln!(o, "  backend      {backend}");
    for (p, tail) in j.logpath.iter().zip(&j.logpath_tail) {
        let _ = writeln!(
            o,
            "  logpath      {p}{}",
            if *tail { " (tail)" } else { "" }
        );
    }
    if j.logencoding != "auto" || j.logtimezone.is_some() {
        let _ = writeln!(
            o,
            "  encoding     {}{}",
            j.logencoding,
            j.logtimezone
                .as_ref()
                .map(|z| format!(", timezone {z}"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(
        o,
        "  timing       maxretry {} within findtime {}, bantime {}, maxmatches {}",
        j.maxretry,
        human(j.findtime),
        human(j.bantime),
        j.maxmatches
    );
    let e = &j.escalation;
    if e.increment {
        let mut s = format!("increment on, factor {}", e.factor);
        if !e.multipliers.is_empty() {
            let m: Vec<String> = e.multipliers.iter().map(|m| m.to_string()).collect();
            let _ = write!(s, ", multipliers {}", m.join(" "));
        }
        if let Some(m) = e.maxtime {
            let _ = write!(s, ", maxtime {}", human(m));
        }
        if let Some(r) = e.rndtime {
            let _ = write!(s, ", rndtime {}", human(r));
        }
        if e.overalljails {
            s.push_str(", across all jails");
        }
        let _ = writeln!(o, "  escalation   {s}");
    }
    let _ = writeln!(
        o,
        "  ignore       ignoreself {}, ignoreip {}{}",
        if j.ignoreself { "yes" } else { "no" },
        if j.ignoreip.is_empty() {
            "-".to_string()
        } else {
            j.ignoreip.join(" ")
        },
        j.ignorecommand
            .as_ref()
            .map(|c| format!(", ignorecommand {c}"))
            .unwrap_or_default()
    );
    let usedns = match j.usedns {
        UseDns::Yes => "yes",
        UseDns::Warn => "warn",
        UseDns::No => "no",
        UseDns::Raw => "raw",
    };
    let _ = writeln!(
        o,
        "  ports        {} {}, usedns {usedns}",
        j.port, j.protocol
    );
    if j.actions.is_empty() {
        let _ = writeln!(o, "  actions      (none)");
    }
    for (i, a) in j.actions.iter().enumerate() {
        action(o, a, i == 0);
    }
}

fn filter(o: &mut String, f: &FilterConfig) {
    let args = if f.args.is_empty() {
        String::new()
    } else {
        format!(
            "[{}]",
            f.args
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let file = f
        .file
        .as_ref()
        .map(|p| format!("  ({})", p.display()))
        .unwrap_or_default();
    let _ = writeln!(o, "  filter       {}{args}{file}", f.name);
    if let Some(p) = &f.prefregex {
        let _ = writeln!(o, "    prefregex    {p}");
    }
    for (i, r) in f.failregex.iter().enumerate() {
        let label = if i == 0 { "failregex" } else { "" };
        let _ = writeln!(o, "    {label:<12} {}) {r}", i + 1);
    }
    for (i, r) in f.ignoreregex.iter().enumerate() {
        let label = if i == 0 { "ignoreregex" } else { "" };
        let _ = writeln!(o, "    {label:<12} {}) {r}", i + 1);
    }
    let _ = writeln!(
        o,
        "    datepattern  {}",
        f.datepattern.as_deref().unwrap_or("(default templates)")
    );
    let _ = writeln!(o, "    maxlines     {}", f.maxlines);
    if !f.journalmatch.is_empty() {
        let alts: Vec<String> = f.journalmatch.iter().map(|a| a.join(" ")).collect();
        let _ = writeln!(o, "    journalmatch {}", alts.join(" + "));
    }
}

fn action(o: &mut String, a: &ActionConfig, first: bool) {
    let label = if first { "actions" } else { "" };
    let name = if a.name == a.kind {
        a.kind.clone()
    } else {
        format!("{} (as {})", a.kind, a.name)
    };
    let native = a.params.get("native");
    let kind = match native {
        Some(n) => format!("native {n}"),
        None => "shell commands".to_string(),
    };
    let _ = writeln!(o, "  {label:<12} {name}: {kind}  ({})", a.span);
    // The options that shape what is banned; commands are rendered per ban.
    let shown: Vec<String> = a
        .params
        .iter()
        .filter(|(k, v)| {
            !k.starts_with("known/")
                && !k.starts_with("action")
                && !k.contains('/')
                && !v.contains('\n')
                && !["native", "name", "actname"].contains(&k.as_str())
                && (native.is_some()
                    || a.args.contains_key(k.as_str())
                    || ["port", "protocol", "blocktype", "chain"].contains(&k.as_str()))
        })
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !shown.is_empty() {
        let _ = writeln!(o, "{:<17}{}", "", shown.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::human;

    #[test]
    fn durations_read_like_the_config() {
        assert_eq!(human(600), "10m");
        assert_eq!(human(129_600), "1d 12h");
        assert_eq!(human(-1), "permanent");
        assert_eq!(human(604_800 + 1), "1w 1s");
    }
}
