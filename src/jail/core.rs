//! One jail's decision, shared by the daemon and `warden replay`: a failure comes in, the
//! jail resolves it to a target, checks its ignore rules, counts it in the sliding window
//! (weighted for known offenders) and says when to ban.
//!
//! Everything here is synchronous and takes "now" as an argument; what the ledger knows
//! about earlier bans comes through [`PriorSource`], so the daemon can answer from its
//! ledger and replay from its simulation. Recording the ban (escalating its time,
//! touching the firewall) is the caller's business.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use tracing::warn;

use super::dns::Resolve;
use super::escalation::{self, EscalationError, failure_weight};
use super::ignore::{IgnoreError, IgnoreList, IgnoreReason};
use super::target::{Cidr, CidrError};
use super::window::{self, FailureKey, FailureWindow, Outcome};
use crate::Epoch;
use crate::config::{Escalation, JailConfig, UseDns};
use crate::filter::Failure;
use crate::ledger::{Origin, Prior};

/// Bytes one tracked id costs at most, beyond its matched lines (which are shared with the
/// other jails counting the same line): its 80-byte slot (key, one failure inline, list
/// links), as much again of spare room in the slab just after the slab doubled, and its
/// hash-table bucket. Each further failure kept costs 32 bytes more, in one heap block.
/// `docs/daemon.md` explains the bound and how it was measured.
pub const BYTES_PER_TRACKED: usize = 176;

/// A jail's counting and banning rules.
#[derive(Debug, Clone, PartialEq)]
pub struct JailRules {
    pub name: String,
    pub findtime: i64,
    pub maxretry: u32,
    pub maxmatches: u32,
    /// Seconds before escalation; -1 permanent.
    pub bantime: i64,
    pub escalation: Escalation,
    pub cidr: Cidr,
    /// Most ids counted at once (`maxtracked`); the least recently failing is evicted.
    pub maxtracked: usize,
    pub usedns: UseDns,
}

/// A jail whose rules cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RulesError {
    #[error("jail {jail}: {source}")]
    Cidr {
        jail: String,
        #[source]
        source: CidrError,
    },
    #[error("jail {jail}: maxtracked = {value:?}: not a whole number of at least 1")]
    MaxTracked { jail: String, value: String },
    #[error("jail {jail}: {source}")]
    Escalation {
        jail: String,
        #[source]
        source: EscalationError,
    },
    #[error("jail {jail}: {}", .errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Ignore {
        jail: String,
        errors: Vec<IgnoreError>,
    },
}

impl JailRules {
    /// The rules of a resolved jail; `maxtracked`, `cidr4` and `cidr6` are read from its
    /// options.
    pub fn from_config(j: &JailConfig) -> Result<JailRules, RulesError> {
        let cidr = Cidr::from_options(&j.options).map_err(|source| RulesError::Cidr {
            jail: j.name.clone(),
            source,
        })?;
        let maxtracked = match j.options.get("maxtracked").map(|s| s.trim()) {
            None | Some("") => window::DEFAULT_CAPACITY,
            Some(v) => v
                .replace('_', "")
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| RulesError::MaxTracked {
                    jail: j.name.clone(),
                    value: v.to_string(),
                })?,
        };
        if j.escalation.increment {
            escalation::validate(&j.escalation).map_err(|source| RulesError::Escalation {
                jail: j.name.clone(),
                source,
            })?;
        }
        Ok(JailRules {
            name: j.name.clone(),
            findtime: j.findtime,
            maxretry: j.maxretry.max(1),
            maxmatches: j.maxmatches,
            bantime: j.bantime,
            escalation: j.escalation.clone(),
            cidr,
            maxtracked,
            usedns: j.usedns,
        })
    }

    /// The jail's ignore list (host names in `ignoreip` are resolved now).
    pub fn ignore_list(j: &JailConfig) -> Result<IgnoreList, RulesError> {
        IgnoreList::new(
            &j.name,
            &j.ignoreip,
            j.ignoreself,
            j.ignorecommand.as_deref(),
        )
        .map_err(|errors| RulesError::Ignore {
            jail: j.name.clone(),
            errors,
        })
    }

    /// Upper bound of the window's memory in bytes, matched lines excluded.
    pub fn window_bytes(&self) -> usize {
        self.maxtracked.saturating_mul(BYTES_PER_TRACKED)
    }
}

/// A failure as a jail counts it.
#[derive(Debug, Clone)]
pub struct Offense<'a> {
    /// The failure id (address, host name or raw text).
    pub id: &'a str,
    pub addr: Option<IpAddr>,
    /// A captured network's prefix length.
    pub prefix: Option<u8>,
    /// The id is a host name to resolve.
    pub needs_dns: bool,
    /// When it happened (after the time rules).
    pub time: Epoch,
    /// The matched text kept for the ban record (shared by every jail counting it).
    pub line: Option<Arc<str>>,
    pub fields: Option<&'a BTreeMap<String, String>>,
}

impl<'a> Offense<'a> {
    /// A filter's failure counted at `time`.
    pub fn from_failure(f: &'a Failure, time: Epoch) -> Offense<'a> {
        Offense {
            id: &f.id,
            addr: f.addr,
            prefix: f.prefix,
            needs_dns: f.needs_dns,
            time,
            line: f.matches.last().map(|m| Arc::from(m.as_str())),
            fields: Some(&f.fields),
        }
    }

    /// A failure of an address (or network) with no log line (pflog, ledger).
    pub fn of_target(id: &'a str, target: IpNet, time: Epoch, line: Option<Arc<str>>) -> Self {
        Offense {
            id,
            addr: Some(target.addr()),
            prefix: (target.prefix_len() < target.max_prefix_len()).then_some(target.prefix_len()),
            needs_dns: false,
            time,
            line,
            fields: None,
        }
    }
}

/// A jail's decision to ban.
#[derive(Debug, Clone, PartialEq)]
pub struct BanRequest {
    pub jail: String,
    pub target: IpNet,
    /// When the ban starts: the time of the failure that completed the window.
    pub time: Epoch,
    pub failures: u32,
    pub matches: Vec<String>,
    pub fields: BTreeMap<String, String>,
    pub origin: Origin,
}

/// What one failure led to (for the first address it names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Counted,
    Banned,
    Ignored(IgnoreReason),
    /// A host name that resolved to no address, or `usedns = no`.
    Unresolved,
    /// The id is not an address (raw text); it is counted but cannot be banned.
    NoAddress,
}

/// Earlier bans of a target, as the ledger (or a simulation of it) knows them.
pub trait PriorSource {
    /// The earlier bans of `target` in the jail, or in every jail with `overall`.
    fn prior(&mut self, target: &IpNet, overall: bool) -> Prior;
    /// The jail just decided to ban `target` at `at`.
    fn banned(&mut self, _target: &IpNet, _at: Epoch) {}
}

/// No history: every address is a first offender.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoPriors;

impl PriorSource for NoPriors {
    fn prior(&mut self, _: &IpNet, _: bool) -> Prior {
        Prior::default()
    }
}

/// Counters of what the jail did with failures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoreStats {
    pub ignored: u64,
    pub unresolved: u64,
    pub not_address: u64,
    pub bans: u64,
}

/// A jail's failure counting and ban decision.
pub struct JailCore {
    rules: JailRules,
    window: FailureWindow,
    ignore: IgnoreList,
    resolver: Option<Arc<dyn Resolve>>,
    warned_names: HashSet<String>,
    next_raw_warning: Epoch,
    pub stats: CoreStats,
}

impl std::fmt::Debug for JailCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JailCore")
            .field("rules", &self.rules)
            .field("tracked", &self.window.currently_failed())
            .finish_non_exhaustive()
    }
}

/// Most host names remembered as already warned about (`usedns = warn`).
const WARNED_MAX: usize = 10_000;

impl JailCore {
    pub fn new(rules: JailRules, ignore: IgnoreList, resolver: Option<Arc<dyn Resolve>>) -> Self {
        JailCore {
            window: FailureWindow::new(
                rules.findtime,
                rules.maxretry,
                rules.maxmatches,
                rules.maxtracked,
            ),
            rules,
            ignore,
            resolver,
            warned_names: HashSet::new(),
            next_raw_warning: Epoch::MIN,
            stats: CoreStats::default(),
        }
    }

    pub fn rules(&self) -> &JailRules {
        &self.rules
    }

    /// New rules (a reload): the counts are kept and re-read under the new findtime,
    /// maxretry and capacity.
    pub fn reconfigure(&mut self, rules: JailRules, ignore: IgnoreList) {
        self.window.reconfigure(
            rules.findtime,
            rules.maxretry,
            rules.maxmatches,
            rules.maxtracked,
        );
        self.rules = rules;
        self.ignore = ignore;
    }

    /// Counts one failure at `now`; a ban decision is pushed onto `out`. A failure naming
    /// a host that resolves to several addresses counts for each.
    pub fn offense(
        &mut self,
        o: &Offense<'_>,
        now: Epoch,
        priors: &mut dyn PriorSource,
        out: &mut Vec<BanRequest>,
    ) -> Verdict {
        if let Some(addr) = o.addr {
            return self.count_addr(o, addr, o.prefix, now, priors, out);
        }
        if o.needs_dns {
            let addrs = match (self.rules.usedns, &self.resolver) {
                (UseDns::Yes | UseDns::Warn, Some(r)) => r.resolve(o.id),
                _ => Vec::new(),
            };
            if addrs.is_empty() {
                self.stats.unresolved += 1;
                return Verdict::Unresolved;
            }
            if self.rules.usedns == UseDns::Warn && self.warned_names.insert(o.id.to_string()) {
                if self.warned_names.len() > WARNED_MAX {
                    self.warned_names.clear();
                }
                warn!(jail = %self.rules.name, name = o.id, addrs = ?addrs,
                      "Determined the address of a failure with a DNS lookup (usedns = warn).");
            }
            let mut first = None;
            for a in addrs {
                let v = self.count_addr(o, a, None, now, priors, out);
                first.get_or_insert(v);
            }
            return first.unwrap_or(Verdict::Unresolved);
        }
        // A raw id: counted, but a ban needs an address.
        self.stats.not_address += 1;
        let key = FailureKey::Raw(Arc::from(o.id));
        if let Outcome::Ban { .. } = self.window.add(&key, o.time, 1, o.line.clone())
            && now >= self.next_raw_warning
        {
            self.next_raw_warning = now + 3600;
            warn!(jail = %self.rules.name, id = o.id,
                  "A failure id reached maxretry but is not an address; it cannot be banned (logged once an hour).");
        }
        Verdict::NoAddress
    }

    fn count_addr(
        &mut self,
        o: &Offense<'_>,
        addr: IpAddr,
        prefix: Option<u8>,
        now: Epoch,
        priors: &mut dyn PriorSource,
        out: &mut Vec<BanRequest>,
    ) -> Verdict {
        if let Some(reason) = self.ignore.check(addr, now) {
            self.stats.ignored += 1;
            return Verdict::Ignored(reason);
        }
        let target = match prefix {
            Some(p) => self.rules.cidr.widen_net(addr, p),
            None => self.rules.cidr.widen(addr),
        };
        let weight = if self.rules.escalation.increment {
            let prior = priors.prior(&target, self.rules.escalation.overalljails);
            failure_weight(
                &self.rules.escalation,
                prior.bans,
                prior.last_start,
                o.time,
                self.rules.maxretry,
            )
        } else {
            1
        };
        let key = FailureKey::Net(target);
        match self.window.add(&key, o.time, weight, o.line.clone()) {
            Outcome::Counted { .. } => Verdict::Counted,
            Outcome::Ban {
                failures,
                matches,
                last,
                ..
            } => {
                self.stats.bans += 1;
                priors.banned(&target, last);
                out.push(BanRequest {
                    jail: self.rules.name.clone(),
                    target,
                    time: last,
                    failures,
                    matches,
                    fields: o.fields.cloned().unwrap_or_default(),
                    origin: Origin::Filter,
                });
                Verdict::Banned
            }
        }
    }

    /// Drops ids whose last failure is findtime or more before `now`.
    pub fn expire(&mut self, now: Epoch) {
        self.window.expire(now);
    }

    /// Forgets the failures of `target` (after an unban, so it starts from zero).
    pub fn forget(&mut self, target: &IpNet) {
        self.window.remove(&FailureKey::Net(*target));
    }

    pub fn currently_failed(&self) -> usize {
        self.window.currently_failed()
    }

    pub fn total_failed(&self) -> u64 {
        self.window.total_failed()
    }

    pub fn evicted(&self) -> u64 {
        self.window.evicted()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn rules(maxretry: u32) -> JailRules {
        JailRules {
            name: "sshd".into(),
            findtime: 600,
            maxretry,
            maxmatches: maxretry,
            bantime: 600,
            escalation: Escalation {
                increment: false,
                factor: 1.0,
                multipliers: vec![],
                maxtime: None,
                rndtime: None,
                overalljails: false,
            },
            cidr: Cidr::default(),
            maxtracked: 1000,
            usedns: UseDns::Warn,
        }
    }

    fn core(r: JailRules, ignore: &[&str]) -> JailCore {
        let ignore = IgnoreList::new(
            &r.name,
            &ignore.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            false,
            None,
        )
        .unwrap();
        JailCore::new(r, ignore, None)
    }

    fn hit(c: &mut JailCore, addr: &str, t: Epoch, out: &mut Vec<BanRequest>) -> Verdict {
        let a: IpAddr = addr.parse().unwrap();
        let o = Offense {
            id: addr,
            addr: Some(a),
            prefix: None,
            needs_dns: false,
            time: t,
            line: Some(Arc::from("line")),
            fields: None,
        };
        c.offense(&o, t, &mut NoPriors, out)
    }

    #[test]
    fn bans_on_the_maxretry_th_failure_within_findtime() {
        let mut c = core(rules(3), &[]);
        let mut out = Vec::new();
        assert_eq!(hit(&mut c, "192.0.2.7", 0, &mut out), Verdict::Counted);
        assert_eq!(hit(&mut c, "192.0.2.7", 300, &mut out), Verdict::Counted);
        assert_eq!(hit(&mut c, "192.0.2.7", 599, &mut out), Verdict::Banned);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].target, "192.0.2.7/32".parse::<IpNet>().unwrap());
        assert_eq!((out[0].time, out[0].failures), (599, 3));
        assert_eq!(c.currently_failed(), 0);
        assert_eq!(c.total_failed(), 3);
    }

    #[test]
    fn ignored_addresses_are_never_counted() {
        let mut c = core(rules(1), &["192.0.2.0/24"]);
        let mut out = Vec::new();
        assert!(matches!(
            hit(&mut c, "192.0.2.7", 0, &mut out),
            Verdict::Ignored(IgnoreReason::Listed(_))
        ));
        assert!(out.is_empty());
        assert_eq!(c.stats.ignored, 1);
    }

    #[test]
    fn networks_are_counted_together_when_the_jail_bans_prefixes() {
        let mut r = rules(3);
        r.cidr = Cidr { v4: 32, v6: 64 };
        let mut c = core(r, &[]);
        let mut out = Vec::new();
        hit(&mut c, "2001:db8:1:2::1", 0, &mut out);
        hit(&mut c, "2001:db8:1:2::2", 1, &mut out);
        assert_eq!(hit(&mut c, "2001:db8:1:2::3", 2, &mut out), Verdict::Banned);
        assert_eq!(out[0].target, "2001:db8:1:2::/64".parse::<IpNet>().unwrap());
    }

    struct Known(HashMap<IpNet, Prior>);
    impl PriorSource for Known {
        fn prior(&mut self, t: &IpNet, _: bool) -> Prior {
            self.0.get(t).copied().unwrap_or_default()
        }
        fn banned(&mut self, t: &IpNet, at: Epoch) {
            let p = self.0.entry(*t).or_default();
            p.bans += 1;
            p.last_start = Some(at);
        }
    }

    #[test]
    fn known_offenders_weigh_more_when_escalation_is_on() {
        let mut r = rules(5);
        r.escalation.increment = true;
        let mut c = core(r, &[]);
        let t: IpNet = "192.0.2.9/32".parse().unwrap();
        // Banned twice before: each failure counts 2^(2-1)+1 = 3.
        let mut priors = Known(HashMap::from([(
            t,
            Prior {
                bans: 2,
                last_start: Some(0),
            },
        )]));
        let mut out = Vec::new();
        let mk = |time| Offense {
            id: "192.0.2.9",
            addr: Some("192.0.2.9".parse().unwrap()),
            prefix: None,
            needs_dns: false,
            time,
            line: None,
            fields: None,
        };
        assert_eq!(
            c.offense(&mk(100), 100, &mut priors, &mut out),
            Verdict::Counted
        );
        assert_eq!(
            c.offense(&mk(101), 101, &mut priors, &mut out),
            Verdict::Banned
        );
        assert_eq!(priors.0[&t].bans, 3, "the source learns of the ban");
        // A first offender still needs five.
        let mut out = Vec::new();
        for i in 0..4 {
            assert_eq!(
                hit(&mut c, "198.51.100.1", 200 + i, &mut out),
                Verdict::Counted
            );
        }
        assert_eq!(hit(&mut c, "198.51.100.1", 205, &mut out), Verdict::Banned);
    }

    struct FixedDns;
    impl Resolve for FixedDns {
        fn resolve(&self, name: &str) -> Vec<IpAddr> {
            match name {
                "two.example" => vec!["192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap()],
                _ => vec![],
            }
        }
    }

    #[test]
    fn host_names_count_for_each_of_their_addresses() {
        let r = rules(1);
        let ignore = IgnoreList::new("sshd", &[], false, None).unwrap();
        let mut c = JailCore::new(r, ignore, Some(Arc::new(FixedDns)));
        let mk = |id| Offense {
            id,
            addr: None,
            prefix: None,
            needs_dns: true,
            time: 5,
            line: None,
            fields: None,
        };
        let mut out = Vec::new();
        assert_eq!(
            c.offense(&mk("two.example"), 5, &mut NoPriors, &mut out),
            Verdict::Banned
        );
        assert_eq!(out.len(), 2);
        assert_eq!(
            c.offense(&mk("none.example"), 5, &mut NoPriors, &mut out),
            Verdict::Unresolved
        );
        // usedns = no: names are never resolved.
        let mut r = rules(1);
        r.usedns = UseDns::No;
        let ignore = IgnoreList::new("sshd", &[], false, None).unwrap();
        let mut c = JailCore::new(r, ignore, Some(Arc::new(FixedDns)));
        assert_eq!(
            c.offense(&mk("two.example"), 5, &mut NoPriors, &mut out),
            Verdict::Unresolved
        );
    }

    #[test]
    fn raw_ids_are_counted_but_not_banned() {
        let mut c = core(rules(2), &[]);
        let o = Offense {
            id: "user-42",
            addr: None,
            prefix: None,
            needs_dns: false,
            time: 1,
            line: None,
            fields: None,
        };
        let mut out = Vec::new();
        assert_eq!(
            c.offense(&o, 1, &mut NoPriors, &mut out),
            Verdict::NoAddress
        );
        assert_eq!(
            c.offense(&o, 1, &mut NoPriors, &mut out),
            Verdict::NoAddress
        );
        assert!(out.is_empty());
    }

    #[test]
    fn reconfigure_keeps_counts() {
        let mut c = core(rules(5), &[]);
        let mut out = Vec::new();
        for t in 0..3 {
            hit(&mut c, "192.0.2.7", t, &mut out);
        }
        let ignore = IgnoreList::new("sshd", &[], false, None).unwrap();
        c.reconfigure(rules(4), ignore);
        assert_eq!(hit(&mut c, "192.0.2.7", 3, &mut out), Verdict::Banned);
    }

    #[test]
    fn rules_from_options() {
        let cfg = crate::config::load_embedded();
        let mut j = cfg.jails.iter().find(|j| j.name == "sshd").unwrap().clone();
        j.options.insert("maxtracked".into(), "5_000".into());
        j.options.insert("cidr6".into(), "64".into());
        let r = JailRules::from_config(&j).unwrap();
        assert_eq!(r.maxtracked, 5000);
        assert_eq!(r.cidr.v6, 64);
        assert_eq!(r.window_bytes(), 5000 * BYTES_PER_TRACKED);
        j.options.insert("maxtracked".into(), "0".into());
        let e = JailRules::from_config(&j).unwrap_err();
        assert!(e.to_string().contains("jail sshd: maxtracked"), "{e}");
    }
}
