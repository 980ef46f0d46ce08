//! Turning a captured failure id into an address the way fail2ban does.
//!
//! fail2ban parses `ip4`/`ip6` captures as addresses of that family, an `<F-ID>` capture as
//! "an address if it is one" (after stripping `[...]` and reading a `/prefix`), and keeps
//! anything else as the raw text. Invalid addresses (`192.030.0.6`: leading zeros are not
//! accepted by `inet_pton`, nor by Rust's parser) stay raw text too. IPv4-mapped IPv6
//! addresses become IPv4. The text form is what `inet_ntop` prints, which for IPv6 differs
//! from Rust's `Display` in one case: an address whose first 96 bits are zero (and that is
//! not `::` or `::x`) is printed with a dotted IPv4 tail.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// How to read a captured id (fail2ban's `cidr` argument to `IPAddr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cidr {
    /// Keep the text as it is (`usedns = raw`).
    Raw,
    /// An address of either family, `[...]` and `/prefix` accepted.
    Unspecified,
    /// An IPv4 address only.
    V4,
    /// An IPv6 address only.
    V6,
    /// An address of either family, masked to this prefix.
    Prefix(u32),
}

/// A converted id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    /// fail2ban's text for the id (normalised address, or the raw text).
    pub text: String,
    pub addr: Option<IpAddr>,
    /// The prefix length when narrower than a single address.
    pub prefix: Option<u8>,
}

impl Converted {
    fn raw(text: &str) -> Converted {
        Converted {
            text: text.to_string(),
            addr: None,
            prefix: None,
        }
    }
}

/// Converts `text` as `IPAddr(text, cidr)` would. An unreadable prefix after `/` is an
/// error (fail2ban raises there and drops the line).
pub fn convert(text: &str, cidr: Cidr) -> Result<Converted, String> {
    match cidr {
        Cidr::Raw => Ok(Converted::raw(text)),
        Cidr::V4 => Ok(parse_family(text, true, false, None)),
        Cidr::V6 => Ok(parse_family(text, false, true, None)),
        Cidr::Prefix(p) => Ok(parse_family(text, true, true, Some(p))),
        Cidr::Unspecified => {
            let mut s = text;
            if s.len() > 2 && s.starts_with('[') && s.ends_with(']') {
                s = &s[1..s.len() - 1];
            }
            match s.split_once('/') {
                None => Ok(parse_family(s, true, true, None)),
                Some((ip, mask)) => {
                    let plen = if mask.contains('.') || mask.contains(':') {
                        mask_to_prefix(mask)
                    } else {
                        mask.trim()
                            .parse::<i64>()
                            .map_err(|_| format!("invalid prefix length in {text:?}"))?
                    };
                    if plen < 0 {
                        // A negative prefix selects a family in fail2ban; never written in logs.
                        return Ok(Converted::raw(ip));
                    }
                    Ok(parse_family(ip, true, true, Some(plen as u32)))
                }
            }
        }
    }
}

fn parse_family(text: &str, v4: bool, v6: bool, prefix: Option<u32>) -> Converted {
    if v4 && let Ok(a) = text.parse::<Ipv4Addr>() {
        let mut bits = u32::from(a);
        let mut plen = None;
        if let Some(p) = prefix {
            if p < 32 {
                bits &= !(u32::MAX.checked_shr(p).unwrap_or(0));
            }
            if p > 0 && p < 32 {
                plen = Some(p as u8);
            }
        }
        let addr = Ipv4Addr::from(bits);
        let text = match plen {
            Some(p) => format!("{addr}/{p}"),
            // The parser takes only the canonical dotted quad, so an unmasked address is
            // already written as inet_ntop writes it.
            None if bits == u32::from(a) => text.to_string(),
            None => addr.to_string(),
        };
        return Converted {
            text,
            addr: Some(IpAddr::V4(addr)),
            prefix: plen,
        };
    }
    if v6 && let Ok(a) = text.parse::<Ipv6Addr>() {
        let mut bits = u128::from(a);
        let mut plen = None;
        match prefix {
            Some(p) => {
                if p < 128 {
                    bits &= !(u128::MAX.checked_shr(p).unwrap_or(0));
                }
                if p > 0 && p < 128 {
                    plen = Some(p as u8);
                }
            }
            None => {
                if let Some(v4) = a.to_ipv4_mapped() {
                    return Converted {
                        text: v4.to_string(),
                        addr: Some(IpAddr::V4(v4)),
                        prefix: None,
                    };
                }
            }
        }
        let addr = Ipv6Addr::from(bits);
        let text = match plen {
            Some(p) => format!("{}/{p}", ntop6(&addr)),
            None => ntop6(&addr),
        };
        return Converted {
            text,
            addr: Some(IpAddr::V6(addr)),
            prefix: plen,
        };
    }
    Converted::raw(text)
}

/// Prefix length of a dotted or colon mask (`255.255.255.0` → 24): leading one bits.
fn mask_to_prefix(mask: &str) -> i64 {
    match mask.parse::<IpAddr>() {
        Ok(IpAddr::V4(m)) => u32::from(m).leading_ones() as i64,
        Ok(IpAddr::V6(m)) => u128::from(m).leading_ones() as i64,
        Err(_) => 0,
    }
}

/// IPv6 text as glibc's `inet_ntop` writes it.
pub fn ntop6(a: &Ipv6Addr) -> String {
    let w = a.segments();
    if w[..6].iter().all(|&x| x == 0) && w[6] != 0 {
        let [.., b12, b13, b14, b15] = a.octets();
        return format!("::{b12}.{b13}.{b14}.{b15}");
    }
    a.to_string()
}

/// A host-name capture that is really an IPv4 address, as fail2ban's `searchIP` finds
/// one before resolving. (Its IPv6 branch never returns a value, so IPv6 text is not an
/// address here either; a host-name capture cannot hold a colon anyway.)
pub fn search_ip(text: &str) -> Option<Converted> {
    text.parse::<Ipv4Addr>()
        .ok()
        .map(|_| parse_family(text, true, false, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(text: &str, cidr: Cidr) -> Converted {
        convert(text, cidr).unwrap()
    }

    #[test]
    fn families_and_raw() {
        assert_eq!(c("1.2.3.4", Cidr::V4).text, "1.2.3.4");
        assert_eq!(
            c("1.2.3.4", Cidr::V4).addr,
            Some("1.2.3.4".parse().unwrap())
        );
        assert_eq!(c("1.2.3.4", Cidr::V6).addr, None);
        assert_eq!(c("192.030.0.6", Cidr::V4), Converted::raw("192.030.0.6"));
        assert_eq!(c("2001:DB8::1", Cidr::V6).text, "2001:db8::1");
        assert_eq!(c("::ffff:c000:201", Cidr::V6).text, "192.0.2.1");
        assert_eq!(c("::ffff:192.0.2.1", Cidr::Unspecified).text, "192.0.2.1");
        assert_eq!(c("1.2.3.4", Cidr::Raw), Converted::raw("1.2.3.4"));
        assert_eq!(
            c("user@host", Cidr::Unspecified),
            Converted::raw("user@host")
        );
    }

    #[test]
    fn brackets_and_prefixes() {
        assert_eq!(c("[2001:db8::1]", Cidr::Unspecified).text, "2001:db8::1");
        let n = c("192.0.2.77/24", Cidr::Unspecified);
        assert_eq!(n.text, "192.0.2.0/24");
        assert_eq!(n.prefix, Some(24));
        assert_eq!(
            c("192.0.2.77/255.255.0.0", Cidr::Unspecified).text,
            "192.0.0.0/16"
        );
        assert_eq!(c("192.0.2.77", Cidr::Prefix(0)).text, "0.0.0.0");
        assert_eq!(c("192.0.2.77", Cidr::Prefix(40)).text, "192.0.2.77");
        assert_eq!(c("2001:db8::1", Cidr::Prefix(32)).text, "2001:db8::/32");
        assert!(convert("1.2.3.4/x", Cidr::Unspecified).is_err());
    }

    #[test]
    fn inet_ntop_compatible_text() {
        for (a, want) in [
            ("::102:304", "::1.2.3.4"),
            ("::0:1:2", "::0.1.0.2"),
            ("::102", "::102"),
            ("::1", "::1"),
            ("::", "::"),
            ("1:0:0:2:0:0:3:4", "1::2:0:0:3:4"),
            ("::1:0:1", "::1:0:1"),
        ] {
            assert_eq!(ntop6(&a.parse().unwrap()), want, "{a}");
        }
    }

    #[test]
    fn search_ip_accepts_whole_addresses_only() {
        assert_eq!(search_ip("1.2.3.4").unwrap().text, "1.2.3.4");
        assert!(search_ip("::1").is_none());
        assert!(search_ip("host.example").is_none());
        assert!(search_ip("1.2.3.4x").is_none());
    }
}
