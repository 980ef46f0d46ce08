//! Jails: a section of the merged `jail.conf` tree resolved into a [`JailConfig`], in the
//! order fail2ban's jail reader works: the early options (`enabled`, `backend`, `filter`),
//! the filter (whose values the jail may reuse as `%(known/failregex)s`), then every jail
//! option, then the actions. Problems are collected rather than returned at the first one.

use std::collections::BTreeMap;
use std::path::Path;

use indexmap::IndexMap;

use super::action;
use super::diag::Problem;
use super::duration::parse_duration;
use super::filter::{FILTER_KEYS, FilterReader, assemble};
use super::ini::{Options, Value};
use super::interp::Vars;
use super::model::{Escalation, JailConfig, LogBackend, Span, UseDns};
use super::options::{extract, split_list};
use super::store::{Files, Store};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Bool,
    Int,
}

/// The jail options fail2ban reads, with how it converts them.
const JAIL_KEYS: [(&str, Kind); 29] = [
    ("enabled", Kind::Bool),
    ("backend", Kind::Str),
    ("maxretry", Kind::Int),
    ("maxmatches", Kind::Int),
    ("findtime", Kind::Str),
    ("bantime", Kind::Str),
    ("bantime.increment", Kind::Bool),
    ("bantime.factor", Kind::Str),
    ("bantime.formula", Kind::Str),
    ("bantime.multipliers", Kind::Str),
    ("bantime.maxtime", Kind::Str),
    ("bantime.rndtime", Kind::Str),
    ("bantime.overalljails", Kind::Bool),
    ("ignorecommand", Kind::Str),
    ("ignoreself", Kind::Bool),
    ("ignoreip", Kind::Str),
    ("ignorecache", Kind::Str),
    ("filter", Kind::Str),
    ("logtimezone", Kind::Str),
    ("logencoding", Kind::Str),
    ("logpath", Kind::Str),
    ("action", Kind::Str),
    ("usedns", Kind::Str),
    ("prefregex", Kind::Str),
    ("ignoreregex", Kind::Str),
    ("failregex", Kind::Str),
    ("maxlines", Kind::Int),
    ("datepattern", Kind::Str),
    ("journalmatch", Kind::Str),
];

/// Options that get a value even when nothing sets them.
const JAIL_DEFAULTS: [(&str, &str); 4] = [
    ("enabled", "false"),
    ("backend", "auto"),
    ("filter", ""),
    ("action", ""),
];

/// fail2ban's default `bantime.formula`, which warden implements natively.
const DEFAULT_FORMULA: &str = "ban.Time * (1<<(ban.Count if ban.Count<20 else 20)) * banFactor";

/// The outcome of resolving one jail.
pub(crate) struct JailOutcome {
    pub enabled: bool,
    pub jail: Option<JailConfig>,
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

/// fail2ban's boolean spelling.
pub(crate) fn as_bool(v: &str) -> bool {
    matches!(
        v.trim().to_lowercase().as_str(),
        "1" | "on" | "true" | "yes"
    )
}

fn is_bool_word(v: &str) -> bool {
    matches!(
        v.trim().to_lowercase().as_str(),
        "1" | "on" | "true" | "yes" | "0" | "off" | "false" | "no"
    )
}

struct Reader<'a> {
    store: &'a Store,
    name: &'a str,
    span: Span,
    errors: Vec<Problem>,
    warnings: Vec<Problem>,
}

impl Reader<'_> {
    /// Records an error once (the early and the full read of the jail meet the same ones).
    fn error(&mut self, p: Problem) {
        if !self.errors.contains(&p) {
            self.errors.push(p);
        }
    }

    fn builtin(&self, text: &str) -> Value {
        Value::synthetic(text, self.span.clone())
    }

    /// Reads `keys` of the jail section (with `extra` laid over it), converting as fail2ban
    /// does, so the values can serve as variables of the filter and actions.
    fn read_vars(&mut self, keys: &[(&str, Kind)], extra: Option<&Options>) -> Vars {
        let mut out = Vars::new();
        for (key, kind) in keys {
            let got = match self.store.get(self.name, key, &Vars::new(), extra) {
                Ok(v) => v,
                Err(p) => {
                    self.error(p);
                    continue;
                }
            };
            let value = match got {
                Some(v) => v,
                None => match JAIL_DEFAULTS.iter().find(|(k, _)| k == key) {
                    Some((_, d)) => self.builtin(d),
                    None => continue,
                },
            };
            let value = match kind {
                Kind::Str => value,
                Kind::Bool => {
                    if !is_bool_word(&value.text) {
                        self.warnings.push(Problem::new(
                            value.span.clone(),
                            format!("{key} `{}` is not a boolean; taken as false", value.text),
                        ));
                    }
                    let b = if as_bool(&value.text) {
                        "True"
                    } else {
                        "False"
                    };
                    Value {
                        text: b.to_string(),
                        ..value
                    }
                }
                Kind::Int => match value.text.trim().parse::<i64>() {
                    Ok(n) => Value {
                        text: n.to_string(),
                        ..value
                    },
                    Err(_) => {
                        self.errors.push(Problem::new(
                            value.span.clone(),
                            format!("{key} `{}` is not a whole number", value.text),
                        ));
                        continue;
                    }
                },
            };
            out.insert(key.to_string(), value);
        }
        out
    }

    /// Whether the jail's values refer to the filter's `%(known/...)s`.
    fn uses_known(&self) -> bool {
        let has = |o: &Options| {
            o.values()
                .any(|v| v.text.to_lowercase().contains("%(known/"))
        };
        self.store.own(self.name).is_some_and(has) || has(&self.store.defaults)
    }
}

/// Resolves jail `name` of the jail tree `store`.
pub(crate) fn resolve(files: &Files, store: &Store, name: &str) -> JailOutcome {
    let span = store
        .section_spans
        .get(name)
        .cloned()
        .unwrap_or_else(|| files.span(Path::new("jail.conf"), 0));
    let mut r = Reader {
        store,
        name,
        span: span.clone(),
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let early = r.read_vars(
        &[
            ("enabled", Kind::Bool),
            ("backend", Kind::Str),
            ("filter", Kind::Str),
        ],
        None,
    );
    let enabled = early.get("enabled").is_some_and(|v| v.text == "True");
    let backend_text = early
        .get("backend")
        .map(|v| v.text.trim().to_string())
        .unwrap_or_else(|| "auto".into());

    // The filter, and what it offers the jail as known/ values.
    let mut filter_reader = None;
    let mut filter_span = span.clone();
    if let Some(spec) = early.get("filter").filter(|v| !v.text.trim().is_empty()) {
        filter_span = spec.span.clone();
        match extract(&spec.text) {
            Err(e) => r.errors.push(Problem::new(
                spec.span.clone(),
                format!("invalid filter definition: {e}"),
            )),
            Ok((fname, fargs)) => {
                let args = args_as_values(&fargs, &spec.span);
                match FilterReader::open(files, &fname, false, &args, &backend_text, &spec.span) {
                    Ok(Some(f)) => {
                        if f.def.store.has_errors {
                            r.errors.push(Problem::new(
                                spec.span.clone(),
                                format!(
                                    "filter `{fname}` has lines that could not be parsed (reported above)"
                                ),
                            ));
                        }
                        filter_reader = Some(f);
                    }
                    Ok(None) => r.errors.push(Problem::new(
                        spec.span.clone(),
                        format!(
                            "filter `{fname}` not found: no filter.d/{fname}.conf or filter.d/{fname}.local"
                        ),
                    )),
                    Err(p) => r.errors.push(p),
                }
            }
        }
    }
    let mut known = Options::new();
    if let Some(f) = &filter_reader
        && r.uses_known()
    {
        match f.known(&early) {
            Ok(k) => {
                for (key, v) in k {
                    if !key.starts_with("known/") {
                        known.insert(format!("known/{key}"), v);
                    }
                }
            }
            Err(p) => r.errors.push(p),
        }
    }
    let extra = (!known.is_empty()).then_some(&known);
    let vars = r.read_vars(&JAIL_KEYS, extra);

    // The filter, with the jail's own filter options laid over it.
    let jail_filter_opts: IndexMap<String, Value> = FILTER_KEYS
        .iter()
        .filter_map(|k| vars.get(*k).map(|v| (k.to_string(), v.clone())))
        .collect();
    let filter = match &filter_reader {
        Some(f) => match f.resolve(&vars) {
            Ok(parts) => assemble(
                &f.name,
                Some(f.def.file.clone()),
                f.args.clone(),
                Some(parts),
                &jail_filter_opts,
            ),
            Err(p) => Err(p),
        },
        None => assemble("(inline)", None, BTreeMap::new(), None, &jail_filter_opts),
    };
    let filter = match filter {
        Ok(f) => Some(f),
        Err(p) => {
            r.errors.push(p);
            None
        }
    };

    // Actions.
    let mut actions = Vec::new();
    if let Some(list) = vars.get("action") {
        for item in split_list(&list.text) {
            let item_span = line_span(list, &item);
            let (aname, aargs) = match extract(&item) {
                Ok(x) => x,
                Err(e) => {
                    r.errors.push(Problem::new(
                        item_span,
                        format!("invalid action definition: {e}"),
                    ));
                    continue;
                }
            };
            if aname.ends_with(".py") {
                r.errors.push(Problem::new(
                    item_span,
                    format!("action `{aname}` is a Python action, which warden cannot run"),
                ));
                continue;
            }
            let args = args_as_values(&aargs, &item_span);
            match action::resolve(files, &aname, &args, name, &vars, &item_span) {
                Ok(Some((a, has_errors))) => {
                    if has_errors {
                        r.errors.push(Problem::new(
                            item_span,
                            format!(
                                "action `{aname}` has lines that could not be parsed (reported above)"
                            ),
                        ));
                    }
                    actions.push(a);
                }
                Ok(None) => r.errors.push(Problem::new(
                    item_span,
                    format!(
                        "action `{aname}` not found: no action.d/{aname}.conf or action.d/{aname}.local"
                    ),
                )),
                Err(p) => r.errors.push(p),
            }
        }
    }

    let backend = parse_backend(&mut r, &vars);
    let num = |r: &mut Reader, key: &str, default: i64| -> i64 {
        match vars.get(key) {
            None => default,
            Some(v) => match parse_duration(&v.text) {
                Ok(n) => n,
                Err(e) => {
                    r.errors
                        .push(Problem::new(v.span.clone(), format!("{key}: {e}")));
                    default
                }
            },
        }
    };
    let findtime = num(&mut r, "findtime", 600);
    let bantime = num(&mut r, "bantime", 600);
    let int = |r: &mut Reader, key: &str| -> Option<u32> {
        let v = vars.get(key)?;
        match v.text.parse::<u32>() {
            Ok(n) => Some(n),
            Err(_) => {
                r.errors.push(Problem::new(
                    v.span.clone(),
                    format!("{key} `{}` must be zero or a positive whole number", v.text),
                ));
                None
            }
        }
    };
    let maxretry = int(&mut r, "maxretry").unwrap_or(3);
    let maxmatches = int(&mut r, "maxmatches").unwrap_or(maxretry);
    let escalation = parse_escalation(&mut r, &vars);
    let usedns = {
        let v = vars.get("usedns").cloned().or_else(|| {
            filter
                .as_ref()
                .and_then(|f| f.options.get("usedns").map(|t| r.builtin(t)))
        });
        match v {
            None => UseDns::Warn,
            Some(v) => match v.text.trim().to_lowercase().as_str() {
                "yes" | "true" | "1" | "on" => UseDns::Yes,
                "warn" => UseDns::Warn,
                "no" | "false" | "0" | "off" => UseDns::No,
                "raw" => UseDns::Raw,
                other => {
                    r.errors.push(Problem::new(
                        v.span.clone(),
                        format!("usedns `{other}` must be yes, warn, no or raw"),
                    ));
                    UseDns::Warn
                }
            },
        }
    };
    let text = |key: &str| vars.get(key).map(|v| v.text.trim().to_string());
    let (logpath, logpath_tail) = parse_logpath(vars.get("logpath"));
    let mut plain = |key: &str, default: &str| -> String {
        match store.get(name, key, &Vars::new(), extra) {
            Ok(Some(v)) => v.text.trim().to_string(),
            Ok(None) => default.to_string(),
            Err(p) => {
                r.errors.push(p);
                default.to_string()
            }
        }
    };
    let port = plain("port", "0:65535");
    let protocol = plain("protocol", "tcp");
    let options: BTreeMap<String, String> = store
        .option_names(name)
        .into_iter()
        .filter(|k| !k.starts_with("known/"))
        .filter_map(|k| {
            let v = store.get(name, &k, &Vars::new(), extra).ok()??;
            Some((k, v.text))
        })
        .collect();

    // Advice only for jails that load; a broken jail's errors say enough.
    if enabled && r.errors.is_empty() {
        if actions.is_empty() {
            r.warnings.push(Problem::new(
                span.clone(),
                "no action is set: failures are counted but nothing is banned",
            ));
        }
        let reads_files = !matches!(
            backend,
            LogBackend::Systemd(_) | LogBackend::Ledger | LogBackend::Pflog
        );
        if reads_files && logpath.is_empty() {
            r.warnings.push(Problem::new(
                span.clone(),
                "no logpath is set for a jail that reads log files",
            ));
        }
        if let Some(f) = &filter
            && f.failregex.is_empty()
            && backend != LogBackend::Ledger
            && backend != LogBackend::Pflog
        {
            r.warnings.push(Problem::new(
                filter_span.clone(),
                "the filter has no failregex: the jail can never find a failure",
            ));
        }
    }

    let jail = match (r.errors.is_empty(), filter) {
        (true, Some(filter)) => Some(JailConfig {
            name: name.to_string(),
            enabled,
            filter,
            actions,
            backend,
            logpath,
            logpath_tail,
            logencoding: text("logencoding")
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "auto".into()),
            logtimezone: text("logtimezone").filter(|s| !s.is_empty()),
            findtime,
            bantime,
            maxretry,
            maxmatches,
            ignoreip: vars
                .get("ignoreip")
                .map(|v| split_words(&v.text))
                .unwrap_or_default(),
            ignoreself: vars.get("ignoreself").is_none_or(|v| v.text == "True"),
            ignorecommand: text("ignorecommand").filter(|s| !s.is_empty()),
            usedns,
            escalation,
            port,
            protocol,
            options,
            span,
        }),
        _ => None,
    };
    JailOutcome {
        enabled,
        jail,
        errors: r.errors,
        warnings: r.warnings,
    }
}

fn args_as_values(args: &IndexMap<String, String>, span: &Span) -> IndexMap<String, Value> {
    args.iter()
        .map(|(k, v)| (k.clone(), Value::synthetic(v.clone(), span.clone())))
        .collect()
}

/// The line of a multi-line value where `item` starts, when it can be found.
fn line_span(v: &Value, item: &str) -> Span {
    let first = item.lines().next().unwrap_or(item);
    let idx = v
        .text
        .split('\n')
        .position(|l| l.contains(first))
        .filter(|_| v.text.split('\n').count() == v.lines.len());
    Span {
        file: v.span.file.clone(),
        line: idx.map_or(v.span.line, |i| v.lines[i]),
    }
}

/// fail2ban's `splitwords`: items separated by commas, spaces or newlines.
fn split_words(s: &str) -> Vec<String> {
    s.split([' ', ',', '\n', '\t'])
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

fn parse_logpath(v: Option<&Value>) -> (Vec<String>, Vec<bool>) {
    let mut paths = Vec::new();
    let mut tails = Vec::new();
    let Some(v) = v else {
        return (paths, tails);
    };
    for line in v.text.split('\n').map(str::trim).filter(|l| !l.is_empty()) {
        let (path, tail) = match line.rsplit_once(char::is_whitespace) {
            Some((p, "tail")) => (p.trim_end(), true),
            Some((p, "head")) => (p.trim_end(), false),
            _ => (line, false),
        };
        paths.push(path.to_string());
        tails.push(tail);
    }
    (paths, tails)
}

fn parse_backend(r: &mut Reader, vars: &Vars) -> LogBackend {
    let Some(v) = vars.get("backend") else {
        return LogBackend::Auto;
    };
    let (name, args) = match extract(&v.text) {
        Ok(x) => x,
        Err(e) => {
            r.errors
                .push(Problem::new(v.span.clone(), format!("backend: {e}")));
            return LogBackend::Auto;
        }
    };
    match name.to_lowercase().as_str() {
        "auto" => LogBackend::Auto,
        "polling" => LogBackend::Polling,
        "pyinotify" | "inotify" | "kqueue" => LogBackend::Notify,
        "gamin" => {
            r.warnings.push(Problem::new(
                v.span.clone(),
                "backend gamin no longer exists; using auto",
            ));
            LogBackend::Auto
        }
        "systemd" => LogBackend::Systemd(args.into_iter().collect()),
        "pflog" => LogBackend::Pflog,
        "ledger" => LogBackend::Ledger,
        other => {
            r.errors.push(Problem::new(
                v.span.clone(),
                format!(
                    "unknown backend `{other}` (auto, polling, pyinotify, inotify, kqueue, systemd, pflog or ledger)"
                ),
            ));
            LogBackend::Auto
        }
    }
}

fn parse_escalation(r: &mut Reader, vars: &Vars) -> Escalation {
    let mut e = Escalation {
        increment: vars
            .get("bantime.increment")
            .is_some_and(|v| v.text == "True"),
        factor: 1.0,
        multipliers: Vec::new(),
        maxtime: None,
        rndtime: None,
        overalljails: vars
            .get("bantime.overalljails")
            .is_some_and(|v| v.text == "True"),
    };
    let set = |key: &str| vars.get(key).filter(|v| !v.text.trim().is_empty());
    if let Some(v) = set("bantime.factor") {
        match v.text.trim().parse::<f64>() {
            Ok(f) if f.is_finite() && f > 0.0 => e.factor = f,
            _ => r.errors.push(Problem::new(
                v.span.clone(),
                format!(
                    "bantime.factor `{}` must be a positive number",
                    v.text.trim()
                ),
            )),
        }
    }
    if let Some(v) = set("bantime.formula") {
        let squash = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
        if squash(&v.text) != squash(DEFAULT_FORMULA) {
            r.errors.push(Problem::new(
                v.span.clone(),
                "bantime.formula is a Python expression, which warden does not evaluate; only \
                 fail2ban's default formula is accepted (use bantime.factor or \
                 bantime.multipliers instead)",
            ));
        }
    }
    if let Some(v) = set("bantime.multipliers") {
        for word in v.text.split_whitespace() {
            match word.parse::<f64>() {
                Ok(m) if m.is_finite() && m >= 0.0 => e.multipliers.push(m),
                _ => {
                    r.errors.push(Problem::new(
                        v.span.clone(),
                        format!("bantime.multipliers: `{word}` is not a number"),
                    ));
                    break;
                }
            }
        }
    }
    for (key, slot) in [
        ("bantime.maxtime", &mut e.maxtime),
        ("bantime.rndtime", &mut e.rndtime),
    ] {
        if let Some(v) = set(key) {
            match parse_duration(&v.text) {
                Ok(n) => *slot = Some(n),
                Err(err) => r
                    .errors
                    .push(Problem::new(v.span.clone(), format!("{key}: {err}"))),
            }
        }
    }
    e
}
