//! Date detection against fail2ban itself: its DateDetector, run by
//! `support/pyoracle/date_oracle.py` over every sample log of Debian's fail2ban package
//! (with each filter's datepattern and with the defaults), and the `time` annotations of
//! the samples. Conditions are fail2ban's test conditions: now = 1124013600, zone
//! `CET-01CEST-02,M3.5.0,M10.5.0`.

use std::fmt::Write as _;
use std::process::Command;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::Value;
use warden::date::{DateDetector, DateMatch};

use crate::support::fail2ban::{self, TEST_NOW, TEST_TZ, annotated_time};

fn oracle(extra: Option<&std::path::Path>) -> Value {
    let pkg = fail2ban::package();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/pyoracle/date_oracle.py"
    );
    let mut cmd = Command::new("python3");
    cmd.arg(script)
        .arg(pkg.config_dir())
        .arg(pkg.test_config())
        .arg(pkg.sample_logs())
        .arg(TEST_NOW.to_string());
    if let Some(extra) = extra {
        cmd.arg(extra);
    }
    let out = cmd
        .env("PYTHONPATH", pkg.python_path())
        .env("TZ", TEST_TZ)
        .output()
        .expect("running python3");
    assert!(
        out.status.success(),
        "date oracle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("date oracle output is JSON")
}

fn zone() -> TimeZone {
    fail2ban::test_zone()
}

/// What fail2ban found in one line.
struct Expected<'a> {
    span: Option<(usize, usize)>,
    time: Option<f64>,
    name: Option<&'a str>,
}

fn expected(rec: &Value) -> Expected<'_> {
    let span = rec["span"].as_array().map(|a| {
        (
            a[0].as_u64().unwrap() as usize,
            a[1].as_u64().unwrap() as usize,
        )
    });
    Expected {
        span,
        time: rec["time"].as_f64(),
        name: rec["name"].as_str(),
    }
}

fn seconds(t: Timestamp) -> f64 {
    t.as_nanosecond() as f64 / 1e9
}

/// None when warden agrees with fail2ban, else what differs.
fn compare(exp: &Expected<'_>, got: &Option<DateMatch>, det: &DateDetector) -> Option<String> {
    match (exp.span, got) {
        (None, None) => None,
        (None, Some(m)) => Some(format!(
            "fail2ban: no date; warden: {:?} {:?}",
            m.span,
            det.template_name(m.template)
        )),
        (Some(_), None) => Some("warden: no date".to_string()),
        (Some((s, e)), Some(m)) => {
            let mut diff = String::new();
            let empty = s == e;
            if empty != m.span.is_empty() || (!empty && (s, e) != (m.span.start, m.span.end)) {
                let _ = write!(diff, "span {s}..{e} vs {:?}; ", m.span);
            }
            let name = det.template_name(m.template);
            if exp.name != Some(name) {
                let _ = write!(diff, "template {:?} vs {name:?}; ", exp.name.unwrap_or(""));
            }
            match (exp.time, m.parsed) {
                (Some(t), true) if (t - seconds(m.time)).abs() > 1e-5 => {
                    let _ = write!(diff, "time {t} vs {}; ", seconds(m.time));
                }
                (Some(t), false) => {
                    let _ = write!(diff, "time {t} vs none; ");
                }
                (None, true) if !empty => {
                    let _ = write!(diff, "time none vs {}; ", seconds(m.time));
                }
                _ => {}
            }
            (!diff.is_empty()).then_some(diff)
        }
    }
}

/// Agreement of warden with the oracle over some of its runs.
struct Outcome {
    total: usize,
    agree: usize,
    report: String,
    annotated: usize,
    annotated_wrong: Vec<String>,
    oracle_wrong: usize,
    /// Lines on which fail2ban's detector raises an exception.
    raised: String,
    raised_count: usize,
}

fn replay(data: &Value, keep: impl Fn(&str) -> bool) -> Outcome {
    let now = Timestamp::from_second(TEST_NOW).unwrap();
    let mut o = Outcome {
        total: 0,
        agree: 0,
        report: String::new(),
        annotated: 0,
        annotated_wrong: Vec::new(),
        oracle_wrong: 0,
        raised: String::new(),
        raised_count: 0,
    };
    for run in data["runs"].as_array().unwrap() {
        let file = run["file"].as_str().unwrap();
        if !keep(file) {
            continue;
        }
        let variant = run["variant"].as_str().unwrap();
        let datepattern = run["datepattern"].as_str();
        let mut det = DateDetector::new(datepattern, zone())
            .unwrap_or_else(|e| panic!("{file} {variant}: {e}"));
        for rec in run["lines"].as_array().unwrap() {
            let line = rec["line"].as_str().unwrap();
            let exp = expected(rec);
            let got = det.detect(line, now);
            if let Some(err) = rec["error"].as_str().filter(|e| !e.starts_with("date: ")) {
                // fail2ban raised on this line (e.g. `{NONE}` on an empty line); there is
                // no answer to agree with.
                let _ = writeln!(
                    o.raised,
                    "  {file} [{variant:?}]: fail2ban raised {err}; warden: {:?}\n    {line:?}",
                    got.as_ref().map(|m| (m.span.clone(), m.parsed))
                );
                o.raised_count += 1;
                continue;
            }
            o.total += 1;
            match compare(&exp, &got, &det) {
                None => o.agree += 1,
                Some(diff) => {
                    let _ = writeln!(o.report, "  {file} [{variant:?}]: {diff}\n    {line:?}");
                }
            }
            if let Some(t) = rec.get("expect").and_then(Value::as_str) {
                o.annotated += 1;
                let want = annotated_time(t);
                if exp.time.is_none_or(|t| (t - want).abs() > 1e-5) {
                    o.oracle_wrong += 1;
                }
                let ok = got
                    .as_ref()
                    .is_some_and(|m| m.parsed && (seconds(m.time) - want).abs() <= 1e-5);
                if !ok {
                    o.annotated_wrong.push(format!(
                        "  {file} [{variant}]: expected {t}, got {:?}\n    {line:?}",
                        got.map(|m| m.time)
                    ));
                }
            }
        }
    }
    println!(
        "date detection: {}/{} lines agree with fail2ban ({:.2}%)",
        o.agree,
        o.total,
        100.0 * o.agree as f64 / o.total.max(1) as f64
    );
    if !o.report.is_empty() {
        println!("disagreements:\n{}", o.report);
    }
    if !o.raised.is_empty() {
        println!("lines fail2ban raises on (not counted):\n{}", o.raised);
    }
    o
}

#[test]
fn date_detection_agrees_with_fail2ban_on_its_sample_logs() {
    let data = oracle(None);
    let errors = data["errors"].as_array().unwrap();
    assert!(errors.is_empty(), "oracle could not read: {errors:?}");
    let o = replay(&data, |_| true);
    println!(
        "failJSON times: {}/{} match (fail2ban's own detector misses {})",
        o.annotated - o.annotated_wrong.len(),
        o.annotated,
        o.oracle_wrong
    );
    for w in &o.annotated_wrong {
        println!("{w}");
    }
    assert!(o.total > 2000, "only {} lines compared", o.total);
    assert!(o.annotated > 1000, "only {} annotated times", o.annotated);
    assert_eq!(
        o.agree, o.total,
        "disagreements with fail2ban:\n{}",
        o.report
    );
    assert!(
        o.annotated_wrong.len() <= o.oracle_wrong,
        "warden misses more failJSON times than fail2ban's detector"
    );
}

/// A small deterministic generator (xorshift) for the synthetic corpus.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    /// A number with fail2ban-relevant padding: zero-padded, bare, or blank-padded.
    fn num(&mut self, lo: usize, hi: usize, odd: &[usize]) -> String {
        let v = if !odd.is_empty() && self.chance(5) {
            odd[self.below(odd.len())]
        } else {
            lo + self.below(hi - lo + 1)
        };
        match self.below(6) {
            0 => v.to_string(),
            1 if v < 10 => format!(" {v}"),
            _ => format!("{v:02}"),
        }
    }
    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const FULL_MONTHS: [&str; 6] = ["January", "february", "MARCH", "August", "December", "May"];
const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

fn month(g: &mut Gen) -> String {
    let m = g.pick(&MONTHS);
    match g.below(10) {
        0 => m.to_uppercase(),
        1 => m.to_lowercase(),
        2 if g.chance(30) => "Foo".to_string(),
        _ => m.to_string(),
    }
}

fn year4(g: &mut Gen) -> String {
    g.pick(&[
        "2005", "2005", "2004", "2013", "2029", "2030", "1999", "2000",
    ])
    .to_string()
}

fn hms(g: &mut Gen) -> String {
    format!(
        "{}:{}:{}",
        g.num(0, 23, &[24, 29]),
        g.num(0, 59, &[60]),
        g.num(0, 59, &[60, 61, 62])
    )
}

fn zone_text(g: &mut Gen) -> String {
    g.pick(&[
        "+0200", "-05:00", "+02", "Z", "UTC", "GMT", "utc", "+2500", "-0130", "CEST",
    ])
    .to_string()
}

/// One date in one of many formats (fail2ban's defaults and common custom ones), with
/// occasional impossible values.
fn date(g: &mut Gen, kind: usize) -> String {
    let frac = |g: &mut Gen| {
        if g.chance(30) {
            let n = 1 + g.below(7);
            format!("{}{}", g.pick(&[".", ","]), g.digits(n))
        } else {
            String::new()
        }
    };
    match kind {
        0 => {
            let sep = g.pick(&["-", "/", ".", "-"]);
            let sep2 = if g.chance(5) { "/" } else { sep };
            let mut s = format!(
                "{}{sep}{}{sep2}{}{}{}",
                year4(g),
                g.num(1, 12, &[13, 0]),
                g.num(1, 31, &[32, 0]),
                g.pick(&["T", " ", "  "]),
                hms(g)
            );
            s.push_str(&frac(g));
            if g.chance(40) {
                s.push_str(g.pick(&["", " ", "  "]));
                s.push_str(&zone_text(g));
            }
            s
        }
        1 => {
            let mut s = String::new();
            if g.chance(30) {
                s.push_str(g.pick(&DAYS));
                s.push(' ');
            }
            s.push_str(&format!(
                "{} {} {}",
                month(g),
                g.num(1, 31, &[30, 31]),
                hms(g)
            ));
            if g.chance(20) {
                s.push_str(&format!(".{}", {
                    let n = 1 + g.below(6);
                    g.digits(n)
                }));
            }
            if g.chance(20) {
                s.push_str(&format!(" {}", year4(g)));
            }
            s
        }
        2 => format!("{} {} {} {}", month(g), g.num(1, 31, &[]), year4(g), hms(g)),
        3 => {
            let sep = g.pick(&["-", "/"]);
            let y = if g.chance(50) { year4(g) } else { g.digits(2) };
            format!(
                "{}{sep}{}{sep}{y} {}",
                g.num(1, 31, &[32]),
                g.num(1, 12, &[13]),
                hms(g)
            )
        }
        4 => {
            let sep = g.pick(&["/", "-"]);
            let mut s = format!(
                "{}{sep}{}{sep}{}{}{}",
                g.num(1, 31, &[]),
                month(g),
                year4(g),
                g.pick(&[":", " ", ""]),
                hms(g)
            );
            if g.chance(50) {
                s.push(' ');
                s.push_str(&zone_text(g));
            }
            s
        }
        5 => format!(
            "{}/{}/{}:{}",
            g.num(1, 12, &[]),
            g.num(1, 31, &[]),
            year4(g),
            hms(g)
        ),
        6 => format!(
            "{}-{}-{} {}",
            g.num(1, 12, &[]),
            g.num(1, 31, &[]),
            year4(g),
            hms(g)
        ),
        7 => {
            let n: usize = g
                .pick(&["10", "10", "11", "12", "13", "16"])
                .parse()
                .unwrap();
            let mut s = format!("11{}", g.digits(n - 2));
            if g.chance(30) {
                s.push_str(&format!(".{}", {
                    let n = 1 + g.below(7);
                    g.digits(n)
                }));
            }
            s
        }
        8 => hms(g),
        9 => format!(
            "<{}/{}/{}@{}>",
            g.num(1, 12, &[]),
            g.num(1, 31, &[]),
            g.digits(2),
            hms(g)
        ),
        10 => format!(
            "{}{}{}{}{}",
            g.digits(2),
            g.num(1, 12, &[13]),
            g.num(1, 31, &[]),
            g.pick(&[" ", "  "]),
            hms(g)
        ),
        11 => format!(
            "{} {}, {} {}:{}:{} {}",
            month(g),
            g.num(1, 31, &[]),
            year4(g),
            g.num(1, 12, &[0, 13]),
            g.num(0, 59, &[]),
            g.num(0, 59, &[]),
            g.pick(&["AM", "PM", "am", "pm", "XM"])
        ),
        12 => format!(
            "{}-{}-{} {}",
            month(g),
            g.num(1, 31, &[]),
            g.digits(2),
            hms(g)
        ),
        13 => {
            let mut s = format!(
                "{}{:02}{:02}{}{:02}{:02}{:02}",
                year4(g),
                1 + g.below(12),
                1 + g.below(28),
                g.pick(&["T", " ", "  "]),
                g.below(24),
                g.below(60),
                g.below(60)
            );
            s.push_str(&frac(g));
            if g.chance(30) {
                s.push_str(&zone_text(g));
            }
            s
        }
        14 => format!(
            "{} {} {} {}",
            g.pick(&["PDT", "CET", "XYZ", "cest", "Z", "ABCDEF"]),
            month(g),
            g.num(1, 31, &[]),
            hms(g)
        ),
        15 => format!(
            "{} {} {} {}",
            zone_text(g),
            month(g),
            g.num(1, 31, &[]),
            hms(g)
        ),
        16 => {
            // A label from 2005-2019: 2^62 plus the seconds, then nanoseconds.
            let hex: String = (0..15)
                .map(|_| char::from(b"0123456789abcdef"[g.below(16)]))
                .collect();
            let hex = if g.chance(10) {
                hex.to_uppercase()
            } else {
                hex
            };
            format!("@40000000{}{hex}", g.pick(&["4", "5"]))
        }
        17 => format!(
            "{} {} {}:{}",
            g.num(1, 366, &[367]),
            year4(g),
            g.num(0, 23, &[]),
            g.num(0, 59, &[])
        ),
        18 => format!(
            "{} {} {} {}:{} {}",
            g.pick(&FULL_MONTHS),
            g.num(1, 31, &[]),
            year4(g),
            g.num(1, 12, &[]),
            g.num(0, 59, &[]),
            g.pick(&["AM", "pm"])
        ),
        19 => format!(
            "{} {} {} {} {}",
            g.pick(&DAYS),
            month(g),
            g.num(1, 31, &[]),
            hms(g),
            year4(g)
        ),
        _ => format!(
            "{}/{}/{} {}",
            g.num(1, 12, &[]),
            g.num(1, 31, &[]),
            g.digits(2),
            hms(g)
        ),
    }
}

const KINDS: usize = 21;

/// Log-like lines: runs of one format with switches, dates at the start or after a
/// prefix, some lines with two dates, some with none.
fn synthetic_lines(n: usize) -> Vec<String> {
    let mut g = Gen(0x9e37_79b9_7f4a_7c15);
    let prefixes = [
        "",
        "",
        "",
        "[",
        "((",
        "« ",
        "«",
        "host ",
        "192.0.2.1 - - [",
        "<13>1 ",
        "audit(",
        "type=AVC msg=audit(",
        "x",
        "é",
        "  ",
        "L ",
        "t=",
        "<W>",
        "<co ts=\"",
        "=ERROR==== ",
        "\t",
        "[[",
        "«[",
        "WARNING: ",
    ];
    let suffixes = [
        "",
        " sshd[123]: Failed password for root from 192.0.2.7",
        "x",
        "]",
        "] \"GET / HTTP/1.1\" 404",
        "\"  rest",
        ".5 rest",
        ",123456 z",
        " ",
        "é",
        ":42): avc denied",
        "\t+0200 x",
        "Z",
        "_x",
        "日本",
    ];
    let mut lines = Vec::with_capacity(n);
    let mut kind = 0;
    let mut prefix = "";
    let mut left = 0;
    while lines.len() < n {
        if left == 0 {
            kind = g.below(KINDS);
            prefix = g.pick(&prefixes);
            left = 1 + g.below(15);
        }
        left -= 1;
        let mut line = String::new();
        if g.chance(8) {
            line.push_str(g.pick(&["user admin from 192.0.2.1 port 22", "", "12345", "x y z"]));
        } else {
            line.push_str(prefix);
            let k = if g.chance(10) { g.below(KINDS) } else { kind };
            line.push_str(&date(&mut g, k));
            if g.chance(15) {
                line.push_str(" message at ");
                let k = g.below(KINDS);
                line.push_str(&date(&mut g, k));
            }
            line.push_str(g.pick(&suffixes));
        }
        lines.push(line);
    }
    lines
}

/// Datepatterns for the synthetic corpus: none (the defaults), the list keywords, and
/// custom patterns covering the format codes.
const SYNTHETIC_PATTERNS: &[Option<&str>] = &[
    None,
    Some("{^LN-BEG}"),
    Some("{DEFAULT}"),
    Some("^[^\\[]*\\[({DATE})\n{^LN-BEG}"),
    Some("^{DATE}"),
    Some("^<co ts=\"{DATE}\"\\s+"),
    Some("EPOCH"),
    Some("^LEPOCH"),
    Some("{^LN-BEG}Epoch\n{^LN-BEG}"),
    Some("TAI64N"),
    Some("%d/%b/%Y:%H:%M:%S %z"),
    Some("^%Y-%m-%d %H:%M:%S"),
    Some("%j %Y %H:%M"),
    Some("%B %d %Y %I:%M %p"),
    Some("{^LN-BEG}%H:%M:%S"),
    Some("{NONE}"),
    Some("%ExY-%Exm-%Exd %ExH:%ExM:%ExS"),
    Some("^%b %d %k:%M:%S"),
    Some("%Z %H:%M:%S"),
    Some("{UNB}%H:%M"),
    Some("^\\[{EPOCH}\\]"),
    Some("%Exz %H:%M:%S"),
    Some("%y%m%d %H%M%S"),
    Some("%a %b %d %H:%M:%S %Y"),
    Some("%x %X"),
    Some("%c"),
    Some("%m/%d/%y %l:%M %p"),
    Some(
        "{^LN-BEG}%ExY(?P<_sep>[-/.])%m(?P=_sep)%d[T ]%H:%M:%S(?:[.,]%f)?(?:\\s*%z)?\n^[^\\[]*\\[({DATE})\n{^LN-BEG}",
    ),
    // Stock filters' patterns.
    Some("^(?:%Y-)?%m-%d[ T]%H:%M:%S(?:\\.%f)?\n{^LN-BEG}"),
    Some("^%b %d, %ExY %I:%M:%S %p\n^WARNING:()**\n{^LN-BEG}"),
    Some("%d/%b[^/]*/%Y:%H:%M:%S %z"),
    Some("^<\\d+>\\d+\\s+{DATE}"),
    Some("^t=%Y-%m-%dT%H:%M:%S%z"),
    Some("{^LN-BEG}%b-%d-%Exy %H:%M:%S\n{^LN-BEG}"),
    Some("^[^-]+ -- [^-]+ -- - ({DATE})\n{^LN-BEG}"),
];

#[test]
fn date_detection_agrees_with_fail2ban_on_synthetic_lines() {
    let lines = synthetic_lines(3000);
    let spec = serde_json::json!({ "patterns": SYNTHETIC_PATTERNS, "lines": lines });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("synthetic.json");
    std::fs::write(&path, serde_json::to_vec(&spec).unwrap()).unwrap();
    let data = oracle(Some(&path));
    let errors = data["errors"].as_array().unwrap();
    assert!(errors.is_empty(), "oracle could not read: {errors:?}");
    let o = replay(&data, |f| f == "extra");
    let dated = data["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["file"] == "extra")
        .flat_map(|r| r["lines"].as_array().unwrap())
        .filter(|l| l["time"].is_number())
        .count();
    println!("synthetic lines with a date in fail2ban: {dated}");
    assert_eq!(o.total + o.raised_count, 3000 * SYNTHETIC_PATTERNS.len());
    // fail2ban raises only for `{NONE}` on empty lines.
    assert!(
        o.raised
            .lines()
            .filter(|l| l.starts_with("  extra"))
            .all(|l| l.contains("{NONE}")),
        "{}",
        o.raised
    );
    assert!(dated > 6_000, "only {dated} dated lines");
    assert_eq!(
        o.agree, o.total,
        "disagreements with fail2ban:\n{}",
        o.report
    );
}
