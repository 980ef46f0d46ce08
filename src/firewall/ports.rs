//! Port lists as jails write them (`ssh,sftp`, `http,https`, `0:65535`, `6000-6010`),
//! resolved to numbers.
//!
//! Names resolve through `/etc/services` when it knows them and through a built-in table
//! otherwise, so a host without the services database still gets the common ones right.

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use serde::Serialize;

/// An inclusive range of ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    pub fn single(p: u16) -> Self {
        PortRange { start: p, end: p }
    }
    pub fn contains(&self, p: u16) -> bool {
        self.start <= p && p <= self.end
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// Which ports a ban covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PortSpec {
    All,
    /// Sorted, merged ranges.
    Ports(Vec<PortRange>),
}

impl PortSpec {
    /// Parses a jail's `port` value. Empty, `all`, `any`, `0:65535` and `1:65535` mean all
    /// ports.
    pub fn parse(s: &str) -> Result<PortSpec, String> {
        let s = s.trim();
        if s.is_empty() || s.eq_ignore_ascii_case("all") || s.eq_ignore_ascii_case("any") {
            return Ok(PortSpec::All);
        }
        let mut ranges = Vec::new();
        for item in s.split(|c: char| c == ',' || c.is_whitespace()) {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let (a, b) = match item.split_once([':', '-']) {
                Some((a, b)) => (a, Some(b)),
                None => (item, None),
            };
            let start = resolve_port(a)?;
            let end = match b {
                Some(b) => resolve_port(b)?,
                None => start,
            };
            if end < start {
                return Err(format!("port range {item} ends before it starts"));
            }
            ranges.push(PortRange { start, end });
        }
        if ranges.is_empty() {
            return Ok(PortSpec::All);
        }
        ranges.sort();
        let mut merged: Vec<PortRange> = Vec::with_capacity(ranges.len());
        for r in ranges {
            match merged.last_mut() {
                Some(last) if r.start <= last.end.saturating_add(1) => {
                    last.end = last.end.max(r.end)
                }
                _ => merged.push(r),
            }
        }
        if merged.len() == 1 && merged[0].start <= 1 && merged[0].end == 65535 {
            return Ok(PortSpec::All);
        }
        Ok(PortSpec::Ports(merged))
    }

    pub fn contains(&self, port: u16) -> bool {
        match self {
            PortSpec::All => true,
            PortSpec::Ports(r) => r.iter().any(|r| r.contains(port)),
        }
    }

    pub fn is_all(&self) -> bool {
        matches!(self, PortSpec::All)
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortSpec::All => f.write_str("all"),
            PortSpec::Ports(r) => {
                for (i, r) in r.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{r}")?;
                }
                Ok(())
            }
        }
    }
}

/// Resolves a port number or service name.
pub fn resolve_port(name: &str) -> Result<u16, String> {
    let name = name.trim();
    if let Ok(n) = name.parse::<u32>() {
        return u16::try_from(n).map_err(|_| format!("port {name} is out of range"));
    }
    let key = name.to_ascii_lowercase();
    if let Some(p) = services().get(&key) {
        return Ok(*p);
    }
    BUILTIN
        .iter()
        .find(|(n, _)| *n == key)
        .map(|(_, p)| *p)
        .ok_or_else(|| format!("unknown port name {name:?}"))
}

fn services() -> &'static HashMap<String, u16> {
    static MAP: OnceLock<HashMap<String, u16>> = OnceLock::new();
    MAP.get_or_init(|| {
        let mut map = HashMap::new();
        if let Ok(text) = std::fs::read_to_string("/etc/services") {
            for line in text.lines() {
                let line = line.split('#').next().unwrap_or("");
                let mut words = line.split_whitespace();
                let (Some(name), Some(portproto)) = (words.next(), words.next()) else {
                    continue;
                };
                let Some((port, _proto)) = portproto.split_once('/') else {
                    continue;
                };
                let Ok(port) = port.parse::<u16>() else {
                    continue;
                };
                for n in std::iter::once(name).chain(words) {
                    map.entry(n.to_ascii_lowercase()).or_insert(port);
                }
            }
        }
        map
    })
}

/// Service names used by common jails, for hosts without /etc/services.
const BUILTIN: &[(&str, u16)] = &[
    ("ftp-data", 20),
    ("ftp", 21),
    ("ssh", 22),
    ("sftp", 115),
    ("telnet", 23),
    ("smtp", 25),
    ("domain", 53),
    ("http", 80),
    ("pop3", 110),
    ("imap", 143),
    ("imap2", 143),
    ("ldap", 389),
    ("https", 443),
    ("smtps", 465),
    ("submission", 587),
    ("submissions", 465),
    ("ldaps", 636),
    ("imaps", 993),
    ("pop3s", 995),
    ("mysql", 3306),
    ("postgresql", 5432),
    ("sieve", 4190),
    ("http-alt", 8080),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_ranges_and_all() {
        assert_eq!(PortSpec::parse("").unwrap(), PortSpec::All);
        assert_eq!(PortSpec::parse("0:65535").unwrap(), PortSpec::All);
        assert_eq!(
            PortSpec::parse("http,https").unwrap(),
            PortSpec::Ports(vec![PortRange::single(80), PortRange::single(443)])
        );
        assert_eq!(
            PortSpec::parse("ssh, 2222:2224,2225").unwrap(),
            PortSpec::Ports(vec![
                PortRange::single(22),
                PortRange {
                    start: 2222,
                    end: 2225
                }
            ])
        );
        assert!(PortSpec::parse("nosuchservice").is_err());
        assert!(PortSpec::parse("90:80").is_err());
        assert!(PortSpec::parse("70000").is_err());
    }

    #[test]
    fn contains_and_display() {
        let p = PortSpec::parse("smtp,465,submission").unwrap();
        assert!(p.contains(25) && p.contains(465) && p.contains(587));
        assert!(!p.contains(22));
        assert_eq!(p.to_string(), "25,465,587");
    }
}
