//! The IPv4/IPv6 packet behind the pflog header and its TCP/UDP/ICMP/ICMPv6 header,
//! decoded field by field so a record cut short by the snap length still yields what it
//! holds.
//!
//! pflogd's default snap lengths (116 bytes on FreeBSD, 160 on OpenBSD) routinely cut
//! packets: behind FreeBSD's 72-byte header and a 40-byte IPv6 header only the TCP ports
//! remain. Whole-header parsers return nothing for such a TCP header, so the fields are
//! read here one by one, and [`Missing`] says where the capture ended.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Serialize, Serializer};

use super::header::Family;

/// An IP protocol number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Protocol(pub u8);

pub(crate) const PROTOCOL_NAMES: [(u8, &str); 12] = [
    (1, "icmp"),
    (2, "igmp"),
    (6, "tcp"),
    (17, "udp"),
    (41, "ipv6"),
    (47, "gre"),
    (50, "esp"),
    (51, "ah"),
    (58, "icmp6"),
    (103, "pim"),
    (112, "carp"),
    (132, "sctp"),
];

impl Protocol {
    pub const ICMP: Protocol = Protocol(1);
    pub const TCP: Protocol = Protocol(6);
    pub const UDP: Protocol = Protocol(17);
    pub const ICMP6: Protocol = Protocol(58);

    pub fn name(self) -> Option<&'static str> {
        PROTOCOL_NAMES
            .iter()
            .find(|(n, _)| *n == self.0)
            .map(|(_, s)| *s)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "{}", self.0),
        }
    }
}

impl Serialize for Protocol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// TCP flag bits (FIN 0x01 ... CWR 0x80).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

/// Flag letters in tcpdump's order; ACK prints as `.`.
const FLAG_LETTERS: [(u8, char); 8] = [
    (0x01, 'F'),
    (0x02, 'S'),
    (0x04, 'R'),
    (0x08, 'P'),
    (0x10, '.'),
    (0x20, 'U'),
    (0x40, 'E'),
    (0x80, 'W'),
];

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;

    pub fn contains(self, bits: u8) -> bool {
        self.0 & bits == bits
    }
}

impl fmt::Display for TcpFlags {
    /// tcpdump's rendering: `S`, `S.`, `R.`, `none` when no bit is set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("none");
        }
        for (bit, c) in FLAG_LETTERS {
            if self.0 & bit != 0 {
                fmt::Write::write_char(f, c)?;
            }
        }
        Ok(())
    }
}

impl Serialize for TcpFlags {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// TCP fields beyond the ports and flags, present when 16 bytes of the header were captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TcpDetail {
    pub seq: u32,
    pub ack: u32,
    pub win: u16,
    /// Header length in bytes (data offset × 4).
    pub header_len: u8,
}

/// ICMP or ICMPv6 type and code; id and sequence for echo messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IcmpInfo {
    #[serde(rename = "type")]
    pub kind: u8,
    pub code: Option<u8>,
    pub echo: Option<(u16, u16)>,
}

/// Where the captured bytes ended before the fields the decoder looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Missing {
    /// No packet bytes after the pflog header.
    Packet,
    /// The IP header is cut before the addresses (one address may still be known).
    IpAddresses,
    /// The IP header is whole but the transport header is cut before the ports (or, for
    /// ICMP, before the type and code).
    Transport,
    /// The TCP header is cut after the ports, before the flags.
    TcpFlags,
    /// The bytes after the pflog header are not an IP header of the expected family.
    BadIpHeader,
}

impl Missing {
    pub fn describe(self) -> &'static str {
        match self {
            Missing::Packet => "no packet captured",
            Missing::IpAddresses => "IP header truncated before the addresses",
            Missing::Transport => "transport header truncated",
            Missing::TcpFlags => "TCP header truncated after the ports",
            Missing::BadIpHeader => "not an IP header",
        }
    }
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

impl Serialize for Missing {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.describe())
    }
}

/// What the packet bytes revealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacketInfo {
    pub family: Option<Family>,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub proto: Option<Protocol>,
    /// The IP datagram's length from its header.
    pub ip_len: Option<u32>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub tcp_flags: Option<TcpFlags>,
    pub tcp: Option<TcpDetail>,
    pub icmp: Option<IcmpInfo>,
    /// Bytes of transport payload according to the headers (TCP/UDP), for display.
    pub payload_len: Option<u32>,
    /// A non-first fragment: it carries no transport header by design.
    pub fragment: bool,
    pub missing: Option<Missing>,
}

fn be16(d: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([d[off], d[off + 1]])
}

fn be32(d: &[u8], off: usize) -> u32 {
    u32::from_be_bytes([d[off], d[off + 1], d[off + 2], d[off + 3]])
}

/// Decodes an IP packet. `hint` is the family from the pflog header, used when the packet
/// is empty; otherwise the version nibble decides, as the bytes are what PF saw.
pub fn decode_packet(d: &[u8], hint: Option<Family>) -> PacketInfo {
    let mut p = PacketInfo {
        family: hint,
        ..PacketInfo::default()
    };
    let Some(&first) = d.first() else {
        p.missing = Some(Missing::Packet);
        return p;
    };
    match first >> 4 {
        4 => decode_v4(d, &mut p),
        6 => decode_v6(d, &mut p),
        _ => p.missing = Some(Missing::BadIpHeader),
    }
    p
}

fn decode_v4(d: &[u8], p: &mut PacketInfo) {
    p.family = Some(Family::Inet);
    let ihl = (d[0] & 0x0f) as usize * 4;
    if ihl < 20 {
        p.missing = Some(Missing::BadIpHeader);
        return;
    }
    if d.len() >= 4 {
        p.ip_len = Some(be16(d, 2) as u32);
    }
    if d.len() >= 10 {
        p.proto = Some(Protocol(d[9]));
    }
    if d.len() >= 16 {
        p.src = Some(IpAddr::V4(Ipv4Addr::new(d[12], d[13], d[14], d[15])));
    }
    if d.len() < 20 {
        p.missing = Some(Missing::IpAddresses);
        return;
    }
    p.dst = Some(IpAddr::V4(Ipv4Addr::new(d[16], d[17], d[18], d[19])));
    if be16(d, 6) & 0x1fff != 0 {
        p.fragment = true;
        return;
    }
    if d.len() < ihl {
        p.missing = Some(Missing::Transport);
        return;
    }
    let end = match p.ip_len {
        Some(l) if (l as usize) >= ihl && (l as usize) < d.len() => l as usize,
        _ => d.len(),
    };
    let ip_payload = p.ip_len.map(|l| l.saturating_sub(ihl as u32));
    decode_transport(&d[ihl..end], d[9], ip_payload, p);
}

/// Extension headers after which the transport header is looked for; more than this many
/// in a row is not a packet PF would log, and the walk must stay bounded.
const MAX_EXTENSION_HEADERS: usize = 8;

fn decode_v6(d: &[u8], p: &mut PacketInfo) {
    p.family = Some(Family::Inet6);
    if d.len() >= 6 {
        p.ip_len = Some(be16(d, 4) as u32 + 40);
    }
    if d.len() >= 24 {
        let a: [u8; 16] = d[8..24].try_into().unwrap_or([0; 16]);
        p.src = Some(IpAddr::V6(Ipv6Addr::from(a)));
    }
    if d.len() < 40 {
        if d.len() >= 7 {
            p.proto = Some(Protocol(d[6]));
        }
        p.missing = Some(Missing::IpAddresses);
        return;
    }
    let a: [u8; 16] = d[24..40].try_into().unwrap_or([0; 16]);
    p.dst = Some(IpAddr::V6(Ipv6Addr::from(a)));
    let mut next = d[6];
    let mut off = 40usize;
    for _ in 0..MAX_EXTENSION_HEADERS {
        let len = match next {
            // hop-by-hop, routing, destination options, mobility, HIP, shim6
            0 | 43 | 60 | 135 | 139 | 140 => match d.get(off + 1) {
                Some(&l) => (l as usize + 1) * 8,
                None => break,
            },
            44 => {
                if d.len() < off + 4 {
                    break;
                }
                if be16(d, off + 2) >> 3 != 0 {
                    p.proto = Some(Protocol(d[off]));
                    p.fragment = true;
                    return;
                }
                8
            }
            51 => match d.get(off + 1) {
                Some(&l) => (l as usize + 2) * 4,
                None => break,
            },
            _ => {
                p.proto = Some(Protocol(next));
                let end = match p.ip_len {
                    Some(l) if (l as usize) >= off && (l as usize) < d.len() => l as usize,
                    _ => d.len(),
                };
                let ip_payload = p.ip_len.map(|l| l.saturating_sub(off as u32));
                decode_transport(&d[off..end], next, ip_payload, p);
                return;
            }
        };
        next = d[off];
        off += len;
        if off > d.len() {
            break;
        }
    }
    p.missing = Some(Missing::Transport);
}

fn decode_transport(t: &[u8], proto: u8, ip_payload: Option<u32>, p: &mut PacketInfo) {
    match proto {
        6 | 17 | 132 => {
            if t.len() < 4 {
                p.missing = Some(Missing::Transport);
                return;
            }
            p.sport = Some(be16(t, 0));
            p.dport = Some(be16(t, 2));
            if proto == 17 {
                if t.len() >= 8 {
                    p.payload_len = Some((be16(t, 4) as u32).saturating_sub(8));
                }
                return;
            }
            if proto != 6 {
                return;
            }
            if t.len() < 14 {
                p.missing = Some(Missing::TcpFlags);
                return;
            }
            p.tcp_flags = Some(TcpFlags(t[13]));
            if t.len() >= 16 {
                let header_len = (t[12] >> 4) * 4;
                p.tcp = Some(TcpDetail {
                    seq: be32(t, 4),
                    ack: be32(t, 8),
                    win: be16(t, 14),
                    header_len,
                });
                p.payload_len = ip_payload.map(|l| l.saturating_sub(header_len as u32));
            }
        }
        1 | 58 => {
            if t.len() < 2 {
                p.missing = Some(Missing::Transport);
                if let Some(&k) = t.first() {
                    p.icmp = Some(IcmpInfo {
                        kind: k,
                        code: None,
                        echo: None,
                    });
                }
                return;
            }
            let echo_types: [u8; 2] = if proto == 1 { [0, 8] } else { [128, 129] };
            let echo =
                (echo_types.contains(&t[0]) && t.len() >= 8).then(|| (be16(t, 4), be16(t, 6)));
            p.icmp = Some(IcmpInfo {
                kind: t[0],
                code: Some(t[1]),
                echo,
            });
            p.payload_len = ip_payload;
        }
        _ => p.payload_len = ip_payload,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn tcp_v4() -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ipv4([198, 51, 100, 7], [192, 0, 2, 10], 64)
            .tcp(41854, 22, 123456789, 65535)
            .syn()
            .write(&mut v, &[])
            .unwrap();
        v
    }

    #[test]
    fn whole_tcp_packet() {
        let p = decode_packet(&tcp_v4(), None);
        assert_eq!(p.family, Some(Family::Inet));
        assert_eq!(p.src, Some("198.51.100.7".parse().unwrap()));
        assert_eq!(p.dst, Some("192.0.2.10".parse().unwrap()));
        assert_eq!(p.proto, Some(Protocol::TCP));
        assert_eq!((p.sport, p.dport), (Some(41854), Some(22)));
        assert_eq!(p.tcp_flags, Some(TcpFlags(TcpFlags::SYN)));
        assert_eq!(p.tcp.unwrap().seq, 123456789);
        assert_eq!(p.tcp.unwrap().win, 65535);
        assert_eq!(p.ip_len, Some(40));
        assert_eq!(p.payload_len, Some(0));
        assert_eq!(p.missing, None);
    }

    #[test]
    fn every_truncation_point_decodes_what_is_there() {
        let full = tcp_v4();
        for cut in 0..full.len() {
            let p = decode_packet(&full[..cut], Some(Family::Inet));
            let expect = match cut {
                0 => Some(Missing::Packet),
                1..=19 => Some(Missing::IpAddresses),
                20..=23 => Some(Missing::Transport),
                24..=33 => Some(Missing::TcpFlags),
                _ => None,
            };
            assert_eq!(p.missing, expect, "cut at {cut}");
            assert_eq!(p.src.is_some(), cut >= 16, "cut at {cut}");
            assert_eq!(p.dport.is_some(), cut >= 24, "cut at {cut}");
        }
    }

    #[test]
    fn ipv6_extension_headers_are_walked() {
        let mut v = Vec::new();
        PacketBuilder::ipv6(
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            64,
        )
        .udp(5353, 53)
        .write(&mut v, &[1, 2, 3])
        .unwrap();
        // Splice a hop-by-hop header (8 bytes, next header UDP) in front of the UDP header.
        let mut w = v[..40].to_vec();
        w[6] = 0;
        let plen = be16(&v, 4) + 8;
        w[4..6].copy_from_slice(&plen.to_be_bytes());
        w.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
        w.extend_from_slice(&v[40..]);
        let p = decode_packet(&w, None);
        assert_eq!(p.proto, Some(Protocol::UDP));
        assert_eq!((p.sport, p.dport), (Some(5353), Some(53)));
        assert_eq!(p.payload_len, Some(3));
        assert_eq!(p.missing, None);
    }

    #[test]
    fn later_fragments_have_no_ports_and_are_not_missing_anything() {
        let mut v = tcp_v4();
        v[6] = 0;
        v[7] = 10;
        let p = decode_packet(&v, None);
        assert!(p.fragment);
        assert_eq!(p.dport, None);
        assert_eq!(p.missing, None);
    }

    #[test]
    fn flags_print_like_tcpdump() {
        assert_eq!(TcpFlags(0x02).to_string(), "S");
        assert_eq!(TcpFlags(0x12).to_string(), "S.");
        assert_eq!(TcpFlags(0x14).to_string(), "R.");
        assert_eq!(TcpFlags(0).to_string(), "none");
        assert_eq!(TcpFlags(0xc2).to_string(), "SEW");
    }
}
