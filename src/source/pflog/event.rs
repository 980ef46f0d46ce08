//! One decoded pflog record: the pflog header's fields and the packet's addresses, ports
//! and flags, with a tcpdump-like text form and a JSON form.

use std::fmt;
use std::net::IpAddr;

use jiff::Timestamp;
use serde::{Serialize, Serializer};

use super::error::ErrorKind;
use super::header::{
    Action, Direction, Family, Layout, PflogHeader, Reason, Rewritten, ShortName, family_of,
    parse_header,
};
use super::packet::{IcmpInfo, Missing, Protocol, TcpDetail, TcpFlags, decode_packet};

/// A pflog record, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PflogEvent {
    /// When PF logged the packet (the capture timestamp).
    pub time: Timestamp,
    pub layout: Layout,
    pub action: Action,
    pub reason: Reason,
    pub dir: Direction,
    pub interface: ShortName,
    /// The anchor's name (last path component), empty for the main ruleset.
    pub ruleset: ShortName,
    /// Main-ruleset rule number (of the anchor call for rules inside anchors); None = -1.
    pub rule: Option<u32>,
    /// Rule number inside the anchor; None = -1.
    pub subrule: Option<u32>,
    pub uid: Option<u32>,
    pub pid: Option<u32>,
    pub rule_uid: Option<u32>,
    pub rule_pid: Option<u32>,
    /// FreeBSD layout only.
    pub ridentifier: Option<u32>,
    /// OpenBSD layout only, when PF translated the packet.
    pub rewritten: Option<Rewritten>,
    /// Raw `af` byte of the header.
    pub af: u8,
    pub family: Option<Family>,
    pub proto: Option<Protocol>,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub tcp_flags: Option<TcpFlags>,
    pub tcp: Option<TcpDetail>,
    pub icmp: Option<IcmpInfo>,
    /// Length of the IP datagram: from its header when captured, else the original
    /// record length minus the pflog header.
    pub length: u32,
    /// Transport payload bytes according to the headers, when known.
    pub payload_len: Option<u32>,
    /// Bytes captured / bytes on the wire for the whole record (header included).
    pub caplen: u32,
    pub origlen: u32,
    /// A non-first IP fragment (no transport header by design).
    pub fragment: bool,
    /// What the snap length (or a malformed packet) kept from being decoded.
    pub missing: Option<Missing>,
}

/// Decodes one record (pflog header and packet). `origlen` is the record's length on the
/// wire, `host_big_endian` the logging host's byte order (see [`parse_header`]).
pub fn decode_record(
    data: &[u8],
    origlen: u32,
    time: Timestamp,
    host_big_endian: bool,
) -> Result<PflogEvent, ErrorKind> {
    let h: PflogHeader = parse_header(data, host_big_endian)?;
    let hdrlen = h.padded_len();
    let p = decode_packet(&data[hdrlen..], family_of(h.af));
    let length = p
        .ip_len
        .unwrap_or_else(|| origlen.max(data.len() as u32).saturating_sub(hdrlen as u32));
    Ok(PflogEvent {
        time,
        layout: h.layout,
        action: h.action,
        reason: h.reason,
        dir: h.dir,
        interface: h.interface,
        ruleset: h.ruleset,
        rule: h.rule,
        subrule: h.subrule,
        uid: h.uid,
        pid: h.pid,
        rule_uid: h.rule_uid,
        rule_pid: h.rule_pid,
        ridentifier: h.ridentifier,
        rewritten: h.rewritten,
        af: h.af,
        family: p.family,
        proto: p.proto,
        src: p.src,
        dst: p.dst,
        sport: p.sport,
        dport: p.dport,
        tcp_flags: p.tcp_flags,
        tcp: p.tcp,
        icmp: p.icmp,
        length,
        payload_len: p.payload_len,
        caplen: data.len() as u32,
        origlen,
        fragment: p.fragment,
        missing: p.missing,
    })
}

/// Turns a capture time (seconds and a fraction in `units_per_sec`) into a timestamp.
pub fn timestamp(seconds: i128, fraction: u64, units_per_sec: u64) -> Result<Timestamp, ErrorKind> {
    let units = units_per_sec.max(1) as i128;
    let carry = fraction as i128 / units;
    let frac = fraction as i128 % units;
    let seconds = seconds + carry;
    let nanos = frac * 1_000_000_000 / units;
    i64::try_from(seconds)
        .ok()
        .and_then(|s| Timestamp::new(s, nanos as i32).ok())
        .ok_or(ErrorKind::BadTimestamp { seconds })
}

impl PflogEvent {
    /// The reason's name in this record's operating system (`match`, `state-mismatch`).
    pub fn reason_name(&self) -> Option<&'static str> {
        self.reason.name(self.layout)
    }

    /// The time in epoch seconds, the unit jails count in.
    pub fn epoch(&self) -> crate::Epoch {
        self.time.as_second()
    }

    /// The tcpdump-like line with the time shown at `utc_offset` seconds from UTC
    /// (`tcpdump -n -e -r` shows local time).
    pub fn tcpdump_line(&self, utc_offset: i32) -> TcpdumpLine<'_> {
        TcpdumpLine {
            ev: self,
            utc_offset,
        }
    }
}

/// See [`PflogEvent::tcpdump_line`].
pub struct TcpdumpLine<'a> {
    ev: &'a PflogEvent,
    utc_offset: i32,
}

impl fmt::Display for PflogEvent {
    /// The tcpdump-like line with the time in UTC.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.tcpdump_line(0).fmt(f)
    }
}

impl fmt::Display for TcpdumpLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.ev;
        let ns = e.time.as_nanosecond() + self.utc_offset as i128 * 1_000_000_000;
        let day_ns = ns.rem_euclid(86_400 * 1_000_000_000);
        let secs = (day_ns / 1_000_000_000) as u32;
        let micros = (day_ns % 1_000_000_000) / 1000;
        write!(
            f,
            "{:02}:{:02}:{:02}.{:06} rule ",
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            micros
        )?;
        write!(f, "{}", e.rule.unwrap_or(u32::MAX))?;
        if let Some(sub) = e.subrule {
            write!(f, ".{}.{}", e.ruleset, sub)?;
        }
        match e.reason_name() {
            Some(n) => write!(f, "/{}({})", e.reason.0, n)?,
            None => write!(f, "/unkn({})", e.reason.0)?,
        }
        if let Some(uid) = e.uid {
            write!(f, " [uid {uid}]")?;
        }
        if let Some(r) = e.ridentifier.filter(|&r| r != 0) {
            write!(f, " [ridentifier {r}]")?;
        }
        write!(f, ": {} {} on {}: ", e.action, e.dir, e.interface)?;
        write_packet(f, e)
    }
}

struct Endpoint(Option<IpAddr>, Option<u16>);

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(a) => write!(f, "{a}")?,
            None => f.write_str("?")?,
        }
        if let Some(p) = self.1 {
            write!(f, ".{p}")?;
        }
        Ok(())
    }
}

fn write_packet(f: &mut fmt::Formatter<'_>, e: &PflogEvent) -> fmt::Result {
    if e.src.is_none() && e.dst.is_none() {
        return match e.missing {
            Some(m) => write!(f, "[|{m}]"),
            None => f.write_str("[|ip]"),
        };
    }
    write!(
        f,
        "{} > {}: ",
        Endpoint(e.src, e.sport),
        Endpoint(e.dst, e.dport)
    )?;
    if e.fragment {
        match e.proto {
            Some(p) => write!(f, "{p} fragment, length {}", e.length)?,
            None => write!(f, "fragment, length {}", e.length)?,
        }
        return Ok(());
    }
    match e.proto {
        Some(Protocol::TCP) => {
            if let Some(flags) = e.tcp_flags {
                write!(f, "Flags [{flags}]")?;
            }
            if let Some(t) = e.tcp {
                let len = e.payload_len.unwrap_or(0);
                if len > 0 {
                    write!(f, ", seq {}:{}", t.seq, t.seq.wrapping_add(len))?;
                } else {
                    write!(f, ", seq {}", t.seq)?;
                }
                if e.tcp_flags.is_some_and(|fl| fl.contains(TcpFlags::ACK)) {
                    write!(f, ", ack {}", t.ack)?;
                }
                write!(f, ", win {}, length {}", t.win, len)?;
            }
        }
        Some(Protocol::UDP) => {
            f.write_str("UDP")?;
            if let Some(l) = e.payload_len {
                write!(f, ", length {l}")?;
            }
        }
        Some(p @ (Protocol::ICMP | Protocol::ICMP6)) => {
            let v6 = p == Protocol::ICMP6;
            f.write_str(if v6 { "ICMP6" } else { "ICMP" })?;
            if let Some(i) = e.icmp {
                f.write_str(if v6 { ", " } else { " " })?;
                match icmp_name(v6, i.kind) {
                    Some(n) => f.write_str(n)?,
                    None => write!(f, "type {}", i.kind)?,
                }
                if let Some((id, seq)) = i.echo {
                    write!(f, ", id {id}, seq {seq}")?;
                }
                if let Some(l) = e.payload_len {
                    write!(f, ", length {l}")?;
                }
            }
        }
        Some(p) => write!(f, "{p}, length {}", e.length)?,
        None => f.write_str("ip")?,
    }
    if let Some(m) = e.missing {
        write!(f, " [|{m}]")?;
    }
    Ok(())
}

fn icmp_name(v6: bool, kind: u8) -> Option<&'static str> {
    Some(match (v6, kind) {
        (false, 0) => "echo reply",
        (false, 3) => "unreachable",
        (false, 5) => "redirect",
        (false, 8) => "echo request",
        (false, 11) => "time exceeded",
        (true, 1) => "destination unreachable",
        (true, 2) => "packet too big",
        (true, 3) => "time exceeded",
        (true, 128) => "echo request",
        (true, 129) => "echo reply",
        (true, 133) => "router solicitation",
        (true, 134) => "router advertisement",
        (true, 135) => "neighbor solicitation",
        (true, 136) => "neighbor advertisement",
        _ => return None,
    })
}

/// The JSON form: flat, names beside codes, absent fields as null.
#[derive(Serialize)]
struct Json<'a> {
    time: String,
    layout: Layout,
    action: Option<&'static str>,
    action_code: u8,
    reason: Option<&'static str>,
    reason_code: u8,
    dir: Option<&'static str>,
    dir_code: u8,
    interface: &'a ShortName,
    ruleset: &'a ShortName,
    rule: Option<u32>,
    subrule: Option<u32>,
    uid: Option<u32>,
    pid: Option<u32>,
    rule_uid: Option<u32>,
    rule_pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ridentifier: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rewritten: Option<Rewritten>,
    af: u8,
    family: Option<&'static str>,
    proto: Option<Protocol>,
    proto_code: Option<u8>,
    src: Option<IpAddr>,
    sport: Option<u16>,
    dst: Option<IpAddr>,
    dport: Option<u16>,
    tcp_flags: Option<TcpFlags>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tcp: Option<TcpDetail>,
    #[serde(skip_serializing_if = "Option::is_none")]
    icmp: Option<IcmpInfo>,
    length: u32,
    caplen: u32,
    origlen: u32,
    fragment: bool,
    missing: Option<Missing>,
}

impl Serialize for PflogEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Json {
            time: self.time.to_string(),
            layout: self.layout,
            action: self.action.name(),
            action_code: self.action.0,
            reason: self.reason_name(),
            reason_code: self.reason.0,
            dir: self.dir.name(),
            dir_code: self.dir.0,
            interface: &self.interface,
            ruleset: &self.ruleset,
            rule: self.rule,
            subrule: self.subrule,
            uid: self.uid,
            pid: self.pid,
            rule_uid: self.rule_uid,
            rule_pid: self.rule_pid,
            ridentifier: self.ridentifier,
            rewritten: self.rewritten,
            af: self.af,
            family: self.family.map(Family::name),
            proto: self.proto,
            proto_code: self.proto.map(|p| p.0),
            src: self.src,
            sport: self.sport,
            dst: self.dst,
            dport: self.dport,
            tcp_flags: self.tcp_flags,
            tcp: self.tcp,
            icmp: self.icmp,
            length: self.length,
            caplen: self.caplen,
            origlen: self.origlen,
            fragment: self.fragment,
            missing: self.missing,
        }
        .serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_carry_oversized_fractions_and_reject_the_impossible() {
        let t = timestamp(10, 1_500_000, 1_000_000).unwrap();
        assert_eq!(t.as_second(), 11);
        assert_eq!(t.subsec_nanosecond(), 500_000_000);
        let t = timestamp(10, 7, 1_000_000_000).unwrap();
        assert_eq!(t.subsec_nanosecond(), 7);
        assert!(matches!(
            timestamp(i64::MAX as i128, 0, 1),
            Err(ErrorKind::BadTimestamp { .. })
        ));
    }
}
