//! The engine: the one task that owns ban state.
//!
//! Jails send it their ban decisions; it records them in the ledger (one transaction per
//! wake-up, whatever the number of jails and bans) and only then orders the firewall
//! worker to apply them. It sleeps until the ledger's next expiry to unban, answers the
//! control socket, reloads the configuration, and shuts everything down in order. Nothing
//! else changes bans, so there is no shared ban state and no lock around it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use super::clock::Clock;
use super::firewall::{ActionSlot, FirewallHandle, FwOrder, FwReport};
use super::jail::{self, JailCtl, JailInput, JailSetup, JailState, Output, Save, build_setup};
use super::logging::Logging;
use super::metrics::{JailCounters, Metrics};
use super::sources::{self, OwnSource, Subscriber, TailKey, Tailer};
use crate::Epoch;
use crate::config::{Config, ConfigLocation, DaemonSettings, JailConfig, LogBackend};
use crate::control::protocol::{
    ActionsStatus, Answer, BanEntry, BanOutcome, BannedList, DaemonStatus, FilterStatus,
    JailStatus, JailSummary, KillSummary, PROTOCOL_VERSION, ReloadOutcome, Request, Response,
    UnbanOutcome, VersionInfo,
};
use crate::control::server::ControlMsg;
use crate::firewall::build::{self, Native};
use crate::jail::dns::Resolve;
use crate::jail::escalation::{Escalate, XorShift64};
use crate::jail::target::{display, parse_target};
use crate::jail::{BanRequest, JailRules};
use crate::ledger::{BanEvent, Hold, LedgerError, LedgerHandle, NewBan, Origin, Outcome, Recorded};
use crate::source::journal::{JournalOptions, JournalStart};

/// Capacity of a jail's data channel (batches waiting for the jail).
const JAIL_QUEUE: usize = 8;
/// Capacity of the channel from jails to the engine.
const OUTPUT_QUEUE: usize = 256;
/// Most jail outputs folded into one ledger transaction.
const OUTPUTS_PER_TRIP: usize = 1024;
/// Kill reports kept per jail for `warden status`.
const KILLS_KEPT: usize = 20;
/// How often the ledger is purged and tidied.
pub const HOUSEKEEPING: Duration = Duration::from_secs(3600);

/// What the engine is built from.
pub struct EngineParts {
    pub location: ConfigLocation,
    pub config: Config,
    /// The backend `native = auto` actions use.
    pub native: Native,
    pub ledger: LedgerHandle,
    pub firewall: FirewallHandle,
    pub fw_reports: mpsc::UnboundedReceiver<FwReport>,
    pub control: mpsc::Receiver<ControlMsg>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub resolver: Option<Arc<dyn Resolve>>,
    pub logging: Option<Arc<Logging>>,
    /// How often the ledger is purged (hourly; None turns it off, for tests).
    pub housekeeping: Option<Duration>,
}

/// A running jail as the engine sees it.
struct JailRuntime {
    config: JailConfig,
    rules: JailRules,
    ctl: mpsc::UnboundedSender<JailCtl>,
    data: mpsc::Sender<JailInput>,
    task: tokio::task::JoinHandle<()>,
    own: Option<OwnSource>,
    tails: Vec<TailKey>,
    counters: JailCounters,
    actions: Vec<String>,
}

/// The engine's state; see the module documentation.
pub struct Engine {
    location: ConfigLocation,
    settings: DaemonSettings,
    native: Native,
    ledger: LedgerHandle,
    firewall: Option<FirewallHandle>,
    fw_reports: mpsc::UnboundedReceiver<FwReport>,
    control: mpsc::Receiver<ControlMsg>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    resolver: Option<Arc<dyn Resolve>>,
    logging: Option<Arc<Logging>>,
    jails: BTreeMap<String, JailRuntime>,
    tailers: BTreeMap<TailKey, Tailer>,
    out_tx: Option<mpsc::Sender<Output>>,
    out_rx: mpsc::Receiver<Output>,
    fw_errors: BTreeMap<(String, String), String>,
    kills: BTreeMap<String, VecDeque<KillSummary>>,
    next_expiry: Option<Epoch>,
    rng: XorShift64,
    started: Epoch,
    /// Jails named by configuration errors: their bans are kept, not lifted.
    broken: BTreeSet<String>,
    stopping: bool,
    housekeeping: Option<Duration>,
}

/// A serialised jail without its source positions (a moved line is no change).
fn fingerprint(j: &JailConfig) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("span");
                m.remove("failregex_spans");
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(j).unwrap_or(Value::Null);
    strip(&mut v);
    v
}

fn part(v: &Value, keys: &[&str]) -> Vec<Value> {
    keys.iter()
        .map(|k| v.get(*k).cloned().unwrap_or(Value::Null))
        .collect()
}

/// Keys whose change means the jail's sources must be set up again.
const SOURCE_KEYS: &[&str] = &["backend", "logpath", "logpath_tail", "logencoding"];
/// Keys whose change means the jail's firewall actions must be rebuilt.
const ACTION_KEYS: &[&str] = &["actions", "port", "protocol"];

fn reads_files(b: &LogBackend) -> bool {
    matches!(
        b,
        LogBackend::Auto | LogBackend::Polling | LogBackend::Notify
    )
}

/// The jails whose actions ban through PF (the `@jails` of pflog filters). When none
/// does (a dry run with `--backend log`, a test), every enabled jail's name: PF logs no
/// rule under those names then, so `@jails` matches nothing, as it should.
fn pf_jails(config: &Config, native: Native) -> Vec<String> {
    let pf: Vec<String> = config
        .enabled_jails()
        .filter(|j| {
            j.actions
                .iter()
                .any(|a| matches!(build::native_kind(a, native), Ok(Some(Native::Pf))))
        })
        .map(|j| j.name.clone())
        .collect();
    if pf.is_empty() {
        config.enabled_jails().map(|j| j.name.clone()).collect()
    } else {
        pf
    }
}

/// Builds a jail's firewall actions.
fn build_actions(j: &JailConfig, native: Native) -> Result<Vec<ActionSlot>, String> {
    let mut out = Vec::new();
    for a in &j.actions {
        let kind = build::native_kind(a, native).map_err(|e| format!("jail {}: {e}", j.name))?;
        let (_, action) = build::build(j, a, native)
            .map_err(|e| format!("jail {}: action {}: {e}", j.name, a.name))?;
        out.push(ActionSlot {
            name: a.name.clone(),
            native: kind,
            action,
        });
    }
    Ok(out)
}

fn ban_entry(h: &Hold) -> BanEntry {
    BanEntry {
        target: display(&h.target),
        jail: h.jail.clone(),
        start: h.start,
        expires: h.expires,
        bantime: h.bantime,
        bancount: h.bancount,
        origin: h.origin.to_string(),
    }
}

impl Engine {
    /// Restores the ledger's bans, starts every enabled jail, and returns the engine ready
    /// to [`Engine::run`].
    pub async fn start(parts: EngineParts) -> Result<Engine, LedgerError> {
        let (out_tx, out_rx) = mpsc::channel(OUTPUT_QUEUE);
        let now = parts.clock.now();
        let mut broken: BTreeSet<String> = parts
            .config
            .errors
            .iter()
            .filter_map(|d| d.jail.clone())
            .collect();
        let mut engine = Engine {
            location: parts.location,
            settings: parts.config.daemon.clone(),
            native: parts.native,
            ledger: parts.ledger,
            firewall: Some(parts.firewall),
            fw_reports: parts.fw_reports,
            control: parts.control,
            clock: parts.clock,
            metrics: parts.metrics,
            resolver: parts.resolver,
            logging: parts.logging,
            jails: BTreeMap::new(),
            tailers: BTreeMap::new(),
            out_tx: Some(out_tx),
            out_rx,
            fw_errors: BTreeMap::new(),
            kills: BTreeMap::new(),
            next_expiry: None,
            rng: XorShift64::from_clock(),
            started: now,
            broken: BTreeSet::new(),
            stopping: false,
            housekeeping: parts.housekeeping,
        };
        for d in &parts.config.errors {
            error!(problem = %d, "Configuration error.");
        }
        for d in &parts.config.warnings {
            warn!(problem = %d, "Configuration warning.");
        }

        // Holds that ran out while the daemon was down end now; the actions' start below
        // makes the firewall match what is left.
        let ended = engine.ledger.run(move |l| l.expire_due(now)).await?;
        if !ended.is_empty() {
            info!(
                count = ended.len(),
                "Bans that ended while warden was stopped are lifted."
            );
        }
        for h in &ended {
            info!(jail = %h.jail, target = %display(&h.target), "Unban (expired while stopped).");
        }

        let enabled: Vec<JailConfig> = parts.config.enabled_jails().cloned().collect();
        let names: BTreeSet<String> = enabled.iter().map(|j| j.name.clone()).collect();
        let active = engine.ledger.run(move |l| l.active(now, None)).await?;
        let orphans: BTreeSet<String> = active
            .iter()
            .map(|h| h.jail.clone())
            .filter(|j| !names.contains(j))
            .collect();
        for j in orphans {
            if broken.contains(&j) {
                warn!(jail = %j, "The jail has configuration errors; its bans are kept in the ledger but not enforced until it is fixed.");
                continue;
            }
            let jj = j.clone();
            let lifted = engine
                .ledger
                .run(move |l| l.unban_all(Some(&jj), now, false))
                .await?;
            info!(jail = %j, count = lifted.len(), "The jail is no longer configured; its bans are lifted.");
        }

        let pf = pf_jails(&parts.config, engine.native);
        for j in enabled {
            if let Err(e) = engine.start_jail(j.clone(), &pf).await {
                error!(jail = %j.name, error = %e, "The jail cannot start; its bans are kept.");
                broken.insert(j.name.clone());
            }
        }
        engine.broken = broken;
        engine.catch_up_ledger_jails(None).await;
        engine.refresh_expiry().await;
        info!(
            jails = engine.jails.len(),
            restored = active.len(),
            "warden is running."
        );
        Ok(engine)
    }

    fn fw(&self, order: FwOrder) {
        if let Some(f) = &self.firewall {
            f.send(order);
        }
    }

    /// Starts one jail: its task, its actions (holding the ledger's active bans), its
    /// sources.
    async fn start_jail(&mut self, j: JailConfig, pf: &[String]) -> Result<(), String> {
        let name = j.name.clone();
        let (jc, pfv, native) = (j.clone(), pf.to_vec(), self.native);
        let built = tokio::task::spawn_blocking(move || {
            let setup = build_setup(&jc, &pfv).map_err(|e| e.to_string())?;
            let actions = build_actions(&jc, native)?;
            Ok::<(JailSetup, Vec<ActionSlot>), String>((setup, actions))
        })
        .await
        .map_err(|e| format!("jail {name}: setup panicked: {e}"))??;
        let (setup, actions) = built;
        let rules = setup.rules.clone();
        let now = self.clock.now();
        let jn = name.clone();
        let active = self
            .ledger
            .run(move |l| l.active(now, Some(&jn)))
            .await
            .map_err(|e| e.to_string())?;
        let descriptions: Vec<String> = actions.iter().map(|a| a.action.describe()).collect();
        self.fw(FwOrder::AddJail {
            jail: name.clone(),
            actions,
            active: active.iter().map(|h| h.to_ban(true)).collect(),
        });
        if !active.is_empty() {
            info!(jail = %name, count = active.len(), "Restored bans.");
        }
        self.metrics
            .banned
            .get_or_create(&Metrics::label(&name))
            .set(active.len() as i64);

        let counters = self.metrics.jail(&name);
        let state = JailState::new(
            setup,
            Some(self.ledger.clone()),
            self.resolver.clone(),
            counters.clone(),
            self.clock.clone(),
        );
        let (data_tx, data_rx) = mpsc::channel(JAIL_QUEUE);
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
        let out = self.out_tx.clone().ok_or("the daemon is stopping")?;
        let task = tokio::spawn(jail::run(
            state,
            data_rx,
            ctl_rx,
            out,
            Some(self.ledger.clone()),
        ));
        let mut rt = JailRuntime {
            config: j,
            rules,
            ctl: ctl_tx,
            data: data_tx,
            task,
            own: None,
            tails: Vec::new(),
            counters,
            actions: descriptions,
        };
        self.start_sources(&mut rt).await;
        info!(jail = %name, backend = ?rt.config.backend, "Jail started.");
        self.jails.insert(name, rt);
        Ok(())
    }

    /// Starts (or subscribes to) the sources a jail reads.
    async fn start_sources(&mut self, rt: &mut JailRuntime) {
        let j = rt.config.clone();
        let name = j.name.clone();
        match &j.backend {
            b if reads_files(b) => {
                let gkey = jail::group_key(&j);
                let keys: Vec<TailKey> = j
                    .logpath
                    .iter()
                    .map(|pattern| TailKey {
                        pattern: pattern.clone(),
                        encoding: j.logencoding.clone(),
                    })
                    .collect();
                let needs = keys
                    .iter()
                    .filter(|k| self.tailers.get(*k).is_none_or(|t| !t.has_group(&gkey)))
                    .count();
                let jc = j.clone();
                let built = tokio::task::spawn_blocking(move || jail::line_processors(&jc, needs))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()));
                let mut procs = match built {
                    Ok(p) => p.into_iter().map(Box::new).collect::<Vec<_>>(),
                    Err(e) => {
                        error!(jail = %name, error = %e, "Cannot build the jail's matcher.");
                        return;
                    }
                };
                for (i, key) in keys.into_iter().enumerate() {
                    let sub = Subscriber {
                        jail: name.clone(),
                        tx: rt.data.clone(),
                    };
                    if let Some(t) = self.tailers.get_mut(&key) {
                        let p = if t.has_group(&gkey) {
                            None
                        } else {
                            procs.pop()
                        };
                        t.subscribe(&gkey, sub, p);
                    } else {
                        let owner = key.owner();
                        let saved = self
                            .ledger
                            .run(move |l| l.cursor(&owner, sources::POSITIONS))
                            .await
                            .unwrap_or_else(|e| {
                                warn!(error = %e, "Cannot read saved file positions.");
                                None
                            })
                            .map(|v| sources::parse_positions(&v))
                            .unwrap_or_default();
                        let tail = j.logpath_tail.get(i).copied().unwrap_or(false);
                        let notify = *b != LogBackend::Polling;
                        let Some(p) = procs.pop() else {
                            continue;
                        };
                        let group = sources::Group {
                            key: gkey.clone(),
                            jails: vec![sub],
                        };
                        match Tailer::spawn(
                            key.clone(),
                            tail,
                            notify,
                            saved,
                            group,
                            p,
                            self.clock.clone(),
                        ) {
                            Ok(t) => {
                                self.tailers.insert(key.clone(), t);
                            }
                            Err(e) => {
                                error!(jail = %name, logpath = %key.pattern, error = %e, "Cannot follow the log path.");
                                continue;
                            }
                        }
                    }
                    rt.tails.push(key);
                }
            }
            LogBackend::Systemd(args) => {
                match JournalOptions::from_backend(args, &j.filter.journalmatch, &j.logencoding) {
                    Ok((opts, warnings)) => {
                        for w in warnings {
                            warn!(jail = %name, warning = %w, "Journal option ignored.");
                        }
                        if j.filter.journalmatch.is_empty() {
                            warn!(jail = %name, "No journalmatch: every journal entry is scanned.");
                        }
                        let owner = format!("jail:{name}");
                        let cursor = self
                            .ledger
                            .run(move |l| l.cursor(&owner, sources::JOURNAL))
                            .await
                            .ok()
                            .flatten();
                        let start = match cursor {
                            Some(c) => JournalStart::AfterCursor(c),
                            None => JournalStart::Since(
                                jiff::Timestamp::from_second(self.clock.now() - j.findtime)
                                    .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
                            ),
                        };
                        rt.own = Some(sources::spawn_journal(&name, opts, start, rt.data.clone()));
                    }
                    Err(e) => error!(jail = %name, error = %e, "Cannot read the journal."),
                }
            }
            LogBackend::Pflog => {
                let Some(path) = j.logpath.first().map(PathBuf::from) else {
                    error!(jail = %name, "A pflog jail needs a logpath.");
                    return;
                };
                if j.logpath.len() > 1 {
                    warn!(jail = %name, path = %path.display(), "A pflog jail reads one file; the other logpath entries are ignored.");
                }
                let owner = format!("jail:{name}");
                let src = sources::pflog_source(&path);
                let saved = self
                    .ledger
                    .run(move |l| l.cursor(&owner, &src))
                    .await
                    .ok()
                    .flatten()
                    .and_then(|v| serde_json::from_str(&v).ok());
                rt.own = Some(sources::spawn_pflog(&name, path, saved, rt.data.clone()));
            }
            _ => {}
        }
    }

    /// Drops a jail's subscriptions and stops its own sources; returns the tailers left
    /// without subscribers (to stop) and the own source.
    fn detach_sources(
        &mut self,
        name: &str,
        rt: &mut JailRuntime,
    ) -> (Vec<Tailer>, Option<OwnSource>) {
        let mut idle = Vec::new();
        for key in std::mem::take(&mut rt.tails) {
            let Some(t) = self.tailers.get_mut(&key) else {
                continue;
            };
            if t.unsubscribe(name)
                && let Some(t) = self.tailers.remove(&key)
            {
                idle.push(t);
            }
        }
        (idle, rt.own.take())
    }

    /// Waits for `fut` while handling jail outputs, so that stopping a source that waits
    /// on a jail that waits on the engine cannot deadlock.
    async fn drain_while<T: Send + 'static>(
        &mut self,
        handle: tokio::task::JoinHandle<T>,
    ) -> Option<T> {
        let mut handle = handle;
        loop {
            tokio::select! {
                r = &mut handle => return r.ok(),
                Some(o) = self.out_rx.recv() => self.handle_trip(o).await,
            }
        }
    }

    async fn stop_sources(&mut self, tailers: Vec<Tailer>, own: Vec<OwnSource>) {
        if tailers.is_empty() && own.is_empty() {
            return;
        }
        let h = tokio::spawn(async move {
            for t in tailers {
                t.stop().await;
            }
            for o in own {
                o.stop().await;
            }
        });
        self.drain_while(h).await;
    }

    /// Feeds `backend = ledger` jails the recent bans of other jails (at start, or for
    /// one jail added by a reload).
    async fn catch_up_ledger_jails(&mut self, only: Option<&str>) {
        let now = self.clock.now();
        let targets: Vec<(String, i64)> = self
            .jails
            .iter()
            .filter(|(n, rt)| {
                rt.config.backend == LogBackend::Ledger && only.is_none_or(|o| o == n.as_str())
            })
            .map(|(n, rt)| (n.clone(), rt.rules.findtime))
            .collect();
        for (name, findtime) in targets {
            let jn = name.clone();
            let events = self
                .ledger
                .run(move |l| {
                    let evs = l.recent_bans(now - findtime, Some(&jn))?;
                    let mut keep = Vec::with_capacity(evs.len());
                    for e in evs {
                        if e.origin == Origin::Recidive {
                            continue;
                        }
                        // Bans already answered by a ban of this jail do not count again.
                        if l.hold(&e.target, &jn)?.is_some_and(|h| h.start >= e.at) {
                            continue;
                        }
                        keep.push(e);
                    }
                    Ok(keep)
                })
                .await;
            match events {
                Ok(evs) => {
                    if !evs.is_empty() {
                        info!(jail = %name, bans = evs.len(), "Counted recent bans of other jails from the ledger.");
                    }
                    if let Some(rt) = self.jails.get(&name) {
                        let _ = rt.ctl.send(JailCtl::Bans(evs));
                    }
                }
                Err(e) => error!(jail = %name, error = %e, "Cannot read the ban history."),
            }
        }
    }

    async fn refresh_expiry(&mut self) {
        match self.ledger.run(|l| l.next_expiry()).await {
            Ok(n) => self.next_expiry = n,
            Err(e) => error!(error = %e, "Cannot read the next expiry from the ledger."),
        }
    }

    /// Runs until told to stop, then shuts down in order.
    pub async fn run(mut self) {
        let mut housekeeping = self
            .housekeeping
            .map(|every| tokio::time::interval_at(tokio::time::Instant::now() + every, every));
        while !self.stopping {
            let sleep = match self.next_expiry {
                Some(e) => self.clock.until(e),
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                Some(o) = self.out_rx.recv() => self.handle_trip(o).await,
                m = self.control.recv() => match m {
                    Some(m) => self.handle_control(m).await,
                    None => self.stopping = true,
                },
                Some(r) = self.fw_reports.recv() => self.handle_report(r),
                _ = tokio::time::sleep(sleep), if self.next_expiry.is_some() => self.expire().await,
                _ = async { housekeeping.as_mut().expect("checked").tick().await }, if housekeeping.is_some() => {
                    let now = self.clock.now();
                    match self.ledger.run(move |l| l.housekeeping(now)).await {
                        Ok(h) => debug!(purged = h.purged.events, holds = h.purged.holds, "Ledger housekeeping done."),
                        Err(e) => error!(error = %e, "Ledger housekeeping failed."),
                    }
                }
            }
        }
        self.shutdown().await;
    }

    fn handle_report(&mut self, r: FwReport) {
        match r {
            FwReport::Failed {
                jail,
                action,
                op,
                targets,
                error,
                retry_in,
            } => {
                let what = match retry_in {
                    Some(d) => format!(
                        "{op} of {targets} failed, retrying in {}s: {error}",
                        d.as_secs()
                    ),
                    None => format!("{op} of {targets} failed, not retried: {error}"),
                };
                self.fw_errors.insert((jail, action), what);
            }
            FwReport::Recovered { jail, action } => {
                self.fw_errors.remove(&(jail, action));
            }
            FwReport::Killed { jail, reports, at } => {
                let q = self.kills.entry(jail).or_default();
                for k in reports {
                    q.push_back(KillSummary {
                        target: display(&k.target),
                        scope: format!("{:?}", k.scope).to_lowercase(),
                        killed: k.killed,
                        time: at,
                    });
                    while q.len() > KILLS_KEPT {
                        q.pop_front();
                    }
                }
            }
        }
    }

    /// The start of a ban decided now: the current second rounded up, so that a ban lasts
    /// at least its bantime (the ledger keeps whole seconds).
    fn ban_start(&self) -> Epoch {
        let t = self.clock.timestamp();
        t.as_second() + i64::from(t.subsec_nanosecond() > 0)
    }

    /// The ledger record of a jail's ban decision. A ban decided from recent lines starts
    /// now (so a short bantime is not eaten by the log's one-second resolution and the
    /// reading delay); one decided from backlog lines starts at the failure's time, as in
    /// fail2ban, and is skipped when it would already have ended.
    fn new_ban(&mut self, b: BanRequest, now: Epoch) -> Option<NewBan> {
        let rt = self.jails.get(&b.jail)?;
        let bantime = rt.rules.bantime;
        let start = if now - b.time <= crate::jail::timing::MAX_DEVIATION {
            self.ban_start()
        } else {
            b.time
        };
        if bantime >= 0 && start.saturating_add(bantime) <= now && !rt.rules.escalation.increment {
            debug!(jail = %b.jail, target = %display(&b.target), "A ban from old lines would already have ended; skipped.");
            return None;
        }
        let escalation = rt
            .rules
            .escalation
            .increment
            .then(|| Escalate::draw(&rt.rules.escalation.clone(), &mut self.rng));
        Some(NewBan {
            target: b.target,
            jail: b.jail,
            start,
            bantime,
            escalation,
            failures: b.failures,
            matches: b.matches,
            fields: b.fields,
            origin: b.origin,
        })
    }

    /// Handles `first` with the outputs already queued behind it, at most
    /// `OUTPUTS_PER_TRIP`, so one ledger trip serves a burst.
    async fn handle_trip(&mut self, first: Output) {
        let mut batch = vec![first];
        while batch.len() < OUTPUTS_PER_TRIP {
            match self.out_rx.try_recv() {
                Ok(o) => batch.push(o),
                Err(_) => break,
            }
        }
        self.handle_outputs(batch).await;
    }

    /// Records the bans of a batch of jail outputs, saves the positions they complete,
    /// then hands the bans to the firewall.
    async fn handle_outputs(&mut self, batch: Vec<Output>) {
        let now = self.clock.now();
        let mut bans = Vec::new();
        let mut saves: Vec<Save> = Vec::new();
        for o in batch {
            for b in o.bans {
                if let Some(nb) = self.new_ban(b, now) {
                    bans.push(nb);
                }
            }
            if let Some(d) = o.done
                && d.finish_one()
            {
                saves.push(d.save.clone());
            }
        }
        if bans.is_empty() && saves.is_empty() {
            return;
        }
        let result = self
            .ledger
            .run(move |l| {
                let recorded = if bans.is_empty() {
                    Vec::new()
                } else {
                    l.record_bans(&bans)?
                };
                for s in &saves {
                    l.set_cursor(&s.owner, &s.source, &s.value, now)?;
                }
                Ok((recorded, l.next_expiry()?))
            })
            .await;
        match result {
            Ok((recorded, next)) => {
                self.next_expiry = next;
                self.apply_recorded(recorded);
            }
            Err(e) => {
                error!(error = %e, "Recording bans in the ledger failed; they are not applied.")
            }
        }
    }

    /// Tells the firewall about recorded bans and feeds them to ledger jails.
    fn apply_recorded(&mut self, recorded: Vec<Recorded>) {
        let mut feed: Vec<BanEvent> = Vec::new();
        for r in recorded {
            let h = &r.hold;
            match r.outcome {
                Outcome::New => {
                    info!(jail = %h.jail, target = %display(&h.target), bantime = h.bantime,
                          bancount = r.bancount, failures = h.failures, origin = %h.origin, "Ban.");
                    let label = Metrics::label(&h.jail);
                    self.metrics.bans.get_or_create(&label).inc();
                    self.metrics.banned.get_or_create(&label).inc();
                    self.fw(FwOrder::Ban(r.to_ban()));
                    if h.origin != Origin::Recidive && h.origin != Origin::Restored {
                        feed.push(BanEvent {
                            id: r.event.unwrap_or_default(),
                            target: h.target,
                            jail: h.jail.clone(),
                            at: h.start,
                            bantime: h.bantime,
                            bancount: r.bancount,
                            failures: h.failures,
                            origin: h.origin,
                        });
                    }
                }
                Outcome::Extended => {
                    info!(jail = %h.jail, target = %display(&h.target), expires = ?h.expires, "Ban extended.");
                    self.fw(FwOrder::Extend(r.to_ban()));
                }
                Outcome::AlreadyHeld => {
                    debug!(jail = %h.jail, target = %display(&h.target), "Already banned.");
                }
            }
        }
        if feed.is_empty() {
            return;
        }
        for (name, rt) in &self.jails {
            if rt.config.backend != LogBackend::Ledger {
                continue;
            }
            let evs: Vec<BanEvent> = feed.iter().filter(|e| &e.jail != name).cloned().collect();
            if !evs.is_empty() {
                let _ = rt.ctl.send(JailCtl::Bans(evs));
            }
        }
    }

    /// Lifts the holds that have run out.
    async fn expire(&mut self) {
        let now = self.clock.now();
        let result = self
            .ledger
            .run(move |l| {
                let ended = l.expire_due(now)?;
                let mut out = Vec::with_capacity(ended.len());
                for h in ended {
                    let others = l.holders(&h.target, now)?;
                    out.push((h, others));
                }
                Ok((out, l.next_expiry()?))
            })
            .await;
        match result {
            Ok((ended, next)) => {
                self.next_expiry = next;
                for (h, others) in ended {
                    self.unbanned(h, others, "Unban.");
                }
            }
            Err(e) => {
                error!(error = %e, "Expiring bans failed; retrying in a second.");
                self.next_expiry = Some(now + 1);
            }
        }
    }

    fn unbanned(&mut self, h: Hold, others: Vec<Hold>, msg: &'static str) {
        info!(jail = %h.jail, target = %display(&h.target), still_held_by = others.len(), "{msg}");
        let label = Metrics::label(&h.jail);
        self.metrics.unbans.get_or_create(&label).inc();
        self.metrics.banned.get_or_create(&label).dec();
        self.fw(FwOrder::Unban {
            ban: h.to_ban(false),
            others: others.into_iter().map(|o| (o.jail, o.target)).collect(),
        });
    }

    async fn handle_control(&mut self, m: ControlMsg) {
        let resp = match m.req {
            Request::Ping => Response::ok(Answer::Pong),
            Request::Version => Response::ok(Answer::Version(VersionInfo {
                version: env!("CARGO_PKG_VERSION").to_string(),
                protocol: PROTOCOL_VERSION,
            })),
            Request::Status { jail: None } => self.status().await,
            Request::Status { jail: Some(j) } => self.jail_status(&j).await,
            Request::Ban { jail, addrs } => self.manual_ban(&jail, &addrs).await,
            Request::Unban { addrs, jail, all } => {
                self.manual_unban(&addrs, jail.as_deref(), all).await
            }
            Request::Banned { addrs } => self.banned(&addrs).await,
            Request::Reload { jail } => {
                let o = self.reload(jail.as_deref()).await;
                Response::ok(Answer::Reload(o))
            }
            Request::Stop => {
                info!("Stop requested.");
                self.stopping = true;
                Response::ok(Answer::Stopping)
            }
            Request::Metrics => Response::ok(Answer::Metrics {
                text: self.metrics.encode(),
            }),
        };
        if let Some(reply) = m.reply {
            let _ = reply.send(resp);
        }
    }

    async fn status(&mut self) -> Response {
        let now = self.clock.now();
        let counts = match self.ledger.run(move |l| l.jail_counts(now)).await {
            Ok(c) => c,
            Err(e) => return Response::err(e.to_string()),
        };
        let jails = self
            .jails
            .iter()
            .map(|(name, rt)| {
                let c = counts.iter().find(|c| &c.jail == name);
                JailSummary {
                    name: name.clone(),
                    currently_failed: rt.counters.currently_failed.get().max(0) as u64,
                    total_failed: rt.counters.failures.get(),
                    currently_banned: c.map_or(0, |c| c.active),
                    total_banned: c.map_or(0, |c| c.total),
                }
            })
            .collect();
        Response::ok(Answer::Status(DaemonStatus {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            uptime: now - self.started,
            jails,
            pending_firewall_errors: self
                .fw_errors
                .iter()
                .map(|((j, a), e)| format!("{j}/{a}: {e}"))
                .collect(),
        }))
    }

    fn sources_of(&self, rt: &JailRuntime) -> Vec<String> {
        match &rt.config.backend {
            b if reads_files(b) => {
                let mut files = BTreeSet::new();
                for k in &rt.tails {
                    if let Some(t) = self.tailers.get(k) {
                        let f = t.files.lock().unwrap_or_else(|e| e.into_inner());
                        files.extend(f.iter().map(|p| p.display().to_string()));
                    }
                }
                files.into_iter().collect()
            }
            LogBackend::Systemd(_) => {
                let m: Vec<String> = rt
                    .config
                    .filter
                    .journalmatch
                    .iter()
                    .map(|g| g.join(" "))
                    .collect();
                vec![format!(
                    "journal: {}",
                    if m.is_empty() {
                        "(all)".into()
                    } else {
                        m.join(" + ")
                    }
                )]
            }
            LogBackend::Pflog => rt
                .config
                .logpath
                .iter()
                .map(|p| format!("pflog: {p}"))
                .collect(),
            _ => vec!["ledger: bans of the other jails".to_string()],
        }
    }

    async fn jail_status(&mut self, name: &str) -> Response {
        if !self.jails.contains_key(name) {
            return Response::err(format!("no such jail: {name}"));
        }
        let now = self.clock.now();
        let jn = name.to_string();
        let r = self
            .ledger
            .run(move |l| Ok((l.active(now, Some(&jn))?, l.jail_counts(now)?)))
            .await;
        let (active, counts) = match r {
            Ok(r) => r,
            Err(e) => return Response::err(e.to_string()),
        };
        let c = counts.iter().find(|c| c.jail == name);
        let rt = &self.jails[name];
        Response::ok(Answer::Jail(JailStatus {
            name: name.to_string(),
            filter: FilterStatus {
                currently_failed: rt.counters.currently_failed.get().max(0) as u64,
                total_failed: rt.counters.failures.get(),
                sources: self.sources_of(rt),
                lines_read: rt.counters.lines_read.get(),
                lines_matched: rt.counters.lines_matched.get(),
            },
            actions: ActionsStatus {
                currently_banned: c.map_or(active.len() as u64, |c| c.active),
                total_banned: c.map_or(0, |c| c.total),
                banned: active.iter().map(|h| display(&h.target)).collect(),
                actions: rt.actions.clone(),
                kills: self
                    .kills
                    .get(name)
                    .map(|q| q.iter().cloned().collect())
                    .unwrap_or_default(),
                errors: self
                    .fw_errors
                    .iter()
                    .filter(|((j, _), _)| j == name)
                    .map(|((_, a), e)| format!("{a}: {e}"))
                    .collect(),
            },
        }))
    }

    async fn manual_ban(&mut self, jail: &str, addrs: &[String]) -> Response {
        let Some(rt) = self.jails.get(jail) else {
            return Response::err(format!("no such jail: {jail}"));
        };
        let mut invalid = Vec::new();
        let mut bans = Vec::new();
        let rules = rt.rules.clone();
        for a in addrs {
            let Some(t) = parse_target(a) else {
                invalid.push(format!("{a}: not an address or network"));
                continue;
            };
            let target = if t.prefix_len() == t.max_prefix_len() {
                rules.cidr.widen(t.addr())
            } else {
                t
            };
            bans.push(NewBan {
                target,
                jail: jail.to_string(),
                start: self.ban_start(),
                bantime: rules.bantime,
                escalation: rules
                    .escalation
                    .increment
                    .then(|| Escalate::draw(&rules.escalation, &mut self.rng)),
                failures: 0,
                matches: Vec::new(),
                fields: Default::default(),
                origin: Origin::Manual,
            });
        }
        let result = self
            .ledger
            .run(move |l| {
                let r = if bans.is_empty() {
                    Vec::new()
                } else {
                    l.record_bans(&bans)?
                };
                Ok((r, l.next_expiry()?))
            })
            .await;
        match result {
            Ok((recorded, next)) => {
                self.next_expiry = next;
                let mut banned = Vec::new();
                let mut already = Vec::new();
                for r in &recorded {
                    let t = display(&r.hold.target);
                    match r.outcome {
                        Outcome::New => banned.push(t),
                        _ => already.push(t),
                    }
                }
                self.apply_recorded(recorded);
                Response::ok(Answer::Ban(BanOutcome {
                    banned,
                    already,
                    invalid,
                }))
            }
            Err(e) => Response::err(e.to_string()),
        }
    }

    async fn manual_unban(&mut self, addrs: &[String], jail: Option<&str>, all: bool) -> Response {
        if let Some(j) = jail
            && !self.jails.contains_key(j)
        {
            return Response::err(format!("no such jail: {j}"));
        }
        let now = self.clock.now();
        let mut invalid = Vec::new();
        let mut targets: Vec<(String, IpNet)> = Vec::new();
        for a in addrs {
            match parse_target(a) {
                Some(t) => targets.push((a.clone(), t)),
                None => invalid.push(format!("{a}: not an address or network")),
            }
        }
        let jail_owned = jail.map(str::to_string);
        let result = self
            .ledger
            .run(move |l| {
                let mut ended: Vec<Hold> = Vec::new();
                let mut not_banned = Vec::new();
                if all {
                    ended = l.unban_all(jail_owned.as_deref(), now, false)?;
                } else {
                    for (text, t) in &targets {
                        let holds: Vec<Hold> = l
                            .holders(t, now)?
                            .into_iter()
                            .filter(|h| jail_owned.as_deref().is_none_or(|j| h.jail == j))
                            .collect();
                        if holds.is_empty() {
                            not_banned.push(text.clone());
                        }
                        for h in holds {
                            if let Some(h) = l.unban(&h.target, &h.jail, now, true)? {
                                ended.push(h);
                            }
                        }
                    }
                }
                let mut out = Vec::with_capacity(ended.len());
                for h in ended {
                    let others = l.holders(&h.target, now)?;
                    out.push((h, others));
                }
                Ok((out, not_banned, l.next_expiry()?))
            })
            .await;
        match result {
            Ok((ended, not_banned, next)) => {
                self.next_expiry = next;
                let mut unbanned = Vec::new();
                for (h, others) in ended {
                    unbanned.push(format!("{} ({})", display(&h.target), h.jail));
                    if let Some(rt) = self.jails.get(&h.jail) {
                        let _ = rt.ctl.send(JailCtl::Forget(h.target));
                    }
                    self.unbanned(h, others, "Unban (by request).");
                }
                Response::ok(Answer::Unban(UnbanOutcome {
                    unbanned,
                    not_banned,
                    invalid,
                }))
            }
            Err(e) => Response::err(e.to_string()),
        }
    }

    async fn banned(&mut self, addrs: &[String]) -> Response {
        let now = self.clock.now();
        let mut targets = Vec::new();
        for a in addrs {
            match parse_target(a) {
                Some(t) => targets.push(t),
                None => return Response::err(format!("{a}: not an address or network")),
            }
        }
        let result = self
            .ledger
            .run(move |l| {
                if targets.is_empty() {
                    return l.active(now, None);
                }
                let mut out = Vec::new();
                for t in &targets {
                    out.extend(l.holders(t, now)?);
                }
                out.sort_by(|a, b| (a.target, &a.jail).cmp(&(b.target, &b.jail)));
                out.dedup_by(|a, b| a.target == b.target && a.jail == b.jail);
                Ok(out)
            })
            .await;
        match result {
            Ok(holds) => Response::ok(Answer::Banned(BannedList {
                now,
                bans: holds.iter().map(ban_entry).collect(),
            })),
            Err(e) => Response::err(e.to_string()),
        }
    }

    /// Stops a jail. With `lift`, its bans end in the ledger (a jail removed from the
    /// configuration); its firewall actions are stopped either way.
    async fn remove_jail(&mut self, name: &str, lift: bool) {
        let Some(mut rt) = self.jails.remove(name) else {
            return;
        };
        let (idle, own) = self.detach_sources(name, &mut rt);
        self.stop_sources(idle, own.into_iter().collect()).await;
        let _ = rt.ctl.send(JailCtl::Stop);
        drop(rt.data);
        self.fw(FwOrder::RemoveJail {
            jail: name.to_string(),
        });
        self.fw_errors.retain(|(j, _), _| j != name);
        if lift {
            let now = self.clock.now();
            let jn = name.to_string();
            match self
                .ledger
                .run(move |l| l.unban_all(Some(&jn), now, false))
                .await
            {
                Ok(holds) => {
                    for h in &holds {
                        info!(jail = %name, target = %display(&h.target), "Unban (jail removed).");
                    }
                    let label = Metrics::label(name);
                    self.metrics
                        .unbans
                        .get_or_create(&label)
                        .inc_by(holds.len() as u64);
                    self.metrics.banned.get_or_create(&label).set(0);
                }
                Err(e) => error!(jail = %name, error = %e, "Cannot lift the removed jail's bans."),
            }
            self.refresh_expiry().await;
        }
        let _ = rt.task.await;
        info!(jail = %name, "Jail stopped.");
    }

    /// Reloads the configuration: all jails, or one.
    pub async fn reload(&mut self, only: Option<&str>) -> ReloadOutcome {
        let mut out = ReloadOutcome {
            added: vec![],
            removed: vec![],
            changed: vec![],
            unchanged: vec![],
            errors: vec![],
        };
        let location = self.location.clone();
        let config = match tokio::task::spawn_blocking(move || location.load()).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                out.errors.push(e.to_string());
                return out;
            }
            Err(e) => {
                out.errors
                    .push(format!("loading the configuration panicked: {e}"));
                return out;
            }
        };
        info!(dir = %config.dir.display(), jail = ?only, "Reloading the configuration.");
        let broken: BTreeSet<String> = config
            .errors
            .iter()
            .filter_map(|d| d.jail.clone())
            .collect();
        for d in &config.errors {
            if only.is_none_or(|o| d.jail.as_deref().is_none_or(|j| j == o)) {
                out.errors.push(d.to_string());
            }
        }
        let new: BTreeMap<String, JailConfig> = config
            .enabled_jails()
            .map(|j| (j.name.clone(), j.clone()))
            .collect();
        if let Some(o) = only
            && !new.contains_key(o)
            && !self.jails.contains_key(o)
            && !broken.contains(o)
        {
            out.errors.push(format!("no such jail: {o}"));
            return out;
        }
        if only.is_none() {
            self.reload_settings(&config.daemon);
        }
        let pf = pf_jails(&config, self.native);
        let names: BTreeSet<String> = self
            .jails
            .keys()
            .chain(new.keys())
            .filter(|n| only.is_none_or(|o| o == n.as_str()))
            .cloned()
            .collect();
        for name in names {
            let old = self.jails.get(&name).map(|rt| fingerprint(&rt.config));
            match (old, new.get(&name)) {
                (Some(_), None) if broken.contains(&name) => {
                    warn!(jail = %name, "The jail's new configuration has errors; it keeps running as it was.");
                }
                (Some(_), None) => {
                    self.remove_jail(&name, true).await;
                    out.removed.push(name);
                }
                (None, Some(j)) => match self.start_jail(j.clone(), &pf).await {
                    Ok(()) => {
                        self.broken.remove(&name);
                        self.catch_up_ledger_jails(Some(&name)).await;
                        out.added.push(name);
                    }
                    Err(e) => out.errors.push(e),
                },
                (Some(old), Some(j)) => {
                    if old == fingerprint(j) {
                        out.unchanged.push(name);
                        continue;
                    }
                    match self.change_jail(j.clone(), &pf).await {
                        Ok(()) => out.changed.push(name),
                        Err(e) => out.errors.push(e),
                    }
                }
                (None, None) => {}
            }
        }
        self.broken.extend(broken);
        self.refresh_expiry().await;
        info!(added = ?out.added, removed = ?out.removed, changed = ?out.changed,
              errors = out.errors.len(), "Configuration reloaded.");
        out
    }

    fn reload_settings(&mut self, new: &DaemonSettings) {
        if new.loglevel != self.settings.loglevel
            && let Some(l) = &self.logging
        {
            l.set_level(&new.loglevel);
            info!(loglevel = %new.loglevel, "Log level changed.");
        }
        if new.socket != self.settings.socket
            || new.pidfile != self.settings.pidfile
            || new.dbfile != self.settings.dbfile
            || new.logtarget != self.settings.logtarget
        {
            warn!("socket, pidfile, dbfile and logtarget changes take effect at the next start.");
        }
        self.settings.loglevel = new.loglevel.clone();
    }

    /// Applies a changed jail: rules and matcher go to its task (counts are kept); its
    /// sources and actions are set up again only when they changed.
    async fn change_jail(&mut self, j: JailConfig, pf: &[String]) -> Result<(), String> {
        let name = j.name.clone();
        let old = self
            .jails
            .get(&name)
            .map(|rt| fingerprint(&rt.config))
            .unwrap_or_default();
        let new = fingerprint(&j);
        let actions_changed = part(&old, ACTION_KEYS) != part(&new, ACTION_KEYS);
        let old_group = self.jails.get(&name).map(|rt| jail::group_key(&rt.config));
        let sources_changed = part(&old, SOURCE_KEYS) != part(&new, SOURCE_KEYS)
            || old.pointer("/filter/journalmatch") != new.pointer("/filter/journalmatch")
            || (reads_files(&j.backend) && old_group.as_deref() != Some(&jail::group_key(&j)));
        let (jc, pfv, native) = (j.clone(), pf.to_vec(), self.native);
        let (setup, actions) = tokio::task::spawn_blocking(move || {
            let setup = build_setup(&jc, &pfv).map_err(|e| e.to_string())?;
            let actions = if actions_changed {
                Some(build_actions(&jc, native)?)
            } else {
                None
            };
            Ok::<_, String>((setup, actions))
        })
        .await
        .map_err(|e| format!("jail {name}: setup panicked: {e}"))??;
        let rules = setup.rules.clone();
        if let Some(actions) = actions {
            let now = self.clock.now();
            let jn = name.clone();
            let active = self
                .ledger
                .run(move |l| l.active(now, Some(&jn)))
                .await
                .map_err(|e| e.to_string())?;
            let descriptions = actions.iter().map(|a| a.action.describe()).collect();
            self.fw(FwOrder::RemoveJail { jail: name.clone() });
            self.fw(FwOrder::AddJail {
                jail: name.clone(),
                actions,
                active: active.iter().map(|h| h.to_ban(true)).collect(),
            });
            if let Some(rt) = self.jails.get_mut(&name) {
                rt.actions = descriptions;
            }
        }
        let Some(mut rt) = self.jails.remove(&name) else {
            return Err(format!("jail {name} is not running"));
        };
        let _ = rt.ctl.send(JailCtl::Reconfigure(Box::new(setup)));
        rt.rules = rules;
        if sources_changed {
            let (idle, own) = self.detach_sources(&name, &mut rt);
            // The jail keeps running meanwhile; only its inputs change.
            self.jails.insert(name.clone(), rt);
            self.stop_sources(idle, own.into_iter().collect()).await;
            let mut rt = self.jails.remove(&name).expect("inserted above");
            rt.config = j;
            self.start_sources(&mut rt).await;
            self.jails.insert(name, rt);
        } else {
            rt.config = j;
            self.jails.insert(name, rt);
        }
        Ok(())
    }

    /// Stops sources, lets the jails finish what they were given (their bans are
    /// recorded, their positions saved), stops the firewall actions.
    async fn shutdown(mut self) {
        info!("Stopping.");
        let tailers: Vec<Tailer> = std::mem::take(&mut self.tailers).into_values().collect();
        let own: Vec<OwnSource> = self
            .jails
            .values_mut()
            .filter_map(|rt| rt.own.take())
            .collect();
        self.stop_sources(tailers, own).await;
        for rt in self.jails.values_mut() {
            let _ = rt.ctl.send(JailCtl::Stop);
            // Dropping the engine's data sender lets the jail see the end of its input.
            let (closed, _) = mpsc::channel(1);
            rt.data = closed;
        }
        self.out_tx = None;
        // Every jail holds a sender: the channel closes when the last jail has finished.
        // Their last bans are recorded (and restored at the next start) and their last
        // positions saved.
        while let Some(o) = self.out_rx.recv().await {
            let mut batch = vec![o];
            while let Ok(o) = self.out_rx.try_recv() {
                batch.push(o);
            }
            self.handle_outputs(batch).await;
        }
        for rt in std::mem::take(&mut self.jails).into_values() {
            let _ = rt.task.await;
        }
        if let Some(fw) = self.firewall.take() {
            let _ = tokio::task::spawn_blocking(move || fw.shutdown()).await;
        }
        info!("Stopped.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::clock::TokioClock;
    use crate::daemon::firewall::FwOptions;
    use crate::ledger::{Ledger, LedgerOptions};
    use tokio::sync::oneshot;

    const T0: Epoch = 1_700_000_000;

    struct Rig {
        _dir: tempfile::TempDir,
        fw_file: std::path::PathBuf,
        control: mpsc::Sender<ControlMsg>,
        run: tokio::task::JoinHandle<()>,
    }

    /// An engine over a configuration with one `backend = ledger` jail (no sources, so
    /// no timers besides the engine's own) banning through the log backend.
    async fn rig(jail: &str) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config");
        for (path, text) in crate::config::embedded_files() {
            if path.starts_with("jail") {
                continue;
            }
            let p = cfg.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let fw_file = dir.path().join("fw.jsonl");
        std::fs::write(
            cfg.join("jail.conf"),
            format!(
                "[DEFAULT]\nignoreself = false\n[t]\nenabled = true\nbackend = ledger\naction = log[logfile=\"{}\"]\n{jail}\n",
                fw_file.display()
            ),
        )
        .unwrap();
        let location = ConfigLocation::Dir(cfg);
        let config = location.load().unwrap();
        assert!(config.errors.is_empty(), "{:?}", config.errors);
        let ledger = Ledger::open(&dir.path().join("l.sqlite3"), LedgerOptions::default()).unwrap();
        let (ledger, _thread) = LedgerHandle::spawn(ledger).unwrap();
        let metrics = Arc::new(Metrics::new());
        let (fw_tx, fw_rx) = mpsc::unbounded_channel();
        // No batching window: virtual time runs far ahead of the worker's real one.
        let opts = FwOptions {
            window: Duration::ZERO,
            ..FwOptions::default()
        };
        let firewall = FirewallHandle::spawn(opts, fw_tx, metrics.clone()).unwrap();
        let (control, control_rx) = mpsc::channel(8);
        let engine = Engine::start(EngineParts {
            location,
            config,
            native: Native::Log,
            ledger,
            firewall,
            fw_reports: fw_rx,
            control: control_rx,
            clock: Arc::new(TokioClock::starting_at(T0)),
            metrics,
            resolver: None,
            logging: None,
            housekeeping: None,
        })
        .await
        .unwrap();
        let run = tokio::spawn(engine.run());
        Rig {
            _dir: dir,
            fw_file,
            control,
            run,
        }
    }

    impl Rig {
        async fn ask(&self, req: Request) -> Answer {
            let (tx, rx) = oneshot::channel();
            self.control
                .send(ControlMsg {
                    req,
                    reply: Some(tx),
                })
                .await
                .unwrap();
            match rx.await.unwrap() {
                Response::Ok { result, .. } => result,
                Response::Err { error, .. } => panic!("{error}"),
            }
        }

        async fn banned(&self) -> Vec<BanEntry> {
            match self.ask(Request::Banned { addrs: vec![] }).await {
                Answer::Banned(b) => b.bans,
                a => panic!("{a:?}"),
            }
        }

        async fn ban(&self, addr: &str) {
            let a = self
                .ask(Request::Ban {
                    jail: "t".into(),
                    addrs: vec![addr.into()],
                })
                .await;
            assert!(
                matches!(a, Answer::Ban(ref o) if o.banned == [addr]),
                "{a:?}"
            );
        }

        /// Stops the engine and returns the firewall records (`op target`).
        async fn finish(self) -> Vec<String> {
            self.ask(Request::Stop).await;
            self.run.await.unwrap();
            std::fs::read_to_string(&self.fw_file)
                .unwrap()
                .lines()
                .map(|l| {
                    let v: Value = serde_json::from_str(l).unwrap();
                    let targets: Vec<&str> = v["targets"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| t.as_str().unwrap())
                        .collect();
                    format!("{} {}", v["op"].as_str().unwrap(), targets.join(","))
                })
                .collect()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_unban_timer_fires_at_the_expiry_and_not_before() {
        let r = rig("bantime = 600").await;
        r.ban("192.0.2.7").await;
        let b = r.banned().await;
        assert_eq!(b[0].expires, Some(T0 + 600));
        tokio::time::advance(Duration::from_secs(599)).await;
        assert_eq!(r.banned().await.len(), 1, "still banned at 599 s");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(r.banned().await.is_empty(), "unbanned at 600 s");
        let ops = r.finish().await;
        assert_eq!(ops, ["start ", "ban 192.0.2.7", "unban 192.0.2.7", "stop "]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_follows_the_earliest_of_several_expiries() {
        let r = rig("bantime = 100").await;
        r.ban("192.0.2.1").await;
        tokio::time::advance(Duration::from_secs(50)).await;
        r.ban("192.0.2.2").await;
        tokio::time::advance(Duration::from_secs(51)).await;
        let left: Vec<String> = r.banned().await.into_iter().map(|b| b.target).collect();
        assert_eq!(left, ["192.0.2.2"]);
        tokio::time::advance(Duration::from_secs(50)).await;
        assert!(r.banned().await.is_empty());
        r.finish().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_repeat_ban_is_escalated_from_the_ledger() {
        let r = rig("bantime = 60\nbantime.increment = true\nbantime.maxtime = 1h").await;
        r.ban("192.0.2.9").await;
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(r.banned().await.is_empty());
        r.ban("192.0.2.9").await;
        let b = r.banned().await;
        assert_eq!((b[0].bantime, b[0].bancount), (120, 2));
        assert_eq!(b[0].expires, Some(T0 + 61 + 120));
        r.finish().await;
    }
}
