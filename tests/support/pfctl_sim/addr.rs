//! Addresses as pfctl reads and prints them: `host()` for table entries (numeric only:
//! the simulator has no resolver and no interfaces), `pfctl_addrprefix()` for `-k`/`-K`,
//! `strtonum(3)`, and `inet_ntop(3)` output.

use std::cmp::Reverse;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::os::Os;

/// An address with a prefix length; bits beyond the prefix are kept as given so that the
/// kernel-side validation can reject them as the real kernel does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Net {
    pub ip: IpAddr,
    pub prefix: u8,
}

impl Net {
    pub fn host_bits(&self) -> u8 {
        if self.ip.is_ipv4() { 32 } else { 128 }
    }

    pub fn is_v6(&self) -> bool {
        self.ip.is_ipv6()
    }

    /// `pfr_validate_addr()`: no bit set beyond the prefix.
    pub fn is_valid(&self) -> bool {
        self.prefix <= self.host_bits() && masked(self.ip, self.prefix) == self.ip
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match_prefix(self.ip, self.prefix, ip)
    }

    /// The canonical key of the state file: `addr/prefix`.
    pub fn key(&self) -> String {
        format!("{}/{}", ntop(self.ip), self.prefix)
    }

    /// Kernel radix order: IPv4 before IPv6, numeric, more specific first.
    pub fn sort_key(&self) -> (u8, u128, Reverse<u8>) {
        (
            u8::from(self.is_v6()),
            ip_bits(self.ip),
            Reverse(self.prefix),
        )
    }
}

impl fmt::Display for Net {
    /// `inet_ntop()` plus `/prefix` unless it is a host route (`print_addrx`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", ntop(self.ip))?;
        if self.prefix < self.host_bits() {
            write!(f, "/{}", self.prefix)?;
        }
        Ok(())
    }
}

pub fn ip_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

pub fn masked(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix.min(32)))
            };
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix.min(128)))
            };
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

/// `PF_MATCHA()`: both sides masked, same family.
pub fn match_prefix(net: IpAddr, prefix: u8, ip: IpAddr) -> bool {
    net.is_ipv4() == ip.is_ipv4() && masked(net, prefix) == masked(ip, prefix)
}

/// `inet_ntop(3)` of the BSD libcs, including the embedded-IPv4 forms.
pub fn ntop(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => {
            let w = a.segments();
            let v4 = || Ipv4Addr::new((w[6] >> 8) as u8, w[6] as u8, (w[7] >> 8) as u8, w[7] as u8);
            // inet_ntop6() writes an embedded IPv4 address after 96 zero bits (unless the
            // rest is ::/::1) and after ::ffff:.
            let compat = w[..6].iter().all(|&x| x == 0) && (w[6] != 0 || w[7] > 1);
            if compat {
                format!("::{}", v4())
            } else {
                a.to_string()
            }
        }
    }
}

/// `strtonum(3)`: decimal, optional sign and leading blanks, whole string, range checked.
pub fn strtonum(s: &str, min: i64, max: i64) -> Result<i64, &'static str> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("invalid");
    }
    let mut v: i128 = 0;
    for b in digits.bytes() {
        v = (v * 10 + i128::from(b - b'0')).min(i128::from(i64::MAX) + 1);
    }
    let v = if neg { -v } else { v };
    if v < i128::from(min) {
        Err("too small")
    } else if v > i128::from(max) {
        Err("too large")
    } else {
        Ok(v as i64)
    }
}

/// `strtol(s, &end, 0)` that must consume the whole string (the netmask check of `host()`).
fn strtol_base0(s: &str) -> Option<i64> {
    let t = s.trim_start_matches([' ', '\t']);
    let (neg, rest) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (radix, digits) =
        if let Some(h) = rest.strip_prefix("0x").or_else(|| rest.strip_prefix("0X")) {
            (16, h)
        } else if rest.len() > 1 && rest.starts_with('0') {
            (8, &rest[1..])
        } else {
            (10, rest)
        };
    if digits.is_empty() {
        return None;
    }
    let v = i64::from_str_radix(digits, radix).ok()?;
    Some(if neg { -v } else { v })
}

/// `inet_net_pton(AF_INET, "a[.b[.c[.d]]]/bits")`.
fn inet_net_pton4(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (addr, bits) = s.split_once('/')?;
    if bits.is_empty() || !bits.bytes().all(|b| b.is_ascii_digit()) || bits.len() > 3 {
        return None;
    }
    let bits: u8 = bits.parse().ok().filter(|b| *b <= 32)?;
    let parts: Vec<&str> = addr.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut octets = [0u8; 4];
    for (i, p) in parts.iter().enumerate() {
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        octets[i] = p.parse::<u16>().ok().filter(|v| *v <= 255)? as u8;
    }
    Some((Ipv4Addr::from(octets), bits))
}

/// pfctl's `host()` restricted to numeric forms. The error is the exact line `host()`
/// writes to stderr (it does not go through `warnx`, so there is no `pfctl:` prefix).
pub fn host(s: &str) -> Result<Net, String> {
    let (ps, v6mask) = match s.rfind('/') {
        Some(i) => {
            let p = &s[i..];
            match strtol_base0(&p[1..]) {
                Some(m) if m <= 128 => (&s[..i], m),
                _ => return Err(format!("invalid netmask '{p}'\n")),
            }
        }
        None => (s, 128),
    };
    if s.contains('/') {
        if let Some((a, bits)) = inet_net_pton4(s) {
            return Ok(Net {
                ip: IpAddr::V4(a),
                prefix: bits,
            });
        }
    } else if let Ok(a) = s.parse::<Ipv4Addr>() {
        return Ok(Net {
            ip: IpAddr::V4(a),
            prefix: 32,
        });
    }
    if (0..=128).contains(&v6mask)
        && let Ok(a) = ps.parse::<Ipv6Addr>()
    {
        return Ok(Net {
            ip: IpAddr::V6(a),
            prefix: v6mask as u8,
        });
    }
    Err(format!("no IP address found for {s}\n"))
}

/// A table entry key of the state file: `addr` or `addr/prefix`, no stray host bits.
pub fn parse_key(s: &str) -> Result<Net, String> {
    let (a, p) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let ip: IpAddr = a.parse().map_err(|_| format!("invalid address '{s}'"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match p {
        None => max,
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|v| *v <= max)
            .ok_or_else(|| format!("invalid prefix in '{s}'"))?,
    };
    let n = Net { ip, prefix };
    if !n.is_valid() {
        return Err(format!("host bits set beyond the prefix in '{s}'"));
    }
    Ok(n)
}

/// A numeric host for `getaddrinfo(3)` with `AI_NUMERICHOST`.
pub fn numeric_host(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>().ok()
}

/// `pfctl_addrprefix()`: `HOST[/len]` for `-k`/`-K`. The error is the `errx` text.
pub fn addrprefix(s: &str, os: Os) -> Result<(IpAddr, u8), String> {
    let (a, p) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let ip = numeric_host(a).ok_or_else(|| format!("getaddrinfo: {}", os.gai_noname()))?;
    let max: u8 = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match p {
        None => max,
        Some(p) => strtonum(p, 0, i64::from(max)).map_err(|e| format!("prefix is {e}: {p}"))? as u8,
    };
    Ok((ip, prefix))
}

/// `pfctl_parse_host()` for `-k key`: `a.b.c.d:port`, `addr[port]`; FreeBSD also takes
/// a bare address as port 0, OpenBSD rejects it.
pub fn parse_key_host(s: &str, os: Os) -> Option<(IpAddr, u16)> {
    let (host, port) = if let (Some(b), Some(e)) = (s.find('['), s.rfind(']')) {
        if e < b {
            return None;
        }
        let h = s[..b].parse::<Ipv6Addr>().ok()?;
        (IpAddr::V6(h), Some(&s[b + 1..e]))
    } else if let Some(c) = s.find(':') {
        let h = s[..c].parse::<Ipv4Addr>().ok()?;
        (IpAddr::V4(h), Some(&s[c + 1..]))
    } else {
        if os == Os::OpenBsd {
            return None;
        }
        (numeric_host(s)?, None)
    };
    let port = match port {
        None => 0,
        Some(p) => service_port(p)?,
    };
    Some((host, port))
}

/// A numeric service or one of the few names a test may plausibly use.
fn service_port(p: &str) -> Option<u16> {
    if let Ok(n) = p.parse::<u16>() {
        return Some(n);
    }
    let n = match p {
        "ssh" => 22,
        "smtp" => 25,
        "domain" => 53,
        "http" => 80,
        "pop3" => 110,
        "imap" => 143,
        "https" => 443,
        "submission" => 587,
        "imaps" => 993,
        "pop3s" => 995,
        _ => return None,
    };
    Some(n)
}
