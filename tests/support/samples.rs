//! fail2ban's sample-log test (`fail2ban/tests/samplestestcase.py`) run with warden's
//! filters: the annotated sample logs are read as that test reads them, every line goes
//! through warden's line processor for every filter variant in force, and each line's
//! outcome is checked against its `failJSON` annotation as the test checks it.
//!
//! The format: `# failJSON: {...}` describes the next line (taken verbatim);
//! `# filterOptions: {...}` or `[{...}, ...]` sets the option variants that every
//! following line runs through (keys starting with `test.` steer the test:
//! `test.condition`, `test.filter-name`, `test.prefix-line`); `# fileOptions: {...}` is
//! merged under every variant; `# addFILE: "name"` queues another sample file; any other
//! comment or blank line is skipped, and an unannotated line must not match.
//!
//! Test conditions are fail2ban's: now = [`TEST_NOW`], local zone [`TEST_TZ`] (passed to
//! the date detector, never through the environment), every failregex tried on every line
//! (check-all), no findtime cut-off, raw failure ids, and one processor per variant that
//! keeps its multi-line and session state across the files of a run. Journal variants
//! (`logtype=journal`) get `test.prefix-line` in front of the line and "now" as their time.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;
use warden::config::{self, ConfigLocation};
use warden::date::DateDetector;
use warden::filter::{
    Failure, Filter, LineProcessor, LineResult, Processed, SessionClock, UseDnsMode,
    spec_from_config,
};

use super::fail2ban::{TEST_NOW, annotated_timestamp, test_now, test_zone};

/// `TEST_NOW` as fail2ban's journal simulation writes it (UTC, ISO 8601).
const TEST_NOW_TEXT: &str = "2005-08-14T10:00:00";

/// A JSON object with its keys in the order written (Python dicts keep that order, and a
/// variant's name is built from it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ordered(pub Vec<(String, Value)>);

impl Ordered {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Python's `dict.update`: existing keys keep their place.
    fn update(&mut self, other: &Ordered) {
        for (k, v) in &other.0 {
            match self.0.iter_mut().find(|(x, _)| x == k) {
                Some(slot) => slot.1 = v.clone(),
                None => self.0.push((k.clone(), v.clone())),
            }
        }
    }

    fn text(&self, key: &str) -> Option<String> {
        self.get(key).map(value_text)
    }

    /// Python's truth value of `dict.get(key)`.
    fn truthy(&self, key: &str) -> bool {
        self.get(key).is_some_and(truthy)
    }
}

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Ordered, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, Value>()? {
                    out.push((k, v));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    Many(Vec<Ordered>),
    One(Ordered),
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// A JSON value as the text a filter option receives.
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Python's `repr` of a JSON value (for variant names such as `sshd{'mode': 'ddos'}`).
fn py_repr(v: &Value) -> String {
    match v {
        Value::String(s) => {
            if s.contains('\'') && !s.contains('"') {
                format!("\"{s}\"")
            } else {
                format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
            }
        }
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => "None".into(),
        other => other.to_string(),
    }
}

fn dict_repr(o: &[(String, Value)]) -> String {
    let items: Vec<String> = o
        .iter()
        .map(|(k, v)| format!("'{k}': {}", py_repr(v)))
        .collect();
    format!("{{{}}}", items.join(", "))
}

/// The few expression forms the corpus uses in `test.condition` and `constraint`:
/// `name == '...'`, `opts.get('key') == '...'`, and their `!=` forms.
fn eval_condition(expr: &str, name: &str, opts: &Ordered) -> bool {
    let (lhs, rhs, equal) = if let Some((l, r)) = expr.split_once("==") {
        (l, r, true)
    } else if let Some((l, r)) = expr.split_once("!=") {
        (l, r, false)
    } else {
        panic!("unsupported condition {expr:?}")
    };
    let unquote = |s: &str| -> Option<String> {
        let s = s.trim();
        if s == "None" {
            return None;
        }
        let q = s.chars().next().filter(|c| *c == '\'' || *c == '"');
        match q {
            Some(q) if s.len() >= 2 && s.ends_with(q) => Some(s[1..s.len() - 1].to_string()),
            _ => panic!("unsupported operand {s:?} in {expr:?}"),
        }
    };
    let lhs = lhs.trim();
    let left: Option<String> = if lhs == "name" {
        Some(name.to_string())
    } else if let Some(key) = lhs
        .strip_prefix("opts.get(")
        .and_then(|r| r.strip_suffix(')'))
    {
        unquote(key).and_then(|k| opts.text(&k))
    } else {
        panic!("unsupported operand {lhs:?} in {expr:?}")
    };
    (left == unquote(rhs)) == equal
}

/// A filter run: the filter's name and the configuration it is read from.
#[derive(Debug, Clone)]
pub struct FilterUnderTest {
    pub name: String,
    pub location: ConfigLocation,
}

/// What a conformance run found.
#[derive(Debug, Default)]
pub struct Conformance {
    /// Filters run.
    pub filters: usize,
    /// Line × variant checks made.
    pub evaluations: usize,
    pub agreements: usize,
    /// Lines where warden's outcome differs from the annotation, with the reason.
    pub disagreements: Vec<String>,
    /// Failregexes of a variant that no sample line used (fail2ban's "Regex has no
    /// samples").
    pub unsampled: Vec<String>,
    /// Filters or sample files that could not be read.
    pub errors: Vec<String>,
    /// Lines where a processor that only counts failures (`set_details(false)`, as
    /// `warden test` without `--json` runs) gives another outcome than the full one.
    pub count_only_differences: Vec<String>,
}

impl Conformance {
    /// Agreeing checks over all checks; a filter that cannot be read counts as one check
    /// that failed, and so does a failregex without a sample.
    pub fn rate(&self) -> f64 {
        let total = self.evaluations + self.unsampled.len() + self.errors.len();
        if total == 0 {
            return 0.0;
        }
        self.agreements as f64 / total as f64
    }

    pub fn report(&self, title: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{title}: {} filters, {} line checks, {} agree, {} disagree, {} regexes without a \
             sample, {} errors: agreement {:.2} %",
            self.filters,
            self.evaluations,
            self.agreements,
            self.disagreements.len(),
            self.unsampled.len(),
            self.errors.len(),
            self.rate() * 100.0
        );
        if !self.count_only_differences.is_empty() {
            let _ = writeln!(
                s,
                "{} lines where counting only differs from the full run:",
                self.count_only_differences.len()
            );
        }
        for d in self
            .errors
            .iter()
            .chain(&self.disagreements)
            .chain(&self.unsampled)
            .chain(&self.count_only_differences)
        {
            let _ = writeln!(s, "  {d}");
        }
        s
    }
}

/// One filter instance of a run (a distinct option combination).
struct Variant {
    processor: LineProcessor,
    /// The same filter without failure details, fed the same lines.
    counting: LineProcessor,
    failregex: Vec<String>,
    used: BTreeSet<usize>,
}

/// The state of one filter's test, as samplestestcase keeps it across the files it reads.
struct Run<'a> {
    test: &'a FilterUnderTest,
    variants: BTreeMap<String, Result<Variant, String>>,
    order: Vec<String>,
    /// The variants the current lines run through: (variant name, options).
    current: Vec<(String, Ordered)>,
    used_regexes: BTreeSet<String>,
    out: &'a mut Conformance,
}

impl Run<'_> {
    /// The variant named `key`, read on first use (samplestestcase's `_readFilter`).
    fn variant(&mut self, key: &str, filter_opts: &Ordered) {
        if self.variants.contains_key(key) {
            return;
        }
        let v = load_variant(self.test, filter_opts);
        if let Err(e) = &v {
            self.out
                .errors
                .push(format!("{key}: the filter does not load: {e}"));
        }
        self.order.push(key.to_string());
        self.variants.insert(key.to_string(), v);
    }

    fn set_options(&mut self, list: Vec<Ordered>, common: &Ordered, ignore_block: &mut bool) {
        self.current.clear();
        *ignore_block = false;
        for o in list {
            let mut opts = common.clone();
            opts.update(&o);
            if opts.truthy("test.condition") {
                let cond = opts.text("test.condition").unwrap_or_default();
                *ignore_block = !eval_condition(&cond, &self.test.name, &opts);
            }
            if *ignore_block {
                continue;
            }
            let filter_opts = Ordered(
                opts.0
                    .iter()
                    .filter(|(k, _)| !k.starts_with("test."))
                    .cloned()
                    .collect(),
            );
            let suffix = match opts.text("test.filter-name").filter(|s| !s.is_empty()) {
                Some(n) => n,
                None if filter_opts.0.is_empty() => String::new(),
                None => dict_repr(&filter_opts.0),
            };
            let key = format!("{}{suffix}", self.test.name);
            self.variant(&key, &filter_opts);
            self.current.push((key, opts));
        }
    }

    fn line(&mut self, file: &str, lineno: usize, raw: &str, faildata: &Ordered) {
        if self.current.is_empty() {
            let key = self.test.name.clone();
            self.variant(&key, &Ordered::default());
            self.current.push((key, Ordered::default()));
        }
        let mut line = raw.trim_end_matches(['\r', '\n']).to_string();
        let current = self.current.clone();
        for (key, opts) in &current {
            if faildata.truthy("constraint") {
                let expr = faildata.text("constraint").unwrap_or_default();
                if !eval_condition(&expr, &self.test.name, opts) {
                    continue;
                }
            }
            let Some(Ok(v)) = self.variants.get_mut(key) else {
                continue;
            };
            // As in the test, a journal variant's prefix sticks to the line.
            let (p, c) = if opts.text("logtype").as_deref() != Some("journal") {
                (
                    v.processor.process(&line, test_now()),
                    v.counting.process(&line, test_now()),
                )
            } else {
                if let Some(prefix) = opts.text("test.prefix-line").filter(|s| !s.is_empty()) {
                    line = format!("{prefix}{line}");
                }
                (
                    v.processor.process_dated(&line, test_now(), TEST_NOW_TEXT),
                    v.counting.process_dated(&line, test_now(), TEST_NOW_TEXT),
                )
            };
            if counted(&p) != counted(&c) {
                self.out.count_only_differences.push(format!(
                    "{key} {file}:{lineno}: {:?} / counting only: {:?}",
                    counted(&p),
                    counted(&c)
                ));
            }
            self.out.evaluations += 1;
            match check(&p, faildata) {
                Ok(used) => {
                    self.out.agreements += 1;
                    for i in used {
                        v.used.insert(i);
                        if let Some(r) = v.failregex.get(i) {
                            self.used_regexes.insert(r.clone());
                        }
                    }
                }
                Err(why) => self.out.disagreements.push(format!(
                    "{key} {file}:{lineno}: {why}\n      line: {line:?}\n      expected: {}",
                    serde_json::to_string(
                        &faildata
                            .0
                            .iter()
                            .cloned()
                            .collect::<serde_json::Map<_, _>>()
                    )
                    .unwrap_or_default()
                )),
            }
            // Pending and nofail results count as samples of their regex whatever the line
            // was annotated with.
            if let LineResult::Matched(fs) = &p.result {
                for f in fs.iter().filter(|f| f.pending || f.nofail) {
                    v.used.insert(f.regex);
                    if let Some(r) = v.failregex.get(f.regex) {
                        self.used_regexes.insert(r.clone());
                    }
                }
            }
        }
    }

    fn finish(self) {
        for key in &self.order {
            let Some(Ok(v)) = self.variants.get(key) else {
                continue;
            };
            for (i, r) in v.failregex.iter().enumerate() {
                if !v.used.contains(&i) && !self.used_regexes.contains(r) {
                    self.out
                        .unsampled
                        .push(format!("{key}: regex has no samples: {i}: {r:?}"));
                }
            }
        }
    }
}

fn load_variant(test: &FilterUnderTest, opts: &Ordered) -> Result<Variant, String> {
    let spec = if opts.0.is_empty() {
        test.name.clone()
    } else {
        let args: Vec<String> = opts
            .0
            .iter()
            .map(|(k, v)| {
                let t = value_text(v);
                let q = if t.contains('"') { '\'' } else { '"' };
                format!("{k}={q}{t}{q}")
            })
            .collect();
        format!("{}[{}]", test.name, args.join(", "))
    };
    let fc = config::load_filter(&test.location, &spec).map_err(|errors| {
        errors
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    // The sample test reads ids raw and leaves the filter's usedns aside.
    let filter = Filter::compile(&spec_from_config(&fc, UseDnsMode::Raw))
        .map_err(|e| format!("{spec}: {e}"))?;
    // The test's "now" decides the year of dates without one; the years a `%ExY` accepts
    // were fixed when fail2ban imported its strptime module, by the real clock.
    let dates = DateDetector::new(fc.datepattern.as_deref(), test_zone())
        .map_err(|e| format!("{spec}: datepattern: {e}"))?;
    let filter = Arc::new(filter);
    let mut processor = LineProcessor::new(filter.clone(), dates.clone());
    processor.check_all = true;
    processor.live = false;
    processor.set_session_clock(SessionClock::Wall);
    let mut counting = LineProcessor::new(filter, dates);
    counting.check_all = true;
    counting.live = false;
    counting.set_session_clock(SessionClock::Wall);
    counting.set_details(false);
    Ok(Variant {
        processor,
        counting,
        failregex: fc.failregex,
        used: BTreeSet::new(),
    })
}

/// What a line's outcome is without the failures' details: the time, the kind of outcome
/// and, per failure, regex, id, address, prefix, flags and time.
#[allow(clippy::type_complexity)]
fn counted(
    p: &Processed,
) -> (
    Option<jiff::Timestamp>,
    String,
    Vec<(
        usize,
        String,
        Option<std::net::IpAddr>,
        Option<u8>,
        bool,
        bool,
        bool,
        jiff::Timestamp,
    )>,
) {
    match &p.result {
        LineResult::Matched(fs) => (
            p.time,
            "matched".into(),
            fs.iter()
                .map(|f| {
                    (
                        f.regex,
                        f.id.clone(),
                        f.addr,
                        f.prefix,
                        f.needs_dns,
                        f.nofail,
                        f.pending,
                        f.time,
                    )
                })
                .collect(),
        ),
        other => (p.time, format!("{other:?}"), Vec::new()),
    }
}

/// Checks one line's outcome against its annotation as samplestestcase does; Ok holds the
/// failregexes that gave the (agreeing) failure.
fn check(p: &Processed, faildata: &Ordered) -> Result<Vec<usize>, String> {
    let found: Vec<&Failure> = match &p.result {
        LineResult::Matched(fs) => fs.iter().filter(|f| !f.pending && !f.nofail).collect(),
        _ => Vec::new(),
    };
    let want_match = faildata.truthy("match");
    if found.is_empty() {
        return if want_match {
            let what = match &p.result {
                LineResult::Missed => "nothing matched".to_string(),
                LineResult::Ignored {
                    ignoreregex,
                    failregex,
                } => format!("ignored (ignoreregex {ignoreregex:?}, failregex {failregex:?})"),
                LineResult::Matched(fs) => format!(
                    "only pending or nofail: {:?}",
                    fs.iter().map(|f| f.regex).collect::<Vec<_>>()
                ),
            };
            Err(format!(
                "not matched, should have: {what}; date template {:?}, time {:?}",
                p.template, p.time
            ))
        } else {
            Ok(Vec::new())
        };
    }
    let summary = |f: &Failure| format!("regex {} id {:?} fields {:?}", f.regex, f.id, f.fields);
    if !want_match {
        return Err(format!("matched, should not have: {}", summary(found[0])));
    }
    if found.len() != 1 {
        let which: Vec<usize> = found.iter().map(|f| f.regex).collect();
        return Err(format!("multiple regexes matched {which:?}"));
    }
    let f = found[0];
    for (k, want) in &faildata.0 {
        if matches!(k.as_str(), "time" | "match" | "desc" | "constraint") {
            continue;
        }
        let got: Value = match k.as_str() {
            "users" if !f.users.is_empty() => {
                Value::Array(f.users.iter().cloned().map(Value::String).collect())
            }
            "matches" => Value::Array(f.matches.iter().cloned().map(Value::String).collect()),
            _ => match f.fields.get(k) {
                Some(v) => Value::String(v.clone()),
                None if k == "host" => Value::String(f.id.clone()),
                None if k == "attempts" => Value::from(f.matches.len()),
                None => Value::Null,
            },
        };
        let same = match (&got, want) {
            // fail2ban compares an address id with the annotation as addresses.
            (Value::String(_), Value::String(w))
                if k == "host" && !f.fields.contains_key("host") && f.prefix.is_none() =>
            {
                match (f.addr, w.parse::<std::net::IpAddr>()) {
                    (Some(a), Ok(b)) => a == b,
                    _ => got == *want,
                }
            }
            (Value::Array(a), Value::Array(b)) => {
                let mut a = a.clone();
                let mut b = b.clone();
                a.sort_by_key(|v| v.to_string());
                b.sort_by_key(|v| v.to_string());
                a == b
            }
            (g, w) => g == w,
        };
        if !same {
            return Err(format!("{k}: got {got}, want {want} ({})", summary(f)));
        }
    }
    if let Some(t) = faildata.get("time").filter(|t| !t.is_null()) {
        let want = annotated_timestamp(&value_text(t));
        match p.time {
            Some(got) if got.as_microsecond() == want.as_microsecond() => {}
            got => return Err(format!("time: got {got:?}, want {want} ({t})")),
        }
    }
    Ok(vec![f.regex])
}

/// One sample file's lines in the test's terms.
enum Entry {
    FileOptions(Ordered),
    FilterOptions(Vec<Ordered>),
    AddFile(String),
    Line {
        lineno: usize,
        text: String,
        faildata: Ordered,
    },
}

/// Reads a sample file as samplestestcase iterates it.
fn read_sample(path: &Path) -> Result<Vec<Entry>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        let lineno = i;
        let body = line.strip_suffix('\n').unwrap_or(line);
        if let Some((kind, json)) = annotation(body) {
            let bad = |e: serde_json::Error| format!("{}:{lineno}: {e}", path.display());
            match kind {
                "fileOptions" => {
                    out.push(Entry::FileOptions(serde_json::from_str(json).map_err(bad)?));
                    continue;
                }
                "filterOptions" => {
                    let list = match serde_json::from_str::<OneOrMany>(json).map_err(bad)? {
                        OneOrMany::Many(v) => v,
                        OneOrMany::One(o) => vec![o],
                    };
                    out.push(Entry::FilterOptions(list));
                    continue;
                }
                "addFILE" => {
                    out.push(Entry::AddFile(serde_json::from_str(json).map_err(bad)?));
                    continue;
                }
                _ => {
                    let faildata: Ordered = serde_json::from_str(json).map_err(bad)?;
                    // The annotated line is the next one, whatever it looks like.
                    let Some(next) = lines.get(i) else {
                        break;
                    };
                    i += 1;
                    out.push(Entry::Line {
                        lineno: i,
                        text: next.to_string(),
                        faildata,
                    });
                    continue;
                }
            }
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        out.push(Entry::Line {
            lineno,
            text: line.to_string(),
            faildata: Ordered::default(),
        });
    }
    Ok(out)
}

/// `^#+ ?(failJSON|(?:file|filter)Options|addFILE):(.+)$` on one line.
fn annotation(line: &str) -> Option<(&str, &str)> {
    let rest = line.trim_start_matches('#');
    if rest.len() == line.len() {
        return None;
    }
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    ["failJSON", "fileOptions", "filterOptions", "addFILE"]
        .into_iter()
        .find_map(|k| {
            let json = rest.strip_prefix(k)?.strip_prefix(':')?;
            (!json.is_empty()).then_some((k, json))
        })
}

/// Runs the sample test of each filter over the sample logs in `logs`.
pub fn run(filters: &[FilterUnderTest], logs: &Path) -> Conformance {
    let mut out = Conformance::default();
    for test in filters {
        out.filters += 1;
        let first = logs.join(&test.name);
        if !first.is_file() {
            out.errors
                .push(format!("{}: no sample log {}", test.name, first.display()));
            continue;
        }
        let mut run = Run {
            test,
            variants: BTreeMap::new(),
            order: Vec::new(),
            current: Vec::new(),
            used_regexes: BTreeSet::new(),
            out: &mut out,
        };
        let mut files: Vec<String> = vec![test.name.clone()];
        let mut common = Ordered::default();
        let mut k = 0;
        while k < files.len() {
            let file = files[k].clone();
            k += 1;
            let entries = match read_sample(&logs.join(&file)) {
                Ok(e) => e,
                Err(e) => {
                    run.out.errors.push(e);
                    continue;
                }
            };
            let mut ignore_block = false;
            for e in entries {
                match e {
                    Entry::FileOptions(o) => common = o,
                    Entry::FilterOptions(list) => run.set_options(list, &common, &mut ignore_block),
                    Entry::AddFile(f) => files.push(f),
                    Entry::Line { .. } if ignore_block => {}
                    Entry::Line {
                        lineno,
                        text,
                        faildata,
                    } => run.line(&file, lineno, &text, &faildata),
                }
            }
        }
        run.finish();
    }
    out
}

/// The filters a configuration directory ships (`filter.d/*.conf` but `*common.conf`),
/// sorted; `skip` leaves out filters for which it returns true.
pub fn filters_of(dir: &Path, skip: impl Fn(&str, &str) -> bool) -> Vec<FilterUnderTest> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("filter.d"))
        .unwrap_or_else(|e| panic!("{}/filter.d: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".conf") && !n.ends_with("common.conf"))
        .map(|n| n.trim_end_matches(".conf").to_string())
        .filter(|n| {
            let text =
                std::fs::read_to_string(dir.join(format!("filter.d/{n}.conf"))).unwrap_or_default();
            !skip(n, &text)
        })
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| FilterUnderTest {
            name,
            location: ConfigLocation::Dir(dir.to_path_buf()),
        })
        .collect()
}

/// fail2ban's own test filters (`tests/config/filter.d/zzz-*.conf`) in a directory
/// layout where their `before = ../../../../../../../config/filter.d/common.conf` finds
/// the package's common.conf (it only resolves in fail2ban's source tree).
pub fn relocated_test_filters(
    config_dir: &Path,
    test_config: &Path,
    into: &Path,
) -> Vec<FilterUnderTest> {
    let base: PathBuf = (0..6).fold(into.to_path_buf(), |p, i| p.join(format!("d{i}")));
    std::fs::create_dir_all(base.join("filter.d")).expect("creating the test filter tree");
    std::fs::create_dir_all(into.join("config/filter.d")).expect("creating config/filter.d");
    std::fs::copy(
        config_dir.join("filter.d/common.conf"),
        into.join("config/filter.d/common.conf"),
    )
    .expect("copying common.conf");
    let mut out = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(test_config.join("filter.d"))
        .expect("test filter.d")
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("zzz-") && n.ends_with(".conf"))
        .collect();
    names.sort();
    for n in names {
        std::fs::copy(
            test_config.join("filter.d").join(&n),
            base.join("filter.d").join(&n),
        )
        .expect("copying a test filter");
        out.push(FilterUnderTest {
            name: n.trim_end_matches(".conf").to_string(),
            location: ConfigLocation::Dir(base.clone()),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_of_the_corpus() {
        let opts = Ordered(vec![("mode".into(), Value::String("aggressive".into()))]);
        assert!(eval_condition("name=='sshd'", "sshd", &opts));
        assert!(!eval_condition("name == 'sshd'", "zzz-sshd", &opts));
        assert!(eval_condition(
            "opts.get('mode') == 'aggressive'",
            "x",
            &opts
        ));
        assert!(!eval_condition(
            "opts.get('mode') != 'aggressive'",
            "x",
            &opts
        ));
        assert!(eval_condition(
            "opts.get('mode') != 'aggressive'",
            "x",
            &Ordered::default()
        ));
    }

    #[test]
    fn annotations_and_variant_names() {
        assert_eq!(
            annotation("# failJSON: { \"match\": false }"),
            Some(("failJSON", " { \"match\": false }"))
        );
        assert_eq!(
            annotation("#filterOptions: {}"),
            Some(("filterOptions", " {}"))
        );
        assert_eq!(annotation("# normal mode # filterOptions: {}"), None);
        assert_eq!(annotation("Mar 1 failJSON: x"), None);
        let o: Ordered = serde_json::from_str(r#"{"mode": "ddos", "logtype": "journal"}"#).unwrap();
        assert_eq!(dict_repr(&o.0), "{'mode': 'ddos', 'logtype': 'journal'}");
        assert_eq!(
            TEST_NOW_TEXT,
            test_now().strftime("%Y-%m-%dT%H:%M:%S").to_string()
        );
        assert_eq!(test_now().as_second(), TEST_NOW);
    }
}
