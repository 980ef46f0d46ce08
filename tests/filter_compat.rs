//! Differential tests of the filter engine against fail2ban 1.0.2 itself.
//!
//! `tests/support/pyoracle/f2b_regex_oracle.py` runs fail2ban's own Python code (from the
//! Debian package the test support downloads) over every stock filter and the sample logs
//! shipped with it: the regexes as fail2ban compiles them, what each regex matches on every
//! date-less sample text (through Python's `re`), and what fail2ban's filter pipeline
//! returns per line. These tests compile the same filters with warden and compare.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use serde_json::Value;
use warden::filter::engine::{MatchStats, PatternList};
use warden::filter::translate::{self, TranslateOptions, Translation};
use warden::filter::{
    DEFAULT_BACKTRACK_LIMIT, Engine, Filter, FilterSpec, FilterState, LineParts, LineResult,
    RegexKind, UseDnsMode, tags,
};

use crate::support::fail2ban;

/// fail2ban's IPv6 expression, which the tag expansion rewrites without its lookbehind.
const F2B_IP6: &str = r"(?:[0-9a-fA-F]{1,4}::?|::){1,7}(?:[0-9a-fA-F]{1,4}|(?<=:):)";

fn oracle() -> &'static Value {
    static ORACLE: OnceLock<Value> = OnceLock::new();
    ORACLE.get_or_init(|| {
        let pkg = fail2ban::package();
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/pyoracle/f2b_regex_oracle.py"
        );
        let out = Command::new("python3")
            .arg(script)
            .arg(pkg.config_dir())
            .arg(pkg.test_config())
            .arg(pkg.sample_logs())
            .env("PYTHONPATH", pkg.python_path())
            .output()
            .expect("running python3");
        assert!(
            out.status.success(),
            "oracle failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("oracle output is JSON")
    })
}

/// Fails with the count of disagreements and the first `show` of them.
fn assert_agree(disagreements: &[String], show: usize) {
    assert!(
        disagreements.is_empty(),
        "{} disagreements:\n{}",
        disagreements.len(),
        disagreements[..disagreements.len().min(show)].join("\n")
    );
}

fn usedns(s: &str) -> UseDnsMode {
    match s {
        "yes" => UseDnsMode::Yes,
        "no" => UseDnsMode::No,
        "raw" => UseDnsMode::Raw,
        _ => UseDnsMode::Warn,
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|x| x.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// A filter variant of the oracle as a spec. Sample tests run fail2ban with
/// `returnRawHost`, which for the pipeline is `usedns = raw`.
fn spec_of(v: &Value, raw_ids: bool) -> FilterSpec {
    let dns = usedns(v["usedns"].as_str().unwrap_or("warn"));
    FilterSpec {
        prefregex: v["prefregex"].as_str().map(str::to_string),
        failregex: strings(&v["failregex"]),
        ignoreregex: strings(&v["ignoreregex"]),
        maxlines: v["maxlines"].as_u64().unwrap_or(1) as usize,
        usedns: if raw_ids && dns != UseDnsMode::No {
            UseDnsMode::Raw
        } else {
            dns
        },
        unicode: false,
        backtrack_limit: DEFAULT_BACKTRACK_LIMIT,
    }
}

fn variant_name(v: &Value) -> String {
    format!(
        "{}{}",
        v["name"].as_str().unwrap_or("?"),
        v["variant"].as_str().unwrap_or("")
    )
}

/// One regex compiled alone, as the per-regex comparison runs it.
struct Single {
    list: PatternList,
    names: Vec<Option<String>>,
}

fn single(raw: &str, dns: UseDnsMode, multiline: bool) -> Single {
    let expanded = tags::localise_global_flags(&tags::expand(raw, dns));
    let tr: Translation = translate::translate(
        &expanded,
        TranslateOptions {
            multiline,
            unicode: false,
        },
    )
    .unwrap_or_else(|e| panic!("{raw:?}: {e}"));
    let names = tr.names.clone();
    let list = PatternList::compile(vec![tr], false, DEFAULT_BACKTRACK_LIMIT)
        .unwrap_or_else(|e| panic!("{raw:?}: {}", e.message));
    Single { list, names }
}

/// (span, groupdict) of a match, in the oracle's JSON shape.
fn run_single(s: &Single, text: &str) -> Value {
    let hay = format!("{text}\n");
    let Some(hit) = s.list.search(hay.as_bytes(), 0, &mut MatchStats::default()) else {
        return Value::Null;
    };
    let mut groups = serde_json::Map::new();
    for (i, name) in s.names.iter().enumerate() {
        if let Some(n) = name {
            let v = hit.groups[i]
                .map(|(a, b)| Value::String(hay[a..b].to_string()))
                .unwrap_or(Value::Null);
            groups.insert(n.clone(), v);
        }
    }
    serde_json::json!({"span": [hit.start(), hit.end()], "groups": groups})
}

/// Python reports spans in characters, warden in bytes.
fn char_span(text: &str, v: &Value) -> Value {
    if v.is_null() {
        return Value::Null;
    }
    let hay = format!("{text}\n");
    let to_char = |b: u64| Value::from(hay[..b as usize].chars().count());
    let span = v["span"].as_array().cloned().unwrap_or_default();
    serde_json::json!({
        "span": [to_char(span[0].as_u64().unwrap_or(0)), to_char(span[1].as_u64().unwrap_or(0))],
        "groups": v["groups"].clone(),
    })
}

#[test]
fn stock_filter_regexes_expand_and_compile_mostly_fast() {
    let o = oracle();
    let mut counts: BTreeMap<(RegexKind, Engine), usize> = BTreeMap::new();
    let mut fallback = Vec::new();
    let mut rewritten = Vec::new();
    let mut expansion_mismatches = Vec::new();
    let mut seen = BTreeSet::new();
    let variants = o["variants"].as_array().unwrap();
    assert!(variants.len() > 100, "only {} variants", variants.len());
    // The two zzz-* test filters include common.conf through a path that only resolves in
    // fail2ban's source tree, not in the installed package; nothing else may fail.
    for e in o["errors"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap_or_default();
        println!("fail2ban could not read {name}: {}", e["error"]);
        assert!(
            name.starts_with("zzz-"),
            "fail2ban could not read {name}: {e}"
        );
    }
    for v in variants {
        let spec = spec_of(v, false);
        let filter = Filter::compile(&spec).unwrap_or_else(|e| panic!("{}: {e}", variant_name(v)));
        let expected: Vec<String> = v["expanded"]["prefregex"]
            .as_str()
            .map(str::to_string)
            .into_iter()
            .chain(strings(&v["expanded"]["failregex"]))
            .chain(strings(&v["expanded"]["ignoreregex"]))
            .collect();
        let engines = filter.engines();
        assert_eq!(engines.len(), expected.len(), "{}", variant_name(v));
        for (info, want) in engines.iter().zip(&expected) {
            let ours = info.expanded.replace(tags::IP6, F2B_IP6);
            if &ours != want {
                expansion_mismatches.push(format!(
                    "{} {} {}:\n  ours   {ours}\n  theirs {want}",
                    variant_name(v),
                    info.kind,
                    info.index
                ));
            }
            // Count each distinct regex once, across variants.
            if seen.insert((info.kind, info.expanded.clone())) {
                *counts.entry((info.kind, info.engine)).or_default() += 1;
                let src = match info.kind {
                    RegexKind::Prefregex => spec.prefregex.clone().unwrap_or_default(),
                    RegexKind::Failregex => spec.failregex[info.index].clone(),
                    RegexKind::Ignoreregex => spec.ignoreregex[info.index].clone(),
                };
                // Only regexes whose authors wrote lookaround, backreferences or
                // conditionals need the fallback engine (tag expansions never do); some of
                // those are rewritten for the fast engine.
                let own_construct = ["(?=", "(?!", "(?<=", "(?<!", "(?P=", "(?(", "\\1", "\\2"]
                    .iter()
                    .any(|c| {
                        src.match_indices(c)
                            .any(|(i, _)| c.starts_with('\\') || !src[..i].ends_with('\\'))
                    });
                assert_eq!(
                    info.engine == Engine::Fallback || info.reason.starts_with("rewritten"),
                    own_construct,
                    "{} {} {} ({}): {src}",
                    variant_name(v),
                    info.kind,
                    info.index,
                    info.engine
                );
                if info.reason.starts_with("rewritten") {
                    rewritten.push(format!(
                        "{} {} {}: {}",
                        variant_name(v),
                        info.kind,
                        info.index,
                        info.reason
                    ));
                }
                if info.engine == Engine::Fallback {
                    fallback.push(format!(
                        "{} {} {}: {}",
                        variant_name(v),
                        info.kind,
                        info.index,
                        info.reason
                    ));
                }
            }
        }
    }
    // The default mode of every stock filter (filter.d, not the zzz-* test filters): what a
    // stock jail runs.
    let mut default_counts: BTreeMap<Engine, usize> = BTreeMap::new();
    let defaults: Vec<&Value> = o["defaults"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| !v["name"].as_str().unwrap_or_default().starts_with("zzz-"))
        .collect();
    for v in &defaults {
        let filter = Filter::compile(&spec_of(v, false))
            .unwrap_or_else(|e| panic!("{} (default mode): {e}", variant_name(v)));
        for info in filter.engines() {
            *default_counts.entry(info.engine).or_default() += 1;
        }
    }
    println!(
        "stock filters in default mode: {} filters, {} regexes: {} fast, {} fallback",
        defaults.len(),
        default_counts.values().sum::<usize>(),
        default_counts.get(&Engine::Fast).unwrap_or(&0),
        default_counts.get(&Engine::Fallback).unwrap_or(&0)
    );
    assert!(defaults.len() >= 89, "{} default filters", defaults.len());
    let total: usize = counts.values().sum();
    let fast: usize = counts
        .iter()
        .filter(|((_, e), _)| *e == Engine::Fast)
        .map(|(_, n)| n)
        .sum();
    println!(
        "distinct stock regexes: {total}, fast engine: {fast}, fallback: {}",
        total - fast
    );
    for ((kind, engine), n) in &counts {
        println!("  {kind:<12} {engine:<8} {n}");
    }
    for f in &fallback {
        println!("  fallback: {f}");
    }
    for f in &rewritten {
        println!("  fast after a rewrite: {f}");
    }
    assert!(
        expansion_mismatches.is_empty(),
        "{} tag expansions differ from fail2ban's:\n{}",
        expansion_mismatches.len(),
        expansion_mismatches.join("\n")
    );
    assert!(total > 200, "only {total} distinct regexes");
}

#[test]
fn stock_regexes_agree_with_python_re_on_their_sample_lines() {
    let o = oracle();
    let mut compared = 0usize;
    let mut matched = 0usize;
    let mut disagreements = Vec::new();
    for v in o["variants"].as_array().unwrap() {
        let spec = spec_of(v, false);
        let multi = spec.maxlines > 1;
        let kinds: [(&str, Vec<String>, bool); 3] = [
            ("prefregex", spec.prefregex.iter().cloned().collect(), false),
            ("failregex", spec.failregex.clone(), multi),
            ("ignoreregex", spec.ignoreregex.clone(), false),
        ];
        for (kind, regexes, multiline) in kinds {
            let compiled: Vec<Single> = regexes
                .iter()
                .map(|r| single(r, spec.usedns, multiline))
                .collect();
            for line in v["lines"].as_array().unwrap() {
                let text = if kind == "prefregex" {
                    format!(
                        "{}{}",
                        line["before"].as_str().unwrap(),
                        line["after"].as_str().unwrap()
                    )
                } else {
                    line["fail_text"].as_str().unwrap().to_string()
                };
                for (i, s) in compiled.iter().enumerate() {
                    let theirs = &line["regex"][kind][i];
                    let ours = char_span(&text, &run_single(s, &text));
                    compared += 1;
                    if !theirs.is_null() {
                        matched += 1;
                    }
                    if &ours != theirs {
                        disagreements.push(format!(
                            "{} {kind} {i} on {:?}:\n  python {theirs}\n  warden {ours}",
                            variant_name(v),
                            text
                        ));
                    }
                }
            }
        }
    }
    println!(
        "per-regex comparisons: {compared} ({matched} matches), disagreements: {}",
        disagreements.len()
    );
    assert!(
        compared > 10_000 && matched > 1_000,
        "{compared} / {matched}"
    );
    assert_agree(&disagreements, 40);
}

#[test]
fn stock_regexes_agree_with_python_re_across_all_sample_texts() {
    let o = oracle();
    let texts = strings(&o["cross"]["texts"]);
    let regexes = o["cross"]["regexes"].as_array().unwrap();
    let mut pairs = 0usize;
    let mut hits = 0usize;
    let mut disagreements = Vec::new();
    for r in regexes {
        assert!(r.get("error").is_none(), "oracle could not compile {r}");
        let s = single(
            r["regex"].as_str().unwrap(),
            usedns(r["usedns"].as_str().unwrap()),
            r["multiline"].as_bool().unwrap(),
        );
        let mut theirs: BTreeMap<usize, Value> = BTreeMap::new();
        for h in r["hits"].as_array().unwrap() {
            let a = h.as_array().unwrap();
            theirs.insert(
                a[0].as_u64().unwrap() as usize,
                serde_json::json!({"span": a[1], "groups": a[2]}),
            );
        }
        for (ti, text) in texts.iter().enumerate() {
            pairs += 1;
            let ours = char_span(text, &run_single(&s, text));
            let want = theirs.get(&ti).cloned().unwrap_or(Value::Null);
            if !want.is_null() {
                hits += 1;
            }
            if ours != want {
                disagreements.push(format!(
                    "{:?} on {text:?}:\n  python {want}\n  warden {ours}",
                    r["regex"].as_str().unwrap()
                ));
            }
        }
    }
    println!(
        "cross check: {} regexes x {} texts = {pairs} pairs ({hits} matches), disagreements: {}",
        regexes.len(),
        texts.len(),
        disagreements.len()
    );
    assert!(hits > 5_000, "{hits}");
    assert_agree(&disagreements, 40);
}

/// A pipeline result as comparable JSON: `[regex, id, {fields}, users, matches]` per failure.
fn ours_as_json(r: &LineResult) -> Value {
    let LineResult::Matched(fs) = r else {
        return Value::Array(Vec::new());
    };
    Value::Array(
        fs.iter()
            .map(|f| {
                serde_json::json!([
                    f.regex,
                    if f.pending {
                        Value::Null
                    } else {
                        Value::String(f.id.clone())
                    },
                    f.fields,
                    f.users,
                    f.matches,
                ])
            })
            .collect(),
    )
}

fn theirs_as_json(v: &Value) -> Value {
    Value::Array(
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let fail = r[2].as_object().unwrap();
                let mut fields = serde_json::Map::new();
                for (k, val) in fail {
                    let special = matches!(
                        k.as_str(),
                        "matches" | "nofail-matches" | "users" | "mlfpending"
                    );
                    if !special && !val.is_null() {
                        let s = match val {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        fields.insert(k.clone(), Value::String(s));
                    }
                }
                serde_json::json!([
                    r[0],
                    r[1],
                    fields,
                    fail.get("users")
                        .cloned()
                        .unwrap_or(Value::Array(Vec::new())),
                    fail.get("matches")
                        .cloned()
                        .unwrap_or(Value::Array(Vec::new())),
                ])
            })
            .collect(),
    )
}

#[test]
fn filter_pipeline_agrees_with_fail2ban_on_sample_logs() {
    let o = oracle();
    let now: jiff::Timestamp = "2005-08-14T10:00:00Z".parse().unwrap();
    let mut lines = 0usize;
    let mut failures = 0usize;
    let mut disagreements = Vec::new();
    for v in o["variants"].as_array().unwrap() {
        let filter = Arc::new(Filter::compile(&spec_of(v, true)).unwrap());
        let mut all = FilterState::new(filter.clone());
        let mut first = FilterState::new(filter);
        for line in v["lines"].as_array().unwrap() {
            lines += 1;
            let parts = LineParts {
                before: line["before"].as_str().unwrap(),
                date: line["date"].as_str().unwrap(),
                after: line["after"].as_str().unwrap(),
            };
            for (state, check_all, key) in [
                (&mut all, true, "pipeline_all"),
                (&mut first, false, "pipeline_first"),
            ] {
                let ours = ours_as_json(&state.process_parts(parts, now, check_all));
                let theirs = theirs_as_json(&line[key]);
                if check_all {
                    failures += theirs.as_array().map_or(0, Vec::len);
                }
                if ours != theirs {
                    disagreements.push(format!(
                        "{} {key} {}:{} {:?}:\n  fail2ban {theirs}\n  warden   {ours}",
                        variant_name(v),
                        line["file"].as_str().unwrap(),
                        line["lineno"],
                        line["line"].as_str().unwrap()
                    ));
                }
            }
        }
    }
    println!(
        "pipeline: {lines} line evaluations, {failures} failures (check-all), disagreements: {}",
        disagreements.len()
    );
    assert!(lines > 1_300 && failures > 800, "{lines} / {failures}");
    assert_agree(&disagreements, 30);
}

fn usedns_name(u: UseDnsMode) -> &'static str {
    match u {
        UseDnsMode::Yes => "yes",
        UseDnsMode::Warn => "warn",
        UseDnsMode::No => "no",
        UseDnsMode::Raw => "raw",
    }
}

#[test]
fn pipeline_scenarios_agree_with_fail2ban() {
    let pkg = fail2ban::package();
    let scenarios = crate::filter::scenarios();
    let input: Vec<Value> = scenarios
        .iter()
        .map(|sc| {
            serde_json::json!({
                "check_all": sc.check_all,
                "usedns": usedns_name(sc.spec.usedns),
                "maxlines": sc.spec.maxlines,
                "prefregex": sc.spec.prefregex,
                "failregex": sc.spec.failregex,
                "ignoreregex": sc.spec.ignoreregex,
                "lines": sc.lines,
            })
        })
        .collect();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/pyoracle/f2b_regex_oracle.py"
    );
    let mut child = Command::new("python3")
        .arg(script)
        .arg("--scenarios")
        .env("PYTHONPATH", pkg.python_path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("running python3");
    serde_json::to_writer(child.stdin.take().unwrap(), &input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let results: Value = serde_json::from_slice(&out.stdout).unwrap();
    let now: jiff::Timestamp = "2005-08-14T10:00:00Z".parse().unwrap();
    let mut disagreements = Vec::new();
    let mut resolvable = 0;
    for (sc, res) in scenarios.iter().zip(results.as_array().unwrap()) {
        assert!(
            res.get("error").is_none(),
            "{}: fail2ban refused: {res}",
            sc.name
        );
        let mut state = FilterState::new(Arc::new(Filter::compile(&sc.spec).unwrap()));
        for (line, theirs) in sc.lines.iter().zip(res["results"].as_array().unwrap()) {
            assert!(theirs.get("exception").is_none(), "{}: {theirs}", sc.name);
            let mut ours = state.process(line, now, sc.check_all);
            // fail2ban resolved host names (to nothing, here); warden leaves them to the jail.
            if let LineResult::Matched(fs) = &mut ours {
                let before = fs.len();
                fs.retain(|f| !f.needs_dns);
                resolvable += before - fs.len();
                if fs.is_empty() {
                    ours = LineResult::Missed;
                }
            }
            let (ours, theirs) = (ours_as_json(&ours), theirs_as_json(theirs));
            if ours != theirs {
                disagreements.push(format!(
                    "{}: {line:?}\n  fail2ban {theirs}\n  warden   {ours}",
                    sc.name
                ));
            }
        }
    }
    println!(
        "scenarios: {}, host-name failures left to resolve: {resolvable}, disagreements: {}",
        scenarios.len(),
        disagreements.len()
    );
    assert!(resolvable > 0);
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}
