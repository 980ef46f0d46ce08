//! The firewall worker: one OS thread that owns every [`Action`] instance.
//!
//! Orders arrive over a channel; those arriving within [`FwOptions::window`] of the first
//! (or until [`FwOptions::max_batch`] of them) go out as one batch per action. Orders for
//! the same (jail, target) inside a window are folded into their net effect, so a ban
//! lifted before it was applied costs no firewall call at all. After a ban the action
//! cuts the address's existing states.
//!
//! A failed call is retried with a doubling backoff (1 s to 5 min) for as long as it
//! matters: a ban while its hold is active, an unban until the target is banned again. A
//! `Partial` failure retries only the targets that failed. Failures and recoveries are
//! reported to the engine (for `warden status`) and counted in the metrics.
//!
//! Before removing an entry, the worker checks the other jails still holding the target
//! (the engine sends them with the unban, from the ledger): an action whose
//! [`Action::entry_key`] for the target equals the key of an action of another holding
//! jail shares the entry, and the entry stays.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tokio::sync::mpsc::UnboundedSender;
use tracing::{debug, error, info, warn};

use super::metrics::Metrics;
use crate::Epoch;
use crate::firewall::build::Native;
use crate::firewall::{Action, Ban, FirewallError, KillReport};

/// One action of one jail, as built by the factory.
pub struct ActionSlot {
    /// The action's name in the jail.
    pub name: String,
    /// The native backend, or None for a shell action.
    pub native: Option<Native>,
    pub action: Box<dyn Action>,
}

impl std::fmt::Debug for ActionSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionSlot")
            .field("name", &self.name)
            .field("native", &self.native)
            .finish()
    }
}

/// Another jail's hold on a target, as the unban check needs it.
pub type OtherHold = (String, IpNet);

/// An order to the worker.
#[derive(Debug)]
pub enum FwOrder {
    /// Start a jail's actions holding exactly `active` (reconciles the kernel).
    AddJail {
        jail: String,
        actions: Vec<ActionSlot>,
        active: Vec<Ban>,
    },
    /// Stop a jail's actions (flushing their entries unless configured to keep them).
    RemoveJail { jail: String },
    /// A new ban.
    Ban(Ban),
    /// A hold was extended: native backends refresh the entry's timeout.
    Extend(Ban),
    /// A hold ended; `others` are the holds on the target (or networks overlapping it)
    /// that remain.
    Unban { ban: Ban, others: Vec<OtherHold> },
    /// Stop every action and end the thread.
    Shutdown,
}

/// What the worker tells the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum FwReport {
    Failed {
        jail: String,
        action: String,
        op: &'static str,
        targets: usize,
        error: String,
        /// When the next attempt is due; None when the error is not retried.
        retry_in: Option<Duration>,
    },
    Recovered {
        jail: String,
        action: String,
    },
    Killed {
        jail: String,
        reports: Vec<KillReport>,
        at: Epoch,
    },
}

/// Batching and retry settings.
#[derive(Debug, Clone)]
pub struct FwOptions {
    pub window: Duration,
    pub max_batch: usize,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for FwOptions {
    fn default() -> Self {
        FwOptions {
            window: Duration::from_millis(50),
            max_batch: 1000,
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
        }
    }
}

/// The engine's side of the worker.
#[derive(Debug)]
pub struct FirewallHandle {
    tx: Sender<FwOrder>,
    join: Option<JoinHandle<()>>,
}

impl FirewallHandle {
    /// Starts the worker thread.
    pub fn spawn(
        opts: FwOptions,
        reports: UnboundedSender<FwReport>,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<FirewallHandle> {
        let (tx, rx) = std::sync::mpsc::channel();
        let join = std::thread::Builder::new()
            .name("warden-firewall".into())
            .spawn(move || {
                Worker {
                    opts,
                    jails: BTreeMap::new(),
                    retries: Vec::new(),
                    reports,
                    metrics,
                }
                .run(rx)
            })?;
        Ok(FirewallHandle {
            tx,
            join: Some(join),
        })
    }

    pub fn send(&self, order: FwOrder) {
        if self.tx.send(order).is_err() {
            error!("The firewall worker is gone; an order was lost.");
        }
    }

    /// Stops every action and waits for the thread (blocking).
    pub fn shutdown(mut self) {
        let _ = self.tx.send(FwOrder::Shutdown);
        if let Some(j) = self.join.take()
            && j.join().is_err()
        {
            error!("The firewall worker panicked.");
        }
    }
}

/// An action with what the worker knows about it.
struct Slot {
    slot: ActionSlot,
    describe: String,
    started: bool,
    /// Bans that should be in force through this action (restored by a retried start).
    held: BTreeMap<IpNet, Ban>,
    failing: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Start,
    Ban,
    Unban,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Start => "start",
            Op::Ban => "ban",
            Op::Unban => "unban",
        }
    }
}

struct Retry {
    jail: String,
    action: String,
    op: Op,
    bans: Vec<Ban>,
    attempt: u32,
    due: Instant,
}

struct Worker {
    opts: FwOptions,
    jails: BTreeMap<String, Vec<Slot>>,
    retries: Vec<Retry>,
    reports: UnboundedSender<FwReport>,
    metrics: Arc<Metrics>,
}

/// The net effect of the orders for one (jail, target) within a window.
struct Net {
    existed_before: bool,
    exists_after: bool,
    ban: Ban,
    others: Vec<OtherHold>,
}

impl Worker {
    fn run(mut self, rx: Receiver<FwOrder>) {
        loop {
            let wait = self
                .retries
                .iter()
                .map(|r| r.due.saturating_duration_since(Instant::now()))
                .min()
                .unwrap_or(Duration::from_secs(3600));
            match rx.recv_timeout(wait) {
                Ok(first) => {
                    let mut orders = vec![first];
                    let deadline = Instant::now() + self.opts.window;
                    while orders.len() < self.opts.max_batch
                        && !matches!(orders.last(), Some(FwOrder::Shutdown))
                    {
                        let left = deadline.saturating_duration_since(Instant::now());
                        match rx.recv_timeout(left) {
                            Ok(o) => orders.push(o),
                            Err(_) => break,
                        }
                    }
                    if !self.process(orders) {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.stop_all();
                    return;
                }
            }
            self.run_retries();
        }
    }

    /// Applies a window of orders; false after a shutdown.
    fn process(&mut self, orders: Vec<FwOrder>) -> bool {
        let mut pending: Vec<FwOrder> = Vec::new();
        for order in orders {
            match order {
                FwOrder::Ban(_) | FwOrder::Extend(_) | FwOrder::Unban { .. } => pending.push(order),
                control => {
                    self.apply_bans(std::mem::take(&mut pending));
                    match control {
                        FwOrder::AddJail {
                            jail,
                            actions,
                            active,
                        } => self.add_jail(jail, actions, active),
                        FwOrder::RemoveJail { jail } => self.remove_jail(&jail),
                        FwOrder::Shutdown => {
                            self.stop_all();
                            return false;
                        }
                        _ => unreachable!("ban orders are collected above"),
                    }
                }
            }
        }
        self.apply_bans(pending);
        true
    }

    fn add_jail(&mut self, jail: String, actions: Vec<ActionSlot>, active: Vec<Ban>) {
        if self.jails.contains_key(&jail) {
            self.remove_jail(&jail);
        }
        let mut slots = Vec::new();
        for a in actions {
            let describe = a.action.describe();
            slots.push(Slot {
                slot: a,
                describe,
                started: false,
                held: active.iter().map(|b| (b.target, b.clone())).collect(),
                failing: false,
            });
        }
        self.jails.insert(jail.clone(), slots);
        let names: Vec<String> = self.jails[&jail]
            .iter()
            .map(|s| s.slot.name.clone())
            .collect();
        for name in names {
            self.start_slot(&jail, &name, 0);
        }
    }

    fn start_slot(&mut self, jail: &str, action: &str, attempt: u32) {
        let Some(slot) = self.slot_mut(jail, action) else {
            return;
        };
        let active: Vec<Ban> = slot.held.values().cloned().collect();
        match slot.slot.action.start(&active) {
            Ok(()) => {
                slot.started = true;
                info!(jail = %jail, action = %slot.describe, restored = active.len(), "Firewall action started.");
                self.succeeded(jail, action);
            }
            Err(e) => self.failed(jail, action, Op::Start, Vec::new(), e, attempt),
        }
    }

    fn remove_jail(&mut self, jail: &str) {
        self.retries.retain(|r| r.jail != jail);
        if let Some(slots) = self.jails.remove(jail) {
            for mut s in slots {
                if !s.started {
                    continue;
                }
                match s.slot.action.stop() {
                    Ok(()) => info!(jail = %jail, action = %s.describe, "Firewall action stopped."),
                    Err(e) => {
                        self.count_error(jail);
                        error!(jail = %jail, action = %s.describe, error = %e, "Stopping a firewall action failed.");
                    }
                }
            }
        }
    }

    fn stop_all(&mut self) {
        let jails: Vec<String> = self.jails.keys().cloned().collect();
        for j in jails {
            self.remove_jail(&j);
        }
    }

    fn slot_mut(&mut self, jail: &str, action: &str) -> Option<&mut Slot> {
        self.jails
            .get_mut(jail)?
            .iter_mut()
            .find(|s| s.slot.name == action)
    }

    /// Folds a window's ban orders into their net effect and applies it.
    fn apply_bans(&mut self, orders: Vec<FwOrder>) {
        if orders.is_empty() {
            return;
        }
        let mut nets: BTreeMap<(String, IpNet), Net> = BTreeMap::new();
        for o in orders {
            let (ban, existed, exists, others) = match o {
                FwOrder::Ban(b) => (b, false, true, Vec::new()),
                FwOrder::Extend(b) => (b, true, true, Vec::new()),
                FwOrder::Unban { ban, others } => (ban, true, false, others),
                _ => continue,
            };
            let key = (ban.jail.clone(), ban.target);
            match nets.get_mut(&key) {
                Some(n) => {
                    n.exists_after = exists;
                    n.ban = ban;
                    n.others = others;
                }
                None => {
                    nets.insert(
                        key,
                        Net {
                            existed_before: existed,
                            exists_after: exists,
                            ban,
                            others,
                        },
                    );
                }
            }
        }
        let mut bans: BTreeMap<String, Vec<Ban>> = BTreeMap::new();
        let mut extends: BTreeMap<String, Vec<Ban>> = BTreeMap::new();
        let mut unbans: BTreeMap<String, Vec<(Ban, Vec<OtherHold>)>> = BTreeMap::new();
        for ((jail, _), n) in nets {
            match (n.existed_before, n.exists_after) {
                (false, true) => bans.entry(jail).or_default().push(n.ban),
                (true, true) => extends.entry(jail).or_default().push(n.ban),
                (true, false) => unbans.entry(jail).or_default().push((n.ban, n.others)),
                (false, false) => {}
            }
        }
        for (jail, list) in unbans {
            self.unban(&jail, list);
        }
        for (jail, list) in bans {
            self.ban(&jail, list, false);
        }
        for (jail, list) in extends {
            self.ban(&jail, list, true);
        }
    }

    fn ban(&mut self, jail: &str, bans: Vec<Ban>, extend: bool) {
        let targets: HashSet<IpNet> = bans.iter().map(|b| b.target).collect();
        // A new ban ends the retries of unbans of the same targets: the entry must stay.
        for r in &mut self.retries {
            if r.jail == jail && r.op == Op::Unban {
                r.bans.retain(|b| !targets.contains(&b.target));
            }
        }
        self.retries
            .retain(|r| !(r.op == Op::Unban && r.bans.is_empty()));
        let Some(slots) = self.jails.get_mut(jail) else {
            warn!(
                jail = %jail,
                count = bans.len(),
                "Bans for a jail without firewall actions."
            );
            return;
        };
        let names: Vec<String> = slots.iter().map(|s| s.slot.name.clone()).collect();
        for name in names {
            let Some(slot) = self.slot_mut(jail, &name) else {
                continue;
            };
            for b in &bans {
                slot.held.insert(b.target, b.clone());
            }
            if !slot.started {
                // Its start is being retried; it will apply what it holds.
                continue;
            }
            if extend && slot.slot.native.is_none() {
                // A shell action's entry has no timeout to refresh; running actionban
                // again would add a second entry.
                continue;
            }
            self.run_ban(jail, &name, bans.clone(), !extend, 0);
        }
    }

    fn run_ban(&mut self, jail: &str, action: &str, bans: Vec<Ban>, kill: bool, attempt: u32) {
        let Some(slot) = self.slot_mut(jail, action) else {
            return;
        };
        let result = slot.slot.action.ban(&bans);
        let (done, failed): (Vec<Ban>, Vec<Ban>) = match &result {
            Ok(()) => (bans, Vec::new()),
            Err(FirewallError::Partial { failed, .. }) => {
                let failed: HashSet<IpNet> = failed.iter().copied().collect();
                bans.into_iter().partition(|b| !failed.contains(&b.target))
            }
            Err(_) => (Vec::new(), bans),
        };
        if kill && !done.is_empty() {
            match slot.slot.action.kill_states(&done) {
                Ok(reports) if !reports.is_empty() => {
                    let killed: u64 = reports.iter().map(|r| r.killed).sum();
                    self.metrics
                        .states_killed
                        .get_or_create(&Metrics::label(jail))
                        .inc_by(killed);
                    if killed > 0 {
                        info!(
                            jail = %jail,
                            killed,
                            bans = done.len(),
                            "Cut existing connections of banned addresses."
                        );
                    }
                    let _ = self.reports.send(FwReport::Killed {
                        jail: jail.to_string(),
                        reports,
                        at: crate::now_epoch(),
                    });
                }
                Ok(_) => {}
                Err(e) => {
                    // The ban holds; only the cut of existing states failed. Not retried:
                    // states created after the ban are blocked anyway.
                    self.count_error(jail);
                    warn!(jail = %jail, error = %e, "Cutting existing connections failed.");
                }
            }
        }
        match result {
            Ok(()) => {
                debug!(jail = %jail, action = %action, count = done.len(), "Firewall bans applied.");
                self.succeeded(jail, action);
            }
            Err(e) => self.failed(jail, action, Op::Ban, failed, e, attempt),
        }
    }

    fn unban(&mut self, jail: &str, list: Vec<(Ban, Vec<OtherHold>)>) {
        let targets: HashSet<IpNet> = list.iter().map(|(b, _)| b.target).collect();
        // Bans never applied need no removal: drop them from the retries, and remember
        // per action which targets were never in the firewall.
        let mut never_applied: HashMap<String, HashSet<IpNet>> = HashMap::new();
        for r in &mut self.retries {
            if r.jail == jail && r.op == Op::Ban {
                r.bans.retain(|b| {
                    if targets.contains(&b.target) {
                        never_applied
                            .entry(r.action.clone())
                            .or_default()
                            .insert(b.target);
                        false
                    } else {
                        true
                    }
                });
            }
        }
        self.retries
            .retain(|r| !(r.op == Op::Ban && r.bans.is_empty()));
        let Some(slots) = self.jails.get(jail) else {
            return;
        };
        // Entry keys still needed by other holders, over every action of their jails.
        let mut kept: HashSet<String> = HashSet::new();
        for (_, others) in &list {
            for (ojail, otarget) in others {
                if let Some(oslots) = self.jails.get(ojail) {
                    for s in oslots {
                        kept.insert(s.slot.action.entry_key(otarget));
                    }
                }
            }
        }
        let mut plans: Vec<(String, Vec<Ban>)> = Vec::new();
        let mut removed_keys: BTreeSet<String> = BTreeSet::new();
        for s in slots {
            let skip = never_applied.get(&s.slot.name);
            let mut batch = Vec::new();
            for (b, others) in &list {
                if skip.is_some_and(|t| t.contains(&b.target)) {
                    continue;
                }
                let key = s.slot.action.entry_key(&b.target);
                let shared = others
                    .iter()
                    .any(|(oj, ot)| !(oj == jail && *ot == b.target))
                    && kept.contains(&key);
                if shared {
                    debug!(jail = %jail, target = %b.target, action = %s.describe,
                           "Another jail still holds the shared entry; it stays.");
                    continue;
                }
                if !removed_keys.insert(key) {
                    continue;
                }
                batch.push(b.clone());
            }
            plans.push((s.slot.name.clone(), batch));
        }
        for (name, batch) in plans {
            if let Some(slot) = self.slot_mut(jail, &name) {
                for (b, _) in &list {
                    slot.held.remove(&b.target);
                }
                if !slot.started || batch.is_empty() {
                    continue;
                }
            }
            self.run_unban(jail, &name, batch, 0);
        }
    }

    fn run_unban(&mut self, jail: &str, action: &str, bans: Vec<Ban>, attempt: u32) {
        let Some(slot) = self.slot_mut(jail, action) else {
            return;
        };
        match slot.slot.action.unban(&bans) {
            Ok(()) => {
                debug!(jail = %jail, action = %action, count = bans.len(), "Firewall unbans applied.");
                self.succeeded(jail, action);
            }
            Err(e) => {
                let failed = match &e {
                    FirewallError::Partial { failed, .. } => {
                        let f: HashSet<IpNet> = failed.iter().copied().collect();
                        bans.into_iter().filter(|b| f.contains(&b.target)).collect()
                    }
                    _ => bans,
                };
                self.failed(jail, action, Op::Unban, failed, e, attempt);
            }
        }
    }

    fn count_error(&self, jail: &str) {
        self.metrics
            .firewall_errors
            .get_or_create(&Metrics::label(jail))
            .inc();
    }

    fn succeeded(&mut self, jail: &str, action: &str) {
        if let Some(slot) = self.slot_mut(jail, action)
            && slot.failing
        {
            slot.failing = false;
            info!(jail = %jail, action = %action, "Firewall action works again.");
            let _ = self.reports.send(FwReport::Recovered {
                jail: jail.to_string(),
                action: action.to_string(),
            });
        }
    }

    fn failed(
        &mut self,
        jail: &str,
        action: &str,
        op: Op,
        bans: Vec<Ban>,
        e: FirewallError,
        attempt: u32,
    ) {
        self.count_error(jail);
        let now = crate::now_epoch();
        // Bans whose hold has ended need no retry.
        let bans: Vec<Ban> = if op == Op::Ban {
            bans.into_iter()
                .filter(|b| b.expires.is_none_or(|x| x > now))
                .collect()
        } else {
            bans
        };
        let retry = e.is_transient() && (op == Op::Start || !bans.is_empty());
        let delay = self
            .opts
            .backoff_min
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.opts.backoff_max);
        let targets = bans.len();
        if let Some(slot) = self.slot_mut(jail, action) {
            slot.failing = true;
        }
        if retry {
            warn!(jail = %jail, action = %action, op = op.name(), targets, error = %e, retry_in_s = delay.as_secs(),
                  "Firewall call failed; retrying.");
            self.retries.push(Retry {
                jail: jail.to_string(),
                action: action.to_string(),
                op,
                bans,
                attempt: attempt + 1,
                due: Instant::now() + delay,
            });
        } else {
            error!(jail = %jail, action = %action, op = op.name(), targets, error = %e,
                   "Firewall call failed and is not retried.");
        }
        let _ = self.reports.send(FwReport::Failed {
            jail: jail.to_string(),
            action: action.to_string(),
            op: op.name(),
            targets,
            error: e.to_string(),
            retry_in: retry.then_some(delay),
        });
    }

    fn run_retries(&mut self) {
        let now = Instant::now();
        let (due, rest): (Vec<Retry>, Vec<Retry>) = std::mem::take(&mut self.retries)
            .into_iter()
            .partition(|r| r.due <= now);
        self.retries = rest;
        let epoch = crate::now_epoch();
        for r in due {
            match r.op {
                Op::Start => self.start_slot(&r.jail, &r.action, r.attempt),
                Op::Ban => {
                    let live: Vec<Ban> = r
                        .bans
                        .into_iter()
                        .filter(|b| b.expires.is_none_or(|x| x > epoch))
                        .collect();
                    if !live.is_empty() {
                        self.run_ban(&r.jail, &r.action, live, true, r.attempt);
                    }
                }
                Op::Unban => self.run_unban(&r.jail, &r.action, r.bans, r.attempt),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// An action that records its calls and fails as told.
    struct Fake {
        jail: String,
        calls: Arc<Mutex<Vec<String>>>,
        fail_bans: Arc<Mutex<u32>>,
        shared: bool,
    }

    impl Action for Fake {
        fn describe(&self) -> String {
            "fake".into()
        }
        fn start(&mut self, active: &[Ban]) -> Result<(), FirewallError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("{} start {}", self.jail, active.len()));
            Ok(())
        }
        fn ban(&mut self, bans: &[Ban]) -> Result<(), FirewallError> {
            let mut f = self.fail_bans.lock().unwrap();
            if *f > 0 {
                *f -= 1;
                return Err(FirewallError::Partial {
                    failed: vec![bans[0].target],
                    first: Box::new(FirewallError::Command {
                        cmd: "x".into(),
                        message: "busy".into(),
                    }),
                });
            }
            for b in bans {
                self.calls
                    .lock()
                    .unwrap()
                    .push(format!("{} ban {}", self.jail, b.target));
            }
            Ok(())
        }
        fn unban(&mut self, bans: &[Ban]) -> Result<(), FirewallError> {
            for b in bans {
                self.calls
                    .lock()
                    .unwrap()
                    .push(format!("{} unban {}", self.jail, b.target));
            }
            Ok(())
        }
        fn stop(&mut self) -> Result<(), FirewallError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("{} stop", self.jail));
            Ok(())
        }
        fn entry_key(&self, t: &IpNet) -> String {
            if self.shared {
                format!("shared {t}")
            } else {
                format!("{} {t}", self.jail)
            }
        }
    }

    fn ban(jail: &str, t: &str, expires: Option<Epoch>) -> Ban {
        Ban {
            jail: jail.into(),
            target: t.parse().unwrap(),
            start: 0,
            expires,
            bantime: 600,
            failures: 3,
            bancount: 1,
            matches: vec![],
            fields: Default::default(),
            restored: false,
        }
    }

    fn worker() -> (Worker, tokio::sync::mpsc::UnboundedReceiver<FwReport>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (
            Worker {
                opts: FwOptions {
                    backoff_min: Duration::ZERO,
                    ..FwOptions::default()
                },
                jails: BTreeMap::new(),
                retries: Vec::new(),
                reports: tx,
                metrics: Arc::new(Metrics::new()),
            },
            rx,
        )
    }

    fn add(
        w: &mut Worker,
        jail: &str,
        shared: bool,
        calls: &Arc<Mutex<Vec<String>>>,
    ) -> Arc<Mutex<u32>> {
        let fail = Arc::new(Mutex::new(0));
        w.add_jail(
            jail.into(),
            vec![ActionSlot {
                name: "a".into(),
                native: None,
                action: Box::new(Fake {
                    jail: jail.into(),
                    calls: calls.clone(),
                    fail_bans: fail.clone(),
                    shared,
                }),
            }],
            vec![],
        );
        fail
    }

    #[test]
    fn a_ban_lifted_within_the_window_costs_nothing() {
        let (mut w, _r) = worker();
        let calls = Arc::new(Mutex::new(Vec::new()));
        add(&mut w, "j", false, &calls);
        w.process(vec![
            FwOrder::Ban(ban("j", "192.0.2.1/32", None)),
            FwOrder::Unban {
                ban: ban("j", "192.0.2.1/32", None),
                others: vec![],
            },
            FwOrder::Ban(ban("j", "192.0.2.2/32", None)),
        ]);
        assert_eq!(*calls.lock().unwrap(), ["j start 0", "j ban 192.0.2.2/32"]);
    }

    #[test]
    fn shared_entries_stay_while_another_jail_holds_them() {
        let (mut w, _r) = worker();
        let calls = Arc::new(Mutex::new(Vec::new()));
        add(&mut w, "short", true, &calls);
        add(&mut w, "long", true, &calls);
        let t = "192.0.2.9/32";
        w.process(vec![
            FwOrder::Ban(ban("short", t, None)),
            FwOrder::Ban(ban("long", t, None)),
        ]);
        w.process(vec![FwOrder::Unban {
            ban: ban("short", t, None),
            others: vec![("long".into(), t.parse().unwrap())],
        }]);
        assert!(
            !calls.lock().unwrap().iter().any(|c| c.contains("unban")),
            "{:?}",
            calls.lock().unwrap()
        );
        w.process(vec![FwOrder::Unban {
            ban: ban("long", t, None),
            others: vec![],
        }]);
        assert_eq!(
            calls.lock().unwrap().last().unwrap(),
            "long unban 192.0.2.9/32"
        );
    }

    #[test]
    fn per_jail_entries_are_removed_whatever_other_jails_hold() {
        let (mut w, _r) = worker();
        let calls = Arc::new(Mutex::new(Vec::new()));
        add(&mut w, "short", false, &calls);
        add(&mut w, "long", false, &calls);
        let t = "192.0.2.9/32";
        w.process(vec![FwOrder::Unban {
            ban: ban("short", t, None),
            others: vec![("long".into(), t.parse().unwrap())],
        }]);
        assert_eq!(
            calls.lock().unwrap().last().unwrap(),
            "short unban 192.0.2.9/32"
        );
    }

    #[test]
    fn partial_failures_retry_only_the_failed_targets() {
        let (mut w, mut reports) = worker();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let fail = add(&mut w, "j", false, &calls);
        *fail.lock().unwrap() = 1;
        w.process(vec![
            FwOrder::Ban(ban("j", "192.0.2.1/32", None)),
            FwOrder::Ban(ban("j", "192.0.2.2/32", None)),
        ]);
        assert_eq!(w.retries.len(), 1);
        assert_eq!(w.retries[0].bans.len(), 1);
        assert!(matches!(
            reports.try_recv().unwrap(),
            FwReport::Failed {
                op: "ban",
                targets: 1,
                retry_in: Some(_),
                ..
            }
        ));
        w.run_retries();
        assert!(w.retries.is_empty());
        assert_eq!(calls.lock().unwrap().last().unwrap(), "j ban 192.0.2.1/32");
        assert!(matches!(
            reports.try_recv().unwrap(),
            FwReport::Recovered { .. }
        ));
    }

    #[test]
    fn an_unban_cancels_the_retry_of_a_ban_never_applied() {
        let (mut w, _r) = worker();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let fail = add(&mut w, "j", false, &calls);
        *fail.lock().unwrap() = 1;
        w.process(vec![FwOrder::Ban(ban("j", "192.0.2.1/32", None))]);
        assert_eq!(w.retries.len(), 1);
        w.process(vec![FwOrder::Unban {
            ban: ban("j", "192.0.2.1/32", None),
            others: vec![],
        }]);
        assert!(w.retries.is_empty());
        assert!(
            !calls.lock().unwrap().iter().any(|c| c.contains("unban")),
            "nothing to remove"
        );
    }

    #[test]
    fn expired_bans_are_not_retried() {
        let (mut w, _r) = worker();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let fail = add(&mut w, "j", false, &calls);
        *fail.lock().unwrap() = 1;
        w.process(vec![FwOrder::Ban(ban("j", "192.0.2.1/32", Some(1)))]);
        assert!(w.retries.is_empty());
    }
}
