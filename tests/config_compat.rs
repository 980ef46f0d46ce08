//! Differential test of the configuration loader against fail2ban itself: Debian's
//! fail2ban 1.0.2 configuration tree is resolved by warden and by fail2ban's own readers
//! (run with python3 from the unpacked package), and every jail's filter options, timings
//! and actions, and every filter of `filter.d` in each of its modes, must come out equal.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value as Json;
use warden::config::{self, ConfigLocation, FilterConfig, JailConfig, LogBackend};

use crate::support::fail2ban;

/// Resolves the tree with fail2ban's own readers and prints JSON: every jail (forced
/// enabled, as fail2ban resolves only enabled jails) as the command stream the client
/// would send, and every filter of filter.d in every mode it declares, as
/// fail2ban-regex loads it.
const ORACLE: &str = r#"
import sys, json, glob, os, re, logging
logging.disable(logging.CRITICAL)
from fail2ban.client.jailsreader import JailsReader
from fail2ban.client.filterreader import FilterReader

basedir = sys.argv[1]

def collect(stream, rec):
    for cmd in stream:
        if cmd[0] == 'config-error':
            rec['error'] = cmd[1]
        elif cmd[0] == 'add':
            rec['backend'] = cmd[2]
        elif cmd[0] == 'multi-set' and cmd[2] in ('addfailregex', 'addignoreregex'):
            rec[cmd[2][3:]].extend(cmd[3])
        elif cmd[0] == 'set' and cmd[2] in ('addfailregex', 'addignoreregex'):
            rec[cmd[2][3:]].append(cmd[3])
        elif cmd[0] == 'set' and cmd[2] == 'addjournalmatch':
            rec['journalmatch'].append(cmd[3:])
        elif cmd[0] == 'set' and cmd[2] == 'addaction':
            rec['actions'].append({'name': cmd[3], 'params': {}})
        elif cmd[0] in ('set', 'multi-set') and cmd[2] == 'action':
            act = [a for a in rec['actions'] if a['name'] == cmd[3]][-1]
            pairs = cmd[4] if cmd[0] == 'multi-set' else [cmd[4:6]]
            for k, v in pairs:
                act['params'][k] = v
        elif cmd[0] == 'set' and cmd[2] in ('prefregex', 'datepattern', 'maxlines', 'usedns'):
            rec[cmd[2]] = cmd[3]
        elif cmd[0] == 'set' and cmd[2] == 'addignoreip':
            rec['opts']['ignoreip'] = cmd[3:]
        elif cmd[0] == 'set' and len(cmd) == 4:
            rec['opts'][cmd[2]] = cmd[3]
        else:
            rec.setdefault('other', []).append(cmd)

def record():
    return {'error': None, 'prefregex': None, 'failregex': [], 'ignoreregex': [],
            'datepattern': None, 'maxlines': None, 'usedns': None, 'journalmatch': [],
            'actions': [], 'backend': None, 'opts': {}}

jails = {}
reader = JailsReader(force_enable=True, share_config={}, basedir=basedir)
reader.read()
reader.getOptions(ignoreWrong=True)
for jail in reader.jails:
    rec = record()
    try:
        collect(jail.convert(allow_no_files=True), rec)
    except Exception as e:
        rec['error'] = repr(e)
    jails[jail.getName()] = rec

filters = []
for path in sorted(glob.glob(os.path.join(basedir, 'filter.d', '*.conf'))):
    name = os.path.basename(path)[:-5]
    probe = FilterReader(name, 'jail', {}, basedir=basedir)
    probe.read()
    modes = set()
    if probe.has_section('Definition'):
        raw = {k: probe._cfg.get('Definition', k, raw=True) for k in probe.options('Definition', True)}
        prefixes = set()
        for v in raw.values():
            prefixes.update(re.findall(r'<([\w\-]+?)-<mode>', v or ''))
        for p in prefixes:
            for k in raw:
                m = re.match(re.escape(p) + r'-(\w+)', k)
                if m:
                    modes.add(m.group(1))
    variants = [{}] + [{'mode': m} for m in sorted(modes)] + [{'logtype': 'journal'}]
    for args in variants:
        rec = record()
        rec['name'] = name
        rec['args'] = args
        try:
            fr = FilterReader(name, 'fail2ban-regex-jail', dict(args), basedir=basedir)
            if not fr.read():
                rec['error'] = 'not read'
            else:
                fr.applyAutoOptions('auto')
                fr.getOptions(None)
                collect(fr.convert(), rec)
        except Exception as e:
            rec['error'] = repr(e)
        filters.append(rec)

json.dump({'jails': jails, 'filters': filters}, sys.stdout)
"#;

/// The action options fail2ban sends after substituting their static tags.
const ACTION_COMMANDS: [&str; 13] = [
    "actionstart",
    "actionstart_on_demand",
    "actionstop",
    "actionflush",
    "actionreload",
    "actioncheck",
    "actionrepair",
    "actionrepair_on_unban",
    "actionban",
    "actionprolong",
    "actionreban",
    "actionunban",
    "norestored",
];

#[derive(Default)]
struct Tally {
    jails: usize,
    regexes: usize,
    filter_variants: usize,
    filter_regexes: usize,
    actions: usize,
    action_params: usize,
    diffs: Vec<String>,
}

impl Tally {
    fn check<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, ours: T, theirs: T) {
        if ours != theirs {
            self.diffs.push(format!(
                "{what}:\n    warden:   {ours:?}\n    fail2ban: {theirs:?}"
            ));
        }
    }
}

fn strings(v: &Json) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(json_str).collect())
        .unwrap_or_default()
}

fn json_str(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn opt_str(v: &Json) -> Option<String> {
    (!v.is_null()).then(|| json_str(v))
}

/// fail2ban's journal matches (one list of words per line) as alternatives.
fn journal_alternatives(v: &Json) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in v.as_array().into_iter().flatten() {
        let words = strings(line);
        for alt in words.split(|w| w == "+") {
            if !alt.is_empty() {
                out.push(alt.to_vec());
            }
        }
    }
    out
}

fn compare_filter(t: &mut Tally, what: &str, ours: &FilterConfig, rec: &Json) -> usize {
    let fail = strings(&rec["failregex"]);
    let ignore = strings(&rec["ignoreregex"]);
    t.check(&format!("{what} failregex"), &ours.failregex, &fail);
    t.check(&format!("{what} ignoreregex"), &ours.ignoreregex, &ignore);
    t.check(
        &format!("{what} prefregex"),
        ours.prefregex.clone(),
        opt_str(&rec["prefregex"]).filter(|s| !s.is_empty()),
    );
    t.check(
        &format!("{what} datepattern"),
        ours.datepattern.clone(),
        opt_str(&rec["datepattern"]).filter(|s| !s.is_empty()),
    );
    t.check(
        &format!("{what} maxlines"),
        ours.maxlines as u64,
        rec["maxlines"].as_u64().unwrap_or(1),
    );
    t.check(
        &format!("{what} journalmatch"),
        ours.journalmatch.clone(),
        journal_alternatives(&rec["journalmatch"]),
    );
    fail.len() + ignore.len() + usize::from(ours.prefregex.is_some())
}

fn compare_jail(t: &mut Tally, jail: &JailConfig, rec: &Json) {
    let what = format!("jail [{}]", jail.name);
    t.regexes += compare_filter(t, &what, &jail.filter, rec);
    let usedns = format!("{:?}", jail.usedns).to_lowercase();
    t.check(
        &format!("{what} usedns"),
        Some(usedns),
        opt_str(&rec["usedns"]).or(Some("warn".into())),
    );
    let backend = rec["backend"].as_str().unwrap_or("auto");
    let expected = match backend.split('[').next().unwrap_or("") {
        "auto" => LogBackend::Auto,
        "polling" => LogBackend::Polling,
        "pyinotify" => LogBackend::Notify,
        "ledger" => LogBackend::Ledger,
        "pflog" => LogBackend::Pflog,
        b if b.starts_with("systemd") => jail.backend.clone(),
        other => panic!("{what}: backend {other} not expected"),
    };
    t.check(&format!("{what} backend"), &jail.backend, &expected);
    if backend.starts_with("systemd") {
        t.check(
            &format!("{what} backend is systemd"),
            matches!(jail.backend, LogBackend::Systemd(_)),
            true,
        );
    }
    let opts = &rec["opts"];
    let dur = |k: &str| {
        opts.get(k)
            .map(|v| config::parse_duration(&json_str(v)).unwrap())
    };
    t.check(
        &format!("{what} findtime"),
        Some(jail.findtime),
        dur("findtime"),
    );
    t.check(
        &format!("{what} bantime"),
        Some(jail.bantime),
        dur("bantime"),
    );
    t.check(
        &format!("{what} maxretry"),
        Some(u64::from(jail.maxretry)),
        opts["maxretry"].as_u64(),
    );
    t.check(
        &format!("{what} maxmatches"),
        Some(u64::from(jail.maxmatches)),
        opts["maxmatches"].as_u64(),
    );
    t.check(
        &format!("{what} logencoding"),
        jail.logencoding.clone(),
        opt_str(&opts["logencoding"]).unwrap_or("auto".into()),
    );
    t.check(
        &format!("{what} ignorecommand"),
        jail.ignorecommand.clone(),
        opt_str(&opts["ignorecommand"]).filter(|s| !s.is_empty()),
    );
    t.check(
        &format!("{what} ignoreip"),
        jail.ignoreip.clone(),
        strings(&opts["ignoreip"]),
    );
    let theirs = rec["actions"].as_array().cloned().unwrap_or_default();
    t.check(
        &format!("{what} action names"),
        jail.actions
            .iter()
            .map(|a| a.name.clone())
            .collect::<Vec<_>>(),
        theirs
            .iter()
            .map(|a| json_str(&a["name"]))
            .collect::<Vec<_>>(),
    );
    for (ours, theirs) in jail.actions.iter().zip(&theirs) {
        t.actions += 1;
        let rendered = config::render_static_tags(&ours.params, None)
            .unwrap_or_else(|e| panic!("{what} action {}: {e}", ours.name));
        let params: BTreeMap<String, Json> = theirs["params"]
            .as_object()
            .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        for (key, value) in params {
            t.action_params += 1;
            let mine = if ACTION_COMMANDS.contains(&key.as_str()) {
                rendered.get(&key)
            } else {
                ours.params.get(&key)
            };
            let theirs = match &value {
                Json::Bool(b) => mine.map(|m| {
                    let truthy = ["1", "on", "true", "yes"].contains(&m.to_lowercase().as_str());
                    if truthy == *b {
                        m.clone()
                    } else {
                        value.to_string()
                    }
                }),
                other => Some(json_str(other)),
            };
            t.check(
                &format!("{what} action {} `{key}`", ours.name),
                mine.cloned(),
                theirs,
            );
        }
    }
}

/// Resolves `dir` with fail2ban's readers.
fn run_oracle(dir: &Path) -> Json {
    let pkg = fail2ban::package();
    let oracle = Command::new("python3")
        .arg("-c")
        .arg(ORACLE)
        .arg(dir)
        .env("PYTHONPATH", pkg.python_path())
        .output()
        .expect("python3 runs");
    assert!(
        oracle.status.success(),
        "oracle failed: {}",
        String::from_utf8_lossy(&oracle.stderr)
    );
    serde_json::from_slice(&oracle.stdout).expect("oracle prints JSON")
}

/// Loads `dir` with warden and compares it with what fail2ban resolves.
fn compare_tree(dir: &Path) -> Tally {
    let oracle = run_oracle(dir);
    let cfg = config::load(dir).expect("the directory loads");
    assert!(
        cfg.errors.is_empty(),
        "warden reports errors on {}:\n{}",
        dir.display(),
        cfg.errors
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let mut t = Tally::default();
    let jails = oracle["jails"].as_object().expect("jails");
    let ours: BTreeMap<&str, &JailConfig> =
        cfg.jails.iter().map(|j| (j.name.as_str(), j)).collect();
    t.check(
        "jail names",
        ours.keys().map(|s| s.to_string()).collect::<Vec<_>>(),
        {
            let mut v: Vec<String> = jails.keys().cloned().collect();
            v.sort();
            v
        },
    );
    for (name, rec) in jails {
        assert!(
            rec["error"].is_null(),
            "fail2ban itself rejects jail {name}: {}",
            rec["error"]
        );
        let Some(jail) = ours.get(name.as_str()) else {
            continue;
        };
        t.jails += 1;
        compare_jail(&mut t, jail, rec);
    }

    let location = ConfigLocation::Dir(dir.to_path_buf());
    for rec in oracle["filters"].as_array().expect("filters") {
        let name = json_str(&rec["name"]);
        let args: Vec<String> = rec["args"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| format!("{k}={}", json_str(v)))
                    .collect()
            })
            .unwrap_or_default();
        let spec = if args.is_empty() {
            name.clone()
        } else {
            format!("{name}[{}]", args.join(", "))
        };
        let loaded = config::load_filter(&location, &spec);
        if !rec["error"].is_null() {
            // fail2ban cannot load it either (an include-only file such as selinux-common).
            t.filter_variants += 1;
            if let Ok(f) = loaded {
                t.diffs.push(format!(
                    "filter {spec}: fail2ban fails ({}) but warden loads it: {:?}",
                    rec["error"], f.failregex
                ));
            }
            continue;
        }
        match loaded {
            Ok(f) => {
                t.filter_variants += 1;
                t.filter_regexes += compare_filter(&mut t, &format!("filter {spec}"), &f, rec);
            }
            Err(e) => t.diffs.push(format!(
                "filter {spec}: warden fails: {}",
                e.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
        }
    }
    eprintln!(
        "{}: compared {} jails ({} regexes, {} actions with {} parameters) and {} filter variants ({} regexes)",
        dir.display(),
        t.jails,
        t.regexes,
        t.actions,
        t.action_params,
        t.filter_variants,
        t.filter_regexes
    );
    assert!(
        t.diffs.is_empty(),
        "{} differences from fail2ban:\n{}",
        t.diffs.len(),
        t.diffs.join("\n")
    );
    t
}

#[test]
fn debian_fail2ban_tree_resolves_like_fail2ban() {
    let t = compare_tree(&fail2ban::package().config_dir());
    assert!(t.jails > 80 && t.regexes > 200 && t.actions > 80 && t.filter_variants > 90);
}

/// warden's own configuration is loadable by fail2ban, and both read it the same way.
#[test]
fn shipped_config_resolves_like_fail2ban() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let t = compare_tree(&dir);
    assert_eq!(t.jails, 10);
    assert!(
        t.regexes >= 16 && t.filter_variants >= 20,
        "{} {}",
        t.regexes,
        t.filter_variants
    );
}
