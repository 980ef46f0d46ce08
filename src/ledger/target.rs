//! The canonical text form of a ban target, as stored in the ledger.
//!
//! A target is an [`IpNet`]: a host (/32, /128) or a network. Its key is the network
//! address written at fixed width followed by a three-digit prefix length:
//!
//! - IPv4: `192.000.002.001/032` (19 characters), each octet zero-padded to three digits;
//! - IPv6: `2001:0db8:0000:0000:0000:0000:0000:0000/064` (43 characters), every group
//!   written as four lowercase hex digits.
//!
//! Within a family, comparing keys as strings compares (address, prefix length) as
//! numbers, so address ranges are index range scans. The two families have different key
//! lengths, which is how queries keep them apart. Host bits are cleared and IPv4-mapped
//! IPv6 addresses (`::ffff:a.b.c.d`) become IPv4, so one target has exactly one key.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Length of an IPv4 key.
pub const V4_KEY_LEN: usize = 19;
/// Length of an IPv6 key.
pub const V6_KEY_LEN: usize = 43;

/// The one form of `target` the ledger stores: host bits cleared, IPv4-mapped IPv6
/// turned into IPv4.
pub fn canonical(target: &IpNet) -> IpNet {
    match target.trunc() {
        IpNet::V6(n) => match n.network().to_ipv4_mapped() {
            Some(v4) if n.prefix_len() >= 96 => {
                // The prefix is at most 32 after removing the 96-bit mapping prefix.
                IpNet::V4(Ipv4Net::new(v4, n.prefix_len() - 96).expect("prefix at most 32"))
            }
            _ => IpNet::V6(n),
        },
        v4 => v4,
    }
}

/// The key of `target` (canonicalised first).
pub fn key(target: &IpNet) -> String {
    let t = canonical(target);
    let mut s = addr_text(&t.network());
    let _ = write!(s, "/{:03}", t.prefix_len());
    s
}

/// The fixed-width text of one address (the key without its prefix length).
pub fn addr_text(addr: &IpAddr) -> String {
    let mut s = String::with_capacity(V6_KEY_LEN);
    match addr {
        IpAddr::V4(a) => {
            let o = a.octets();
            let _ = write!(s, "{:03}.{:03}.{:03}.{:03}", o[0], o[1], o[2], o[3]);
        }
        IpAddr::V6(a) => {
            for (i, g) in a.segments().iter().enumerate() {
                if i > 0 {
                    s.push(':');
                }
                let _ = write!(s, "{g:04x}");
            }
        }
    }
    s
}

/// The key range `[low, high]` that holds every key whose address lies inside `target`
/// (networks inside it, and networks that start at its first address).
pub fn range(target: &IpNet) -> (String, String) {
    let t = canonical(target);
    let mut low = addr_text(&t.network());
    low.push_str("/000");
    let mut high = addr_text(&t.broadcast());
    high.push_str("/128");
    (low, high)
}

/// The key of the network of prefix length `plen` that contains `target`, if `plen` is
/// shorter than the target's own prefix.
pub fn supernet_key(target: &IpNet, plen: u8) -> Option<String> {
    let t = canonical(target);
    if plen >= t.prefix_len() {
        return None;
    }
    let n = IpNet::new(t.network(), plen).ok()?;
    Some(key(&n))
}

/// Parses a key back into the target. None when the text is not a key this module wrote.
pub fn parse_key(key: &str) -> Option<IpNet> {
    let (addr, prefix) = key.split_once('/')?;
    if prefix.len() != 3 {
        return None;
    }
    let prefix: u8 = prefix.parse().ok()?;
    match key.len() {
        V4_KEY_LEN => {
            let mut octets = [0u8; 4];
            let mut parts = addr.split('.');
            for o in &mut octets {
                let p = parts.next()?;
                if p.len() != 3 {
                    return None;
                }
                *o = p.parse().ok()?;
            }
            if parts.next().is_some() {
                return None;
            }
            let net = Ipv4Net::new(Ipv4Addr::from(octets), prefix).ok()?;
            (net.trunc() == net).then_some(IpNet::V4(net))
        }
        V6_KEY_LEN => {
            let mut segs = [0u16; 8];
            let mut parts = addr.split(':');
            for s in &mut segs {
                let p = parts.next()?;
                if p.len() != 4 {
                    return None;
                }
                *s = u16::from_str_radix(p, 16).ok()?;
            }
            if parts.next().is_some() {
                return None;
            }
            let net = Ipv6Net::new(Ipv6Addr::from(segs), prefix).ok()?;
            (net.trunc() == net).then_some(IpNet::V6(net))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn keys_are_fixed_width() {
        assert_eq!(key(&net("192.0.2.1/32")), "192.000.002.001/032");
        assert_eq!(key(&net("10.0.0.0/8")), "010.000.000.000/008");
        assert_eq!(
            key(&net("2001:db8::1/128")),
            "2001:0db8:0000:0000:0000:0000:0000:0001/128"
        );
        assert_eq!(key(&net("192.0.2.1/32")).len(), V4_KEY_LEN);
        assert_eq!(key(&net("::/0")).len(), V6_KEY_LEN);
    }

    #[test]
    fn host_bits_are_cleared_and_mapped_addresses_become_ipv4() {
        assert_eq!(key(&net("192.0.2.77/24")), "192.000.002.000/024");
        assert_eq!(
            key(&net("2001:db8::abcd/64")),
            "2001:0db8:0000:0000:0000:0000:0000:0000/064"
        );
        assert_eq!(key(&net("::ffff:192.0.2.1/128")), "192.000.002.001/032");
        assert_eq!(key(&net("::ffff:192.0.2.0/120")), "192.000.002.000/024");
        // Too short a prefix to be a mapped IPv4 network: stays IPv6.
        assert_eq!(key(&net("::ffff:0:0/95")).len(), V6_KEY_LEN);
    }

    #[test]
    fn keys_sort_like_numbers() {
        let mut nets: Vec<IpNet> = [
            "9.0.0.1/32",
            "10.0.0.0/8",
            "10.0.0.0/32",
            "100.0.0.1/32",
            "10.0.0.2/32",
            "2.255.255.255/32",
        ]
        .iter()
        .map(|s| net(s))
        .collect();
        let mut by_key = nets.clone();
        by_key.sort_by_key(key);
        nets.sort_by_key(|n| (n.network(), n.prefix_len()));
        assert_eq!(by_key, nets);

        let a = key(&net("2001:db8::ff/128"));
        let b = key(&net("2001:db8::100/128"));
        let c = key(&net("2001:db9::/128"));
        assert!(a < b && b < c);
    }

    #[test]
    fn keys_round_trip() {
        for s in [
            "192.0.2.1/32",
            "0.0.0.0/0",
            "255.255.255.255/32",
            "10.0.0.0/8",
            "2001:db8::/64",
            "::/0",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128",
        ] {
            let n = net(s);
            assert_eq!(parse_key(&key(&n)), Some(n), "{s}");
        }
    }

    #[test]
    fn garbage_keys_do_not_parse() {
        for k in [
            "",
            "192.0.2.1/32",
            "192.000.002.001/32",
            "192.000.002.001/033",
            "192.000.002.256/032",
            "192.000.002.001-032",
            "192.000.002.001/0x1",
            "192.000.002.001/024",
            "2001:0db8:0000:0000:0000:0000:0000:000g/128",
            "2001:0db8:0000:0000:0000:0000:0000:0001/129",
            "2001:0db8:0000:0000:0000:0000:0000:0001/064",
        ] {
            assert_eq!(parse_key(k), None, "{k:?}");
        }
    }

    #[test]
    fn range_covers_inner_networks_only() {
        let (lo, hi) = range(&net("10.1.0.0/16"));
        assert_eq!(lo, "010.001.000.000/000");
        assert_eq!(hi, "010.001.255.255/128");
        let inside = key(&net("10.1.2.3/32"));
        let same_start_wider = key(&net("10.0.0.0/8"));
        let outside = key(&net("10.2.0.0/32"));
        assert!(lo <= inside && inside <= hi);
        assert!(!(lo <= outside && outside <= hi));
        // Starts below the range even though it contains it; found via supernet_keys.
        assert!(same_start_wider < lo);
    }

    #[test]
    fn supernet_keys_are_shorter_prefixes_only() {
        let t = net("10.1.2.3/32");
        assert_eq!(supernet_key(&t, 0).unwrap(), "000.000.000.000/000");
        assert_eq!(supernet_key(&t, 8).unwrap(), "010.000.000.000/008");
        assert_eq!(supernet_key(&t, 24).unwrap(), "010.001.002.000/024");
        assert_eq!(supernet_key(&t, 32), None);
        assert_eq!(supernet_key(&net("10.1.0.0/16"), 16), None);
        assert_eq!(supernet_key(&net("10.1.0.0/16"), 24), None);
        assert_eq!(
            supernet_key(&net("2001:db8::1/128"), 64).unwrap(),
            "2001:0db8:0000:0000:0000:0000:0000:0000/064"
        );
    }
}
