//! `warden replay`: the daemon's jails over existing logs, with the logs' own timestamps as
//! the clock. No firewall, no database.
//!
//! Each (jail, log) pair is read by its own line processor; their failures are merged in
//! time order and counted by the same [`JailCore`] the daemon uses. Bans are recorded in
//! an in-memory ledger that applies the same escalation rules (`bantime.increment`), and
//! holds end when the simulated clock passes their expiry. `backend = ledger` jails
//! (recidive) count the bans of the other jails, as in the daemon.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::IpNet;
use jiff::Timestamp;
use serde::Serialize;

use super::jail::{Found, Matcher, build_matcher};
use crate::Epoch;
use crate::config::{Config, JailConfig, LogBackend};
use crate::filter::{LineProcessor, LineResult};
use crate::jail::dns::{Resolve, Resolver};
use crate::jail::escalation::{XorShift64, ban_time, draw_extra};
use crate::jail::target::display;
use crate::jail::{BanRequest, JailCore, JailRules, Offense, PriorSource};
use crate::ledger::Prior;
use crate::source::file::{Encoding, LogPattern};

/// Why a replay cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no jail named {0}")]
    NoJail(String),
    #[error("jail {jail} reads {backend}, not log files")]
    NotFiles { jail: String, backend: String },
    #[error("no enabled jail reads {} (name one with --jail)", .0.display())]
    Unmatched(PathBuf),
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Setup(String),
}

/// What happened, in time order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub time: Epoch,
    pub jail: String,
    /// `ban` or `unban`.
    pub event: &'static str,
    pub target: String,
    /// Failures that led to the ban (0 for an unban).
    pub failures: u32,
    /// Seconds (after escalation); -1 permanent.
    pub bantime: i64,
    pub bancount: u32,
}

/// Per-jail totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JailSummary {
    pub jail: String,
    pub logs: Vec<PathBuf>,
    pub lines: u64,
    pub failures: u64,
    pub bans: u64,
    /// Distinct addresses (or networks) with failures.
    pub addresses: u64,
    /// Bans still in force at the end of the logs.
    pub banned_at_end: u64,
}

/// A replay's result.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    pub events: Vec<Event>,
    pub jails: Vec<JailSummary>,
}

struct SimHold {
    start: Epoch,
    expires: Option<Epoch>,
    bancount: u32,
}

/// The in-memory ledger: one record per (target, jail), kept after the ban ends so that
/// escalation counts earlier bans.
#[derive(Default)]
struct SimLedger {
    holds: HashMap<(IpNet, String), SimHold>,
}

impl SimLedger {
    fn prior(&self, target: &IpNet, jail: &str, overall: bool) -> Prior {
        let mut p = Prior::default();
        for ((t, j), h) in &self.holds {
            if t == target && (overall || j == jail) {
                p.bans += h.bancount;
                p.last_start = p.last_start.max(Some(h.start));
            }
        }
        p
    }
}

struct SimPriors<'a> {
    ledger: &'a SimLedger,
    jail: &'a str,
}

impl PriorSource for SimPriors<'_> {
    fn prior(&mut self, target: &IpNet, overall: bool) -> Prior {
        self.ledger.prior(target, self.jail, overall)
    }
}

struct SimJail {
    config: JailConfig,
    core: JailCore,
    summary: JailSummary,
    addresses: BTreeSet<String>,
}

/// One failure waiting in the merge.
struct Pending {
    seq: u64,
    jail: usize,
    found: Found,
}

/// One log read for one jail.
struct Stream {
    jail: usize,
    reader: std::io::BufReader<std::fs::File>,
    path: PathBuf,
    processor: LineProcessor,
    encoding: Encoding,
    buf: Vec<u8>,
    now: Timestamp,
}

impl Stream {
    /// Reads until the next failure (or the end); counts lines into `lines`.
    fn next_failures(
        &mut self,
        lines: &mut u64,
        out: &mut Vec<Pending>,
        seq: &mut u64,
    ) -> Result<bool, ReplayError> {
        loop {
            self.buf.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.buf)
                .map_err(|source| ReplayError::Read {
                    path: self.path.clone(),
                    source,
                })?;
            if n == 0 {
                return Ok(false);
            }
            *lines += 1;
            while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
                self.buf.pop();
            }
            let text = self.encoding.decode(&self.buf);
            let p = self.processor.process(&text, self.now);
            if let LineResult::Matched(fs) = p.result {
                for f in fs {
                    *seq += 1;
                    out.push(Pending {
                        seq: *seq,
                        jail: self.jail,
                        found: Found::from_failure(f),
                    });
                }
                if !out.is_empty() {
                    return Ok(true);
                }
            }
        }
    }
}

fn matches_log(j: &JailConfig, log: &Path) -> bool {
    let canon = std::fs::canonicalize(log).ok();
    j.logpath.iter().any(|p| {
        LogPattern::parse(p)
            .is_ok_and(|pat| pat.matches(log) || canon.as_deref().is_some_and(|c| pat.matches(c)))
    })
}

/// Replays `logs` through the jails of `config` whose logpath names them, or through the
/// `only` jails. `now` is the reference time for dates without a year.
pub fn replay(
    config: &Config,
    logs: &[PathBuf],
    only: &[String],
    now: Timestamp,
) -> Result<Report, ReplayError> {
    // Which jails, and which logs each reads.
    let mut chosen: Vec<(&JailConfig, Vec<PathBuf>)> = Vec::new();
    if only.is_empty() {
        for log in logs {
            let mut any = false;
            for j in config
                .enabled_jails()
                .filter(|j| j.backend != LogBackend::Ledger)
            {
                if matches_log(j, log) {
                    any = true;
                    match chosen.iter_mut().find(|(c, _)| c.name == j.name) {
                        Some((_, l)) => l.push(log.clone()),
                        None => chosen.push((j, vec![log.clone()])),
                    }
                }
            }
            if !any {
                return Err(ReplayError::Unmatched(log.clone()));
            }
        }
        for j in config
            .enabled_jails()
            .filter(|j| j.backend == LogBackend::Ledger)
        {
            chosen.push((j, Vec::new()));
        }
    } else {
        for name in only {
            let j = config
                .jails
                .iter()
                .find(|j| &j.name == name)
                .ok_or_else(|| ReplayError::NoJail(name.clone()))?;
            let logs = if j.backend == LogBackend::Ledger {
                Vec::new()
            } else {
                logs.to_vec()
            };
            chosen.push((j, logs));
        }
    }
    let resolver: Arc<dyn Resolve> = Arc::new(Arc::new(Resolver::default()));
    let mut jails = Vec::new();
    let mut streams = Vec::new();
    for (idx, (j, files)) in chosen.iter().enumerate() {
        let rules = JailRules::from_config(j).map_err(|e| ReplayError::Setup(e.to_string()))?;
        let ignore = JailRules::ignore_list(j).map_err(|e| ReplayError::Setup(e.to_string()))?;
        if !matches!(
            j.backend,
            LogBackend::Auto | LogBackend::Polling | LogBackend::Notify | LogBackend::Ledger
        ) {
            return Err(ReplayError::NotFiles {
                jail: j.name.clone(),
                backend: format!("{:?}", j.backend).to_lowercase(),
            });
        }
        let encoding = Encoding::from_name(&j.logencoding).unwrap_or_default();
        for f in files {
            let Matcher::Lines(mut processor) =
                build_matcher(j, &[]).map_err(|e| ReplayError::Setup(e.to_string()))?
            else {
                continue;
            };
            processor.live = false;
            let file = std::fs::File::open(f).map_err(|source| ReplayError::Read {
                path: f.clone(),
                source,
            })?;
            streams.push(Stream {
                jail: idx,
                reader: std::io::BufReader::with_capacity(256 * 1024, file),
                path: f.clone(),
                processor: *processor,
                encoding,
                buf: Vec::new(),
                now,
            });
        }
        jails.push(SimJail {
            config: (*j).clone(),
            core: JailCore::new(rules, ignore, Some(resolver.clone())),
            summary: JailSummary {
                jail: j.name.clone(),
                logs: files.clone(),
                ..JailSummary::default()
            },
            addresses: BTreeSet::new(),
        });
    }

    let mut sim = Sim {
        jails,
        ledger: SimLedger::default(),
        rng: XorShift64::new(0x5eed),
        events: Vec::new(),
        ends: BinaryHeap::new(),
    };
    let mut heap: BinaryHeap<Reverse<(Epoch, u64, usize)>> = BinaryHeap::new();
    let mut waiting: HashMap<usize, Vec<Pending>> = HashMap::new();
    let mut seq = 0u64;
    for (i, s) in streams.iter_mut().enumerate() {
        let mut out = Vec::new();
        if s.next_failures(&mut sim.jails[s.jail].summary.lines, &mut out, &mut seq)? {
            heap.push(Reverse((out[0].found.time, out[0].seq, i)));
            waiting.insert(i, out);
        }
    }
    let mut last = Epoch::MIN;
    while let Some(Reverse((_, _, i))) = heap.pop() {
        let mut batch = waiting.remove(&i).unwrap_or_default();
        let p = batch.remove(0);
        last = last.max(p.found.time);
        sim.failure(p);
        if batch.is_empty() {
            let s = &mut streams[i];
            s.next_failures(&mut sim.jails[s.jail].summary.lines, &mut batch, &mut seq)?;
        }
        if let Some(first) = batch.first() {
            heap.push(Reverse((first.found.time, first.seq, i)));
            waiting.insert(i, batch);
        }
    }
    sim.advance(last);
    let mut report = Report {
        events: sim.events,
        jails: Vec::new(),
    };
    for j in sim.jails {
        let mut s = j.summary;
        s.addresses = j.addresses.len() as u64;
        s.banned_at_end = sim
            .ledger
            .holds
            .iter()
            .filter(|((_, jail), h)| *jail == s.jail && h.expires.is_none_or(|e| e > last))
            .count() as u64;
        report.jails.push(s);
    }
    Ok(report)
}

struct Sim {
    jails: Vec<SimJail>,
    ledger: SimLedger,
    rng: XorShift64,
    events: Vec<Event>,
    /// (expiry, jail index, target): holds to end as the clock passes them.
    ends: BinaryHeap<Reverse<(Epoch, usize, IpNet)>>,
}

impl Sim {
    /// Ends the holds whose expiry is at or before `now`.
    fn advance(&mut self, now: Epoch) {
        while let Some(Reverse((at, j, target))) = self.ends.peek().cloned() {
            if at > now {
                break;
            }
            self.ends.pop();
            let jail = self.jails[j].config.name.clone();
            // Skip stale entries: the hold was extended since.
            let Some(h) = self.ledger.holds.get(&(target, jail.clone())) else {
                continue;
            };
            if h.expires != Some(at) {
                continue;
            }
            self.events.push(Event {
                time: at,
                jail,
                event: "unban",
                target: display(&target),
                failures: 0,
                bantime: 0,
                bancount: h.bancount,
            });
        }
    }

    fn failure(&mut self, p: Pending) {
        let f = &p.found;
        self.advance(f.time);
        let j = p.jail;
        let jail = &mut self.jails[j];
        jail.summary.failures += 1;
        let o = f.offense(f.time);
        let mut bans = Vec::new();
        let name = jail.config.name.clone();
        let mut priors = SimPriors {
            ledger: &self.ledger,
            jail: &name,
        };
        jail.core.offense(&o, f.time, &mut priors, &mut bans);
        if let Some(a) = f.addr {
            let t = jail.core.rules().cidr.widen(a);
            jail.addresses.insert(display(&t));
        } else {
            jail.addresses.insert(f.id.clone());
        }
        for b in bans {
            self.record(j, b);
        }
    }

    /// Records a ban as the ledger would, and feeds it to `backend = ledger` jails.
    fn record(&mut self, j: usize, b: BanRequest) {
        let now = b.time;
        let rules = self.jails[j].core.rules().clone();
        let key = (b.target, rules.name.clone());
        if let Some(h) = self.ledger.holds.get_mut(&key)
            && h.expires.is_none_or(|e| e > now)
        {
            // Already banned: fail2ban neither counts nor escalates; the hold may grow.
            let expires = (rules.bantime >= 0).then(|| now + rules.bantime);
            let later = match (expires, h.expires) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(a), Some(b)) => a > b,
            };
            if later {
                h.expires = expires;
                if let Some(e) = expires {
                    self.ends.push(Reverse((e, j, b.target)));
                }
            }
            return;
        }
        let prior = if rules.escalation.increment {
            self.ledger
                .prior(&b.target, &rules.name, rules.escalation.overalljails)
                .bans
        } else {
            0
        };
        let extra = draw_extra(&rules.escalation, &mut self.rng);
        let bantime = ban_time(&rules.escalation, rules.bantime, prior, extra);
        let expires = (bantime >= 0).then(|| now + bantime);
        let own = self.ledger.holds.get(&key).map_or(0, |h| h.bancount);
        self.ledger.holds.insert(
            key,
            SimHold {
                start: now,
                expires,
                bancount: own + 1,
            },
        );
        if let Some(e) = expires {
            self.ends.push(Reverse((e, j, b.target)));
        }
        self.jails[j].summary.bans += 1;
        self.events.push(Event {
            time: now,
            jail: rules.name.clone(),
            event: "ban",
            target: display(&b.target),
            failures: b.failures,
            bantime,
            bancount: prior + 1,
        });
        // The recidive jails count this ban.
        if self.jails[j].config.backend == LogBackend::Ledger {
            return;
        }
        let targets: Vec<usize> = (0..self.jails.len())
            .filter(|&k| k != j && self.jails[k].config.backend == LogBackend::Ledger)
            .collect();
        for k in targets {
            let id = display(&b.target);
            let line = format!("banned in jail {}", rules.name);
            let o = Offense::of_target(&id, b.target, now, Some(Arc::from(line)));
            let mut bans = Vec::new();
            let name = self.jails[k].config.name.clone();
            let mut priors = SimPriors {
                ledger: &self.ledger,
                jail: &name,
            };
            self.jails[k].summary.lines += 1;
            self.jails[k].summary.failures += 1;
            self.jails[k].addresses.insert(id.clone());
            self.jails[k].core.offense(&o, now, &mut priors, &mut bans);
            for mut rb in bans {
                rb.origin = crate::ledger::Origin::Recidive;
                self.record(k, rb);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(jails: &str) -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in crate::config::embedded_files() {
            if path.starts_with("jail") {
                continue;
            }
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        std::fs::write(
            dir.path().join("jail.conf"),
            format!("[DEFAULT]\nignoreself = false\nusedns = no\n{jails}"),
        )
        .unwrap();
        let c = crate::config::load(dir.path()).unwrap();
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        (dir, c)
    }

    fn line(t: &str, addr: &str) -> String {
        format!("{t} host sshd[1]: Failed password for root from {addr} port 22 ssh2\n")
    }

    #[test]
    fn the_logs_time_drives_bans_unbans_and_escalation() {
        let (dir, c) = config(
            "[sshd]\nenabled = true\nfilter = sshd\nlogpath = /var/log/auth.log\nmaxretry = 2\nfindtime = 60\nbantime = 100\nbantime.increment = true\n\
             [recidive]\nenabled = true\nbackend = ledger\nmaxretry = 2\nfindtime = 1d\nbantime = 1w\n",
        );
        let log = dir.path().join("auth.log");
        let mut text = String::new();
        // Two failures 10 s apart: a ban at :10 for 100 s.
        text += &line("2024-03-10T10:00:00Z", "192.0.2.1");
        text += &line("2024-03-10T10:00:10Z", "192.0.2.1");
        // Spread wider than findtime: never banned.
        text += &line("2024-03-10T10:00:20Z", "192.0.2.2");
        text += &line("2024-03-10T10:02:00Z", "192.0.2.2");
        // After the unban at 10:01:50, one failure of a known offender weighs 2: a second
        // ban, twice as long; recidive sees the second ban.
        text += &line("2024-03-10T10:05:00Z", "192.0.2.1");
        std::fs::write(&log, text).unwrap();
        let now: Timestamp = "2024-06-01T00:00:00Z".parse().unwrap();
        let r = replay(
            &c,
            std::slice::from_ref(&log),
            &["sshd".into(), "recidive".into()],
            now,
        )
        .unwrap();
        let ev: Vec<(String, &str, &str, i64)> = r
            .events
            .iter()
            .map(|e| {
                let t = Timestamp::from_second(e.time).unwrap().to_string();
                (t, e.jail.as_str(), e.event, e.bantime)
            })
            .collect();
        assert_eq!(
            ev,
            [
                ("2024-03-10T10:00:10Z".to_string(), "sshd", "ban", 100),
                ("2024-03-10T10:01:50Z".to_string(), "sshd", "unban", 0),
                ("2024-03-10T10:05:00Z".to_string(), "sshd", "ban", 200),
                (
                    "2024-03-10T10:05:00Z".to_string(),
                    "recidive",
                    "ban",
                    604800
                ),
            ]
        );
        let sshd = &r.jails[0];
        assert_eq!(
            (sshd.lines, sshd.failures, sshd.bans, sshd.addresses),
            (5, 5, 2, 2)
        );
        assert_eq!(sshd.banned_at_end, 1);
        assert_eq!(r.jails[1].bans, 1);
    }

    #[test]
    fn logs_are_matched_to_jails_by_logpath() {
        let (dir, c) = config(&format!(
            "[sshd]\nenabled = true\nfilter = sshd\nlogpath = {}/auth*.log\n",
            "/nonexistent"
        ));
        let log = dir.path().join("other.log");
        std::fs::write(&log, "x\n").unwrap();
        let e = replay(&c, &[log], &[], Timestamp::now()).unwrap_err();
        assert!(matches!(e, ReplayError::Unmatched(_)), "{e}");
        let e = replay(&c, &[], &["nope".into()], Timestamp::now()).unwrap_err();
        assert_eq!(e.to_string(), "no jail named nope");
    }
}
