//! A small writer of pflog captures for tests: pflog headers in each layout (OpenBSD 100,
//! FreeBSD 69, legacy 61), IPv4/IPv6 packets with TCP/UDP/ICMP/ICMPv6 (built with
//! etherparse, checksums included, so tcpdump decodes them too), classic pcap in either
//! byte order with micro- or nanosecond timestamps and a snap length, and pcapng.
//!
//! Also compiled into `examples/pflog_gen.rs` (the benchmark's file generator), so it uses
//! nothing but std and etherparse.

#![allow(dead_code)]

use std::net::IpAddr;

use etherparse::{PacketBuilder, TcpHeader};

/// The pflog header layout to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    OpenBsd,
    FreeBsd,
    Legacy,
}

impl Layout {
    pub const ALL: [Layout; 3] = [Layout::OpenBsd, Layout::FreeBsd, Layout::Legacy];

    /// The header's `length` byte.
    pub fn length(self) -> u8 {
        match self {
            Layout::OpenBsd => 100,
            Layout::FreeBsd => 69,
            Layout::Legacy => 61,
        }
    }

    /// Bytes before the packet.
    pub fn padded(self) -> usize {
        (self.length() as usize + 3) & !3
    }

    /// The `af` value that OS writes for IPv6.
    pub fn af_inet6(self) -> u8 {
        match self {
            Layout::OpenBsd => 24,
            Layout::FreeBsd | Layout::Legacy => 28,
        }
    }
}

/// The transport part of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
        /// FIN 0x01 SYN 0x02 RST 0x04 PSH 0x08 ACK 0x10 URG 0x20 ECE 0x40 CWR 0x80.
        flags: u8,
        win: u16,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    /// ICMP echo request for IPv4 sources, ICMPv6 echo request for IPv6 ones.
    Echo {
        id: u16,
        seq: u16,
    },
}

/// One pflog record: header fields, addresses, transport, payload size and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub sec: u32,
    pub nsec: u32,
    pub layout: Layout,
    /// Overrides the `af` byte (default: 2, or the layout's IPv6 value).
    pub af: Option<u8>,
    pub action: u8,
    pub reason: u8,
    pub dir: u8,
    pub ifname: String,
    pub ruleset: String,
    pub rulenr: u32,
    pub subrulenr: u32,
    pub uid: u32,
    pub pid: u32,
    pub rule_uid: u32,
    pub rule_pid: u32,
    pub ridentifier: u32,
    /// OpenBSD `rewritten` addresses and ports.
    pub rewritten: Option<(IpAddr, IpAddr, u16, u16)>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub l4: L4,
    pub payload: usize,
}

impl Rec {
    /// A SYN blocked inbound on vtnet0 by rule 0 of anchor `sshd`, called by main rule 5.
    pub fn tcp(src: &str, dst: &str, sport: u16, dport: u16) -> Rec {
        Rec {
            sec: 1_700_000_000,
            nsec: 123_456_000,
            layout: Layout::FreeBsd,
            af: None,
            action: 1,
            reason: 0,
            dir: 1,
            ifname: "vtnet0".into(),
            ruleset: "sshd".into(),
            rulenr: 5,
            subrulenr: 0,
            uid: u32::MAX,
            pid: 100_000,
            rule_uid: 0,
            rule_pid: 4321,
            ridentifier: 0,
            rewritten: None,
            src: src.parse().expect("source address"),
            dst: dst.parse().expect("destination address"),
            l4: L4::Tcp {
                sport,
                dport,
                seq: 123_456_789,
                ack: 0,
                flags: 0x02,
                win: 65535,
            },
            payload: 0,
        }
    }

    pub fn udp(src: &str, dst: &str, sport: u16, dport: u16) -> Rec {
        Rec {
            l4: L4::Udp { sport, dport },
            ..Rec::tcp(src, dst, 0, 0)
        }
    }

    pub fn echo(src: &str, dst: &str, id: u16, seq: u16) -> Rec {
        Rec {
            l4: L4::Echo { id, seq },
            payload: 56,
            ..Rec::tcp(src, dst, 0, 0)
        }
    }

    pub fn with_layout(mut self, layout: Layout) -> Rec {
        self.layout = layout;
        self
    }

    pub fn at(mut self, sec: u32, nsec: u32) -> Rec {
        self.sec = sec;
        self.nsec = nsec;
        self
    }

    pub fn af_byte(&self) -> u8 {
        self.af.unwrap_or(match self.src {
            IpAddr::V4(_) => 2,
            IpAddr::V6(_) => self.layout.af_inet6(),
        })
    }

    /// The pflog header, padded; uid/pid fields in the given host byte order.
    pub fn header(&self, host_big_endian: bool) -> Vec<u8> {
        let mut h = vec![0u8; self.layout.padded()];
        let host = |v: u32| u32_in(host_big_endian, v);
        h[0] = self.layout.length();
        h[1] = self.af_byte();
        h[2] = self.action;
        h[3] = self.reason;
        let name = |dst: &mut [u8], s: &str| {
            let b = s.as_bytes();
            let n = b.len().min(15);
            dst[..n].copy_from_slice(&b[..n]);
        };
        name(&mut h[4..20], &self.ifname);
        name(&mut h[20..36], &self.ruleset);
        h[36..40].copy_from_slice(&self.rulenr.to_be_bytes());
        h[40..44].copy_from_slice(&self.subrulenr.to_be_bytes());
        h[44..48].copy_from_slice(&host(self.uid));
        h[48..52].copy_from_slice(&host(self.pid));
        h[52..56].copy_from_slice(&host(self.rule_uid));
        h[56..60].copy_from_slice(&host(self.rule_pid));
        h[60] = self.dir;
        match self.layout {
            Layout::FreeBsd => h[64..68].copy_from_slice(&self.ridentifier.to_be_bytes()),
            Layout::OpenBsd => {
                if let Some((s, d, sp, dp)) = self.rewritten {
                    h[61] = 1;
                    h[62] = match s {
                        IpAddr::V4(_) => 2,
                        IpAddr::V6(_) => 24,
                    };
                    let put = |dst: &mut [u8], a: IpAddr| match a {
                        IpAddr::V4(a) => dst[..4].copy_from_slice(&a.octets()),
                        IpAddr::V6(a) => dst[..16].copy_from_slice(&a.octets()),
                    };
                    put(&mut h[64..80], s);
                    put(&mut h[80..96], d);
                    h[96..98].copy_from_slice(&sp.to_be_bytes());
                    h[98..100].copy_from_slice(&dp.to_be_bytes());
                }
            }
            Layout::Legacy => {}
        }
        h
    }

    /// The IP packet.
    pub fn packet(&self) -> Vec<u8> {
        let payload = vec![0x61u8; self.payload];
        let mut out = Vec::new();
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let b = PacketBuilder::ipv4(s.octets(), d.octets(), 64);
                match self.l4 {
                    L4::Tcp { .. } => b.tcp_header(self.tcp_header()).write(&mut out, &payload),
                    L4::Udp { sport, dport } => b.udp(sport, dport).write(&mut out, &payload),
                    L4::Echo { id, seq } => {
                        b.icmpv4_echo_request(id, seq).write(&mut out, &payload)
                    }
                }
                .expect("IPv4 packet")
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let b = PacketBuilder::ipv6(s.octets(), d.octets(), 64);
                match self.l4 {
                    L4::Tcp { .. } => b.tcp_header(self.tcp_header()).write(&mut out, &payload),
                    L4::Udp { sport, dport } => b.udp(sport, dport).write(&mut out, &payload),
                    L4::Echo { id, seq } => {
                        b.icmpv6_echo_request(id, seq).write(&mut out, &payload)
                    }
                }
                .expect("IPv6 packet")
            }
            _ => panic!("test record mixes address families"),
        }
        out
    }

    fn tcp_header(&self) -> TcpHeader {
        let L4::Tcp {
            sport,
            dport,
            seq,
            ack,
            flags,
            win,
        } = self.l4
        else {
            unreachable!()
        };
        let mut t = TcpHeader::new(sport, dport, seq, win);
        t.fin = flags & 0x01 != 0;
        t.syn = flags & 0x02 != 0;
        t.rst = flags & 0x04 != 0;
        t.psh = flags & 0x08 != 0;
        t.ack = flags & 0x10 != 0;
        t.urg = flags & 0x20 != 0;
        t.ece = flags & 0x40 != 0;
        t.cwr = flags & 0x80 != 0;
        t.acknowledgment_number = ack;
        t
    }

    /// Header and packet, untruncated.
    pub fn bytes(&self, host_big_endian: bool) -> Vec<u8> {
        let mut v = self.header(host_big_endian);
        v.extend_from_slice(&self.packet());
        v
    }
}

fn u16_in(big_endian: bool, v: u16) -> [u8; 2] {
    if big_endian {
        v.to_be_bytes()
    } else {
        v.to_le_bytes()
    }
}

fn u32_in(big_endian: bool, v: u32) -> [u8; 4] {
    if big_endian {
        v.to_be_bytes()
    } else {
        v.to_le_bytes()
    }
}

/// Classic pcap settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pcap {
    pub big_endian: bool,
    pub nanos: bool,
    pub snaplen: u32,
    pub linktype: u32,
}

impl Default for Pcap {
    fn default() -> Self {
        Pcap {
            big_endian: false,
            nanos: false,
            snaplen: 65535,
            linktype: 117,
        }
    }
}

impl Pcap {
    fn u16(&self, v: u16) -> [u8; 2] {
        u16_in(self.big_endian, v)
    }

    fn u32(&self, v: u32) -> [u8; 4] {
        u32_in(self.big_endian, v)
    }

    /// The 24-byte file header.
    pub fn file_header(&self) -> Vec<u8> {
        let magic = if self.nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
        let mut v = Vec::with_capacity(24);
        v.extend_from_slice(&self.u32(magic));
        v.extend_from_slice(&self.u16(2));
        v.extend_from_slice(&self.u16(4));
        v.extend_from_slice(&self.u32(0));
        v.extend_from_slice(&self.u32(0));
        v.extend_from_slice(&self.u32(self.snaplen));
        v.extend_from_slice(&self.u32(self.linktype));
        v
    }

    /// A record holding `data` cut to the snap length.
    pub fn raw_record(&self, sec: u32, nsec: u32, data: &[u8]) -> Vec<u8> {
        let cap = data.len().min(self.snaplen as usize);
        let frac = if self.nanos { nsec } else { nsec / 1000 };
        let mut v = Vec::with_capacity(16 + cap);
        v.extend_from_slice(&self.u32(sec));
        v.extend_from_slice(&self.u32(frac));
        v.extend_from_slice(&self.u32(cap as u32));
        v.extend_from_slice(&self.u32(data.len() as u32));
        v.extend_from_slice(&data[..cap]);
        v
    }

    /// The record for `rec`, its host fields in the file's byte order (as pflogd writes).
    pub fn record(&self, rec: &Rec) -> Vec<u8> {
        self.raw_record(rec.sec, rec.nsec, &rec.bytes(self.big_endian))
    }

    /// A whole file.
    pub fn file(&self, recs: &[Rec]) -> Vec<u8> {
        let mut v = self.file_header();
        for r in recs {
            v.extend_from_slice(&self.record(r));
        }
        v
    }
}

/// pcapng settings: one section, one interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcapNg {
    pub big_endian: bool,
    /// `if_tsresol`: 6 for microseconds, 9 for nanoseconds.
    pub tsresol: u8,
    pub snaplen: u32,
    pub linktype: u16,
}

impl Default for PcapNg {
    fn default() -> Self {
        PcapNg {
            big_endian: false,
            tsresol: 6,
            snaplen: 65535,
            linktype: 117,
        }
    }
}

impl PcapNg {
    fn u16(&self, v: u16) -> [u8; 2] {
        u16_in(self.big_endian, v)
    }

    fn u32(&self, v: u32) -> [u8; 4] {
        u32_in(self.big_endian, v)
    }

    fn block(&self, kind: u32, body: &[u8]) -> Vec<u8> {
        let len = 12 + body.len().next_multiple_of(4);
        let mut v = Vec::with_capacity(len);
        v.extend_from_slice(&self.u32(kind));
        v.extend_from_slice(&self.u32(len as u32));
        v.extend_from_slice(body);
        v.resize(8 + body.len().next_multiple_of(4), 0);
        v.extend_from_slice(&self.u32(len as u32));
        v
    }

    pub fn section_header(&self) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&self.u32(0x1a2b_3c4d));
        body.extend_from_slice(&self.u16(1));
        body.extend_from_slice(&self.u16(0));
        body.extend_from_slice(&[0xff; 8]);
        self.block(0x0a0d_0d0a, &body)
    }

    pub fn interface(&self) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&self.u16(self.linktype));
        body.extend_from_slice(&self.u16(0));
        body.extend_from_slice(&self.u32(self.snaplen));
        // if_tsresol option, then opt_endofopt.
        body.extend_from_slice(&self.u16(9));
        body.extend_from_slice(&self.u16(1));
        body.extend_from_slice(&[self.tsresol, 0, 0, 0]);
        body.extend_from_slice(&[0; 4]);
        self.block(1, &body)
    }

    pub fn packet(&self, rec: &Rec) -> Vec<u8> {
        let data = rec.bytes(self.big_endian);
        let cap = data.len().min(self.snaplen as usize);
        let units: u64 = 10u64.pow(self.tsresol as u32);
        let ts = rec.sec as u64 * units + rec.nsec as u64 * units / 1_000_000_000;
        let mut body = Vec::new();
        body.extend_from_slice(&self.u32(0));
        body.extend_from_slice(&self.u32((ts >> 32) as u32));
        body.extend_from_slice(&self.u32(ts as u32));
        body.extend_from_slice(&self.u32(cap as u32));
        body.extend_from_slice(&self.u32(data.len() as u32));
        body.extend_from_slice(&data[..cap]);
        self.block(6, &body)
    }

    pub fn file(&self, recs: &[Rec]) -> Vec<u8> {
        let mut v = self.section_header();
        v.extend_from_slice(&self.interface());
        for r in recs {
            v.extend_from_slice(&self.packet(r));
        }
        v
    }
}
