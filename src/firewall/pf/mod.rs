//! The native PF backend (FreeBSD, OpenBSD): one anchor per jail holding a persistent
//! table and a `block … quick` rule, bans and unbans applied in batches through the
//! table, and the banned address's existing states killed so that a ban takes effect at
//! once (PF matches established states before it evaluates rules).
//!
//! Layout: anchor `<root>/<jail>` (root `warden` by default, `f2b` for fail2ban's
//! layout), table `<tablename>-<jail>` (`warden-sshd`), loaded with one
//! `pfctl -a ANCHOR -f -`. The main ruleset must call the anchor (`anchor "warden/*"`);
//! when it does not, the action says so once, with the line to add, and carries on.
//!
//! Every pfctl call gets numeric addresses only (so no name resolution happens and no
//! per-OS no-DNS flag is needed), on stdin when there are many.
//!
//! Errors: pfctl failures (non-zero exit, timeout) are [`FirewallError::Command`] or
//! [`FirewallError::Exec`] and transient, so the daemon keeps the ban and retries; bad
//! parameters are [`FirewallError::Config`]; a missing pfctl binary is not transient.
//! A table or anchor that vanished behind warden's back (exit 255, "Table does not
//! exist") is rebuilt from what the action holds and the command tried once more.

mod config;
mod ctl;
mod states;

use std::collections::{BTreeSet, HashSet};
use std::sync::{Mutex, OnceLock};

use ipnet::IpNet;
use tracing::{debug, info, warn};

use self::ctl::{Pfctl, Reply, TableCounts, killed_count, show_entries, table_counts};
use self::states::{PfState, in_port_scope, killed_by_net_kill, left_by_net_kill, parse_states};
use super::shell::target_text;
use super::{Action, Ban, FirewallError, JailSpec, KillReport, KillScope};

pub use self::config::{PfConfig, PfOs, pf_ports};

/// Table commands the action issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TableOp {
    Add,
    Delete,
}

impl TableOp {
    fn word(self) -> &'static str {
        match self {
            TableOp::Add => "add",
            TableOp::Delete => "delete",
        }
    }
}

/// The PF action of one jail.
pub struct PfAction {
    cfg: PfConfig,
    ctl: Pfctl,
    /// Detected at start when not configured.
    os: Option<PfOs>,
    /// What this action put in the table: the entries to restore when the table vanishes.
    held: BTreeSet<IpNet>,
    /// Set when the table was found recreated without its rule; cleared by a repair.
    needs_repair: bool,
    warnings: Vec<String>,
}

/// Warnings about the host's PF set-up are shared by all jails of one anchor root; each
/// is logged once per process.
fn warn_once(key: String) -> bool {
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let mut seen = SEEN
        .get_or_init(|| Mutex::new(HashSet::new()))
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    seen.insert(key)
}

/// Anchor names called by `anchor "NAME" …` rules of a `-s rules` listing, without a
/// leading `/`.
fn anchor_calls(rules: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in rules.lines() {
        let mut words = line.split_whitespace().peekable();
        // `-vv` listings number the rules: `@3 anchor …`.
        if words.peek().is_some_and(|w| w.starts_with('@')) {
            words.next();
        }
        if words.next() != Some("anchor") {
            continue;
        }
        let Some(name) = words.next() else { continue };
        if name == "{" {
            continue;
        }
        out.push(name.trim_matches('"').trim_start_matches('/').to_string());
    }
    out
}

fn stdin_of(targets: &[IpNet]) -> String {
    let mut s = String::with_capacity(targets.len() * 16);
    for t in targets {
        s.push_str(&target_text(t));
        s.push('\n');
    }
    s
}

/// Targets as the table stores them: networks without host bits (the kernel refuses
/// them), each once, in order.
fn normalise<'a>(targets: impl IntoIterator<Item = &'a IpNet>) -> Vec<IpNet> {
    targets
        .into_iter()
        .map(IpNet::trunc)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Ok when every order took effect; the error itself when none did; `Partial` naming
/// the failed targets otherwise.
fn finish(
    total: usize,
    failed: Vec<IpNet>,
    first: Option<FirewallError>,
) -> Result<(), FirewallError> {
    match first {
        None => Ok(()),
        Some(e) if failed.len() >= total => Err(e),
        Some(e) => Err(FirewallError::Partial {
            failed,
            first: Box::new(e),
        }),
    }
}

impl PfAction {
    /// Builds the action of `spec.jail` from its parameters (see [`PfConfig`]).
    pub fn new(spec: &JailSpec) -> Result<PfAction, FirewallError> {
        let cfg = PfConfig::from_spec(spec)?;
        Ok(PfAction {
            ctl: Pfctl {
                program: cfg.pfctl.clone(),
                timeout: cfg.timeout,
            },
            os: cfg.os,
            cfg,
            held: BTreeSet::new(),
            needs_repair: false,
            warnings: Vec::new(),
        })
    }

    pub fn config(&self) -> &PfConfig {
        &self.cfg
    }

    /// Problems with the host's PF set-up found by the last start (PF disabled, anchor
    /// not called from the main ruleset), for `warden status`.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The pf.conf line that makes the main ruleset evaluate every jail's anchor.
    pub fn hook_line(&self) -> String {
        format!("anchor \"{}/*\"", self.cfg.root)
    }

    fn anchor_args<'a>(&'a self, rest: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec!["-a", self.cfg.anchor.as_str()];
        v.extend_from_slice(rest);
        v
    }

    /// Loads the anchor's table definition and block rule in one transaction. A ruleset
    /// pfctl refuses to parse is a configuration error: trying again cannot help.
    fn load(&self) -> Result<Reply, FirewallError> {
        let args = self.anchor_args(&["-f", "-"]);
        let reply = self.ctl.run(&args, Some(self.cfg.ruleset()))?;
        if !reply.ok() && reply.stderr.contains("syntax error") {
            return Err(FirewallError::Config(format!(
                "pf action of jail {}: pfctl refused the anchor's ruleset {:?}: {}",
                self.cfg.jail,
                self.cfg.block_rule(),
                reply.stderr.trim().replace('\n', "; ")
            )));
        }
        reply.checked()
    }

    /// pfctl's warnings on success (a table of the same name in another anchor, which
    /// makes rules in the wrong anchor see warden's table or the other way round).
    fn note_warnings(&mut self, reply: &Reply) {
        for line in reply.stderr.lines().filter(|l| l.contains("warning")) {
            warn!(jail = %self.cfg.jail, anchor = %self.cfg.anchor, "The pfctl run warned: {line}");
            self.warnings.push(line.trim().to_string());
        }
    }

    fn table_cmd(&self, cmd: &str, targets: &[IpNet]) -> Result<Reply, FirewallError> {
        let args = self.anchor_args(&["-t", self.cfg.table.as_str(), "-T", cmd, "-f", "-"]);
        self.ctl.run(&args, Some(stdin_of(targets)))
    }

    fn show(&self) -> Result<Option<Vec<IpNet>>, FirewallError> {
        let args = self.anchor_args(&["-t", self.cfg.table.as_str(), "-T", "show"]);
        let reply = self.ctl.run(&args, None)?;
        if reply.table_missing() {
            return Ok(None);
        }
        let reply = reply.checked()?;
        let (nets, other) = show_entries(&reply.stdout);
        if !other.is_empty() {
            warn!(jail = %self.cfg.jail, table = %self.cfg.table, entries = ?other,
                  "The table holds entries warden does not add; they are left out of its list.");
        }
        Ok(Some(nets))
    }

    /// Makes the table hold exactly `want`: one atomic `-T replace` when the set fits a
    /// batch, otherwise the difference to what the table holds in batches of adds and
    /// deletes (FreeBSD refuses table requests above `net.pf.request_maxcount`).
    fn replace(&mut self, want: &[IpNet]) -> Result<TableCounts, FirewallError> {
        if want.len() <= self.cfg.batch_size {
            let reply = self.table_cmd("replace", want)?.checked()?;
            self.note_warnings(&reply);
            return Ok(table_counts(&reply.stderr));
        }
        let have: BTreeSet<IpNet> = self.show()?.unwrap_or_default().into_iter().collect();
        let want_set: BTreeSet<IpNet> = want.iter().copied().collect();
        let add: Vec<IpNet> = want_set.difference(&have).copied().collect();
        let del: Vec<IpNet> = have.difference(&want_set).copied().collect();
        let mut total = TableCounts::default();
        for (op, list) in [(TableOp::Add, add), (TableOp::Delete, del)] {
            for chunk in list.chunks(self.cfg.batch_size) {
                let reply = self.table_cmd(op.word(), chunk)?.checked()?;
                let c = table_counts(&reply.stderr);
                total.added += c.added;
                total.deleted += c.deleted;
                total.created |= c.created;
            }
        }
        Ok(total)
    }

    /// Rebuilds the anchor (rule and table) and puts back what the action holds.
    fn repair(&mut self) -> Result<(), FirewallError> {
        self.load()?;
        let held: Vec<IpNet> = self.held.iter().copied().collect();
        let c = self.replace(&held)?;
        self.needs_repair = false;
        warn!(jail = %self.cfg.jail, anchor = %self.cfg.anchor, table = %self.cfg.table,
              restored = c.added, held = held.len(),
              "Rebuilt the anchor and its table after they vanished.");
        Ok(())
    }

    /// One table command for one chunk, with the missing-table repair.
    fn table_op(&mut self, op: TableOp, chunk: &[IpNet]) -> Result<TableCounts, FirewallError> {
        let reply = self.table_cmd(op.word(), chunk)?;
        if reply.ok() {
            return Ok(table_counts(&reply.stderr));
        }
        if !reply.table_missing() {
            return Err(reply.error());
        }
        warn!(jail = %self.cfg.jail, table = %self.cfg.table, error = %reply.stderr.trim(),
              "The table is gone; rebuilding it.");
        match op {
            TableOp::Add => {
                self.repair()?;
                let reply = self.table_cmd(op.word(), chunk)?.checked()?;
                Ok(table_counts(&reply.stderr))
            }
            // The rebuilt table holds what the action holds minus this chunk, which is
            // the delete's effect; there is nothing left to delete.
            TableOp::Delete => {
                for t in chunk {
                    self.held.remove(t);
                }
                self.repair()?;
                Ok(TableCounts::default())
            }
        }
    }

    fn apply(&mut self, op: TableOp, bans: &[Ban]) -> Result<(), FirewallError> {
        let targets = normalise(bans.iter().map(|b| &b.target));
        if targets.is_empty() {
            return Ok(());
        }
        if self.needs_repair {
            self.repair()?;
        }
        let mut failed = Vec::new();
        let mut first = None;
        let (mut changed, mut calls) = (0u64, 0usize);
        for chunk in targets.chunks(self.cfg.batch_size) {
            calls += 1;
            match self.table_op(op, chunk) {
                Ok(c) => {
                    match op {
                        TableOp::Add => {
                            self.held.extend(chunk.iter().copied());
                            changed += c.added;
                            // `-T add` recreates a table that was killed, but not the
                            // rule that made it block anything, nor the other entries.
                            if c.created {
                                self.needs_repair = true;
                            }
                        }
                        TableOp::Delete => {
                            for t in chunk {
                                self.held.remove(t);
                            }
                            changed += c.deleted;
                        }
                    }
                }
                Err(e) => {
                    failed.extend_from_slice(chunk);
                    first.get_or_insert(e);
                }
            }
        }
        if self.needs_repair {
            warn!(jail = %self.cfg.jail, table = %self.cfg.table,
                  "The table had been removed behind warden's back; rebuilding the anchor.");
            // Adding is idempotent: when the rebuild fails, the whole batch is reported
            // failed so the daemon's retry comes back here and rebuilds first.
            self.repair()?;
        }
        info!(jail = %self.cfg.jail, table = %self.cfg.table, op = op.word(),
              submitted = targets.len(), changed, failed = failed.len(), calls,
              "Applied a batch to the PF table.");
        finish(targets.len(), failed, first)
    }

    /// `pfctl -k TARGET`: every state the address (or network) initiated.
    fn kill_net(&self, target: &IpNet) -> Result<u64, FirewallError> {
        let text = target_text(target);
        let reply = self.ctl.run(&["-k", text.as_str()], None)?.checked()?;
        Ok(killed_count(&reply.stderr).unwrap_or(0))
    }

    /// `pfctl -k id -k ID/CREATOR`: one state; a state that is already gone counts 0.
    fn kill_id(&self, s: &PfState) -> Result<u64, FirewallError> {
        let arg = s.kill_arg();
        let reply = self
            .ctl
            .run(&["-k", "id", "-k", arg.as_str()], None)?
            .checked()?;
        Ok(killed_count(&reply.stderr).unwrap_or(0))
    }

    /// Tells whether PF is enabled: FreeBSD answers `-s Running`; OpenBSD has no such
    /// modifier, and its `-s info` status line is read instead when pfctl offers it.
    fn check_running(&mut self) {
        let key = format!("{}|running", self.cfg.pfctl.display());
        let os = self.os.or_else(PfOs::build_target);
        let mut enabled = None;
        if os != Some(PfOs::OpenBsd) {
            match self.ctl.run(&["-s", "Running"], None) {
                Ok(r) if r.ok() && r.stdout.contains("Enabled") => {
                    self.os = Some(PfOs::FreeBsd);
                    enabled = Some(true);
                }
                Ok(r) if r.stdout.contains("Disabled") => {
                    self.os = Some(PfOs::FreeBsd);
                    enabled = Some(false);
                }
                Ok(r) if r.stderr.contains("Unknown show modifier") => {
                    self.os = Some(PfOs::OpenBsd);
                }
                Ok(r) => {
                    debug!(jail = %self.cfg.jail, code = ?r.code, stderr = %r.stderr.trim(),
                           "Cannot tell whether PF is enabled.");
                }
                Err(e) => {
                    debug!(jail = %self.cfg.jail, error = %e, "Cannot tell whether PF is enabled.")
                }
            }
        }
        if self.os == Some(PfOs::OpenBsd) {
            match self.ctl.run(&["-s", "info"], None) {
                Ok(r) if r.ok() && r.stdout.contains("Status: Enabled") => enabled = Some(true),
                Ok(r) if r.ok() && r.stdout.contains("Status: Disabled") => enabled = Some(false),
                Ok(r) => debug!(jail = %self.cfg.jail, code = ?r.code, stderr = %r.stderr.trim(),
                                "Cannot tell whether PF is enabled."),
                Err(e) => {
                    debug!(jail = %self.cfg.jail, error = %e, "Cannot tell whether PF is enabled.")
                }
            }
        }
        if enabled == Some(false) {
            let text = "PF is disabled: warden keeps its tables up to date but nothing is blocked. \
                        Enable it with `pfctl -e`, and at boot with pf_enable=\"YES\" in /etc/rc.conf \
                        (FreeBSD) or by removing pf=NO from /etc/rc.conf.local (OpenBSD)."
                .to_string();
            if warn_once(key) {
                warn!(jail = %self.cfg.jail, "{text}");
            }
            self.warnings.push(text);
        }
    }

    /// Whether the main ruleset evaluates this jail's anchor: `anchor "ROOT/*"`,
    /// `anchor "ROOT/JAIL"`, or `anchor "ROOT"` whose own rules call `anchor "*"` or
    /// `anchor "JAIL"`.
    fn anchor_is_called(&self) -> Result<bool, FirewallError> {
        let (root, jail) = (&self.cfg.root, &self.cfg.jail);
        let main = self.ctl.run(&["-s", "rules"], None)?.checked()?;
        let calls = anchor_calls(&main.stdout);
        if calls
            .iter()
            .any(|n| *n == format!("{root}/*") || *n == self.cfg.anchor)
        {
            return Ok(true);
        }
        if calls.iter().any(|n| n == root) {
            let inner = self.ctl.run(&["-a", root.as_str(), "-s", "rules"], None)?;
            if inner.ok() {
                let inner = anchor_calls(&inner.stdout);
                return Ok(inner
                    .iter()
                    .any(|n| n == "*" || n == jail || *n == self.cfg.anchor));
            }
        }
        Ok(false)
    }

    fn check_hook(&mut self) {
        let key = format!("{}|hook|{}", self.cfg.pfctl.display(), self.cfg.root);
        match self.anchor_is_called() {
            Ok(true) => {}
            Ok(false) => {
                let text = format!(
                    "PF's main ruleset does not call anchor \"{anchor}\": table <{table}> is kept up to date \
                     but blocks nothing. Add the line\n    {hook}\nto /etc/pf.conf, before the rules that \
                     pass traffic, and reload it with `pfctl -f /etc/pf.conf`.",
                    anchor = self.cfg.anchor,
                    table = self.cfg.table,
                    hook = self.hook_line(),
                );
                if warn_once(key) {
                    warn!(jail = %self.cfg.jail, anchor = %self.cfg.anchor, "{text}");
                }
                self.warnings.push(text);
            }
            Err(e) => {
                let text = format!(
                    "Cannot read PF's main ruleset to check that it calls anchor \"{}\": {e}",
                    self.cfg.anchor
                );
                if warn_once(key) {
                    warn!(jail = %self.cfg.jail, "{text}");
                }
                self.warnings.push(text);
            }
        }
    }
}

impl Action for PfAction {
    fn describe(&self) -> String {
        format!("pf anchor {} table {}", self.cfg.anchor, self.cfg.table)
    }

    fn start(&mut self, active: &[Ban]) -> Result<(), FirewallError> {
        self.warnings.clear();
        let loaded = self.load()?;
        self.note_warnings(&loaded);
        let want = normalise(active.iter().map(|b| &b.target));
        let c = self.replace(&want)?;
        self.held = want.iter().copied().collect();
        self.needs_repair = false;
        info!(jail = %self.cfg.jail, anchor = %self.cfg.anchor, table = %self.cfg.table,
              active = want.len(), added = c.added, deleted = c.deleted,
              "PF anchor loaded and its table reconciled with the active bans.");
        self.check_running();
        self.check_hook();
        Ok(())
    }

    fn ban(&mut self, bans: &[Ban]) -> Result<(), FirewallError> {
        self.apply(TableOp::Add, bans)
    }

    /// One state listing for the whole batch, then, per target: with scope `all`,
    /// `pfctl -k TARGET` when the listing shows states the target initiated, and a kill
    /// by id for each state toward it (the two-address `-k A -k B` form is wrong in
    /// several releases and not used); with scope `ports`, a kill by id for each state
    /// between the target and one of the jail's ports.
    fn kill_states(&mut self, bans: &[Ban]) -> Result<Vec<KillReport>, FirewallError> {
        let scope = self.cfg.kill;
        let targets = normalise(bans.iter().map(|b| &b.target));
        if scope == KillScope::None || targets.is_empty() {
            return Ok(Vec::new());
        }
        let listing = self.ctl.run(&["-vv", "-s", "states"], None)?.checked()?;
        let (states, skipped) = parse_states(&listing.stdout);
        if skipped > 0 {
            warn!(jail = %self.cfg.jail, skipped,
                  "Some entries of the state listing could not be read; they are left alone.");
        }
        let mut gone: HashSet<String> = HashSet::new();
        let mut reports = Vec::with_capacity(targets.len());
        let mut failed = Vec::new();
        let mut first = None;
        let mut calls = 1usize;
        for target in &targets {
            let mut killed = 0u64;
            let mut error = None;
            let mut by_id: Vec<&PfState> = Vec::new();
            match scope {
                KillScope::All => {
                    let initiated: Vec<&PfState> = states
                        .iter()
                        .filter(|s| !gone.contains(&s.id) && killed_by_net_kill(s, target))
                        .collect();
                    if !initiated.is_empty() {
                        calls += 1;
                        match self.kill_net(target) {
                            Ok(n) => {
                                killed += n;
                                gone.extend(initiated.iter().map(|s| s.id.clone()));
                            }
                            Err(e) => error = Some(e),
                        }
                    }
                    by_id.extend(states.iter().filter(|s| left_by_net_kill(s, target)));
                }
                _ => by_id.extend(
                    states
                        .iter()
                        .filter(|s| in_port_scope(s, target, &self.cfg.ports, &self.cfg.protocols)),
                ),
            }
            for s in by_id {
                if gone.contains(&s.id) {
                    continue;
                }
                calls += 1;
                match self.kill_id(s) {
                    Ok(n) => {
                        killed += n;
                        gone.insert(s.id.clone());
                    }
                    Err(e) => {
                        error.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = error {
                warn!(jail = %self.cfg.jail, target = %target, error = %e,
                      "Killing the banned address's states failed.");
                failed.push(*target);
                first.get_or_insert(e);
                continue;
            }
            if killed > 0 {
                info!(jail = %self.cfg.jail, target = %target, scope = ?scope, killed,
                      "Killed the banned address's states.");
            }
            reports.push(KillReport {
                target: *target,
                scope,
                killed,
            });
        }
        info!(jail = %self.cfg.jail, scope = ?scope, targets = targets.len(),
              listed = states.len(), killed = reports.iter().map(|r| r.killed).sum::<u64>(),
              calls, "State kill done.");
        finish(targets.len(), failed, first)?;
        Ok(reports)
    }

    fn unban(&mut self, bans: &[Ban]) -> Result<(), FirewallError> {
        self.apply(TableOp::Delete, bans)
    }

    fn list(&mut self) -> Result<Option<Vec<IpNet>>, FirewallError> {
        Ok(Some(self.show()?.unwrap_or_default()))
    }

    fn stop(&mut self) -> Result<(), FirewallError> {
        if self.cfg.keep_on_stop {
            info!(jail = %self.cfg.jail, anchor = %self.cfg.anchor, held = self.held.len(),
                  "Leaving the PF anchor and its table in place.");
            return Ok(());
        }
        let args = self.anchor_args(&["-F", "all"]);
        let reply = self.ctl.run(&args, None)?;
        if !reply.ok() && !reply.anchor_missing() {
            return Err(reply.error());
        }
        info!(jail = %self.cfg.jail, anchor = %self.cfg.anchor, released = self.held.len(),
              "Flushed the PF anchor's rules and table.");
        self.held.clear();
        Ok(())
    }

    fn entry_key(&self, target: &IpNet) -> String {
        format!(
            "pf:{}:{}:{}",
            self.cfg.anchor,
            self.cfg.table,
            target_text(&target.trunc())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_calls_of_a_listing() {
        let rules = "scrub in all fragment reassemble\nanchor \"warden/*\" all\n@3 anchor \"/f2b\" in on em0 all\nanchor \"other\" all {\npass in all\n";
        assert_eq!(anchor_calls(rules), vec!["warden/*", "f2b", "other"]);
        assert!(anchor_calls("pass in all\nblock drop in all\n").is_empty());
    }

    #[test]
    fn finish_tells_partial_from_total_failure() {
        let t: IpNet = "192.0.2.1/32".parse().unwrap();
        let e = || FirewallError::Command {
            cmd: "pfctl".into(),
            message: "x".into(),
        };
        assert!(finish(2, vec![], None).is_ok());
        assert!(matches!(
            finish(2, vec![t], Some(e())),
            Err(FirewallError::Partial { .. })
        ));
        assert!(matches!(
            finish(1, vec![t], Some(e())),
            Err(FirewallError::Command { .. })
        ));
    }

    #[test]
    fn targets_lose_host_bits_and_duplicates() {
        let a: IpNet = "2001:db8::5/64".parse().unwrap();
        let b: IpNet = "2001:db8::/64".parse().unwrap();
        let c: IpNet = "192.0.2.1/32".parse().unwrap();
        assert_eq!(normalise([&a, &b, &c]), vec![c, b]);
        assert_eq!(stdin_of(&[c, b]), "192.0.2.1\n2001:db8::/64\n");
    }
}
