//! One jail at run time: its matching and counting state, fed by its sources, and the task
//! that runs it.
//!
//! The task is async only to wait on its two channels; every batch is matched and counted
//! on tokio's blocking pool ([`tokio::task::spawn_blocking`]), with the state moved there
//! and back, so regex work never runs on the runtime's core threads. Ban decisions go to
//! the engine with the batch's completion token, whose last holder's arrival tells the
//! engine that the batch's read position may be saved.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::clock::Clock;
use super::metrics::JailCounters;
use crate::Epoch;
use crate::config::{JailConfig, LogBackend};
use crate::date::{DateDetector, local_zone, parse_timezone};
use crate::filter::{
    Failure, Filter, FilterState, LineParts, LineProcessor, LineResult, spec_from_config,
};
use crate::jail::dns::Resolve;
use crate::jail::ignore::IgnoreList;
use crate::jail::portscan::{PortScanConfig, PortScanDetector, Probe};
use crate::jail::timing::{Phase, TimeRules};
use crate::jail::{BanRequest, JailCore, JailRules, NoPriors, Offense, PriorSource};
use crate::ledger::{BanEvent, LedgerHandle, Prior};
use crate::source::file::Line;
use crate::source::journal::JournalEntry;
use crate::source::pflog::{MatchContext, PflogEvent, PflogJailFilter};

/// What to save once every jail that received a batch has processed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Save {
    pub owner: String,
    pub source: String,
    pub value: String,
}

/// A batch's completion token: the engine saves `save` when the last receiver's output
/// arrives.
#[derive(Debug)]
pub struct Completion {
    remaining: AtomicUsize,
    pub save: Save,
}

impl Completion {
    pub fn new(receivers: usize, save: Save) -> Arc<Completion> {
        Arc::new(Completion {
            remaining: AtomicUsize::new(receivers),
            save,
        })
    }

    /// Marks one receiver done; true for the last one.
    pub fn finish_one(&self) -> bool {
        self.remaining.fetch_sub(1, Ordering::AcqRel) == 1
    }
}

/// A failure found in a file by a matcher shared by the jails of one filter, handed to
/// each of them.
#[derive(Debug, Clone)]
pub struct Found {
    pub id: String,
    pub addr: Option<IpAddr>,
    pub prefix: Option<u8>,
    pub needs_dns: bool,
    /// The line's time (before the jail's time rules).
    pub time: Epoch,
    /// The matched line.
    pub line: Arc<str>,
    pub fields: BTreeMap<String, String>,
}

impl Found {
    pub fn from_failure(mut f: Failure) -> Found {
        Found {
            line: f
                .matches
                .pop()
                .map(Arc::from)
                .unwrap_or_else(|| Arc::from("")),
            id: f.id,
            addr: f.addr,
            prefix: f.prefix,
            needs_dns: f.needs_dns,
            time: f.time.as_second(),
            fields: f.fields,
        }
    }

    pub(super) fn offense(&self, time: Epoch) -> Offense<'_> {
        Offense {
            id: &self.id,
            addr: self.addr,
            prefix: self.prefix,
            needs_dns: self.needs_dns,
            time,
            line: Some(self.line.clone()),
            fields: Some(&self.fields),
        }
    }
}

/// Runs `lines` through a file matcher: the failures found and how many lines matched.
pub fn match_lines(
    p: &mut LineProcessor,
    lines: &[Line],
    now: jiff::Timestamp,
) -> (Vec<Found>, u64) {
    let mut found = Vec::new();
    let mut matched = 0u64;
    for line in lines {
        if let LineResult::Matched(fs) = p.process(&line.text, now).result {
            matched += 1;
            found.extend(fs.into_iter().map(Found::from_failure));
        }
    }
    (found, matched)
}

/// Data for a jail.
#[derive(Debug)]
pub enum JailInput {
    /// The failures a file matcher found in a batch of `lines` lines, `matched` of which
    /// matched. `catch_up` while the source reads its backlog.
    Found {
        found: Arc<Vec<Found>>,
        lines: u64,
        matched: u64,
        catch_up: bool,
        done: Option<Arc<Completion>>,
    },
    /// Journal entries, with their own times.
    Journal {
        entries: Arc<Vec<JournalEntry>>,
        done: Option<Arc<Completion>>,
    },
    /// pflog records.
    Pflog {
        events: Vec<PflogEvent>,
        done: Option<Arc<Completion>>,
    },
}

/// Orders for a jail from the engine.
#[derive(Debug)]
pub enum JailCtl {
    /// New rules and matcher (a reload); counts are kept.
    Reconfigure(Box<JailSetup>),
    /// Bans recorded by other jails (the failures of a `backend = ledger` jail).
    Bans(Vec<BanEvent>),
    /// An address was unbanned by hand: forget its failures.
    Forget(IpNet),
    /// Finish the data already queued, then end.
    Stop,
}

/// What a jail tells the engine after a batch.
#[derive(Debug)]
pub struct Output {
    pub jail: String,
    pub bans: Vec<BanRequest>,
    pub done: Option<Arc<Completion>>,
}

/// How a jail turns its input into failures.
pub enum Matcher {
    /// File lines: date detection, then the filter. Held by the jail's file sources (one
    /// per source, shared by the jails with the same filter), not by the jail.
    Lines(Box<LineProcessor>),
    /// A file jail: its sources match, the jail counts what they found.
    Shared,
    /// Journal entries: the filter alone (the entry carries its time).
    Journal(Box<FilterState>),
    /// pflog records: the field filter, and optionally the port-scan detector.
    Pflog {
        filter: Box<PflogJailFilter>,
        scan: Option<Box<PortScanDetector>>,
    },
    /// Bans of other jails.
    Ledger,
}

impl std::fmt::Debug for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Matcher::Lines(_) => "Lines",
            Matcher::Shared => "Shared",
            Matcher::Journal(_) => "Journal",
            Matcher::Pflog { .. } => "Pflog",
            Matcher::Ledger => "Ledger",
        })
    }
}

/// Everything a jail's task needs that comes from its configuration.
#[derive(Debug)]
pub struct JailSetup {
    pub rules: JailRules,
    pub ignore: IgnoreList,
    pub matcher: Matcher,
}

/// Errors building a jail from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Rules(#[from] crate::jail::RulesError),
    #[error("jail {jail}: filter: {message}")]
    Filter { jail: String, message: String },
    #[error("jail {jail}: logtimezone {zone:?}: {message}")]
    Zone {
        jail: String,
        zone: String,
        message: String,
    },
    #[error("jail {jail}: {option}: {message}")]
    Pflog {
        jail: String,
        option: String,
        message: String,
    },
}

/// Builds the filter pipeline for a jail. `pf_jails` are the jails banning through PF
/// (the `@jails` of pflog filters).
pub fn build_matcher(j: &JailConfig, pf_jails: &[String]) -> Result<Matcher, SetupError> {
    match &j.backend {
        LogBackend::Ledger => Ok(Matcher::Ledger),
        LogBackend::Pflog => {
            let ctx = MatchContext {
                jails: pf_jails.to_vec(),
            };
            let filter =
                PflogJailFilter::from_options(&j.filter.options, &ctx).map_err(|(option, e)| {
                    SetupError::Pflog {
                        jail: j.name.clone(),
                        option,
                        message: e.to_string(),
                    }
                })?;
            let scan = PortScanConfig::from_options(&j.filter.options, j.findtime)
                .map_err(|e| SetupError::Pflog {
                    jail: j.name.clone(),
                    option: e.key.clone(),
                    message: e.to_string(),
                })?
                .map(|c| Box::new(PortScanDetector::new(c)));
            Ok(Matcher::Pflog {
                filter: Box::new(filter),
                scan,
            })
        }
        LogBackend::Systemd(_) => Ok(Matcher::Journal(Box::new(FilterState::new(
            compile_filter(j)?,
        )))),
        _ => Ok(Matcher::Lines(Box::new(line_processor(j)?))),
    }
}

/// Compiles a jail's filter.
fn compile_filter(j: &JailConfig) -> Result<Arc<Filter>, SetupError> {
    let spec = spec_from_config(&j.filter, j.usedns);
    Filter::compile(&spec)
        .map(Arc::new)
        .map_err(|e| SetupError::Filter {
            jail: j.name.clone(),
            message: e.to_string(),
        })
}

/// Compiles a file jail's filter and date detection.
pub fn line_processor(j: &JailConfig) -> Result<LineProcessor, SetupError> {
    Ok(line_processors(j, 1)?.remove(0))
}

/// `n` matchers for a file jail (one per source), compiling its filter once.
pub fn line_processors(j: &JailConfig, n: usize) -> Result<Vec<LineProcessor>, SetupError> {
    let filter = compile_filter(j)?;
    let zone = match &j.logtimezone {
        Some(z) => parse_timezone(z).map_err(|e| SetupError::Zone {
            jail: j.name.clone(),
            zone: z.clone(),
            message: e.to_string(),
        })?,
        None => local_zone(),
    };
    let dates = DateDetector::new(j.filter.datepattern.as_deref(), zone).map_err(|e| {
        SetupError::Filter {
            jail: j.name.clone(),
            message: format!("datepattern: {e}"),
        }
    })?;
    Ok((0..n.max(1))
        .map(|_| {
            let mut p = LineProcessor::new(filter.clone(), dates.clone());
            p.live = true;
            p
        })
        .collect())
}

/// What a file jail's matching depends on: jails with equal keys reading the same source
/// share one matcher (and so match each line once).
pub fn group_key(j: &JailConfig) -> String {
    let mut f = serde_json::to_value(&j.filter).unwrap_or_default();
    if let Some(m) = f.as_object_mut() {
        m.remove("failregex_spans");
        m.remove("file");
    }
    serde_json::json!({
        "filter": f,
        "usedns": j.usedns,
        "zone": j.logtimezone,
    })
    .to_string()
}

/// Builds everything of a jail's setup (regexes are compiled here: call off the runtime).
/// A file jail's matcher is left to its sources ([`Matcher::Shared`]); its filter is
/// compiled once here all the same, so a broken filter keeps the jail from starting.
pub fn build_setup(j: &JailConfig, pf_jails: &[String]) -> Result<JailSetup, SetupError> {
    let matcher = match build_matcher(j, pf_jails)? {
        Matcher::Lines(_) => Matcher::Shared,
        m => m,
    };
    Ok(JailSetup {
        rules: JailRules::from_config(j)?,
        ignore: JailRules::ignore_list(j)?,
        matcher,
    })
}

/// How long a cached ledger answer about earlier bans is reused.
const PRIOR_TTL: Duration = Duration::from_secs(60);
const PRIOR_CACHE_MAX: usize = 100_000;

/// Earlier bans from the ledger, cached per target.
pub struct LedgerPriors {
    ledger: LedgerHandle,
    jail: String,
    cache: HashMap<IpNet, (Prior, Instant)>,
}

impl LedgerPriors {
    pub fn new(ledger: LedgerHandle, jail: &str) -> LedgerPriors {
        LedgerPriors {
            ledger,
            jail: jail.to_string(),
            cache: HashMap::new(),
        }
    }
}

impl PriorSource for LedgerPriors {
    fn prior(&mut self, target: &IpNet, overall: bool) -> Prior {
        if let Some((p, at)) = self.cache.get(target)
            && at.elapsed() < PRIOR_TTL
        {
            return *p;
        }
        let (t, jail) = (*target, self.jail.clone());
        let p = match self
            .ledger
            .run_blocking(move |l| l.prior_bans(&t, &jail, overall))
        {
            Ok(p) => p,
            Err(e) => {
                warn!(jail = %self.jail, target = %target, error = %e,
                      "Cannot read earlier bans; counting the failure once.");
                Prior::default()
            }
        };
        if self.cache.len() >= PRIOR_CACHE_MAX {
            self.cache.clear();
        }
        self.cache.insert(*target, (p, Instant::now()));
        p
    }

    fn banned(&mut self, target: &IpNet, at: Epoch) {
        let e = self
            .cache
            .entry(*target)
            .or_insert((Prior::default(), Instant::now()));
        e.0.bans += 1;
        e.0.last_start = Some(at);
    }
}

/// A jail's state, owned by its task.
pub struct JailState {
    pub name: String,
    core: JailCore,
    time: TimeRules,
    matcher: Matcher,
    priors: Box<dyn PriorSource + Send>,
    counters: JailCounters,
    clock: Arc<dyn Clock>,
    /// When the jail started: journal entries older than this are backlog.
    started: Epoch,
}

impl std::fmt::Debug for JailState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JailState")
            .field("name", &self.name)
            .field("matcher", &self.matcher)
            .finish_non_exhaustive()
    }
}

impl JailState {
    pub fn new(
        setup: JailSetup,
        ledger: Option<LedgerHandle>,
        resolver: Option<Arc<dyn Resolve>>,
        counters: JailCounters,
        clock: Arc<dyn Clock>,
    ) -> JailState {
        let name = setup.rules.name.clone();
        let priors: Box<dyn PriorSource + Send> = match ledger {
            Some(l) if setup.rules.escalation.increment => Box::new(LedgerPriors::new(l, &name)),
            _ => Box::new(NoPriors),
        };
        let time = TimeRules::new(&name, setup.rules.findtime);
        let started = clock.now();
        JailState {
            core: JailCore::new(setup.rules, setup.ignore, resolver),
            name,
            time,
            matcher: setup.matcher,
            priors,
            counters,
            clock,
            started,
        }
    }

    /// Applies a reload's setup, keeping the failure counts.
    pub fn reconfigure(&mut self, setup: JailSetup, ledger: Option<LedgerHandle>) {
        self.time.set_findtime(setup.rules.findtime);
        let escalate = setup.rules.escalation.increment;
        self.core.reconfigure(setup.rules, setup.ignore);
        self.matcher = setup.matcher;
        self.priors = match ledger {
            Some(l) if escalate => Box::new(LedgerPriors::new(l, &self.name)),
            _ => Box::new(NoPriors),
        };
    }

    pub fn core(&self) -> &JailCore {
        &self.core
    }

    /// Processes one input; returns the ban decisions.
    pub fn process(&mut self, input: JailInput) -> (Vec<BanRequest>, Option<Arc<Completion>>) {
        let now_ts = self.clock.timestamp();
        let now = now_ts.as_second();
        let mut bans = Vec::new();
        let done = match input {
            JailInput::Found {
                found,
                lines,
                matched,
                catch_up,
                done,
            } => {
                let phase = if catch_up {
                    Phase::CatchUp
                } else {
                    Phase::Live
                };
                let mut failures = 0u64;
                for f in found.iter() {
                    let Some(t) = self.time.apply(f.time, now, phase, &f.line) else {
                        continue;
                    };
                    failures += 1;
                    self.core
                        .offense(&f.offense(t), now, self.priors.as_mut(), &mut bans);
                }
                self.counters.lines_read.inc_by(lines);
                self.counters.lines_matched.inc_by(matched);
                self.counters.failures.inc_by(failures);
                done
            }
            JailInput::Journal { entries, done } => {
                if let Matcher::Journal(state) = &mut self.matcher {
                    let mut matched = 0u64;
                    let mut failures = 0u64;
                    for e in entries.iter() {
                        let parts = LineParts {
                            before: "",
                            date: "",
                            after: &e.text,
                        };
                        let LineResult::Matched(fs) = state.process_parts(parts, e.time, false)
                        else {
                            continue;
                        };
                        matched += 1;
                        let t = e.time.as_second();
                        let phase = if t < self.started {
                            Phase::CatchUp
                        } else {
                            Phase::Live
                        };
                        for f in &fs {
                            let Some(t) = self.time.apply(t, now, phase, &e.text) else {
                                continue;
                            };
                            failures += 1;
                            let o = Offense::from_failure(f, t);
                            self.core.offense(&o, now, self.priors.as_mut(), &mut bans);
                        }
                    }
                    self.counters.lines_read.inc_by(entries.len() as u64);
                    self.counters.lines_matched.inc_by(matched);
                    self.counters.failures.inc_by(failures);
                }
                done
            }
            JailInput::Pflog { events, done } => {
                if let Matcher::Pflog { filter, scan } = &mut self.matcher {
                    let mut matched = 0u64;
                    let mut failures = 0u64;
                    for ev in &events {
                        let Some(host) = filter.failure_host(ev) else {
                            continue;
                        };
                        matched += 1;
                        let Some(t) = self.time.apply(ev.epoch(), now, Phase::Recorded, "") else {
                            continue;
                        };
                        let line = match scan.as_mut() {
                            Some(d) => {
                                let Some(probe) = Probe::from_event(ev) else {
                                    continue;
                                };
                                let probe = Probe { src: host, ..probe };
                                let Some(fail) = d.observe(t, probe) else {
                                    continue;
                                };
                                fail.to_string()
                            }
                            None => ev.to_string(),
                        };
                        failures += 1;
                        let id_text = host.to_string();
                        let o = Offense {
                            id: &id_text,
                            addr: Some(host),
                            prefix: None,
                            needs_dns: false,
                            time: t,
                            line: Some(Arc::from(line)),
                            fields: None,
                        };
                        self.core.offense(&o, now, self.priors.as_mut(), &mut bans);
                    }
                    if let Some(d) = scan.as_mut() {
                        d.prune(now);
                    }
                    self.counters.lines_read.inc_by(events.len() as u64);
                    self.counters.lines_matched.inc_by(matched);
                    self.counters.failures.inc_by(failures);
                }
                done
            }
        };
        self.core.expire(now);
        self.counters
            .currently_failed
            .set(self.core.currently_failed() as i64);
        (bans, done)
    }

    /// Counts bans of other jails (a `backend = ledger` jail).
    pub fn process_bans(&mut self, events: &[BanEvent]) -> Vec<BanRequest> {
        let now = self.clock.now();
        let mut bans = Vec::new();
        let mut failures = 0u64;
        for ev in events {
            let Some(t) = self.time.apply(ev.at, now, Phase::Recorded, "") else {
                continue;
            };
            failures += 1;
            let id = crate::jail::target::display(&ev.target);
            let line = format!("banned in jail {} ({} failures)", ev.jail, ev.failures);
            let o = Offense::of_target(&id, ev.target, t, Some(Arc::from(line)));
            self.core.offense(&o, now, self.priors.as_mut(), &mut bans);
        }
        for b in &mut bans {
            b.origin = crate::ledger::Origin::Recidive;
        }
        self.counters.lines_read.inc_by(events.len() as u64);
        self.counters.lines_matched.inc_by(failures);
        self.counters.failures.inc_by(failures);
        self.counters
            .currently_failed
            .set(self.core.currently_failed() as i64);
        bans
    }
}

/// Runs a jail until it is told to stop and its data channel is drained.
pub async fn run(
    mut state: JailState,
    mut data: mpsc::Receiver<JailInput>,
    mut ctl: mpsc::UnboundedReceiver<JailCtl>,
    out: mpsc::Sender<Output>,
    ledger: Option<LedgerHandle>,
) {
    let name = state.name.clone();
    let mut data_open = true;
    let mut stopping = false;
    loop {
        if stopping && !data_open {
            break;
        }
        tokio::select! {
            biased;
            c = ctl.recv(), if !stopping => match c {
                Some(JailCtl::Reconfigure(setup)) => {
                    state.reconfigure(*setup, ledger.clone());
                    debug!(jail = %name, "Jail reconfigured; failure counts kept.");
                }
                Some(JailCtl::Bans(events)) => {
                    let (s, bans) = super::blocking(move || {
                        let bans = state.process_bans(&events);
                        (state, bans)
                    })
                    .await;
                    state = s;
                    if !bans.is_empty()
                        && out.send(Output { jail: name.clone(), bans, done: None }).await.is_err()
                    {
                        break;
                    }
                }
                Some(JailCtl::Forget(t)) => state.core.forget(&t),
                Some(JailCtl::Stop) | None => stopping = true,
            },
            d = data.recv(), if data_open => match d {
                Some(input) => {
                    let (s, (bans, done)) = super::blocking(move || {
                        let r = state.process(input);
                        (state, r)
                    })
                    .await;
                    state = s;
                    if (!bans.is_empty() || done.is_some())
                        && out.send(Output { jail: name.clone(), bans, done }).await.is_err()
                    {
                        break;
                    }
                }
                None => data_open = false,
            },
            else => break,
        }
    }
    debug!(jail = %name, "Jail task ended.");
}
