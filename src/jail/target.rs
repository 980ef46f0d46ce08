//! What a jail bans for an offending address: the address itself, or the network around it
//! (`cidr4` / `cidr6` jail options, e.g. the /64 of an IPv6 attacker who can rotate through
//! the 2^64 addresses of its own prefix).

use std::net::IpAddr;

use ipnet::IpNet;

/// Prefix lengths a jail bans at, per address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub v4: u8,
    pub v6: u8,
}

impl Default for Cidr {
    fn default() -> Self {
        Cidr { v4: 32, v6: 128 }
    }
}

/// A `cidr4`/`cidr6` value that is not a prefix length of its family.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key} = {value:?}: not a prefix length between {min} and {max}")]
pub struct CidrError {
    pub key: &'static str,
    pub value: String,
    pub min: u8,
    pub max: u8,
}

/// Shortest prefixes accepted: wider bans would take out whole providers by accident.
const MIN_V4: u8 = 8;
const MIN_V6: u8 = 16;

impl Cidr {
    /// Reads `cidr4` and `cidr6` from a jail's options (absent or empty: single addresses).
    pub fn from_options(
        options: &std::collections::BTreeMap<String, String>,
    ) -> Result<Cidr, CidrError> {
        let read = |key: &'static str, min: u8, max: u8| -> Result<u8, CidrError> {
            match options.get(key).map(|v| v.trim().trim_start_matches('/')) {
                None | Some("") => Ok(max),
                Some(v) => v
                    .parse::<u8>()
                    .ok()
                    .filter(|n| (min..=max).contains(n))
                    .ok_or_else(|| CidrError {
                        key,
                        value: v.to_string(),
                        min,
                        max,
                    }),
            }
        };
        Ok(Cidr {
            v4: read("cidr4", MIN_V4, 32)?,
            v6: read("cidr6", MIN_V6, 128)?,
        })
    }

    /// The target a failure of `addr` bans: the address, or its network. IPv4-mapped IPv6
    /// addresses are treated as IPv4.
    pub fn widen(&self, addr: IpAddr) -> IpNet {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
            a => a,
        };
        let plen = match addr {
            IpAddr::V4(_) => self.v4,
            IpAddr::V6(_) => self.v6,
        };
        IpNet::new(addr, plen)
            .expect("prefix lengths are checked when read")
            .trunc()
    }

    /// The target of a failure that captured a network (`<SUBNET>` with a prefix): never
    /// narrower than the jail's own prefix.
    pub fn widen_net(&self, addr: IpAddr, prefix: u8) -> IpNet {
        let own = self.widen(addr);
        let given = IpNet::new(own.addr(), prefix.min(own.max_prefix_len()))
            .map(|n| n.trunc())
            .unwrap_or(own);
        if given.prefix_len() < own.prefix_len() {
            given
        } else {
            own
        }
    }

    /// Whether bans are single addresses in both families.
    pub fn is_host(&self) -> bool {
        self.v4 == 32 && self.v6 == 128
    }
}

/// The text of a target as users see it: a host without its prefix length, a network with.
pub fn display(t: &IpNet) -> String {
    if t.prefix_len() == t.max_prefix_len() {
        t.addr().to_string()
    } else {
        t.to_string()
    }
}

/// Reads an address or a network as typed by an administrator (`192.0.2.7`,
/// `2001:db8::/64`, `[2001:db8::1]`). Host bits of a network are cleared.
pub fn parse_target(text: &str) -> Option<IpNet> {
    let t = text.trim();
    let t = t
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(t);
    if let Ok(a) = t.parse::<IpAddr>() {
        return Some(crate::ledger::target::canonical(&IpNet::from(a)));
    }
    t.parse::<IpNet>()
        .ok()
        .map(|n| crate::ledger::target::canonical(&n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn opts(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_ban_single_addresses() {
        let c = Cidr::from_options(&opts(&[])).unwrap();
        assert!(c.is_host());
        assert_eq!(
            c.widen("192.0.2.7".parse().unwrap()),
            "192.0.2.7/32".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            c.widen("::ffff:192.0.2.7".parse().unwrap()),
            "192.0.2.7/32".parse::<IpNet>().unwrap()
        );
    }

    #[test]
    fn ipv6_attackers_are_banned_by_prefix() {
        let c = Cidr::from_options(&opts(&[("cidr6", "64"), ("cidr4", "/24")])).unwrap();
        assert_eq!(
            c.widen("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "2001:db8:1:2::/64".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            c.widen("198.51.100.77".parse().unwrap()),
            "198.51.100.0/24".parse::<IpNet>().unwrap()
        );
        // A captured network wider than the jail's prefix wins; a narrower one does not.
        assert_eq!(
            c.widen_net("2001:db8:1:2::9".parse().unwrap(), 48),
            "2001:db8:1::/48".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            c.widen_net("2001:db8:1:2::9".parse().unwrap(), 120),
            "2001:db8:1:2::/64".parse::<IpNet>().unwrap()
        );
    }

    #[test]
    fn bad_prefixes_are_errors_naming_the_option() {
        let e = Cidr::from_options(&opts(&[("cidr6", "4")])).unwrap_err();
        assert_eq!(e.key, "cidr6");
        assert!(e.to_string().contains("between 16 and 128"), "{e}");
        assert!(Cidr::from_options(&opts(&[("cidr4", "33")])).is_err());
        assert!(Cidr::from_options(&opts(&[("cidr4", "x")])).is_err());
    }

    #[test]
    fn typed_targets() {
        assert_eq!(
            parse_target("[2001:db8::1]").unwrap(),
            "2001:db8::1/128".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            parse_target("10.1.2.3/8").unwrap(),
            "10.0.0.0/8".parse::<IpNet>().unwrap()
        );
        assert_eq!(parse_target("host.example"), None);
        assert_eq!(display(&parse_target("10.1.2.3").unwrap()), "10.1.2.3");
        assert_eq!(display(&parse_target("10.0.0.0/8").unwrap()), "10.0.0.0/8");
    }
}
