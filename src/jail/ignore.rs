//! Addresses a jail never bans: `ignoreip` (addresses, networks, host names), `ignoreself`
//! (the host's own addresses) and `ignorecommand` (an outside check, cached).

use std::collections::HashMap;
use std::net::{IpAddr, ToSocketAddrs};
use std::time::Duration;

use ipnet::IpNet;
use tracing::warn;

use crate::Epoch;
use crate::exec::Cmd;
use crate::firewall::tags::{render_dynamic, render_static};

/// Why an address is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IgnoreReason {
    /// Inside an `ignoreip` entry (shown as written).
    Listed(String),
    /// One of the host's own addresses.
    Own,
    /// `ignorecommand` said so.
    Command,
}

/// How long an `ignorecommand` verdict is reused.
const COMMAND_CACHE_SECS: i64 = 300;
const COMMAND_CACHE_MAX: usize = 10_000;

/// A jail's ignore rules.
#[derive(Debug, Clone, Default)]
pub struct IgnoreList {
    nets: Vec<(IpNet, String)>,
    own: Vec<IpAddr>,
    command: Option<String>,
    jail: String,
    cache: HashMap<IpAddr, (bool, Epoch)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ignoreip entry {entry:?}: {reason}")]
pub struct IgnoreError {
    pub entry: String,
    pub reason: String,
}

impl IgnoreList {
    /// Builds the list. Host names are resolved now (and on reload); an entry that
    /// resolves to nothing is an error the caller reports.
    pub fn new(
        jail: &str,
        ignoreip: &[String],
        ignoreself: bool,
        ignorecommand: Option<&str>,
    ) -> Result<IgnoreList, Vec<IgnoreError>> {
        let mut nets = Vec::new();
        let mut errors = Vec::new();
        for entry in ignoreip
            .iter()
            .flat_map(|e| e.split(|c: char| c == ',' || c.is_whitespace()))
            .filter(|e| !e.is_empty())
        {
            match parse_entry(entry) {
                Ok(list) => nets.extend(list.into_iter().map(|n| (n, entry.to_string()))),
                Err(reason) => errors.push(IgnoreError {
                    entry: entry.to_string(),
                    reason,
                }),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(IgnoreList {
            nets,
            own: if ignoreself {
                own_addresses()
            } else {
                Vec::new()
            },
            command: ignorecommand
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from),
            jail: jail.to_string(),
            cache: HashMap::new(),
        })
    }

    /// Whether `addr` (or the whole network `target`) must not be banned. Runs the
    /// ignore command (blocking, bounded by a timeout) when the cheap checks pass.
    pub fn check(&mut self, addr: IpAddr, now: Epoch) -> Option<IgnoreReason> {
        let addr = canonical(addr);
        if let Some((_, entry)) = self.nets.iter().find(|(n, _)| n.contains(&addr)) {
            return Some(IgnoreReason::Listed(entry.clone()));
        }
        if self.own.contains(&addr) {
            return Some(IgnoreReason::Own);
        }
        let cmd = self.command.clone()?;
        if let Some((verdict, at)) = self.cache.get(&addr)
            && now - *at < COMMAND_CACHE_SECS
        {
            return verdict.then_some(IgnoreReason::Command);
        }
        let verdict = self.run_command(&cmd, addr);
        if self.cache.len() >= COMMAND_CACHE_MAX {
            self.cache
                .retain(|_, (_, at)| now - *at < COMMAND_CACHE_SECS);
            if self.cache.len() >= COMMAND_CACHE_MAX {
                self.cache.clear();
            }
        }
        self.cache.insert(addr, (verdict, now));
        verdict.then_some(IgnoreReason::Command)
    }

    fn run_command(&self, cmd: &str, addr: IpAddr) -> bool {
        let mut props = std::collections::BTreeMap::new();
        props.insert("name".to_string(), self.jail.clone());
        let rendered = render_static(cmd, &props, None).unwrap_or_else(|_| cmd.to_string());
        let mut values = std::collections::BTreeMap::new();
        values.insert("ip".to_string(), addr.to_string());
        let script = render_dynamic(&rendered, &values, &Default::default());
        match Cmd::new("/bin/sh")
            .args(script.argv())
            .timeout(Duration::from_secs(10))
            .run()
        {
            Ok(out) if out.code == Some(0) => true,
            Ok(out) if out.code == Some(1) => false,
            Ok(out) => {
                warn!(jail = %self.jail, %addr, code = ?out.code, stderr = %out.stderr_text().trim(),
                      "Ignore command failed; the address is not ignored.");
                false
            }
            Err(e) => {
                warn!(jail = %self.jail, %addr, error = %e, "Ignore command failed; the address is not ignored.");
                false
            }
        }
    }

    /// Number of ignore entries (networks after resolution).
    pub fn len(&self) -> usize {
        self.nets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty() && self.own.is_empty() && self.command.is_none()
    }
}

/// IPv4-mapped IPv6 addresses compare as IPv4.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

fn parse_entry(entry: &str) -> Result<Vec<IpNet>, String> {
    if let Ok(net) = entry.parse::<IpNet>() {
        return Ok(vec![net.trunc()]);
    }
    if let Ok(addr) = entry.parse::<IpAddr>() {
        return Ok(vec![IpNet::from(canonical(addr))]);
    }
    // A prefix written with an IPv4 netmask: 10.0.0.0/255.0.0.0.
    if let Some((a, m)) = entry.split_once('/')
        && let (Ok(IpAddr::V4(a)), Ok(IpAddr::V4(m))) = (a.parse(), m.parse())
    {
        let prefix = u32::from(m).leading_ones() as u8;
        if u32::from(m).count_ones() == u32::from(prefix) {
            return ipnet::Ipv4Net::new(a, prefix)
                .map(|n| vec![IpNet::V4(n).trunc()])
                .map_err(|e| e.to_string());
        }
        return Err("netmask is not contiguous".into());
    }
    if entry.contains('/') || !entry.chars().any(|c| c.is_ascii_alphabetic()) {
        return Err("not an address, a network or a host name".into());
    }
    let addrs: Vec<IpNet> = (entry, 0)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve: {e}"))?
        .map(|sa| IpNet::from(canonical(sa.ip())))
        .collect();
    if addrs.is_empty() {
        return Err("resolves to no address".into());
    }
    Ok(addrs)
}

/// The host's own addresses (every interface), plus the loopback networks.
pub fn own_addresses() -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = vec![
        IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
    ];
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for ifa in addrs {
            let Some(sa) = ifa.address else { continue };
            if let Some(v4) = sa.as_sockaddr_in() {
                out.push(IpAddr::V4(v4.ip()));
            } else if let Some(v6) = sa.as_sockaddr_in6() {
                out.push(IpAddr::V6(v6.ip()));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> IgnoreList {
        IgnoreList::new(
            "t",
            &entries.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            false,
            None,
        )
        .unwrap()
    }

    #[test]
    fn addresses_networks_and_netmasks() {
        let mut l = list(&[
            "192.0.2.7",
            "10.0.0.0/8 172.16.0.0/255.240.0.0",
            "2001:db8::/32",
        ]);
        assert_eq!(
            l.check("192.0.2.7".parse().unwrap(), 0),
            Some(IgnoreReason::Listed("192.0.2.7".into()))
        );
        assert!(l.check("10.200.1.1".parse().unwrap(), 0).is_some());
        assert!(l.check("172.31.255.1".parse().unwrap(), 0).is_some());
        assert!(l.check("172.32.0.1".parse().unwrap(), 0).is_none());
        assert!(l.check("2001:db8:1::1".parse().unwrap(), 0).is_some());
        assert!(l.check("::ffff:10.1.2.3".parse().unwrap(), 0).is_some());
        assert!(l.check("198.51.100.1".parse().unwrap(), 0).is_none());
    }

    #[test]
    fn host_names_resolve() {
        let mut l = list(&["localhost"]);
        assert!(l.check("127.0.0.1".parse().unwrap(), 0).is_some());
    }

    #[test]
    fn bad_entries_are_reported_each() {
        let errs = IgnoreList::new(
            "t",
            &["10.0.0.0/33 1.2.3.4/255.0.255.0 ok.invalid.".to_string()],
            false,
            None,
        )
        .unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[1].reason.contains("contiguous"));
    }

    #[test]
    fn ignoreself_covers_loopback() {
        let mut l = IgnoreList::new("t", &[], true, None).unwrap();
        assert_eq!(
            l.check("127.0.0.1".parse().unwrap(), 0),
            Some(IgnoreReason::Own)
        );
        assert_eq!(l.check("::1".parse().unwrap(), 0), Some(IgnoreReason::Own));
    }

    #[test]
    fn ignorecommand_verdicts_are_cached() {
        let dir = tempfile::tempdir().unwrap();
        let count = dir.path().join("count");
        let cmd = format!(
            "echo x >> {}; case <ip> in 192.0.2.*) exit 0;; *) exit 1;; esac",
            count.display()
        );
        let mut l = IgnoreList::new("t", &[], false, Some(&cmd)).unwrap();
        assert_eq!(
            l.check("192.0.2.9".parse().unwrap(), 0),
            Some(IgnoreReason::Command)
        );
        assert_eq!(l.check("198.51.100.9".parse().unwrap(), 0), None);
        assert_eq!(
            l.check("192.0.2.9".parse().unwrap(), 10),
            Some(IgnoreReason::Command)
        );
        let runs = std::fs::read_to_string(&count).unwrap().lines().count();
        assert_eq!(runs, 2, "the third check is served from the cache");
        l.check("192.0.2.9".parse().unwrap(), 10 + COMMAND_CACHE_SECS);
        assert_eq!(std::fs::read_to_string(&count).unwrap().lines().count(), 3);
    }
}
