//! Filter throughput: lines per second through an sshd-style filter (prefregex with a
//! session id, 20 failregexes of which two need the backtracking engine) over a generated
//! auth.log-like corpus with about 5 % failures, on one thread.
//!
//! `WARDEN_BENCH_FILTER=file.json` benchmarks another filter as well:
//! `{"prefregex": "...", "failregex": ["..."], "ignoreregex": [], "maxlines": 1}` with
//! regexes as in `filter.d` (tags unexpanded), e.g. a stock filter resolved by
//! `fail2ban-client -d`.
//!
//! Each run prints the engine split, the compiled size (`memory_usage`) and a throughput
//! measured in CPU time of the benchmark thread (robust on a busy machine) first;
//! `WARDEN_BENCH_LINES` changes the corpus size; `WARDEN_BENCH_DUMP=file` writes the
//! corpus out.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use warden::filter::{Engine, Filter, FilterSpec, FilterState, LineResult};

const LINES: usize = 100_000;

fn sshd_like() -> FilterSpec {
    let prefregex = r"^<F-MLFID>\s*(?:\S+ )?sshd(?:-session)?(?:\[\d+\])?: </F-MLFID>(?:(?:error|fatal): )?<F-CONTENT>.+</F-CONTENT>$";
    let failregex = [
        r"^Failed (?:password|keyboard-interactive/pam|none) for (?:invalid user )?<F-USER>\S+</F-USER> from <HOST>(?: port \d+)?(?: ssh\d*)?\s*$",
        r"^Failed \S+ for (?P<inv>invalid user )?<F-USER>(?(inv)\S+|[^ ]+)</F-USER> from <HOST>(?: port \d+)?(?: ssh\d*)?(?! from )",
        r"^Invalid user (?!\d)<F-USER>\S*</F-USER> from <HOST>(?: port \d+)?(?: \[preauth\])?\s*$",
        r"^Invalid user <F-USER>\S*</F-USER> from <HOST>(?: port \d+)?\s*$",
        r"^User <F-USER>\S+</F-USER> from <HOST> not allowed because (?:not listed in AllowUsers|listed in DenyUsers|not in any group|a group is listed in DenyGroups)\s*$",
        r"^(?:Authentication failure|Authentication failed) for <F-USER>\S+</F-USER> from <HOST>",
        r"^refused connect from \S+ \(<HOST>\)\s*$",
        r"^Received disconnect from <HOST>(?: port \d+)?:\s*3: .*: Auth fail(?: \[preauth\])?\s*$",
        r"^Did not receive identification string from <HOST>(?: port \d+)?\s*$",
        r"^Bad protocol version identification '.*' from <HOST>(?: port \d+)?\s*$",
        r"^Connection (?:closed|reset) by (?:authenticating|invalid) user <F-USER>\S+</F-USER> <HOST>(?: port \d+)? \[preauth\]\s*$",
        r"^maximum authentication attempts exceeded for (?:invalid user )?<F-USER>\S+</F-USER> from <HOST>(?: port \d+)?(?: ssh\d*)? \[preauth\]$",
        r"^Unable to negotiate with <HOST>(?: port \d+)?: no matching (?:key exchange method|host key type|cipher|MAC) found\.",
        r"^ROOT LOGIN REFUSED FROM <HOST>",
        r"^pam_unix\(sshd:auth\):\s+authentication failure;(?:\s+\w+=\S*)*\s+rhost=<HOST>(?:\s+user=<F-USER>\S*</F-USER>)?\s*$",
        r"^Disconnecting(?: from)? (?:invalid|authenticating) user <F-USER>\S+</F-USER> <HOST>(?: port \d+)?: Too many authentication failures",
        r"^<F-NOFAIL>Failed publickey</F-NOFAIL> for <F-USER>\S+</F-USER> from <HOST>(?: port \d+)?(?: ssh\d*)?$",
        r"^<F-MLFFORGET><F-MLFGAINED>Accepted \w+</F-MLFGAINED></F-MLFFORGET> for <F-USER>\S+</F-USER> from <HOST>(?:\s|$)",
        r"^<F-NOFAIL><F-MLFFORGET>(?:Connection closed|Disconnected)</F-MLFFORGET></F-NOFAIL> (?:by|from)(?: (?:invalid|authenticating) user \S+)? <HOST>(?: port \d+)?(?: \[preauth\])?\s*$",
        r"^<F-NOFAIL>Connection from</F-NOFAIL> <HOST>",
    ];
    FilterSpec {
        prefregex: Some(prefregex.to_string()),
        failregex: failregex.iter().map(|s| s.to_string()).collect(),
        ..FilterSpec::default()
    }
}

/// A small deterministic generator (xorshift), so the corpus is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// auth.log lines with the syslog date already cut out (" host prog[pid]: message").
fn corpus(n: usize) -> Vec<String> {
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    let users = ["alice", "bob", "deploy", "git", "backup"];
    let bad_users = ["root", "admin", "test", "oracle", "ubuntu", "pi", "user1"];
    let mut lines = Vec::with_capacity(n);
    for _ in 0..n {
        let pid = 1000 + r.below(60_000);
        let port = 1024 + r.below(64_000);
        let ip = format!("203.0.113.{}", r.below(254) + 1);
        let lan = format!("10.0.{}.{}", r.below(4), r.below(254) + 1);
        let u = users[r.below(users.len() as u64) as usize];
        let bad = bad_users[r.below(bad_users.len() as u64) as usize];
        let line = if r.below(100) < 5 {
            match r.below(6) {
                0 => format!(
                    " web1 sshd[{pid}]: Failed password for {bad} from {ip} port {port} ssh2"
                ),
                1 => format!(" web1 sshd[{pid}]: Invalid user {bad} from {ip} port {port}"),
                2 => format!(
                    " web1 sshd[{pid}]: Failed password for invalid user {bad} from {ip} port {port} ssh2"
                ),
                3 => format!(
                    " web1 sshd[{pid}]: Connection closed by authenticating user {bad} {ip} port {port} [preauth]"
                ),
                4 => format!(
                    " web1 sshd[{pid}]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost={ip}  user={bad}"
                ),
                _ => format!(
                    " web1 sshd[{pid}]: Failed password for {bad} from 2001:db8::{:x} port {port} ssh2",
                    r.below(0xffff)
                ),
            }
        } else {
            match r.below(10) {
                0 => format!(
                    " web1 sshd[{pid}]: Accepted publickey for {u} from {lan} port {port} ssh2: ED25519 SHA256:Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0"
                ),
                1 => format!(
                    " web1 sshd[{pid}]: pam_unix(sshd:session): session opened for user {u}(uid=1000) by (uid=0)"
                ),
                2 => format!(
                    " web1 sshd[{pid}]: pam_unix(sshd:session): session closed for user {u}"
                ),
                3 => format!(
                    " web1 sshd[{pid}]: Received disconnect from {lan} port {port}:11: disconnected by user"
                ),
                4 => format!(" web1 sshd[{pid}]: Disconnected from user {u} {lan} port {port}"),
                5 => format!(
                    " web1 CRON[{pid}]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)"
                ),
                6 => format!(
                    " web1 systemd-logind[512]: New session {} of user {u}.",
                    r.below(9999)
                ),
                7 => format!(
                    " web1 sudo:    {u} : TTY=pts/{} ; PWD=/home/{u} ; USER=root ; COMMAND=/usr/bin/systemctl restart nginx",
                    r.below(9)
                ),
                8 => format!(
                    " web1 kernel: [{}.{:06}] [UFW BLOCK] IN=eth0 OUT= MAC=52:54:00:12:34:56 SRC={ip} DST=198.51.100.7 LEN=44 TOS=0x00 PROTO=TCP SPT={port} DPT=23",
                    r.below(999_999),
                    r.below(999_999)
                ),
                _ => format!(
                    " web1 CRON[{pid}]: pam_unix(cron:session): session closed for user root"
                ),
            }
        };
        lines.push(line);
    }
    lines
}

/// CPU time of this thread, from the kernel's scheduler statistics: on a shared machine it
/// measures the work, where wall-clock time also measures the neighbours.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

fn describe(name: &str, filter: &Filter) {
    let engines = filter.engines();
    let fast = engines.iter().filter(|e| e.engine == Engine::Fast).count();
    eprintln!(
        "{name}: {} regexes ({fast} fast, {} fallback), compiled automata {} KiB",
        engines.len(),
        engines.len() - fast,
        filter.memory_usage() / 1024
    );
}

fn bench_filter(c: &mut Criterion, name: &str, spec: &FilterSpec, lines: &[String]) {
    let filter = Arc::new(Filter::compile(spec).expect("filter compiles"));
    describe(name, &filter);
    let t: jiff::Timestamp = "2024-06-01T12:00:00Z".parse().unwrap();
    // A sanity pass: the corpus has failures and this filter finds them.
    let mut st = FilterState::new(filter.clone());
    let found = lines
        .iter()
        .filter(|l| matches!(st.process(l, t, false), LineResult::Matched(_)))
        .count();
    eprintln!(
        "{name}: {found} of {} lines are failures; fallback searches {}",
        lines.len(),
        st.fallback_runs()
    );
    if let Some(start) = thread_cpu_ns() {
        let rounds = 5;
        for _ in 0..rounds {
            for l in lines {
                black_box(st.process(l, t, false));
            }
        }
        if let Some(end) = thread_cpu_ns() {
            let secs = (end - start) as f64 / 1e9;
            eprintln!(
                "{name}: {:.0} lines per CPU-second ({} lines in {secs:.3} s of CPU time)",
                (rounds * lines.len()) as f64 / secs,
                rounds * lines.len()
            );
        }
    }
    let mut group = c.benchmark_group("filter");
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.sample_size(20);
    group.bench_function(name, |b| {
        let mut st = FilterState::new(filter.clone());
        b.iter(|| {
            for l in lines {
                black_box(st.process(l, t, false));
            }
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    // A smaller corpus helps instruction-count profiling (valgrind).
    let n = std::env::var("WARDEN_BENCH_LINES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(LINES);
    let lines = corpus(n);
    // For comparisons with other engines (fail2ban's own pipeline, for one).
    if let Ok(path) = std::env::var("WARDEN_BENCH_DUMP") {
        std::fs::write(&path, lines.join("\n") + "\n").expect("writing WARDEN_BENCH_DUMP");
    }
    let spec = sshd_like();
    bench_filter(c, "sshd-like", &spec, &lines);
    bench_filter(
        c,
        "sshd-like unicode",
        &FilterSpec {
            unicode: true,
            ..spec
        },
        &lines,
    );
    if let Ok(path) = std::env::var("WARDEN_BENCH_FILTER") {
        let text = std::fs::read_to_string(&path).expect("reading WARDEN_BENCH_FILTER");
        let v: serde_json::Value = serde_json::from_str(&text).expect("filter JSON");
        let list = |k: &str| -> Vec<String> {
            v[k].as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let spec = FilterSpec {
            prefregex: v["prefregex"].as_str().map(str::to_string),
            failregex: list("failregex"),
            ignoreregex: list("ignoreregex"),
            maxlines: v["maxlines"].as_u64().unwrap_or(1) as usize,
            ..FilterSpec::default()
        };
        bench_filter(c, &format!("file {path}"), &spec, &lines);
    }
}

criterion_group!(filter_benches, benches);
criterion_main!(filter_benches);
