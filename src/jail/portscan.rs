//! Port-scan detection: a source address that probes at least N distinct destination ports,
//! or N distinct destination addresses, within `findtime` becomes one failure.
//!
//! Fed with the records a pflog jail selects (usually blocked inbound packets), in time
//! order, with the record's own timestamp: the detector never reads the clock, so replays
//! and tests drive it with any time they like.
//!
//! Memory is bounded twice. Per source, a set never holds more than N-1 live entries: the
//! N-th distinct port (or address) turns the source into a failure and its state is
//! dropped, and entries older than `findtime` are pruned whenever the source is touched.
//! Across sources, at most `max_sources` are tracked; when a new source arrives at the cap,
//! the source whose last probe is oldest is evicted with its partial counts. Sources idle
//! longer than `findtime` are therefore always evicted first; only a flood of more than
//! `max_sources` distinct active sources within `findtime` (spoofed SYNs) can push out a
//! real scanner's partial count, which [`PortScanDetector::evicted`] counts.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;

use crate::Epoch;
use crate::source::pflog::PflogEvent;

/// Detector settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortScanConfig {
    /// Distinct (protocol, destination port) pairs that make a failure; 0 disables.
    pub ports: usize,
    /// Distinct destination addresses that make a failure; 0 disables.
    pub hosts: usize,
    /// Seconds a probe counts for.
    pub findtime: i64,
    /// Most source addresses tracked at once.
    pub max_sources: usize,
}

/// Defaults of the `portscan_*` options.
pub const DEFAULT_PORTS: usize = 15;
pub const DEFAULT_MAX_SOURCES: usize = 10_000;
/// Upper bound of a threshold: beyond it the per-source sets stop being small.
pub const MAX_THRESHOLD: usize = 4096;

/// A bad `portscan_*` or `pflog_detect` option.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key} = {value}: {message}")]
pub struct PortScanConfigError {
    pub key: String,
    pub value: String,
    pub message: String,
}

impl PortScanConfig {
    /// Reads the detector from a pflog filter's options: `pflog_detect = portscan` turns it
    /// on (absent or `each` means every selected record is a failure, and None is
    /// returned); `portscan_ports`, `portscan_hosts` and `portscan_maxsources` tune it.
    pub fn from_options(
        options: &BTreeMap<String, String>,
        findtime: i64,
    ) -> Result<Option<PortScanConfig>, PortScanConfigError> {
        let bad = |key: &str, value: &str, message: &str| PortScanConfigError {
            key: key.to_string(),
            value: value.to_string(),
            message: message.to_string(),
        };
        match options.get("pflog_detect").map(|s| s.trim()) {
            None | Some("") | Some("each") => return Ok(None),
            Some("portscan") => {}
            Some(v) => return Err(bad("pflog_detect", v, "expected each or portscan")),
        }
        let num = |key: &str, default: usize, max: usize| -> Result<usize, PortScanConfigError> {
            match options.get(key).map(|s| s.trim()) {
                None | Some("") => Ok(default),
                Some(v) => match v.parse::<usize>() {
                    Ok(n) if n <= max => Ok(n),
                    Ok(_) => Err(bad(key, v, &format!("at most {max}"))),
                    Err(_) => Err(bad(key, v, "not a number")),
                },
            }
        };
        let cfg = PortScanConfig {
            ports: num("portscan_ports", DEFAULT_PORTS, MAX_THRESHOLD)?,
            hosts: num("portscan_hosts", 0, MAX_THRESHOLD)?,
            findtime,
            max_sources: num("portscan_maxsources", DEFAULT_MAX_SOURCES, 10_000_000)?,
        };
        if cfg.ports == 1 || cfg.hosts == 1 {
            return Err(bad(
                "portscan_ports",
                &cfg.ports.to_string(),
                "a threshold of 1 makes every probe a scan; use pflog_detect = each",
            ));
        }
        if cfg.ports == 0 && cfg.hosts == 0 {
            return Err(bad(
                "portscan_ports",
                "0",
                "portscan_ports and portscan_hosts are both 0",
            ));
        }
        if cfg.max_sources == 0 {
            return Err(bad("portscan_maxsources", "0", "must be at least 1"));
        }
        Ok(Some(cfg))
    }
}

/// One probe as the detector sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub src: IpAddr,
    pub dst: Option<IpAddr>,
    /// IP protocol number (a TCP and a UDP probe of one port are two ports).
    pub proto: u8,
    /// None for ICMP and for packets cut before the ports.
    pub dport: Option<u16>,
}

impl Probe {
    /// The probe a pflog record describes; None without a source address.
    pub fn from_event(ev: &PflogEvent) -> Option<Probe> {
        Some(Probe {
            src: ev.src?,
            dst: ev.dst,
            proto: ev.proto.map_or(0, |p| p.0),
            dport: ev.dport,
        })
    }
}

/// Which threshold a scan crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanKind {
    Ports,
    Hosts,
}

/// A source that crossed a threshold: one failure for the jail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanFailure {
    pub src: IpAddr,
    pub kind: ScanKind,
    /// Time of the probe that crossed the threshold.
    pub time: Epoch,
    /// Time of the oldest probe still counted.
    pub first: Epoch,
    /// The distinct destinations counted: `tcp/22`-style ports or addresses, sorted.
    pub targets: Vec<String>,
}

impl fmt::Display for ScanFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 10;
        let what = match self.kind {
            ScanKind::Ports => "ports",
            ScanKind::Hosts => "hosts",
        };
        write!(
            f,
            "{} probed {} distinct {what} in {} s: ",
            self.src,
            self.targets.len(),
            self.time - self.first
        )?;
        for (i, t) in self.targets.iter().take(SHOWN).enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(t)?;
        }
        if self.targets.len() > SHOWN {
            f.write_str(",...")?;
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Source {
    /// (protocol << 16 | port, last seen).
    ports: Vec<(u32, Epoch)>,
    hosts: Vec<(IpAddr, Epoch)>,
    /// Stamp of the latest touch; LRU entries with another stamp are stale.
    stamp: u64,
    last: Epoch,
}

/// The detector's state; one per port-scan jail.
#[derive(Debug)]
pub struct PortScanDetector {
    cfg: PortScanConfig,
    sources: HashMap<IpAddr, Source>,
    /// Touch order, oldest first, with stale entries skipped lazily.
    lru: VecDeque<(IpAddr, u64)>,
    next_stamp: u64,
    evicted: u64,
}

fn upsert<K: PartialEq>(set: &mut Vec<(K, Epoch)>, key: K, at: Epoch) {
    match set.iter_mut().find(|(k, _)| *k == key) {
        Some(e) => e.1 = e.1.max(at),
        None => set.push((key, at)),
    }
}

fn proto_name(p: u8) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        132 => "sctp".into(),
        n => format!("proto{n}"),
    }
}

impl PortScanDetector {
    pub fn new(cfg: PortScanConfig) -> PortScanDetector {
        PortScanDetector {
            cfg,
            sources: HashMap::new(),
            lru: VecDeque::new(),
            next_stamp: 0,
            evicted: 0,
        }
    }

    pub fn config(&self) -> &PortScanConfig {
        &self.cfg
    }

    /// Sources tracked now.
    pub fn tracked(&self) -> usize {
        self.sources.len()
    }

    /// Sources evicted by the cap while still inside `findtime` (partial counts lost).
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Counts one probe seen at `at`; returns the failure when the source crosses a
    /// threshold (its state is then cleared, so a continuing scan fails again after N more).
    pub fn observe(&mut self, at: Epoch, probe: Probe) -> Option<ScanFailure> {
        let counts_port = self.cfg.ports > 0 && probe.dport.is_some();
        let counts_host = self.cfg.hosts > 0 && probe.dst.is_some();
        if !counts_port && !counts_host {
            return None;
        }
        if !self.sources.contains_key(&probe.src) {
            while self.sources.len() >= self.cfg.max_sources {
                if !self.evict_oldest(at) {
                    break;
                }
            }
        }
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        let horizon = at - self.cfg.findtime;
        let src = self.sources.entry(probe.src).or_default();
        src.stamp = stamp;
        src.last = src.last.max(at);
        src.ports.retain(|&(_, t)| t > horizon);
        src.hosts.retain(|&(_, t)| t > horizon);
        if let (true, Some(port)) = (counts_port, probe.dport) {
            upsert(&mut src.ports, (probe.proto as u32) << 16 | port as u32, at);
        }
        if let (true, Some(dst)) = (counts_host, probe.dst) {
            upsert(&mut src.hosts, dst, at);
        }
        let kind = if counts_port && src.ports.len() >= self.cfg.ports {
            Some(ScanKind::Ports)
        } else if counts_host && src.hosts.len() >= self.cfg.hosts {
            Some(ScanKind::Hosts)
        } else {
            None
        };
        let Some(kind) = kind else {
            self.lru.push_back((probe.src, stamp));
            self.compact_lru();
            return None;
        };
        let src = self.sources.remove(&probe.src).unwrap_or_default();
        let (first, mut targets): (Epoch, Vec<String>) = match kind {
            ScanKind::Ports => {
                let mut keys: Vec<(u32, Epoch)> = src.ports;
                keys.sort_unstable();
                (
                    keys.iter().map(|k| k.1).min().unwrap_or(at),
                    keys.iter()
                        .map(|&(k, _)| format!("{}/{}", proto_name((k >> 16) as u8), k & 0xffff))
                        .collect(),
                )
            }
            ScanKind::Hosts => (
                src.hosts.iter().map(|h| h.1).min().unwrap_or(at),
                src.hosts.iter().map(|h| h.0.to_string()).collect(),
            ),
        };
        if kind == ScanKind::Hosts {
            targets.sort();
        }
        Some(ScanFailure {
            src: probe.src,
            kind,
            time: at,
            first,
            targets,
        })
    }

    /// Drops every source whose last probe is older than `findtime` at `now` (call it from
    /// a timer to give memory back when traffic stops).
    pub fn prune(&mut self, now: Epoch) {
        let horizon = now - self.cfg.findtime;
        while let Some(&(ip, stamp)) = self.lru.front() {
            match self.sources.get(&ip) {
                Some(s) if s.stamp == stamp => {
                    if s.last > horizon {
                        break;
                    }
                    self.sources.remove(&ip);
                }
                _ => {}
            }
            self.lru.pop_front();
        }
    }

    /// Evicts the least recently touched source; false when there is none.
    fn evict_oldest(&mut self, now: Epoch) -> bool {
        while let Some((ip, stamp)) = self.lru.pop_front() {
            if let Some(s) = self.sources.get(&ip)
                && s.stamp == stamp
            {
                if s.last > now - self.cfg.findtime {
                    self.evicted += 1;
                }
                self.sources.remove(&ip);
                return true;
            }
        }
        false
    }

    /// Keeps the touch queue within a constant factor of the tracked sources by dropping
    /// stale entries, so a few busy sources cannot grow it without bound.
    fn compact_lru(&mut self) {
        if self.lru.len() <= 2 * self.sources.len() + 64 {
            return;
        }
        let sources = &self.sources;
        self.lru
            .retain(|(ip, stamp)| sources.get(ip).is_some_and(|s| s.stamp == *stamp));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(ports: usize, hosts: usize, max_sources: usize) -> PortScanConfig {
        PortScanConfig {
            ports,
            hosts,
            findtime: 60,
            max_sources,
        }
    }

    fn probe(src: &str, dst: &str, port: u16) -> Probe {
        Probe {
            src: src.parse().unwrap(),
            dst: Some(dst.parse().unwrap()),
            proto: 6,
            dport: Some(port),
        }
    }

    #[test]
    fn one_address_touching_thirty_ports_fails_once_at_the_thirtieth() {
        let mut d = PortScanDetector::new(cfg(30, 0, 100));
        let t0 = 1_700_000_000;
        for i in 0..29u16 {
            assert_eq!(
                d.observe(t0 + i as i64, probe("198.51.100.7", "192.0.2.10", 1000 + i)),
                None
            );
        }
        // A repeated port does not count twice.
        assert_eq!(
            d.observe(t0 + 29, probe("198.51.100.7", "192.0.2.10", 1000)),
            None
        );
        let f = d
            .observe(t0 + 30, probe("198.51.100.7", "192.0.2.10", 1029))
            .expect("30th distinct port is a failure");
        assert_eq!(f.src, "198.51.100.7".parse::<IpAddr>().unwrap());
        assert_eq!(f.kind, ScanKind::Ports);
        assert_eq!(f.targets.len(), 30);
        assert_eq!(f.targets[0], "tcp/1000");
        assert_eq!(f.time - f.first, 30 - 1);
        assert!(
            f.to_string()
                .starts_with("198.51.100.7 probed 30 distinct ports in 29 s: tcp/1000,tcp/1001")
        );
        assert_eq!(d.tracked(), 0, "state is cleared after the failure");
        assert_eq!(
            d.observe(t0 + 31, probe("198.51.100.7", "192.0.2.10", 2000)),
            None
        );
    }

    #[test]
    fn thirty_addresses_touching_one_port_each_are_no_scan() {
        let mut d = PortScanDetector::new(cfg(30, 0, 100));
        for i in 0..30u8 {
            let src = format!("203.0.113.{i}");
            assert_eq!(d.observe(100, probe(&src, "192.0.2.10", 22)), None);
        }
        assert_eq!(d.tracked(), 30);
    }

    #[test]
    fn probes_spread_wider_than_findtime_are_no_scan() {
        let mut d = PortScanDetector::new(cfg(30, 0, 100));
        // One probe every 3 s: at most 20 fall inside any 60 s window.
        for i in 0..200u16 {
            assert_eq!(
                d.observe(1000 + 3 * i as i64, probe("198.51.100.7", "192.0.2.10", i)),
                None,
                "probe {i}"
            );
        }
        // The same 30 ports at one per 2 s (30 within 60 s) are a scan.
        let mut hit = None;
        for i in 0..30u16 {
            hit = hit.or(d.observe(5000 + 2 * i as i64, probe("198.51.100.8", "192.0.2.10", i)));
        }
        assert!(hit.is_some());
    }

    #[test]
    fn tcp_and_udp_of_one_port_are_two_ports_and_icmp_counts_only_hosts() {
        let mut d = PortScanDetector::new(cfg(2, 3, 100));
        let mut p = probe("198.51.100.7", "192.0.2.1", 53);
        assert_eq!(d.observe(1, p), None);
        p.proto = 17;
        let f = d.observe(2, p).unwrap();
        assert_eq!(f.targets, vec!["tcp/53", "udp/53"]);
        let icmp = |dst: &str| Probe {
            src: "198.51.100.9".parse().unwrap(),
            dst: Some(dst.parse().unwrap()),
            proto: 1,
            dport: None,
        };
        assert_eq!(d.observe(3, icmp("192.0.2.1")), None);
        assert_eq!(d.observe(4, icmp("192.0.2.2")), None);
        let f = d.observe(5, icmp("192.0.2.3")).unwrap();
        assert_eq!(f.kind, ScanKind::Hosts);
        assert_eq!(f.targets, vec!["192.0.2.1", "192.0.2.2", "192.0.2.3"]);
    }

    #[test]
    fn a_flood_of_distinct_sources_stays_within_the_cap() {
        let max = 1000;
        let mut d = PortScanDetector::new(cfg(10, 0, max));
        // The scanner probes slowly among a flood of one-shot sources.
        let scanner = "198.51.100.7";
        let mut found = false;
        for i in 0..200_000u32 {
            let src = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let p = Probe {
                src,
                dst: Some("192.0.2.10".parse().unwrap()),
                proto: 6,
                dport: Some(22),
            };
            assert_eq!(d.observe(1000 + (i / 10_000) as i64, p), None);
            assert!(d.tracked() <= max);
            assert!(d.lru.len() <= 2 * max + 64 + 1);
        }
        assert_eq!(d.tracked(), max);
        assert!(d.evicted() > 0, "active sources were evicted");
        // The per-source sets are bounded by the threshold.
        for (i, port) in (0..9u16).enumerate() {
            assert_eq!(
                d.observe(2000 + i as i64, probe(scanner, "192.0.2.10", port)),
                None
            );
        }
        assert!(d.sources.values().all(|s| s.ports.len() < 10));
        found |= d.observe(2010, probe(scanner, "192.0.2.10", 99)).is_some();
        assert!(
            found,
            "a scanner not pushed out by the flood is still found"
        );
        d.prune(2010 + 61);
        assert_eq!(d.tracked(), 0);
        assert!(d.lru.is_empty());
    }

    #[test]
    fn idle_sources_are_evicted_before_active_ones() {
        let mut d = PortScanDetector::new(cfg(3, 0, 2));
        assert_eq!(d.observe(0, probe("198.51.100.1", "192.0.2.1", 1)), None);
        assert_eq!(d.observe(100, probe("198.51.100.2", "192.0.2.1", 1)), None);
        assert_eq!(d.observe(101, probe("198.51.100.2", "192.0.2.1", 2)), None);
        // Full: the idle .1 goes, without counting as a lost active source.
        assert_eq!(d.observe(102, probe("198.51.100.3", "192.0.2.1", 1)), None);
        assert_eq!(d.evicted(), 0);
        assert!(
            d.observe(103, probe("198.51.100.2", "192.0.2.1", 3))
                .is_some()
        );
    }

    #[test]
    fn options() {
        let mut o = BTreeMap::new();
        assert_eq!(PortScanConfig::from_options(&o, 60).unwrap(), None);
        o.insert("pflog_detect".to_string(), "portscan".to_string());
        let c = PortScanConfig::from_options(&o, 60).unwrap().unwrap();
        assert_eq!(
            (c.ports, c.hosts, c.max_sources, c.findtime),
            (DEFAULT_PORTS, 0, DEFAULT_MAX_SOURCES, 60)
        );
        o.insert("portscan_ports".to_string(), "x".to_string());
        assert_eq!(
            PortScanConfig::from_options(&o, 60)
                .unwrap_err()
                .to_string(),
            "portscan_ports = x: not a number"
        );
        o.insert("portscan_ports".to_string(), "0".to_string());
        assert!(PortScanConfig::from_options(&o, 60).is_err());
        o.insert("portscan_hosts".to_string(), "8".to_string());
        assert_eq!(
            PortScanConfig::from_options(&o, 60).unwrap().unwrap().hosts,
            8
        );
        o.insert("pflog_detect".to_string(), "guess".to_string());
        assert!(PortScanConfig::from_options(&o, 60).is_err());
    }
}
