//! Firewall backends behind one trait.
//!
//! One [`Action`] instance serves one (jail, action) pair. The daemon's firewall worker
//! owns every instance, collects ban and unban orders for a short window, and hands each
//! instance whole batches, so a backend only has to turn one slice into as few firewall
//! calls as it can. Whether an entry may be removed is decided before an action is called:
//! the ledger knows which jails still hold an address, and [`Action::entry_key`] tells
//! which jails share one firewall entry.

pub mod build;
pub mod conntrack;
pub mod log;
pub mod nftables;
pub mod pf;
pub mod ports;
pub mod shell;
pub mod tags;

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::Serialize;

use crate::Epoch;
use crate::exec::ExecError;

pub use ports::{PortRange, PortSpec};

/// How much of an address's existing traffic a ban cuts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KillScope {
    /// `all` for all-ports bans, `ports` for port-scoped bans.
    Auto,
    /// Every state/connection of the address.
    All,
    /// Only states/connections between the address and the jail's ports.
    Ports,
    /// Leave existing states alone.
    None,
}

impl KillScope {
    pub fn parse(s: &str) -> Option<KillScope> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Some(KillScope::Auto),
            "all" => Some(KillScope::All),
            "ports" => Some(KillScope::Ports),
            "none" | "no" | "off" | "false" => Some(KillScope::None),
            _ => None,
        }
    }

    /// The concrete scope for a jail whose ban covers `ports`.
    pub fn resolve(self, ports: &PortSpec) -> KillScope {
        match (self, ports) {
            (KillScope::Auto, PortSpec::All) => KillScope::All,
            (KillScope::Auto, PortSpec::Ports(_)) => KillScope::Ports,
            (s, _) => s,
        }
    }
}

/// What a backend needs to know about the jail it serves.
#[derive(Debug, Clone, Serialize)]
pub struct JailSpec {
    pub jail: String,
    /// The ports the ban covers (resolved to numbers), or all ports.
    pub ports: PortSpec,
    /// Protocols the ban covers (`tcp`, `udp`, ...); empty means every protocol.
    pub protocols: Vec<String>,
    pub kill_states: KillScope,
    /// The action's resolved parameters, with the jail's arguments applied.
    pub params: BTreeMap<String, String>,
}

/// One ban as the firewall sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ban {
    pub jail: String,
    /// The banned address or network (a host is a /32 or /128).
    pub target: IpNet,
    pub start: Epoch,
    /// None for a permanent ban.
    pub expires: Option<Epoch>,
    /// Ban time in seconds (-1 permanent), after escalation.
    pub bantime: i64,
    /// How many failures led to it.
    pub failures: u32,
    /// How many times this address was banned before (in this jail, or in all jails with
    /// `bantime.overalljails`), this ban included.
    pub bancount: u32,
    /// The log lines that led to it (capped by maxmatches).
    pub matches: Vec<String>,
    /// Captured filter fields (`F-USER`, ...), named without the `F-` prefix in lowercase.
    pub fields: BTreeMap<String, String>,
    /// True when re-applied from the ledger at start.
    pub restored: bool,
}

impl Ban {
    /// Seconds left at `now`, or None for a permanent ban.
    pub fn remaining(&self, now: Epoch) -> Option<i64> {
        self.expires.map(|e| (e - now).max(0))
    }
}

/// States or connections cut for one ban.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KillReport {
    pub target: IpNet,
    /// The scope that was applied.
    pub scope: KillScope,
    pub killed: u64,
}

/// A backend failure.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("{cmd}: {message}")]
    Command { cmd: String, message: String },
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Unsupported(String),
    /// Some orders of a batch failed; the others took effect and must not be repeated.
    #[error("{} of the batch failed: {first}", failed.len())]
    Partial {
        failed: Vec<IpNet>,
        first: Box<FirewallError>,
    },
}

impl FirewallError {
    /// Whether the worker should retry the batch.
    pub fn is_transient(&self) -> bool {
        match self {
            FirewallError::Exec(e) => e.is_transient(),
            FirewallError::Command { .. } => true,
            FirewallError::Config(_) | FirewallError::Unsupported(_) => false,
            FirewallError::Partial { first, .. } => first.is_transient(),
        }
    }
}

/// One firewall action of one jail.
pub trait Action: Send {
    /// A short description for logs and `warden status` (`pf anchor warden/sshd`).
    fn describe(&self) -> String;

    /// Sets up the jail's firewall structures and makes the kernel hold exactly `active`
    /// (the ledger's current bans for this jail): entries missing are added, entries that
    /// no ban explains are removed.
    fn start(&mut self, active: &[Ban]) -> Result<(), FirewallError>;

    /// Adds a batch of bans.
    fn ban(&mut self, bans: &[Ban]) -> Result<(), FirewallError>;

    /// Cuts existing traffic of freshly banned addresses according to the jail's scope.
    fn kill_states(&mut self, _bans: &[Ban]) -> Result<Vec<KillReport>, FirewallError> {
        Ok(Vec::new())
    }

    /// Removes a batch of bans. The caller has already checked that no other jail that
    /// shares the entry still holds these targets.
    fn unban(&mut self, bans: &[Ban]) -> Result<(), FirewallError>;

    /// The targets the firewall holds for this jail now, when the backend can tell.
    fn list(&mut self) -> Result<Option<Vec<IpNet>>, FirewallError> {
        Ok(None)
    }

    /// Tears down (or, when configured to keep bans over a restart, leaves) the jail's
    /// firewall structures.
    fn stop(&mut self) -> Result<(), FirewallError>;

    /// Identity of the firewall entry a ban of `target` creates. Jails whose actions give
    /// equal keys share one entry, which is removed only when the last of them lets go.
    fn entry_key(&self, target: &IpNet) -> String;
}

/// A jail `sshd` for the backends' unit tests: `ports`, `protocols` and action parameters,
/// kill scope `auto`.
#[cfg(test)]
pub(crate) fn test_spec(ports: &str, protocols: &[&str], params: &[(&str, &str)]) -> JailSpec {
    JailSpec {
        jail: "sshd".into(),
        ports: PortSpec::parse(ports).unwrap(),
        protocols: protocols.iter().map(|p| p.to_string()).collect(),
        kill_states: KillScope::Auto,
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}
