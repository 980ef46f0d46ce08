//! The native nftables backend: one shared table, one base chain, and per jail one set per
//! address family with one rule each.
//!
//! ```text
//! table inet warden {
//!     set ban4-sshd { type ipv4_addr; flags interval,timeout; elements = { 192.0.2.7 timeout 10m expires 9m58s } }
//!     set ban6-sshd { type ipv6_addr; flags interval,timeout; elements = { 2001:db8:1::/64 timeout 1h expires 59m } }
//!     chain input {
//!         type filter hook input priority filter - 10; policy accept;
//!         ip saddr @ban4-sshd tcp dport { 22 } counter drop comment "warden jail sshd"
//!         ip6 saddr @ban6-sshd tcp dport { 22 } counter drop comment "warden jail sshd"
//!     }
//! }
//! ```
//!
//! With `chain_hook = none` the chain is a regular one in the admin's table instead,
//! reached only through the admin's own `jump`; warden then never removes the table.
//!
//! Elements carry the ban's remaining time as their kernel timeout, so bans end on time
//! even while warden is down. Every batch is one `nft -f -` transaction whatever the
//! number of addresses (two, milliseconds apart, in the rare batch where a network
//! replaces addresses inside it or the reverse); `nft -j list table` is read only at start,
//! at stop, for `list`, and to resynchronise after a batch the kernel refused.
//! `docs/nftables.md` describes the options and the behaviour.

mod holdings;
mod names;
mod options;
mod ruleset;

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;

pub use holdings::widen;
pub use names::{JailNames, jail_token};
pub use options::{BlockType, Hook, KillTools, L4, NftOptions};
pub use ruleset::{Batch, ElemInfo, ElemItem, Listing, parse_listing};

use self::holdings::{Holdings, range_to_nets};
use self::options::{FAMILY, MAX_TIMEOUT_SECS};
use crate::Epoch;
use crate::exec::Cmd;
use crate::firewall::conntrack::{CutScope, Cutter};
use crate::firewall::{Action, Ban, FirewallError, JailSpec, KillReport, KillScope, PortSpec};

/// How far (seconds) a kernel timeout may differ from the ledger's before start rewrites it.
const TIMEOUT_SLACK: i64 = 2;

/// Above this many removals from one set, the set is flushed and rewritten whole in the
/// same transaction. nft 1.0.6 spends time proportional to the set's size on each element
/// it deletes from an interval set (about 20 ms each in a set of 10,000, against 25 µs to
/// add one), so a large removal costs more than writing the set anew.
const REBUILD_OVER: usize = 16;

/// One jail's nftables action.
pub struct NftAction {
    spec: JailSpec,
    opts: NftOptions,
    names: JailNames,
    holdings: Holdings,
    /// What this action last wrote to its sets (elements and their ends). Kernel timeouts
    /// may have removed some since; removals are written so that does not matter.
    installed: BTreeMap<IpNet, Option<Epoch>>,
    cutter: Cutter,
    clock: fn() -> Epoch,
}

impl std::fmt::Debug for NftAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NftAction")
            .field("jail", &self.spec.jail)
            .field("opts", &self.opts)
            .field("held", &self.holdings.len())
            .finish()
    }
}

/// The element changes of one batch.
#[derive(Debug, Default)]
struct Plan {
    /// Elements to take out (present or not).
    remove: Vec<IpNet>,
    /// Elements to write, with their ends.
    put: Vec<(IpNet, Option<Epoch>)>,
}

/// What stop writes.
#[derive(Debug)]
struct StopPlan {
    batch: Batch,
    /// The removal of a chain without hook, once nothing uses it.
    chain_removal: Option<Batch>,
    table_removed: bool,
}

impl NftAction {
    /// Builds the action for a jail; the options come from `spec.params` (see
    /// [`NftOptions`] and `docs/nftables.md`).
    pub fn new(spec: JailSpec) -> Result<NftAction, FirewallError> {
        let opts = NftOptions::from_spec(&spec)?;
        let names = JailNames::new(&spec.jail);
        let cutter = Cutter {
            conntrack: opts.kill_tools.conntrack.then(|| opts.conntrack.clone()),
            ss: opts.kill_tools.ss.then(|| opts.ss.clone()),
            timeout: opts.timeout,
        };
        Ok(NftAction {
            spec,
            opts,
            names,
            holdings: Holdings::default(),
            installed: BTreeMap::new(),
            cutter,
            clock: crate::now_epoch,
        })
    }

    /// Replaces the clock that turns ban ends into remaining times.
    pub fn with_clock(mut self, clock: fn() -> Epoch) -> NftAction {
        self.clock = clock;
        self
    }

    pub fn names(&self) -> &JailNames {
        &self.names
    }

    fn key(&self, target: &IpNet) -> IpNet {
        widen(*target, self.opts.cidr4, self.opts.cidr6)
    }

    fn set_of(&self, key: &IpNet) -> &str {
        self.names.set(matches!(key, IpNet::V6(_)))
    }

    fn set_names(&self) -> [&str; 2] {
        [self.names.set4.as_str(), self.names.set6.as_str()]
    }

    /// Whether a rule is this jail's: it matches one of the jail's sets.
    fn is_ours(&self, rule: &ruleset::RuleInfo) -> bool {
        let ours = self.set_names();
        rule.sets.iter().any(|s| ours.contains(&s.as_str()))
    }

    fn nft_display(&self) -> String {
        self.opts.nft.display().to_string()
    }

    /// Runs one transaction.
    fn apply(&self, batch: &Batch) -> Result<(), FirewallError> {
        if batch.is_empty() {
            return Ok(());
        }
        let out = Cmd::new(&self.opts.nft)
            .args(["-f", "-"])
            .stdin(batch.text())
            .timeout(self.opts.timeout)
            .run()?;
        if !out.success() {
            let stderr = out.stderr_text();
            let message: Vec<&str> = stderr.lines().take(6).collect();
            return Err(FirewallError::Command {
                cmd: format!("{} -f - (jail {})", self.nft_display(), self.spec.jail),
                message: message.join(" | "),
            });
        }
        tracing::trace!(jail = %self.spec.jail, commands = batch.commands(), elapsed = ?out.elapsed, "Applied an nftables transaction");
        Ok(())
    }

    /// The table as the kernel holds it; None when it does not exist.
    pub fn read_table(&self) -> Result<Option<Listing>, FirewallError> {
        let out = Cmd::new(&self.opts.nft)
            .args(["-j", "list", "table", FAMILY, &self.opts.table])
            .timeout(self.opts.timeout)
            .run()?;
        if !out.success() {
            let stderr = out.stderr_text();
            if stderr.contains("No such file or directory") {
                return Ok(None);
            }
            return Err(FirewallError::Command {
                cmd: out.cmd.clone(),
                message: stderr.trim().to_string(),
            });
        }
        parse_listing(&out.stdout_text())
            .map(Some)
            .map_err(|e| FirewallError::Command {
                cmd: out.cmd.clone(),
                message: format!("cannot read the listing: {e}"),
            })
    }

    fn timeout_secs(&self, end: Option<Epoch>, now: Epoch) -> Option<i64> {
        end.map(|e| (e - now).clamp(1, MAX_TIMEOUT_SECS))
    }

    /// Makes the kernel hold this jail's table, chain, sets and rules, and exactly the
    /// elements its holdings call for, in one transaction after one listing. An element
    /// can time out between the listing and the transaction, failing the latter; one more
    /// round settles that.
    fn sync(&mut self) -> Result<(), FirewallError> {
        match self.sync_once() {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::debug!(jail = %self.spec.jail, error = %e, "Synchronising nftables sets failed; trying once more");
                self.sync_once()
            }
        }
    }

    fn sync_once(&mut self) -> Result<(), FirewallError> {
        let now = (self.clock)();
        let listing = self.read_table()?.unwrap_or_default();
        let desired = self.holdings.desired_all(now);
        let (batch, removed, added) = self.sync_batch(&listing, &desired, now)?;
        self.apply(&batch)?;
        self.installed = desired;
        tracing::debug!(jail = %self.spec.jail, held = self.installed.len(), removed, added, "Synchronised nftables sets");
        Ok(())
    }

    /// The transaction that makes the kernel's table (as `listing` shows it) hold this
    /// jail's chain, sets, rules and exactly the `desired` elements; with the numbers of
    /// elements it removes and adds.
    fn sync_batch(
        &self,
        listing: &Listing,
        desired: &BTreeMap<IpNet, Option<Epoch>>,
        now: Epoch,
    ) -> Result<(Batch, usize, usize), FirewallError> {
        let o = &self.opts;
        let mut batch = Batch::default();
        batch.push(ruleset::table_decl(o));

        let mut recreate_chain = false;
        match listing.chain(&o.chain) {
            None => batch.push(ruleset::chain_decl(o)),
            // A chain of the other kind may well be the admin's: never rewrite it.
            Some(c) if c.hook.is_some() != o.hook.is_base() => {
                let (found, needed) = if o.hook.is_base() {
                    ("a regular chain".to_string(), "a base chain")
                } else {
                    (
                        format!(
                            "a base chain (hook {})",
                            c.hook.as_deref().unwrap_or_default()
                        ),
                        "a regular chain",
                    )
                };
                return Err(FirewallError::Config(format!(
                    "jail {}: nftables chain {} of table {FAMILY} {} is {found}; with chain_hook = {} warden needs {needed} of its own: set chain to another name",
                    self.spec.jail,
                    o.chain,
                    o.table,
                    o.hook.name()
                )));
            }
            Some(_) if !o.hook.is_base() => {}
            Some(c) => {
                let same = c.kind.as_deref() == Some("filter")
                    && c.hook.as_deref() == Some(o.hook.name())
                    && c.prio == Some(i64::from(o.priority));
                if !same {
                    let others = listing
                        .rules
                        .iter()
                        .any(|r| r.chain == o.chain && !self.is_ours(r));
                    if others {
                        tracing::warn!(
                            jail = %self.spec.jail,
                            chain = %o.chain,
                            hook = ?c.hook,
                            priority = ?c.prio,
                            wanted_hook = o.hook.name(),
                            wanted_priority = o.priority,
                            "The shared chain has another hook or priority than configured and holds other jails' rules; keeping it until the table is recreated"
                        );
                    } else {
                        recreate_chain = true;
                        batch.push(format!("delete chain {FAMILY} {} {}", o.table, o.chain));
                        batch.push(ruleset::chain_decl(o));
                    }
                }
            }
        }
        for r in listing.rules.iter().filter(|r| self.is_ours(r)) {
            if recreate_chain && r.chain == o.chain {
                continue;
            }
            batch.push(format!(
                "delete rule {FAMILY} {} {} handle {}",
                o.table, r.chain, r.handle
            ));
        }

        // Kernel elements: seconds left, None for permanent ones.
        let mut kernel: BTreeMap<IpNet, Option<i64>> = BTreeMap::new();
        let mut strays: Vec<(bool, String)> = Vec::new();
        for v6 in [false, true] {
            let name = self.names.set(v6);
            let usable = listing.set(name).filter(|s| {
                s.kind == ruleset::set_type(v6)
                    && s.flags.iter().any(|f| f == "interval")
                    && s.flags.iter().any(|f| f == "timeout")
            });
            match (listing.set(name), usable) {
                (Some(_), Some(set)) => {
                    for e in &set.elems {
                        match &e.item {
                            ElemItem::Net(n) if n.trunc() == *n => {
                                let left = e.timeout.map(|t| e.expires.unwrap_or(t));
                                kernel.insert(*n, left);
                            }
                            other => strays.push((v6, other.text())),
                        }
                    }
                }
                (Some(_), None) => {
                    tracing::warn!(jail = %self.spec.jail, set = name, "Set has another type or flags than warden writes; recreating it");
                    batch.push(format!("delete set {FAMILY} {} {name}", o.table));
                    batch.push(ruleset::set_decl(o, name, v6));
                }
                (None, _) => batch.push(ruleset::set_decl(o, name, v6)),
            }
        }
        for v6 in [false, true] {
            for body in ruleset::rule_bodies(o, &self.names, v6) {
                batch.push(format!("add rule {FAMILY} {} {} {body}", o.table, o.chain));
            }
        }

        // Elements: strays and wrong timeouts out, missing and corrected ones in.
        let mut remove: BTreeMap<bool, Vec<String>> = BTreeMap::new();
        let mut put: BTreeMap<bool, Vec<(IpNet, Option<i64>)>> = BTreeMap::new();
        for (v6, text) in strays {
            remove.entry(v6).or_default().push(text);
        }
        let mut kept: BTreeSet<IpNet> = BTreeSet::new();
        for (net, left) in &kernel {
            let keep = match desired.get(net) {
                None => false,
                Some(end) => match (self.timeout_secs(*end, now), left) {
                    (None, None) => true,
                    (Some(want), Some(have)) => (want - have).abs() <= TIMEOUT_SLACK,
                    _ => false,
                },
            };
            if keep {
                kept.insert(*net);
            } else {
                let v6 = matches!(net, IpNet::V6(_));
                remove.entry(v6).or_default().push(ruleset::net_text(net));
            }
        }
        for (net, end) in desired {
            if !kept.contains(net) {
                let v6 = matches!(net, IpNet::V6(_));
                put.entry(v6)
                    .or_default()
                    .push((*net, self.timeout_secs(*end, now)));
            }
        }
        let (mut removed, mut added) = (0, 0);
        for v6 in [false, true] {
            let set = self.names.set(v6);
            let rem = remove.remove(&v6).unwrap_or_default();
            let add = put.remove(&v6).unwrap_or_default();
            removed += rem.len();
            if rem.len() > REBUILD_OVER {
                batch.push(format!("flush set {FAMILY} {} {set}", o.table));
                let all = self.timed(desired.iter().map(|(k, e)| (*k, *e)), v6, now);
                added += all.len();
                batch.add_elements(&o.table, set, &all);
            } else {
                added += add.len();
                batch.delete_elements(&o.table, set, &rem);
                batch.add_elements(&o.table, set, &add);
            }
        }
        Ok((batch, removed, added))
    }

    /// The element changes for bans and unbans of `touched` keys (already recorded in the
    /// holdings), and of the held networks inside them, which they may shadow or reveal.
    fn plan(&self, touched: &BTreeMap<IpNet, bool>, now: Epoch) -> Plan {
        let mut affected: BTreeSet<IpNet> = touched.keys().copied().collect();
        for k in touched.keys() {
            affected.extend(self.holdings.inside(k));
        }
        let mut plan = Plan::default();
        let mut maybe: Vec<IpNet> = Vec::new();
        for k in &affected {
            let before = self.installed.get(k).copied();
            let after = self.holdings.desired(k, now);
            let direct = touched.get(k).copied();
            match (before, after) {
                (_, Some(end)) if direct.is_some() || before != Some(end) => {
                    if before.is_some() {
                        plan.remove.push(*k);
                    }
                    plan.put.push((*k, end));
                }
                (Some(_), None) => plan.remove.push(*k),
                // An unban of something this action did not write: take it out too if
                // that cannot collide with anything (someone may have added it by hand).
                (None, None) if direct == Some(false) => maybe.push(*k),
                _ => {}
            }
        }
        let mut removed: BTreeMap<IpNet, ()> = plan.remove.iter().map(|k| (*k, ())).collect();
        for k in maybe {
            let clash = overlapping(&self.installed, &k, true) || overlapping(&removed, &k, true);
            if !clash {
                plan.remove.push(k);
                removed.insert(k, ());
            }
        }
        plan
    }

    /// The elements of one family among `elems`, with their timeouts in seconds.
    fn timed(
        &self,
        elems: impl IntoIterator<Item = (IpNet, Option<Epoch>)>,
        v6: bool,
        now: Epoch,
    ) -> Vec<(IpNet, Option<i64>)> {
        elems
            .into_iter()
            .filter(|(k, _)| matches!(k, IpNet::V6(_)) == v6)
            .map(|(k, e)| (k, self.timeout_secs(e, now)))
            .collect()
    }

    fn write_plan(&mut self, plan: &Plan, now: Epoch) -> Result<(), FirewallError> {
        let mut removals = Batch::default();
        let mut puts = Batch::default();
        let mut rebuilt = [false, false];
        for v6 in [false, true] {
            let set = self.names.set(v6);
            let rem: Vec<String> = plan
                .remove
                .iter()
                .filter(|k| matches!(k, IpNet::V6(_)) == v6)
                .map(ruleset::net_text)
                .collect();
            if rem.len() > REBUILD_OVER {
                // Cheaper than the deletions (see REBUILD_OVER), and atomic all the same.
                rebuilt[usize::from(v6)] = true;
                puts.push(format!("flush set {FAMILY} {} {set}", self.opts.table));
                puts.add_elements(
                    &self.opts.table,
                    set,
                    &self.timed(self.holdings.desired_all(now), v6, now),
                );
                continue;
            }
            removals.remove_elements(&self.opts.table, set, &rem);
            let put = self.timed(plan.put.iter().copied(), v6, now);
            puts.add_elements(&self.opts.table, set, &put);
        }
        // A network replacing the addresses inside it (or the reverse) cannot go in the
        // same batch as their removal (see the ruleset module); it follows it at once.
        let removed: BTreeMap<IpNet, ()> = plan.remove.iter().map(|k| (*k, ())).collect();
        let split = plan.put.iter().any(|(p, _)| {
            !rebuilt[usize::from(matches!(p, IpNet::V6(_)))] && overlapping(&removed, p, false)
        });
        let result = if split {
            self.apply(&removals).and_then(|()| self.apply(&puts))
        } else {
            let mut batch = removals;
            batch.append(puts);
            self.apply(&batch)
        };
        match result {
            Ok(()) => {
                if rebuilt.iter().any(|r| *r) {
                    let desired = self.holdings.desired_all(now);
                    self.installed
                        .retain(|k, _| !rebuilt[usize::from(matches!(k, IpNet::V6(_)))]);
                    self.installed.extend(
                        desired
                            .into_iter()
                            .filter(|(k, _)| rebuilt[usize::from(matches!(k, IpNet::V6(_)))]),
                    );
                }
                for k in &plan.remove {
                    if !rebuilt[usize::from(matches!(k, IpNet::V6(_)))] {
                        self.installed.remove(k);
                    }
                }
                for (k, e) in &plan.put {
                    if !rebuilt[usize::from(matches!(k, IpNet::V6(_)))] {
                        self.installed.insert(*k, *e);
                    }
                }
                Ok(())
            }
            Err(e) => {
                // Someone changed the table behind our back (an overlapping element, a
                // flushed ruleset): read it and rewrite what the holdings call for.
                tracing::warn!(jail = %self.spec.jail, error = %e, "The kernel refused an nftables batch; resynchronising the jail's sets");
                self.sync()
            }
        }
    }

    /// What stop removes, from the table as `listing` shows it: this jail's rules and sets,
    /// or the whole table when nothing else is left in it. With `chain_hook = none` the
    /// table is shared with the admin's ruleset and always stays; the chain goes too (in a
    /// second transaction) once it holds no other jail's rules and no rule jumps to it.
    fn stop_plan(&self, listing: &Listing) -> StopPlan {
        let o = &self.opts;
        let ours = self.set_names();
        let others = listing
            .sets
            .iter()
            .any(|s| !ours.contains(&s.name.as_str()))
            || listing.rules.iter().any(|r| !self.is_ours(r))
            || listing.chains.iter().any(|c| c.name != o.chain);
        let mut batch = Batch::default();
        if o.hook.is_base() && !others {
            batch.push(format!("delete table {FAMILY} {}", o.table));
            return StopPlan {
                batch,
                chain_removal: None,
                table_removed: true,
            };
        }
        for r in listing.rules.iter().filter(|r| self.is_ours(r)) {
            batch.push(format!(
                "delete rule {FAMILY} {} {} handle {}",
                o.table, r.chain, r.handle
            ));
        }
        for s in listing
            .sets
            .iter()
            .filter(|s| ours.contains(&s.name.as_str()))
        {
            batch.push(format!("delete set {FAMILY} {} {}", o.table, s.name));
        }
        if o.hook.is_base() {
            return StopPlan {
                batch,
                chain_removal: None,
                table_removed: false,
            };
        }
        let chain_in_use = listing
            .rules
            .iter()
            .any(|r| (r.chain == o.chain && !self.is_ours(r)) || r.jumps.contains(&o.chain));
        let chain_removal = (listing.chain(&o.chain).is_some() && !chain_in_use).then(|| {
            let mut b = Batch::default();
            b.push(format!("delete chain {FAMILY} {} {}", o.table, o.chain));
            b
        });
        StopPlan {
            batch,
            chain_removal,
            table_removed: false,
        }
    }

    fn cut_scope(&self) -> Option<CutScope> {
        match self.opts.kill_states.resolve(&self.opts.ports) {
            KillScope::None => None,
            KillScope::Ports => match &self.opts.ports {
                PortSpec::Ports(ports) => Some(CutScope::Ports {
                    ports: ports.clone(),
                    protocols: self
                        .opts
                        .protocols
                        .iter()
                        .map(|p| p.name().to_string())
                        .collect(),
                }),
                PortSpec::All => Some(CutScope::All),
            },
            KillScope::All | KillScope::Auto => Some(CutScope::All),
        }
    }
}

/// Whether `map` holds a network that shares addresses with `net`: a strict supernet, a
/// strict subnet, or (when `equal_counts`) `net` itself.
fn overlapping<V>(map: &BTreeMap<IpNet, V>, net: &IpNet, equal_counts: bool) -> bool {
    let net = net.trunc();
    if equal_counts && map.contains_key(&net) {
        return true;
    }
    let supernet = (0..net.prefix_len()).any(|len| {
        IpNet::new(net.addr(), len)
            .map(|s| map.contains_key(&s.trunc()))
            .unwrap_or(false)
    });
    // Keys sort by address, then prefix length: the subnets of `net` follow it directly.
    supernet
        || map
            .range(net..)
            .map(|(k, _)| k)
            .find(|k| **k != net)
            .is_some_and(|k| net.contains(&k.addr()))
}

impl Action for NftAction {
    fn describe(&self) -> String {
        let protos = if self.opts.protocols.is_empty() {
            "all protocols".to_string()
        } else {
            self.opts
                .protocols
                .iter()
                .map(|p| p.name())
                .collect::<Vec<_>>()
                .join(",")
        };
        format!(
            "nftables {FAMILY} {} {}/{} ({protos}, ports {})",
            self.opts.table, self.names.set4, self.names.set6, self.opts.ports
        )
    }

    fn start(&mut self, active: &[Ban]) -> Result<(), FirewallError> {
        self.holdings.clear();
        let now = (self.clock)();
        for b in active {
            if b.expires.is_some_and(|e| e <= now) {
                continue;
            }
            self.holdings.hold(self.key(&b.target), b.expires);
        }
        self.sync()?;
        tracing::info!(jail = %self.spec.jail, table = %self.opts.table, elements = self.installed.len(), "Started nftables sets");
        Ok(())
    }

    fn ban(&mut self, bans: &[Ban]) -> Result<(), FirewallError> {
        let now = (self.clock)();
        let mut touched = BTreeMap::new();
        for b in bans {
            if b.expires.is_some_and(|e| e <= now) {
                tracing::debug!(jail = %self.spec.jail, target = %b.target, "Skipping a ban that has already ended");
                continue;
            }
            let key = self.key(&b.target);
            self.holdings.hold(key, b.expires);
            touched.insert(key, true);
        }
        let plan = self.plan(&touched, now);
        self.write_plan(&plan, now)?;
        tracing::debug!(jail = %self.spec.jail, bans = bans.len(), written = plan.put.len(), "Banned in nftables");
        Ok(())
    }

    fn kill_states(&mut self, bans: &[Ban]) -> Result<Vec<KillReport>, FirewallError> {
        let Some(scope) = self.cut_scope() else {
            return Ok(Vec::new());
        };
        let targets: Vec<IpNet> = bans
            .iter()
            .map(|b| self.key(&b.target))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let reports = self.cutter.cut(&self.spec.jail, &targets, &scope);
        let killed: u64 = reports.iter().map(|r| r.killed).sum();
        if killed > 0 {
            tracing::info!(jail = %self.spec.jail, targets = targets.len(), killed, "Cut existing connections of banned addresses");
        }
        Ok(reports)
    }

    fn unban(&mut self, bans: &[Ban]) -> Result<(), FirewallError> {
        let now = (self.clock)();
        let mut touched = BTreeMap::new();
        for b in bans {
            let key = self.key(&b.target);
            self.holdings.release(key);
            touched.insert(key, false);
        }
        let plan = self.plan(&touched, now);
        self.write_plan(&plan, now)?;
        tracing::debug!(jail = %self.spec.jail, unbans = bans.len(), "Unbanned in nftables");
        Ok(())
    }

    fn list(&mut self) -> Result<Option<Vec<IpNet>>, FirewallError> {
        let Some(listing) = self.read_table()? else {
            return Ok(Some(Vec::new()));
        };
        let mut out = Vec::new();
        for name in [&self.names.set4, &self.names.set6] {
            if let Some(set) = listing.set(name) {
                for e in &set.elems {
                    match e.item {
                        ElemItem::Net(n) => out.push(n),
                        ElemItem::Range(a, b) => out.extend(range_to_nets(a, b)),
                    }
                }
            }
        }
        Ok(Some(out))
    }

    fn stop(&mut self) -> Result<(), FirewallError> {
        if self.opts.keep_on_stop {
            tracing::info!(jail = %self.spec.jail, "Leaving nftables sets in place (keep_on_stop)");
            return Ok(());
        }
        let Some(listing) = self.read_table()? else {
            return Ok(());
        };
        let plan = self.stop_plan(&listing);
        self.apply(&plan.batch)?;
        self.installed.clear();
        if let Some(b) = &plan.chain_removal
            && let Err(e) = self.apply(b)
        {
            // Something refers to the chain in a way the listing did not show; an empty
            // regular chain only returns, so it can stay.
            tracing::debug!(jail = %self.spec.jail, chain = %self.opts.chain, error = %e, "Leaving the empty chain in place");
        }
        tracing::info!(jail = %self.spec.jail, table_removed = plan.table_removed, "Stopped nftables sets");
        Ok(())
    }

    fn entry_key(&self, target: &IpNet) -> String {
        let key = self.key(target);
        format!(
            "nftables {FAMILY} {} {} {}",
            self.opts.table,
            self.set_of(&key),
            key
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(params: &[(&str, &str)]) -> NftAction {
        NftAction::new(crate::firewall::test_spec("ssh", &["tcp"], params))
            .unwrap()
            .with_clock(|| 1000)
    }

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn entry_keys_name_table_set_and_widened_target() {
        let a = action(&[("cidr6", "64")]);
        assert_eq!(
            a.entry_key(&n("2001:db8::1:2/128")),
            "nftables inet warden ban6-sshd 2001:db8::/64"
        );
        assert_eq!(
            a.entry_key(&n("192.0.2.1/32")),
            "nftables inet warden ban4-sshd 192.0.2.1/32"
        );
        assert!(a.describe().contains("ban4-sshd/ban6-sshd"));
    }

    #[test]
    fn plans_shadowing_and_revealing() {
        let mut a = action(&[]);
        let now = 1000;
        a.holdings.hold(n("10.0.0.5/32"), Some(2000));
        a.installed.insert(n("10.0.0.5/32"), Some(2000));
        // A ban of the enclosing /24 takes the host out and writes the network.
        a.holdings.hold(n("10.0.0.0/24"), Some(1500));
        let plan = a.plan(&BTreeMap::from([(n("10.0.0.0/24"), true)]), now);
        assert_eq!(plan.remove, vec![n("10.0.0.5/32")]);
        assert_eq!(plan.put, vec![(n("10.0.0.0/24"), Some(1500))]);
        a.installed.remove(&n("10.0.0.5/32"));
        a.installed.insert(n("10.0.0.0/24"), Some(1500));
        // Lifting the /24 brings the host back with its own end.
        a.holdings.release(n("10.0.0.0/24"));
        let plan = a.plan(&BTreeMap::from([(n("10.0.0.0/24"), false)]), now);
        assert_eq!(plan.remove, vec![n("10.0.0.0/24")]);
        assert_eq!(plan.put, vec![(n("10.0.0.5/32"), Some(2000))]);
    }

    #[test]
    fn unbans_of_unknown_targets_avoid_collisions() {
        let mut a = action(&[]);
        a.holdings.hold(n("10.0.0.0/24"), None);
        a.installed.insert(n("10.0.0.0/24"), None);
        let plan = a.plan(
            &BTreeMap::from([
                (n("10.0.0.9/32"), false),
                (n("10.9.0.0/16"), false),
                (n("10.9.1.1/32"), false),
            ]),
            1000,
        );
        // 10.0.0.9 lies inside an installed element; of the two nested unknowns only one
        // can be written without a collision.
        assert_eq!(plan.remove, vec![n("10.9.0.0/16")]);
        assert!(plan.put.is_empty());
    }

    #[test]
    fn rebans_rewrite_the_element() {
        let mut a = action(&[]);
        a.holdings.hold(n("10.0.0.1/32"), Some(1100));
        a.installed.insert(n("10.0.0.1/32"), Some(1100));
        a.holdings.hold(n("10.0.0.1/32"), Some(1900));
        let plan = a.plan(&BTreeMap::from([(n("10.0.0.1/32"), true)]), 1000);
        assert_eq!(plan.remove, vec![n("10.0.0.1/32")]);
        assert_eq!(plan.put, vec![(n("10.0.0.1/32"), Some(1900))]);
    }

    #[test]
    fn overlap_lookups() {
        let map: BTreeMap<IpNet, ()> = ["10.0.0.0/24", "10.1.0.5/32", "2001:db8::/64"]
            .iter()
            .map(|s| (n(s), ()))
            .collect();
        assert!(overlapping(&map, &n("10.0.0.7/32"), false));
        assert!(overlapping(&map, &n("10.0.0.0/8"), false));
        assert!(overlapping(&map, &n("10.1.0.0/16"), false));
        assert!(!overlapping(&map, &n("10.0.0.0/24"), false));
        assert!(overlapping(&map, &n("10.0.0.0/24"), true));
        assert!(!overlapping(&map, &n("10.2.0.0/16"), true));
        assert!(!overlapping(&map, &n("10.0.1.0/24"), true));
        assert!(overlapping(&map, &n("2001:db8::1/128"), false));
        assert!(!overlapping(&map, &n("2001:db8:1::/64"), true));
    }

    /// A listing of the admin's `table inet hostfw`: a base chain `input` accepting
    /// established traffic first, then (with `jump`) jumping to `warden`; `extra` adds
    /// objects (warden's chain, sets and rules).
    fn hostfw(jump: bool, extra: &str) -> Listing {
        let mut items = vec![
            r#"{"table": {"family": "inet", "name": "hostfw", "handle": 1}}"#.to_string(),
            r#"{"chain": {"family": "inet", "table": "hostfw", "name": "input", "handle": 2, "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}}"#.to_string(),
            r#"{"rule": {"family": "inet", "table": "hostfw", "chain": "input", "handle": 3, "expr": [{"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}}, {"accept": null}]}}"#.to_string(),
        ];
        if jump {
            items.push(r#"{"rule": {"family": "inet", "table": "hostfw", "chain": "input", "handle": 4, "expr": [{"jump": {"target": "warden"}}]}}"#.to_string());
        }
        if !extra.is_empty() {
            items.push(extra.to_string());
        }
        parse_listing(&format!(r#"{{"nftables": [{}]}}"#, items.join(", "))).unwrap()
    }

    const WARDEN_CHAIN: &str =
        r#"{"chain": {"family": "inet", "table": "hostfw", "name": "warden", "handle": 5}}"#;

    fn our_objects() -> String {
        let mut v = vec![WARDEN_CHAIN.to_string()];
        for (n, set, ty, fam) in [
            (6, "ban4-sshd", "ipv4_addr", "ip"),
            (7, "ban6-sshd", "ipv6_addr", "ip6"),
        ] {
            v.push(format!(r#"{{"set": {{"family": "inet", "name": "{set}", "table": "hostfw", "type": "{ty}", "handle": {n}, "flags": ["interval", "timeout"]}}}}"#));
            v.push(format!(r#"{{"rule": {{"family": "inet", "table": "hostfw", "chain": "warden", "handle": {}, "expr": [{{"match": {{"op": "==", "left": {{"payload": {{"protocol": "{fam}", "field": "saddr"}}}}, "right": "@{set}"}}}}, {{"drop": null}}]}}}}"#, n + 2));
        }
        v.join(", ")
    }

    #[test]
    fn a_chain_without_hook_goes_into_the_admins_table() {
        let mut a = action(&[("chain_hook", "none"), ("table", "hostfw")]);
        a.holdings.hold(n("10.0.0.1/32"), Some(1600));
        let desired = a.holdings.desired_all(1000);
        let rules = "add rule inet hostfw warden ip saddr @ban4-sshd tcp dport { 22 } counter drop comment \"warden jail sshd\"\n\
                     add rule inet hostfw warden ip6 saddr @ban6-sshd tcp dport { 22 } counter drop comment \"warden jail sshd\"\n";
        let sets = "add set inet hostfw ban4-sshd { type ipv4_addr; flags interval, timeout; }\n\
                    add set inet hostfw ban6-sshd { type ipv6_addr; flags interval, timeout; }\n";
        // Before the admin declared the chain: warden creates it, as a regular chain.
        let (b, removed, added) = a.sync_batch(&hostfw(false, ""), &desired, 1000).unwrap();
        assert_eq!(
            b.text(),
            format!(
                "add table inet hostfw\nadd chain inet hostfw warden\n{sets}{rules}\
                 add element inet hostfw ban4-sshd {{ 10.0.0.1 timeout 10m }}\n"
            )
        );
        assert_eq!((removed, added), (0, 1));
        // The admin's ruleset declares it (empty) and jumps to it: warden fills it and
        // touches nothing of the admin's chain.
        let (b, _, _) = a
            .sync_batch(&hostfw(true, WARDEN_CHAIN), &desired, 1000)
            .unwrap();
        assert_eq!(
            b.text(),
            format!(
                "add table inet hostfw\n{sets}{rules}\
                 add element inet hostfw ban4-sshd {{ 10.0.0.1 timeout 10m }}\n"
            )
        );
        assert!(!b.text().contains("hook"), "{}", b.text());
        // A restart replaces its own rules only (by handle), never the admin's.
        let (b, _, _) = a
            .sync_batch(&hostfw(true, &our_objects()), &desired, 1000)
            .unwrap();
        assert_eq!(
            b.text(),
            format!(
                "add table inet hostfw\n\
                 delete rule inet hostfw warden handle 8\n\
                 delete rule inet hostfw warden handle 9\n{rules}\
                 add element inet hostfw ban4-sshd {{ 10.0.0.1 timeout 10m }}\n"
            )
        );
    }

    #[test]
    fn a_chain_without_hook_never_takes_over_a_base_chain() {
        let a = action(&[
            ("chain_hook", "none"),
            ("table", "hostfw"),
            ("chain", "input"),
        ]);
        let e = a
            .sync_batch(&hostfw(true, ""), &BTreeMap::new(), 1000)
            .unwrap_err();
        assert!(matches!(e, FirewallError::Config(_)), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("jail sshd")
                && msg.contains("chain input of table inet hostfw is a base chain (hook input)")
                && msg.contains("chain_hook = none"),
            "{msg}"
        );
        // Nor does a hooked chain reuse a regular one.
        let a = action(&[("table", "hostfw"), ("chain", "warden")]);
        let e = a
            .sync_batch(&hostfw(true, WARDEN_CHAIN), &BTreeMap::new(), 1000)
            .unwrap_err();
        assert!(e.to_string().contains("is a regular chain"), "{e}");
    }

    #[test]
    fn stop_leaves_the_admins_table_and_a_chain_it_jumps_to() {
        let a = action(&[("chain_hook", "none"), ("table", "hostfw")]);
        let ours = "delete rule inet hostfw warden handle 8\n\
                    delete rule inet hostfw warden handle 9\n\
                    delete set inet hostfw ban4-sshd\n\
                    delete set inet hostfw ban6-sshd\n";
        let p = a.stop_plan(&hostfw(true, &our_objects()));
        assert_eq!(p.batch.text(), ours);
        assert!(p.chain_removal.is_none(), "the admin's jump refers to it");
        assert!(!p.table_removed);
        let p = a.stop_plan(&hostfw(false, &our_objects()));
        assert_eq!(p.batch.text(), ours);
        assert_eq!(
            p.chain_removal.unwrap().text(),
            "delete chain inet hostfw warden\n"
        );
        // Even alone in the table, the table stays: it is the admin's.
        let alone = parse_listing(&format!(r#"{{"nftables": [{}]}}"#, our_objects())).unwrap();
        let p = a.stop_plan(&alone);
        assert_eq!(p.batch.text(), ours);
        assert!(p.chain_removal.is_some() && !p.table_removed);
        // A base chain of warden's own table goes with the table.
        let b = action(&[]);
        let p = b.stop_plan(&parse_listing(r#"{"nftables": [{"chain": {"family": "inet", "table": "warden", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": -10, "policy": "accept"}}]}"#).unwrap());
        assert_eq!(p.batch.text(), "delete table inet warden\n");
        assert!(p.table_removed);
    }

    #[test]
    fn jump_targets_are_read_from_rules_and_verdict_maps() {
        let l = parse_listing(r#"{"nftables": [{"rule": {"family": "inet", "table": "t", "chain": "input", "handle": 6, "expr": [{"vmap": {"key": {"payload": {"protocol": "tcp", "field": "dport"}}, "data": {"set": [[22, {"goto": {"target": "warden"}}], [80, {"jump": {"target": "web"}}]]}}}]}}]}"#).unwrap();
        assert_eq!(l.rules[0].jumps, vec!["warden", "web"]);
    }

    #[test]
    fn kill_scope_follows_ports() {
        let a = action(&[]);
        assert!(matches!(a.cut_scope(), Some(CutScope::Ports { .. })));
        let a = action(&[("kill_states", "all")]);
        assert_eq!(a.cut_scope(), Some(CutScope::All));
        let a = action(&[("kill_states", "none")]);
        assert_eq!(a.cut_scope(), None);
    }
}
