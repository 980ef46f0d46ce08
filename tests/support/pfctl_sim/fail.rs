//! `PFCTL_SIM_FAIL`: injected failures. One rule per line:
//!
//! ```text
//! [{OPT[,OPT…]}]REGEX=>EXIT[:STDERR]
//! OPT = times=N | after | delay=MS
//! ```
//!
//! REGEX (Rust `regex` syntax, unanchored) is matched against the arguments joined by
//! single spaces, program name excluded. The first matching rule that has fires left
//! wins. By default the invocation does nothing but write STDERR (with `\n`, `\t`, `\\`
//! unescaped and a final newline added) and exit with EXIT. `after` runs the command
//! normally first, then appends STDERR and replaces the exit status. `times=N` lets the
//! rule fire N times in total (counted across invocations). `delay=MS` answers only
//! after that many milliseconds. Blank lines and lines starting with `#` are ignored.

use std::collections::BTreeMap;
use std::path::Path;

use regex::Regex;

#[derive(Debug)]
pub struct Rule {
    /// The rule's text: the key of its fire count.
    pub text: String,
    pub regex: Regex,
    pub exit: i32,
    pub stderr: String,
    pub times: Option<u64>,
    pub after: bool,
    pub delay_ms: u64,
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

fn parse_rule(line: &str) -> Result<Rule, String> {
    let mut rest = line;
    let (mut times, mut after, mut delay_ms) = (None, false, 0);
    if let Some(r) = rest.strip_prefix('{') {
        let end = r.find('}').ok_or("unclosed '{'")?;
        for opt in r[..end].split(',').map(str::trim).filter(|o| !o.is_empty()) {
            if opt == "after" {
                after = true;
            } else if let Some(n) = opt.strip_prefix("times=") {
                times = Some(n.parse().map_err(|_| format!("bad times '{n}'"))?);
            } else if let Some(n) = opt.strip_prefix("delay=") {
                delay_ms = n.parse().map_err(|_| format!("bad delay '{n}'"))?;
            } else {
                return Err(format!("unknown option '{opt}'"));
            }
        }
        rest = &r[end + 1..];
    }
    let (re, action) = rest.split_once("=>").ok_or("missing '=>'")?;
    let (exit, stderr) = action.split_once(':').unwrap_or((action, ""));
    let exit: i32 = exit
        .trim()
        .parse()
        .map_err(|_| format!("bad exit status '{exit}'"))?;
    let regex = Regex::new(re).map_err(|e| format!("bad regex: {e}"))?;
    Ok(Rule {
        text: line.to_string(),
        regex,
        exit,
        stderr: unescape(stderr),
        times,
        after,
        delay_ms,
    })
}

pub fn parse(spec: &str) -> Result<Vec<Rule>, String> {
    spec.lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| parse_rule(l).map_err(|e| format!("PFCTL_SIM_FAIL: rule '{l}': {e}")))
        .collect()
}

/// Picks the rule for this invocation and records its firing. Runs under the state lock.
pub fn pick<'a>(
    rules: &'a [Rule],
    joined: &str,
    counts_path: &Path,
) -> Result<Option<&'a Rule>, String> {
    if rules.is_empty() {
        return Ok(None);
    }
    let mut counts: BTreeMap<String, u64> = match std::fs::read(counts_path) {
        Ok(b) => {
            serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", counts_path.display()))?
        }
        Err(_) => BTreeMap::new(),
    };
    let Some(rule) = rules.iter().find(|r| {
        r.regex.is_match(joined)
            && r.times
                .is_none_or(|n| counts.get(&r.text).copied().unwrap_or(0) < n)
    }) else {
        return Ok(None);
    };
    if rule.times.is_some() {
        *counts.entry(rule.text.clone()).or_insert(0) += 1;
        let text = serde_json::to_vec(&counts).map_err(|e| e.to_string())?;
        std::fs::write(counts_path, text).map_err(|e| format!("{}: {e}", counts_path.display()))?;
    }
    Ok(Some(rule))
}
