//! Ban-time escalation against fail2ban's own code: the ban time fail2ban's jail computes
//! (`Jail.setBanTimeExtra`, then its formula applied as `incrBanTime` does) for a grid of
//! settings, compared with warden's, and the same escalation driven through the ledger.

use std::io::Write;
use std::process::Stdio;

use ipnet::IpNet;
use serde_json::json;
use warden::config::model::Escalation;
use warden::jail::escalation::{self, Escalate};
use warden::ledger::{Ledger, LedgerOptions, NewBan};

use crate::support::fail2ban;

/// Reads `[{opts: {...}, points: [[bantime, prior], ...]}, ...]` on stdin and prints the
/// ban time fail2ban gives each point. `incrBanTime` applies the formula only for an
/// address banned before and a positive ban time; the script does the same.
const ORACLE: &str = r#"
import sys, json, logging
logging.disable(logging.CRITICAL)
from fail2ban.server.jail import Jail
from fail2ban.server.observer import ObserverThread
out = []
for i, c in enumerate(json.load(sys.stdin)):
    j = Jail("oracle%d" % i, backend="polling")
    for k, v in c["opts"].items():
        j.setBanTimeExtra(k, v)
    f = j.getBanTimeExtra("evformula")
    out.append([f(ObserverThread.BanTimeIncr(t, n)) if (n > 0 and t > 0) else t
                for (t, n) in c["points"]])
json.dump(out, sys.stdout)
"#;

struct Case {
    factor: f64,
    multipliers: Vec<f64>,
    maxtime: Option<i64>,
}

fn rule(c: &Case) -> Escalation {
    Escalation {
        increment: true,
        factor: c.factor,
        multipliers: c.multipliers.clone(),
        maxtime: c.maxtime,
        rndtime: None,
        overalljails: false,
    }
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    let multipliers: [&[f64]; 4] = [
        &[],
        &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0],
        &[1.0, 5.0, 30.0, 60.0, 300.0, 720.0, 1440.0, 2880.0],
        &[3.0, 1.0],
    ];
    for factor in [1.0, 2.0, 0.5, 1.5, 0.1, 3.25] {
        for m in multipliers {
            for maxtime in [None, Some(3000), Some(7 * 86_400)] {
                out.push(Case {
                    factor,
                    multipliers: m.to_vec(),
                    maxtime,
                });
            }
        }
    }
    out
}

const BANTIMES: [i64; 6] = [1, 7, 60, 600, 86_400, -1];

#[test]
fn escalated_ban_times_match_fail2ban() {
    let pkg = fail2ban::package();
    let cases = cases();
    let points: Vec<(i64, u32)> = BANTIMES
        .iter()
        .flat_map(|t| (0..=25u32).map(move |n| (*t, n)))
        .collect();
    let input: Vec<serde_json::Value> = cases
        .iter()
        .map(|c| {
            let mut opts = serde_json::Map::new();
            opts.insert("increment".into(), json!("true"));
            opts.insert("factor".into(), json!(c.factor.to_string()));
            if !c.multipliers.is_empty() {
                let m: Vec<String> = c.multipliers.iter().map(|m| m.to_string()).collect();
                opts.insert("multipliers".into(), json!(m.join(" ")));
            }
            if let Some(t) = c.maxtime {
                opts.insert("maxtime".into(), json!(t.to_string()));
            }
            json!({"opts": opts, "points": points})
        })
        .collect();

    let mut child = std::process::Command::new("python3")
        .arg("-c")
        .arg(ORACLE)
        .env("PYTHONPATH", pkg.python_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&input).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "oracle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: Vec<Vec<f64>> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(expected.len(), cases.len());

    let mut compared = 0;
    for (c, want) in cases.iter().zip(&expected) {
        let r = rule(c);
        for ((t, n), w) in points.iter().zip(want) {
            let got = escalation::ban_time(&r, *t, *n, 0);
            assert_eq!(
                got,
                w.floor() as i64,
                "factor {} multipliers {:?} maxtime {:?}: bantime {t}, {n} earlier bans",
                c.factor,
                c.multipliers,
                c.maxtime
            );
            compared += 1;
        }
    }
    assert_eq!(compared, cases.len() * points.len());
}

#[test]
fn the_ledger_escalates_like_fail2ban_across_repeat_bans() {
    // jail.conf's example: multipliers 1 2 4 8 16 32 64 with bantime 600.
    let dir = tempfile::tempdir().unwrap();
    let mut l = Ledger::open(&dir.path().join("ledger.db"), LedgerOptions::default()).unwrap();
    let esc = Escalate {
        rule: Escalation {
            increment: true,
            factor: 1.0,
            multipliers: vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0],
            maxtime: None,
            rndtime: None,
            overalljails: false,
        },
        extra: 0,
    };
    let target: IpNet = "192.0.2.1/32".parse().unwrap();
    let mut start = 1_700_000_000;
    let mut got = Vec::new();
    for _ in 0..9 {
        let mut b = NewBan::new(target, "sshd", start, 600);
        b.escalation = Some(esc.clone());
        let r = l.record_ban(&b).unwrap();
        got.push(r.hold.bantime);
        start = r.hold.expires.unwrap() + 1;
    }
    assert_eq!(
        got,
        [600, 1200, 2400, 4800, 9600, 19200, 38400, 38400, 38400]
    );
}
