//! Which networks a jail holds, and which of them its set must contain.
//!
//! An interval set refuses overlapping elements, but a jail can hold a network and an
//! address inside it at once (a /64 ban and a manual ban of one of its hosts). The set then
//! holds only the outermost network; the inner ban waits, shadowed, and is written when the
//! outer one is lifted. Bans whose time has run out neither count nor shadow.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::Epoch;
use crate::ledger::target::canonical;

/// Held networks (truncated to their prefix) and when each ban ends (None: never).
#[derive(Debug, Default, Clone)]
pub struct Holdings {
    held: BTreeMap<IpNet, Option<Epoch>>,
}

/// The later of two ends, None (permanent) being the latest.
pub fn later(a: Option<Epoch>, b: Option<Epoch>) -> Option<Epoch> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        _ => None,
    }
}

fn live(expires: Option<Epoch>, now: Epoch) -> bool {
    expires.is_none_or(|e| e > now)
}

impl Holdings {
    pub fn clear(&mut self) {
        self.held.clear();
    }

    /// Records a ban; a ban never shortens one already held for the same network.
    pub fn hold(&mut self, net: IpNet, expires: Option<Epoch>) {
        let net = net.trunc();
        let e = match self.held.get(&net) {
            Some(old) => later(*old, expires),
            None => expires,
        };
        self.held.insert(net, e);
    }

    pub fn release(&mut self, net: IpNet) {
        self.held.remove(&net.trunc());
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether a live ban of a strictly larger network covers `net`.
    pub fn shadowed(&self, net: &IpNet, now: Epoch) -> bool {
        let net = net.trunc();
        (0..net.prefix_len()).any(|len| {
            let sup = IpNet::new(net.addr(), len)
                .expect("shorter prefix is valid")
                .trunc();
            self.held.get(&sup).is_some_and(|e| live(*e, now))
        })
    }

    /// What the set must hold for `net`: Some(end) when it is an element, None when not.
    pub fn desired(&self, net: &IpNet, now: Epoch) -> Option<Option<Epoch>> {
        let net = net.trunc();
        let e = *self.held.get(&net)?;
        (live(e, now) && !self.shadowed(&net, now)).then_some(e)
    }

    /// Held networks strictly inside `net`.
    pub fn inside(&self, net: &IpNet) -> Vec<IpNet> {
        let net = net.trunc();
        let (lo, hi) = match net {
            IpNet::V4(n) => (
                IpNet::V4(Ipv4Net::new(n.network(), 0).expect("prefix 0")),
                IpNet::V4(Ipv4Net::new(n.broadcast(), 32).expect("prefix 32")),
            ),
            IpNet::V6(n) => (
                IpNet::V6(Ipv6Net::new(n.network(), 0).expect("prefix 0")),
                IpNet::V6(Ipv6Net::new(n.broadcast(), 128).expect("prefix 128")),
            ),
        };
        self.held
            .range(lo..=hi)
            .map(|(k, _)| *k)
            .filter(|k| *k != net && net.contains(k))
            .collect()
    }

    /// Every element the set must hold, with its end.
    pub fn desired_all(&self, now: Epoch) -> BTreeMap<IpNet, Option<Epoch>> {
        self.held
            .iter()
            .filter(|(k, e)| live(**e, now) && !self.shadowed(k, now))
            .map(|(k, e)| (*k, *e))
            .collect()
    }
}

/// The smallest set of prefixes covering `start..=end` (for range elements found in a set).
pub fn range_to_nets(start: IpAddr, end: IpAddr) -> Vec<IpNet> {
    match (start, end) {
        (IpAddr::V4(a), IpAddr::V4(b)) if a <= b => {
            ipnet::Ipv4Subnets::new(a, b, 0).map(IpNet::V4).collect()
        }
        (IpAddr::V6(a), IpAddr::V6(b)) if a <= b => {
            ipnet::Ipv6Subnets::new(a, b, 0).map(IpNet::V6).collect()
        }
        _ => Vec::new(),
    }
}

/// The network a ban of `net` covers once widened to at most `cidr4`/`cidr6` bits. An IPv4
/// address that reached us mapped into IPv6 is banned as IPv4: that is the form the kernel
/// matches, and the ledger's canonical form.
pub fn widen(net: IpNet, cidr4: u8, cidr6: u8) -> IpNet {
    let net = canonical(&net);
    let max = match net {
        IpNet::V4(_) => cidr4,
        IpNet::V6(_) => cidr6,
    };
    if net.prefix_len() > max {
        IpNet::new(net.addr(), max).expect("valid prefix").trunc()
    } else {
        net
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn inner_bans_wait_behind_outer_ones() {
        let mut h = Holdings::default();
        h.hold(n("2001:db8::5/128"), Some(200));
        assert_eq!(h.desired(&n("2001:db8::5/128"), 0), Some(Some(200)));
        h.hold(n("2001:db8::/64"), Some(100));
        assert!(h.shadowed(&n("2001:db8::5/128"), 0));
        assert_eq!(h.desired(&n("2001:db8::5/128"), 0), None);
        assert_eq!(h.inside(&n("2001:db8::/64")), vec![n("2001:db8::5/128")]);
        let all = h.desired_all(0);
        assert_eq!(
            all.keys().copied().collect::<Vec<_>>(),
            vec![n("2001:db8::/64")]
        );
        // Once the outer ban has run out, the inner one shows again.
        assert_eq!(h.desired(&n("2001:db8::5/128"), 150), Some(Some(200)));
        h.release(n("2001:db8::/64"));
        assert_eq!(h.desired(&n("2001:db8::5/128"), 0), Some(Some(200)));
    }

    #[test]
    fn inside_finds_only_strict_subnets() {
        let mut h = Holdings::default();
        for s in [
            "10.0.0.0/24",
            "10.0.0.7/32",
            "10.0.1.1/32",
            "10.0.0.128/25",
            "9.255.255.255/32",
        ] {
            h.hold(n(s), None);
        }
        let mut inside = h.inside(&n("10.0.0.0/24"));
        inside.sort();
        assert_eq!(inside, vec![n("10.0.0.7/32"), n("10.0.0.128/25")]);
        assert!(h.inside(&n("10.0.0.7/32")).is_empty());
    }

    #[test]
    fn rebans_never_shorten() {
        let mut h = Holdings::default();
        h.hold(n("10.0.0.1/32"), Some(100));
        h.hold(n("10.0.0.1/32"), Some(50));
        assert_eq!(h.desired(&n("10.0.0.1/32"), 0), Some(Some(100)));
        h.hold(n("10.0.0.1/32"), None);
        assert_eq!(h.desired(&n("10.0.0.1/32"), 0), Some(None));
        assert_eq!(h.desired(&n("10.0.0.1/32"), 1000), Some(None));
    }

    #[test]
    fn widening_and_mapped_addresses() {
        assert_eq!(widen(n("2001:db8::1:2/128"), 32, 64), n("2001:db8::/64"));
        assert_eq!(
            widen(n("2001:db8::1:2/128"), 32, 128),
            n("2001:db8::1:2/128")
        );
        assert_eq!(widen(n("10.1.2.3/32"), 24, 128), n("10.1.2.0/24"));
        assert_eq!(widen(n("::ffff:10.1.2.3/128"), 32, 64), n("10.1.2.3/32"));
        assert_eq!(widen(n("10.1.2.3/16"), 32, 128), n("10.1.0.0/16"));
    }

    #[test]
    fn ranges_become_prefixes() {
        assert_eq!(
            range_to_nets("10.0.0.1".parse().unwrap(), "10.0.0.4".parse().unwrap()),
            vec![n("10.0.0.1/32"), n("10.0.0.2/31"), n("10.0.0.4/32")]
        );
    }
}
