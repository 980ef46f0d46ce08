//! `struct pfloghdr`, the header PF puts in front of every logged packet, in its three
//! layouts: OpenBSD (length 100), FreeBSD (length 69) and the older 61-byte one (FreeBSD up
//! to 13, NetBSD, macOS).
//!
//! The layout is chosen by the header's own length byte, as tcpdump does; the packet starts
//! at that length rounded up to 4. Rule numbers and `ridentifier` are big-endian; the
//! uid/pid fields are in the logging host's byte order, which is the byte order of the pcap
//! file pflogd wrote, so the caller says which one it is.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Serialize, Serializer};

use super::error::ErrorKind;

/// Smallest header length accepted (the legacy layout).
pub const MIN_HEADER_LEN: u8 = 61;
/// Largest header length accepted (the OpenBSD layout).
pub const MAX_HEADER_LEN: u8 = 100;
/// `length` of the FreeBSD layout with `ridentifier`.
pub const FREEBSD_HEADER_LEN: u8 = 69;
/// pid value PF writes when no process is known (`NO_PID` on both BSDs).
const NO_PID: u32 = 100_000;

/// Which `struct pfloghdr` a record carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// length 100: adds `rewritten`, `naf` and the translated addresses and ports.
    OpenBsd,
    /// length 69: adds `ridentifier`.
    FreeBsd,
    /// length 61 (or any other accepted length): the common prefix only.
    Legacy,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::OpenBsd => "openbsd",
            Layout::FreeBsd => "freebsd",
            Layout::Legacy => "legacy",
        }
    }
}

/// The rule's action (`PF_PASS`, `PF_DROP`, ...), kept as the raw code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Action(pub u8);

/// Action names indexed by code; the same numbering on FreeBSD and OpenBSD (13-15 are
/// OpenBSD only).
pub(crate) const ACTION_NAMES: [&str; 16] = [
    "pass",
    "block",
    "scrub",
    "noscrub",
    "nat",
    "nonat",
    "binat",
    "nobinat",
    "rdr",
    "nordr",
    "synproxy-drop",
    "defer",
    "match",
    "divert",
    "rt",
    "afrt",
];

impl Action {
    pub const PASS: Action = Action(0);
    pub const BLOCK: Action = Action(1);

    /// The name PF's tools use, None for codes no BSD defines.
    pub fn name(self) -> Option<&'static str> {
        ACTION_NAMES.get(self.0 as usize).copied()
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "unkn({})", self.0),
        }
    }
}

/// Why PF logged the packet (`PFRES_*`), kept as the raw code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reason(pub u8);

/// Reason names indexed by code. Code 15 is `map-failed` on FreeBSD and `translate` on
/// OpenBSD; 16 (`no-route`) is OpenBSD only.
pub(crate) const REASON_NAMES: [&str; 17] = [
    "match",
    "bad-offset",
    "fragment",
    "short",
    "normalize",
    "memory",
    "bad-timestamp",
    "congestion",
    "ip-option",
    "proto-cksum",
    "state-mismatch",
    "state-insert",
    "state-limit",
    "src-limit",
    "synproxy",
    "map-failed",
    "no-route",
];

impl Reason {
    pub const MATCH: Reason = Reason(0);

    /// The name for this code in the given layout's operating system.
    pub fn name(self, layout: Layout) -> Option<&'static str> {
        if self.0 == 15 && layout == Layout::OpenBsd {
            return Some("translate");
        }
        REASON_NAMES.get(self.0 as usize).copied()
    }
}

/// The direction PF saw the packet in (`PF_INOUT`, `PF_IN`, `PF_OUT`, OpenBSD `PF_FWD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Direction(pub u8);

pub(crate) const DIRECTION_NAMES: [&str; 4] = ["in/out", "in", "out", "fwd"];

impl Direction {
    pub const IN: Direction = Direction(1);
    pub const OUT: Direction = Direction(2);

    pub fn name(self) -> Option<&'static str> {
        DIRECTION_NAMES.get(self.0 as usize).copied()
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "unkn({})", self.0),
        }
    }
}

/// A NUL-padded 16-byte name from the header (interface or ruleset), kept inline so a
/// decoded record allocates nothing. Bytes outside printable ASCII become `?`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ShortName {
    len: u8,
    buf: [u8; 16],
}

impl ShortName {
    pub fn from_field(field: &[u8]) -> ShortName {
        let mut buf = [0u8; 16];
        let mut len = 0;
        for &b in field.iter().take(16) {
            if b == 0 {
                break;
            }
            buf[len] = if (0x20..0x7f).contains(&b) { b } else { b'?' };
            len += 1;
        }
        ShortName {
            len: len as u8,
            buf,
        }
    }

    pub fn as_str(&self) -> &str {
        // Only printable ASCII is ever stored, so this cannot fail.
        std::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("")
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Debug for ShortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ShortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for ShortName {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ShortName {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for ShortName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Address family as written in `af`: 2 is IPv4 everywhere, IPv6 is 28 on FreeBSD, 24 on
/// OpenBSD/NetBSD, 30 on macOS and 10 on Linux.
pub fn family_of(af: u8) -> Option<Family> {
    match af {
        2 => Some(Family::Inet),
        10 | 24 | 28 | 30 => Some(Family::Inet6),
        _ => None,
    }
}

/// IPv4 or IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Inet,
    Inet6,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Inet => "inet",
            Family::Inet6 => "inet6",
        }
    }
}

/// OpenBSD's record of an address translation applied to the packet (`rewritten` set):
/// the addresses and ports after translation, in the family `naf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rewritten {
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub sport: u16,
    pub dport: u16,
}

/// A decoded `struct pfloghdr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PflogHeader {
    /// The `length` byte; the packet starts at this rounded up to 4.
    pub length: u8,
    pub layout: Layout,
    /// Raw `af` byte.
    pub af: u8,
    pub action: Action,
    pub reason: Reason,
    pub interface: ShortName,
    /// The anchor's last path component (`sshd` for `warden/sshd`), empty outside anchors.
    pub ruleset: ShortName,
    /// Rule number in the main ruleset (of the anchor-call rule when the match was inside
    /// an anchor); None for -1 (the default rule).
    pub rule: Option<u32>,
    /// Rule number inside the anchor; None for -1 (no anchor).
    pub subrule: Option<u32>,
    /// Socket owner for `log (user)` rules; None when PF did not look it up.
    pub uid: Option<u32>,
    pub pid: Option<u32>,
    /// Who loaded the rule.
    pub rule_uid: Option<u32>,
    pub rule_pid: Option<u32>,
    pub dir: Direction,
    /// FreeBSD layout only: the rule's `ridentifier` (0 when the rule sets none).
    pub ridentifier: Option<u32>,
    /// OpenBSD layout only, when PF translated the packet.
    pub rewritten: Option<Rewritten>,
}

impl PflogHeader {
    /// The header's size including padding: where the IP packet starts.
    pub fn padded_len(&self) -> usize {
        padded(self.length)
    }
}

fn padded(length: u8) -> usize {
    (length as usize + 3) & !3
}

fn be32(d: &[u8], off: usize) -> u32 {
    u32::from_be_bytes([d[off], d[off + 1], d[off + 2], d[off + 3]])
}

fn host32(d: &[u8], off: usize, big_endian: bool) -> u32 {
    let b = [d[off], d[off + 1], d[off + 2], d[off + 3]];
    if big_endian {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    }
}

fn not_minus_one(v: u32) -> Option<u32> {
    (v != u32::MAX).then_some(v)
}

fn pid(v: u32) -> Option<u32> {
    (v != u32::MAX && v != NO_PID).then_some(v)
}

/// Decodes the header at the start of `data`. `host_big_endian` is the byte order of the
/// host that logged the packet (the pcap file's byte order).
pub fn parse_header(data: &[u8], host_big_endian: bool) -> Result<PflogHeader, ErrorKind> {
    let Some(&length) = data.first() else {
        return Err(ErrorKind::HeaderTruncated {
            have: 0,
            need: padded(MIN_HEADER_LEN),
        });
    };
    if !(MIN_HEADER_LEN..=MAX_HEADER_LEN).contains(&length) {
        return Err(ErrorKind::HeaderLength(length));
    }
    let need = padded(length);
    if data.len() < need {
        return Err(ErrorKind::HeaderTruncated {
            have: data.len(),
            need,
        });
    }
    let layout = match length {
        MAX_HEADER_LEN => Layout::OpenBsd,
        FREEBSD_HEADER_LEN => Layout::FreeBsd,
        _ => Layout::Legacy,
    };
    let af = data[1];
    let ridentifier = (layout == Layout::FreeBsd).then(|| be32(data, 64));
    let rewritten = if layout == Layout::OpenBsd && data[61] != 0 {
        let naf = match data[62] {
            0 => af,
            n => n,
        };
        let addr = |off: usize| -> Option<IpAddr> {
            match family_of(naf)? {
                Family::Inet => {
                    let o: [u8; 4] = data[off..off + 4].try_into().ok()?;
                    Some(IpAddr::V4(Ipv4Addr::from(o)))
                }
                Family::Inet6 => {
                    let o: [u8; 16] = data[off..off + 16].try_into().ok()?;
                    Some(IpAddr::V6(Ipv6Addr::from(o)))
                }
            }
        };
        Some(Rewritten {
            src: addr(64),
            dst: addr(80),
            sport: u16::from_be_bytes([data[96], data[97]]),
            dport: u16::from_be_bytes([data[98], data[99]]),
        })
    } else {
        None
    };
    Ok(PflogHeader {
        length,
        layout,
        af,
        action: Action(data[2]),
        reason: Reason(data[3]),
        interface: ShortName::from_field(&data[4..20]),
        ruleset: ShortName::from_field(&data[20..36]),
        rule: not_minus_one(be32(data, 36)),
        subrule: not_minus_one(be32(data, 40)),
        uid: not_minus_one(host32(data, 44, host_big_endian)),
        pid: pid(host32(data, 48, host_big_endian)),
        rule_uid: not_minus_one(host32(data, 52, host_big_endian)),
        rule_pid: pid(host32(data, 56, host_big_endian)),
        dir: Direction(data[60]),
        ridentifier,
        rewritten,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(length: u8) -> Vec<u8> {
        let mut d = vec![0u8; padded(length)];
        d[0] = length;
        d[1] = 2;
        d[2] = 1;
        d[4..10].copy_from_slice(b"vtnet0");
        d[20..24].copy_from_slice(b"sshd");
        d[36..40].copy_from_slice(&5u32.to_be_bytes());
        d[40..44].copy_from_slice(&u32::MAX.to_be_bytes());
        d[44..48].copy_from_slice(&1001u32.to_le_bytes());
        d[48..52].copy_from_slice(&NO_PID.to_le_bytes());
        d[60] = 1;
        d
    }

    #[test]
    fn layouts_are_chosen_by_length_and_padded_to_four() {
        for (len, layout, pad) in [
            (61, Layout::Legacy, 64),
            (69, Layout::FreeBsd, 72),
            (100, Layout::OpenBsd, 100),
            (62, Layout::Legacy, 64),
        ] {
            let h = parse_header(&raw(len), false).unwrap();
            assert_eq!(h.layout, layout);
            assert_eq!(h.padded_len(), pad);
            assert_eq!(h.interface, "vtnet0");
            assert_eq!(h.ruleset, "sshd");
            assert_eq!(h.rule, Some(5));
            assert_eq!(h.subrule, None);
            assert_eq!(h.uid, Some(1001));
            assert_eq!(h.pid, None);
            assert_eq!(h.dir, Direction::IN);
            assert_eq!(h.action, Action::BLOCK);
        }
    }

    #[test]
    fn host_order_fields_follow_the_callers_byte_order() {
        let mut d = raw(69);
        d[44..48].copy_from_slice(&1001u32.to_be_bytes());
        d[64..68].copy_from_slice(&7u32.to_be_bytes());
        let h = parse_header(&d, true).unwrap();
        assert_eq!(h.uid, Some(1001));
        assert_eq!(h.ridentifier, Some(7));
    }

    #[test]
    fn out_of_range_and_short_headers_are_errors() {
        assert!(matches!(
            parse_header(&raw(61)[..63], false),
            Err(ErrorKind::HeaderTruncated { have: 63, need: 64 })
        ));
        let mut d = raw(100);
        d[0] = 60;
        assert!(matches!(
            parse_header(&d, false),
            Err(ErrorKind::HeaderLength(60))
        ));
        d[0] = 101;
        assert!(matches!(
            parse_header(&d, false),
            Err(ErrorKind::HeaderLength(101))
        ));
        assert!(matches!(
            parse_header(&[], false),
            Err(ErrorKind::HeaderTruncated { have: 0, .. })
        ));
    }

    #[test]
    fn openbsd_rewritten_addresses_are_decoded() {
        let mut d = raw(100);
        d[61] = 1;
        d[62] = 2;
        d[64..68].copy_from_slice(&[10, 0, 0, 1]);
        d[80..84].copy_from_slice(&[192, 0, 2, 9]);
        d[96..98].copy_from_slice(&1234u16.to_be_bytes());
        d[98..100].copy_from_slice(&80u16.to_be_bytes());
        let r = parse_header(&d, false).unwrap().rewritten.unwrap();
        assert_eq!(r.src, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(r.dst, Some("192.0.2.9".parse().unwrap()));
        assert_eq!((r.sport, r.dport), (1234, 80));
    }

    #[test]
    fn names_keep_printable_ascii_only() {
        let n = ShortName::from_field(b"em\x010\0junk\0\0\0\0\0\0\0");
        assert_eq!(n.as_str(), "em?0");
        assert_eq!(ShortName::from_field(&[b'a'; 16]).as_str().len(), 16);
        assert_eq!(Reason(15).name(Layout::OpenBsd), Some("translate"));
        assert_eq!(Reason(15).name(Layout::FreeBsd), Some("map-failed"));
        assert_eq!(Action(12).name(), Some("match"));
        assert_eq!(Action(99).to_string(), "unkn(99)");
    }
}
