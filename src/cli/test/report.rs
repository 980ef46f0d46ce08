//! What `warden test` prints: the settings, the per-regex and per-template counts, the
//! line totals and the missed/ignored lines (laid out as fail2ban-regex lays them out), the
//! JSON forms, and the `--out` formats.

use std::io::{self, Write};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::{Value, json};

use super::FilterOrigin;
use super::input::LogInput;
use crate::config::FilterConfig;
use crate::date::DateDetector;
use crate::filter::{EngineInfo, Failure, Filter, LineResult, Processed, RegexKind};

/// Lines listed per kind unless `--print-all-*` asks for all (fail2ban-regex's default).
const LIST_LIMIT: usize = 20;

/// How a line counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Matched,
    Ignored,
    Missed,
}

/// How many lines of each kind to keep for listing (None: the default bound).
#[derive(Debug, Clone, Copy, Default)]
pub struct ListLimits {
    pub matched: Option<usize>,
    pub missed: Option<usize>,
    pub ignored: Option<usize>,
}

/// Counts over the run.
#[derive(Debug)]
pub struct Stats {
    pub tested: u64,
    pub ignored: u64,
    pub matched: u64,
    pub missed: u64,
    pub prefregex: u64,
    pub failregex: Vec<u64>,
    pub ignoreregex: Vec<u64>,
    pub elapsed: Duration,
    matched_lines: Vec<String>,
    missed_lines: Vec<String>,
    ignored_lines: Vec<String>,
    limits: ListLimits,
}

fn keep(list: &mut Vec<String>, count: u64, limit: Option<usize>, line: &str) {
    let limit = limit.unwrap_or(LIST_LIMIT + 1);
    if count as usize <= limit {
        list.push(line.to_string());
    }
}

impl Stats {
    pub fn new(filter: &Filter, limits: ListLimits) -> Stats {
        let engines = filter.engines();
        let count = |k| engines.iter().filter(|e| e.kind == k).count();
        Stats {
            tested: 0,
            ignored: 0,
            matched: 0,
            missed: 0,
            prefregex: 0,
            failregex: vec![0; count(RegexKind::Failregex)],
            ignoreregex: vec![0; count(RegexKind::Ignoreregex)],
            elapsed: Duration::ZERO,
            matched_lines: Vec::new(),
            missed_lines: Vec::new(),
            ignored_lines: Vec::new(),
            limits: ListLimits {
                matched: Some(limits.matched.unwrap_or(0)),
                ..limits
            },
        }
    }

    /// Counts one line as fail2ban-regex does: ignored when an ignoreregex matched or a
    /// failregex matched with `F-NOFAIL`, matched when it produced a failure, else
    /// missed. Every failregex match counts for its regex.
    pub fn count(
        &mut self,
        line: &str,
        p: &Processed,
        ignore_hits: &[usize],
        prefregex: Option<bool>,
    ) -> Class {
        self.tested += 1;
        if prefregex == Some(true) {
            self.prefregex += 1;
        }
        for &i in ignore_hits {
            if let Some(n) = self.ignoreregex.get_mut(i) {
                *n += 1;
            }
        }
        let mut class = if ignore_hits.is_empty() {
            Class::Missed
        } else {
            Class::Ignored
        };
        if let LineResult::Matched(fs) = &p.result {
            for f in fs {
                if let Some(n) = self.failregex.get_mut(f.regex) {
                    *n += 1;
                }
            }
            if fs.iter().any(|f| f.nofail) {
                class = Class::Ignored;
            } else if class == Class::Missed {
                class = Class::Matched;
            }
        }
        match class {
            Class::Matched => {
                self.matched += 1;
                keep(
                    &mut self.matched_lines,
                    self.matched,
                    self.limits.matched,
                    line,
                );
            }
            Class::Ignored => {
                self.ignored += 1;
                keep(
                    &mut self.ignored_lines,
                    self.ignored,
                    self.limits.ignored,
                    line,
                );
            }
            Class::Missed => {
                self.missed += 1;
                keep(
                    &mut self.missed_lines,
                    self.missed,
                    self.limits.missed,
                    line,
                );
            }
        }
        class
    }

    /// Earlier lines a multi-line match took from the buffer: they were counted missed
    /// and now count as matched (fail2ban-regex's accounting).
    pub fn consumed(&mut self, lines: &[Arc<str>]) {
        for l in lines {
            if let Some(i) = self.missed_lines.iter().position(|m| **m == **l) {
                let line = self.missed_lines.remove(i);
                if self.limits.matched.unwrap_or(0) > self.matched_lines.len() {
                    self.matched_lines.push(line);
                }
            }
            self.matched += 1;
            self.missed = self.missed.saturating_sub(1);
        }
    }

    pub fn lines_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.tested as f64 / secs
        } else {
            0.0
        }
    }
}

/// What the run was set up with, for the header.
pub struct Settings<'a> {
    pub filter: &'a FilterConfig,
    pub origin: &'a FilterOrigin,
    pub ignoreregex: Option<&'a str>,
    pub maxlines: usize,
    pub datepattern: Option<&'a str>,
    pub log: &'a LogInput,
    pub zone: &'a TimeZone,
    pub now: Timestamp,
    pub now_given: bool,
}

fn short(s: &str, max: usize) -> String {
    if s.chars().count() > max {
        let cut: String = s.chars().take(max - 3).collect();
        format!("{cut}...")
    } else {
        s.to_string()
    }
}

fn list(w: &mut impl Write, items: &[String], header: Option<&str>) -> io::Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    if let Some(h) = header {
        writeln!(w, "|- {h}")?;
    }
    for i in items {
        writeln!(w, "|  {}", i.trim_end())?;
    }
    writeln!(w, "`-")
}

pub fn write_settings(w: &mut impl Write, s: &Settings<'_>) -> io::Result<()> {
    writeln!(w)?;
    writeln!(w, "Running tests")?;
    writeln!(w, "=============")?;
    writeln!(w)?;
    match s.origin {
        FilterOrigin::Named { location } => writeln!(
            w,
            "Use   failregex filter file : {}, basedir: {location}",
            s.filter.name
        )?,
        FilterOrigin::File(p) => writeln!(w, "Use   failregex file : {}", p.display())?,
        FilterOrigin::Regex => writeln!(
            w,
            "Use   failregex line : {}",
            short(&s.filter.failregex[0], 53)
        )?,
    }
    if !s.filter.args.is_empty() {
        let opts: Vec<String> = s
            .filter
            .args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        writeln!(w, "Use   filter options : {}", opts.join(", "))?;
    }
    if let Some(ig) = s.ignoreregex {
        writeln!(w, "Use ignoreregex line : {}", short(ig, 53))?;
    }
    writeln!(w, "Use         maxlines : {}", s.maxlines)?;
    match s.datepattern {
        Some(dp) => writeln!(w, "Use      datepattern : {}", dp.replace('\n', " | "))?,
        None => writeln!(w, "Use      datepattern : default templates")?,
    }
    match s.log {
        LogInput::File(p) => writeln!(w, "Use         log file : {}", p.display())?,
        LogInput::Stdin => writeln!(w, "Use         log file : (standard input)")?,
        LogInput::Literal(t) if !t.contains('\n') => {
            writeln!(w, "Use      single line : {}", short(t, 53))?
        }
        LogInput::Literal(t) => {
            let lines: Vec<&str> = t.split('\n').collect();
            writeln!(w, "Use       multi line : {} line(s)", lines.len())?;
            for (i, l) in lines.iter().take(5).enumerate() {
                writeln!(w, "| {:>2}: {}", i + 1, short(l, 53))?;
            }
            if lines.len() > 5 {
                writeln!(w, "| ...")?;
            }
            writeln!(w, "`-")?;
        }
    }
    writeln!(
        w,
        "Use        time zone : {}",
        s.zone.iana_name().unwrap_or("(TZ rule)")
    )?;
    writeln!(
        w,
        "Use   reference time : {}{}",
        s.now,
        if s.now_given { "" } else { " (now)" }
    )?;
    writeln!(w)
}

/// The templates that dated a line, most used first.
fn used_templates(dates: &DateDetector) -> Vec<usize> {
    let mut t: Vec<usize> = (0..dates.template_count())
        .filter(|&t| dates.template_hits(t) > 0)
        .collect();
    t.sort_by_key(|&t| std::cmp::Reverse(dates.template_hits(t)));
    t
}

fn engine_note(e: &EngineInfo) -> String {
    if e.reason.is_empty() {
        e.engine.to_string()
    } else {
        format!("{}: {}", e.engine, e.reason)
    }
}

fn regex_list(
    w: &mut impl Write,
    title: &str,
    regexes: &[String],
    hits: &[u64],
    engines: &[&EngineInfo],
) -> io::Result<()> {
    let total: u64 = hits.iter().sum();
    writeln!(w)?;
    writeln!(w, "{title}: {total} total")?;
    let mut out = Vec::new();
    for (i, re) in regexes.iter().enumerate() {
        out.push(format!(
            "{:>2}) [{}] {re}",
            i + 1,
            hits.get(i).copied().unwrap_or(0)
        ));
        if let Some(e) = engines.get(i) {
            out.push(format!("      engine: {}", engine_note(e)));
        }
    }
    list(w, &out, Some(" #) [# of hits] regular expression"))
}

fn lines_list(
    w: &mut impl Write,
    kind: &str,
    count: u64,
    lines: &[String],
    all: bool,
) -> io::Result<()> {
    if count == 0 {
        return Ok(());
    }
    let header = format!("{}{} line(s):", kind[..1].to_uppercase(), &kind[1..]);
    if all || count as usize <= LIST_LIMIT {
        list(w, lines, Some(&header))
    } else {
        writeln!(
            w,
            "{header} too many to print.  Use --print-all-{kind} to print all {count} lines"
        )
    }
}

pub fn write_results(
    w: &mut impl Write,
    stats: &Stats,
    filter: &Filter,
    fc: &FilterConfig,
    dates: &DateDetector,
) -> io::Result<()> {
    let engines = filter.engines();
    let of =
        |k: RegexKind| -> Vec<&EngineInfo> { engines.iter().filter(|e| e.kind == k).collect() };
    writeln!(w)?;
    writeln!(w, "Results")?;
    writeln!(w, "=======")?;
    if let Some(pre) = of(RegexKind::Prefregex).first() {
        writeln!(w)?;
        writeln!(w, "Prefregex: {} total", stats.prefregex)?;
        list(
            w,
            &[
                pre.expanded.clone(),
                format!("      engine: {}", engine_note(pre)),
            ],
            None,
        )?;
    }
    regex_list(
        w,
        "Failregex",
        &fc.failregex,
        &stats.failregex,
        &of(RegexKind::Failregex),
    )?;
    regex_list(
        w,
        "Ignoreregex",
        &fc.ignoreregex,
        &stats.ignoreregex,
        &of(RegexKind::Ignoreregex),
    )?;
    writeln!(w)?;
    writeln!(w, "Date template hits:")?;
    let templates: Vec<String> = used_templates(dates)
        .into_iter()
        .map(|t| format!("[{}] {}", dates.template_hits(t), dates.template_name(t)))
        .collect();
    list(w, &templates, Some("[# of hits] date format"))?;
    writeln!(w)?;
    writeln!(
        w,
        "Lines: {} lines, {} ignored, {} matched, {} missed",
        stats.tested, stats.ignored, stats.matched, stats.missed
    )?;
    writeln!(
        w,
        "[processed in {:.2} sec, {:.0} lines/s]",
        stats.elapsed.as_secs_f64(),
        stats.lines_per_second()
    )?;
    writeln!(w)?;
    let all = |l: Option<usize>| l == Some(usize::MAX);
    if stats.limits.matched.unwrap_or(0) > 0 {
        lines_list(w, "matched", stats.matched, &stats.matched_lines, true)?;
    }
    if stats.limits.ignored != Some(0) {
        lines_list(
            w,
            "ignored",
            stats.ignored,
            &stats.ignored_lines,
            all(stats.limits.ignored),
        )?;
    }
    if stats.limits.missed != Some(0) {
        lines_list(
            w,
            "missed",
            stats.missed,
            &stats.missed_lines,
            all(stats.limits.missed),
        )?;
    }
    Ok(())
}

/// Epoch seconds: a whole number when the time has no fraction.
fn epoch(t: Option<Timestamp>) -> Value {
    match t {
        None => Value::Null,
        Some(t) if t.subsec_nanosecond() == 0 => json!(t.as_second()),
        Some(t) => json!(t.as_nanosecond() as f64 / 1e9),
    }
}

fn failure_fields(f: &Failure) -> serde_json::Map<String, Value> {
    f.fields
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect()
}

/// One object per failure of a matched line.
pub fn write_json_failures(
    w: &mut impl Write,
    lineno: u64,
    time: Option<Timestamp>,
    failures: &[Failure],
) -> io::Result<()> {
    for f in failures.iter().filter(|f| !f.nofail) {
        let obj = json!({
            "line": lineno,
            "host": if f.pending { Value::Null } else { Value::String(f.id.clone()) },
            "time": epoch(time),
            "regex": f.regex + 1,
            "fields": failure_fields(f),
            "users": f.users,
        });
        serde_json::to_writer(&mut *w, &obj)?;
        w.write_all(b"\n")?;
    }
    Ok(())
}

pub fn write_json_summary(
    w: &mut impl Write,
    stats: &Stats,
    filter: &Filter,
    fc: &FilterConfig,
    dates: &DateDetector,
) -> io::Result<()> {
    let engines = filter.engines();
    let regexes = |kind: RegexKind, raw: &[String], hits: &[u64]| -> Vec<Value> {
        engines
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| {
                json!({
                    "index": e.index + 1,
                    "regex": raw.get(e.index).cloned().unwrap_or_default(),
                    "hits": hits.get(e.index).copied().unwrap_or(0),
                    "engine": e.engine,
                    "reason": e.reason,
                })
            })
            .collect()
    };
    let prefregex = engines
        .iter()
        .find(|e| e.kind == RegexKind::Prefregex)
        .map(|e| {
            json!({
                "regex": fc.prefregex,
                "hits": stats.prefregex,
                "engine": e.engine,
                "reason": e.reason,
            })
        });
    let templates: Vec<Value> = used_templates(dates)
        .into_iter()
        .map(|t| json!({"template": dates.template_name(t), "hits": dates.template_hits(t)}))
        .collect();
    let summary = json!({"summary": {
        "filter": fc.name,
        "file": fc.file,
        "options": fc.args,
        "lines": stats.tested,
        "ignored": stats.ignored,
        "matched": stats.matched,
        "missed": stats.missed,
        "seconds": stats.elapsed.as_secs_f64(),
        "lines_per_second": stats.lines_per_second().round(),
        "prefregex": prefregex,
        "failregex": regexes(RegexKind::Failregex, &fc.failregex, &stats.failregex),
        "ignoreregex": regexes(RegexKind::Ignoreregex, &fc.ignoreregex, &stats.ignoreregex),
        "dates": templates,
    }});
    serde_json::to_writer(&mut *w, &summary)?;
    w.write_all(b"\n")
}

/// A `--out` format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// The failure id.
    Id,
    /// The address (the `ip` field when the id is not one).
    Ip,
    /// The matched lines.
    Msg,
    /// `[id, time, {fields}]` as JSON.
    Row,
    /// One field (`user`, `F-USER`).
    Field(String),
    /// A template with `<tag>`s.
    Template(String),
}

/// `F-USER` → `user`; other names as they are (lowercased).
fn field_name(tag: &str) -> String {
    let t = tag.strip_prefix("F-").unwrap_or(tag);
    t.to_ascii_lowercase()
}

impl Out {
    pub fn parse(s: &str) -> Out {
        match s {
            "id" | "fid" => Out::Id,
            "ip" => Out::Ip,
            "msg" | "matches" => Out::Msg,
            "row" => Out::Row,
            _ if s.contains('<') => Out::Template(s.to_string()),
            _ => Out::Field(field_name(s)),
        }
    }

    pub fn write(
        &self,
        w: &mut impl Write,
        time: Option<Timestamp>,
        failures: &[Failure],
    ) -> io::Result<()> {
        for f in failures.iter().filter(|f| !f.nofail && !f.pending) {
            match self {
                Out::Id => writeln!(w, "{}", f.id)?,
                Out::Ip => writeln!(w, "{}", f.fields.get("ip").unwrap_or(&f.id))?,
                Out::Msg => {
                    for m in &f.matches {
                        writeln!(w, "{m}")?;
                    }
                }
                Out::Row => {
                    serde_json::to_writer(&mut *w, &json!([f.id, epoch(time), f.fields]))?;
                    w.write_all(b"\n")?;
                }
                Out::Field(name) => match f.fields.get(name) {
                    Some(v) => writeln!(w, "{v}")?,
                    None if name == "users" => writeln!(
                        w,
                        "{}",
                        f.users.iter().cloned().collect::<Vec<_>>().join(",")
                    )?,
                    None => writeln!(w)?,
                },
                Out::Template(t) => writeln!(w, "{}", render(t, time, f))?,
            }
        }
        Ok(())
    }
}

/// Replaces `<ip>`, `<fid>`, `<time>`, `<msg>`, `<F-NAME>` and field names in `t`;
/// unknown tags stay as written.
fn render(t: &str, time: Option<Timestamp>, f: &Failure) -> String {
    let mut out = String::with_capacity(t.len() + 32);
    let mut rest = t;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('>') else {
            out.push_str(&rest[open..]);
            return out;
        };
        let tag = &after[..close];
        let value = match tag {
            "ip" => Some(f.fields.get("ip").unwrap_or(&f.id).clone()),
            "fid" | "id" => Some(f.id.clone()),
            "time" => time.map(|t| {
                let v = epoch(Some(t));
                v.to_string()
            }),
            "msg" | "matches" => Some(f.matches.join("\n")),
            "users" => Some(f.users.iter().cloned().collect::<Vec<_>>().join(",")),
            _ => f.fields.get(&field_name(tag)).cloned(),
        };
        match value {
            Some(v) => out.push_str(&v),
            None => {
                out.push('<');
                out.push_str(tag);
                out.push('>');
            }
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn failure() -> Failure {
        Failure {
            id: "192.0.2.7".into(),
            addr: Some("192.0.2.7".parse().unwrap()),
            prefix: None,
            needs_dns: false,
            time: Timestamp::from_second(1_124_013_600).unwrap(),
            regex: 2,
            fields: BTreeMap::from([
                ("user".to_string(), "root".to_string()),
                ("ip4".to_string(), "192.0.2.7".to_string()),
            ]),
            users: BTreeSet::new(),
            matches: vec!["Aug 14 12:00:00 sshd: Failed root 192.0.2.7".into()],
            nofail: false,
            pending: false,
        }
    }

    #[test]
    fn templates_substitute_known_tags_only() {
        let f = failure();
        let t = Some(Timestamp::from_second(1_124_013_600).unwrap());
        assert_eq!(
            render("<time> <ip> <F-USER> <nope>", t, &f),
            "1124013600 192.0.2.7 root <nope>"
        );
        assert_eq!(render("x < y", t, &f), "x < y");
    }

    #[test]
    fn out_formats() {
        let f = failure();
        let mut buf = Vec::new();
        for (fmt, want) in [
            ("id", "192.0.2.7\n"),
            ("user", "root\n"),
            ("F-USER", "root\n"),
            (
                "row",
                "[\"192.0.2.7\",1124013600,{\"ip4\":\"192.0.2.7\",\"user\":\"root\"}]\n",
            ),
        ] {
            buf.clear();
            Out::parse(fmt)
                .write(&mut buf, Some(f.time), std::slice::from_ref(&f))
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&buf), want, "{fmt}");
        }
    }

    #[test]
    fn epoch_is_whole_unless_fractional() {
        assert_eq!(epoch(Some(Timestamp::from_second(5).unwrap())), json!(5));
        assert_eq!(
            epoch(Some(Timestamp::from_millisecond(5_500).unwrap())),
            json!(5.5)
        );
        assert_eq!(epoch(None), Value::Null);
    }
}
