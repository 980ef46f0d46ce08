//! A `pfctl(8)` simulator for the tests of the PF backend: one binary that behaves like
//! FreeBSD 15 or OpenBSD 7.7 pfctl (arguments, stdout, stderr and exit status) against a
//! JSON model of the kernel state, so PF code can be exercised on Linux.
//!
//! # Environment
//!
//! * `PFCTL_SIM_STATE` (required): the JSON state file. Each invocation takes an
//!   exclusive `flock` on `STATE.lock`, reads the file (missing = empty state, pf
//!   enabled), acts, and writes it back, so concurrent invocations serialise.
//! * `PFCTL_SIM_OS`: `freebsd` (default) or `openbsd`: option string, sub-command word
//!   lists, usage text, error wording, `-s Tables`/`-v -T show` layouts, `-k` forms.
//! * `PFCTL_SIM_NOW`: fixed epoch seconds for `tzero`, `-T expire` and `ctime` output
//!   (printed in UTC); default: the real clock.
//! * `PFCTL_SIM_LOG`: appends one JSON line per invocation, written under the lock:
//!   `{"argv": [args without the program name], "stdin": text read or null,
//!   "stdout": …, "stderr": …, "exit": N}`.
//! * `PFCTL_SIM_FAIL`: failure injection, one rule per line,
//!   `[{times=N,after,delay=MS}]REGEX=>EXIT[:STDERR]` (see `fail.rs`).
//! * `PFCTL_SIM_DENY`: non-empty and not `0`: `/dev/pf` cannot be opened
//!   (`pfctl: /dev/pf: Permission denied`, exit 1) after argument checks.
//! * `PFCTL_SIM_KILL_BUG=1`: `-k A -k B` and `-K A -K B` put B in the source field
//!   like OpenBSD ≤ 1.389 and FreeBSD 004062345b; default is the fixed behaviour.
//! * `PFCTL_SIM_DELAY_MS`: sleep this long before acting (a slow pfctl).
//!
//! `pfctl-sim --sim-seed FILE.json` (`-` = stdin) merges JSON into the state (objects
//! key by key, anything else replaced) and `pfctl-sim --sim-dump` prints the normalised
//! state; neither is logged nor subject to injected failures.
//!
//! # Simulated
//!
//! BSD getopt with each OS's option string; `-t/-T` (add, delete, replace, flush, kill,
//! show, test, zero, expire, FreeBSD load and reset) with feedback (`-v`, `-vv`), A/B
//! counts, auto-created persistent tables, duplicate-name warnings, ESRCH/ENOENT/EINVAL/
//! ENOMEM (table-entries limit) errors, `-T test` exit 2; `-f` with `table` definitions
//! and verbatim rules; `-s rules|Anchors|Tables|states|Sources|memory` and FreeBSD
//! `-s Running`; `-F rules|Tables|states|Sources|info|Reset|all|nat|ethernet|queue|osfp`
//! with `-a 'X/*'` recursion; `-k` (network prefix, label, id[/creator], key, FreeBSD
//! gateway and nat, `-i`, FreeBSD `-M`, OpenBSD `-V`); `-K`; `-e`/`-d`; `-n`; `-q`;
//! `-x` messages; the usage texts.
//!
//! # Not simulated
//!
//! pf.conf beyond one statement per line (macros, lists in rules, inline brace anchors,
//! `include`, `table … file`), rule normalisation by `print_rule` (rules print as
//! stored), packet counters that move, DNS names and interface names as addresses,
//! `-s info|labels|timeouts|Interfaces|osfp|queue|nat|ether|all|creatorids`, `-S`/`-L`,
//! partial loads (`-A -N -O -R` on FreeBSD), ALTQ, and `-k`/`-K` under `-n` (skipped).
//! Those exit 70 with `pfctl-sim: … is not simulated` where they would need output.

mod addr;
mod ctx;
mod fail;
mod getopt;
mod os;
mod rules;
mod run;
mod state;
mod states;
mod store;
mod tables;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::ctx::Ctx;
use crate::os::Os;

const EX_SOFTWARE: i32 = 70;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn flag(name: &str) -> bool {
    env(name).is_some_and(|v| v != "0")
}

fn fatal(msg: &str) -> i32 {
    eprintln!("pfctl-sim: {msg}");
    EX_SOFTWARE
}

fn main() {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    std::process::exit(real_main(&args));
}

fn real_main(args: &[String]) -> i32 {
    let Some(state_path) = env("PFCTL_SIM_STATE").map(PathBuf::from) else {
        return fatal("PFCTL_SIM_STATE is not set");
    };
    let os = match Os::parse(env("PFCTL_SIM_OS").as_deref()) {
        Ok(os) => os,
        Err(m) => return fatal(&m),
    };
    match args.first().map(String::as_str) {
        Some("--sim-seed") => return sim_seed(&state_path, args.get(1).map(String::as_str)),
        Some("--sim-dump") => return sim_dump(&state_path),
        _ => {}
    }
    match simulate(os, &state_path, args) {
        Ok(code) => code,
        Err(m) => fatal(&m),
    }
}

fn now() -> Result<i64, String> {
    match env("PFCTL_SIM_NOW") {
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("PFCTL_SIM_NOW is not epoch seconds: '{v}'")),
        None => Ok(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)),
    }
}

fn simulate(os: Os, state_path: &Path, args: &[String]) -> Result<i32, String> {
    let now = now()?;
    let rules = fail::parse(&env("PFCTL_SIM_FAIL").unwrap_or_default())?;
    if let Some(ms) = env("PFCTL_SIM_DELAY_MS") {
        let ms: u64 = ms
            .trim()
            .parse()
            .map_err(|_| format!("PFCTL_SIM_DELAY_MS is not a number: '{ms}'"))?;
        std::thread::sleep(Duration::from_millis(ms));
    }

    let lock = store::lock(state_path)?;
    let mut st = store::load(state_path)?;
    let joined = args.join(" ");
    let rule = fail::pick(&rules, &joined, &store::counts_path(state_path))?;
    let mut ctx = Ctx::new(os, now, flag("PFCTL_SIM_KILL_BUG"), flag("PFCTL_SIM_DENY"));
    let code = match rule {
        Some(r) if !r.after => {
            ctx.err = r.stderr.clone();
            r.exit
        }
        _ => {
            let mut code = run::pfctl(&mut ctx, &mut st, args);
            if let Some(r) = rule {
                ctx.err.push_str(&r.stderr);
                code = r.exit;
            }
            st.prune();
            store::save(state_path, &st)?;
            code
        }
    };
    if let Some(log) = env("PFCTL_SIM_LOG") {
        let line = json!({
            "argv": args,
            "stdin": ctx.stdin_consumed(),
            "stdout": ctx.out,
            "stderr": ctx.err,
            "exit": code,
        });
        let mut text = line.to_string();
        text.push('\n');
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| format!("{log}: {e}"))?;
    }
    drop(lock);
    if let Some(r) = rule {
        std::thread::sleep(Duration::from_millis(r.delay_ms));
    }
    // A reader that went away is not the simulator's problem.
    let _ = std::io::stdout().write_all(ctx.out.as_bytes());
    let _ = std::io::stderr().write_all(ctx.err.as_bytes());
    Ok(code)
}

fn sim_seed(state_path: &Path, file: Option<&str>) -> i32 {
    let Some(file) = file else {
        return fatal("--sim-seed needs a JSON file (or - for stdin)");
    };
    let text = if file == "-" {
        let mut s = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut s) {
            return fatal(&format!("stdin: {e}"));
        }
        s
    } else {
        match std::fs::read_to_string(file) {
            Ok(s) => s,
            Err(e) => return fatal(&format!("{file}: {e}")),
        }
    };
    let patch: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => return fatal(&format!("{file}: {e}")),
    };
    let result = (|| {
        let _lock = store::lock(state_path)?;
        let mut value = store::load_value(state_path)?;
        store::merge(&mut value, patch);
        let st = store::from_value(value, file)?;
        store::save(state_path, &st)
    })();
    match result {
        Ok(()) => 0,
        Err(m) => fatal(&m),
    }
}

fn sim_dump(state_path: &Path) -> i32 {
    let result = (|| {
        let _lock = store::lock(state_path)?;
        let st = store::load(state_path)?;
        serde_json::to_string_pretty(&st).map_err(|e| e.to_string())
    })();
    match result {
        Ok(text) => {
            println!("{text}");
            0
        }
        Err(m) => fatal(&m),
    }
}
