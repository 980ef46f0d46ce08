//! pflog: decoding captures written by the test writer (every header layout, both pcap
//! byte orders, micro/nanosecond timestamps, pcapng, truncated snap lengths), following a
//! growing and rotating file, malformed input, `warden pflog`, and a cross-check against
//! the system's tcpdump.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use jiff::Timestamp;
use warden::source::pflog::{
    ErrorKind, Family, Layout, Missing, PflogError, PflogEvent, PflogReader, PflogTail, Protocol,
    StartAt, TcpFlags,
};

use crate::support::pcap::{self, L4, Pcap, PcapNg, Rec};

fn read_all(bytes: &[u8]) -> Vec<Result<PflogEvent, PflogError>> {
    PflogReader::new(bytes, "mem.pcap").collect()
}

fn events(bytes: &[u8]) -> Vec<PflogEvent> {
    read_all(bytes)
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("unexpected error: {e}")))
        .collect()
}

fn layout(l: pcap::Layout) -> Layout {
    match l {
        pcap::Layout::OpenBsd => Layout::OpenBsd,
        pcap::Layout::FreeBsd => Layout::FreeBsd,
        pcap::Layout::Legacy => Layout::Legacy,
    }
}

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

/// The header fields every `Rec` constructor sets by default.
fn assert_default_header(ev: &PflogEvent, l: pcap::Layout) {
    assert_eq!(ev.layout, layout(l));
    assert_eq!(ev.action.name(), Some("block"));
    assert_eq!(ev.action.0, 1);
    assert_eq!(ev.reason.0, 0);
    assert_eq!(ev.reason_name(), Some("match"));
    assert_eq!(ev.dir.name(), Some("in"));
    assert_eq!(ev.interface, "vtnet0");
    assert_eq!(ev.ruleset, "sshd");
    assert_eq!(ev.rule, Some(5));
    assert_eq!(ev.subrule, Some(0));
    assert_eq!(ev.uid, None);
    assert_eq!(ev.pid, None);
    assert_eq!(ev.rule_uid, Some(0));
    assert_eq!(ev.rule_pid, Some(4321));
    assert_eq!(
        ev.ridentifier,
        (l == pcap::Layout::FreeBsd).then_some(0),
        "ridentifier"
    );
    assert_eq!(ev.rewritten, None);
}

#[test]
fn every_layout_family_and_transport_decodes_exactly() {
    for l in pcap::Layout::ALL {
        let recs = vec![
            Rec::tcp("198.51.100.7", "192.0.2.10", 41854, 22).with_layout(l),
            Rec::udp("198.51.100.8", "192.0.2.10", 5353, 53).with_layout(l),
            Rec::echo("198.51.100.9", "192.0.2.10", 7, 3).with_layout(l),
            Rec::tcp("2001:db8::7", "2001:db8::10", 50000, 443).with_layout(l),
            Rec::udp("2001:db8::8", "2001:db8::10", 1234, 123).with_layout(l),
            Rec::echo("2001:db8::9", "2001:db8::10", 9, 1).with_layout(l),
        ];
        let evs = events(&Pcap::default().file(&recs));
        assert_eq!(evs.len(), 6, "{l:?}");
        for ev in &evs {
            assert_default_header(ev, l);
            assert_eq!(ev.time, Timestamp::new(1_700_000_000, 123_456_000).unwrap());
            assert_eq!(ev.missing, None);
            assert!(!ev.fragment);
            assert_eq!(ev.caplen, ev.origlen);
        }
        let pad = l.padded() as u32;
        let v6 = l.af_inet6();

        let e = &evs[0];
        assert_eq!((e.af, e.family), (2, Some(Family::Inet)));
        assert_eq!(e.proto, Some(Protocol::TCP));
        assert_eq!((e.src, e.dst), (ip("198.51.100.7"), ip("192.0.2.10")));
        assert_eq!((e.sport, e.dport), (Some(41854), Some(22)));
        assert_eq!(e.tcp_flags, Some(TcpFlags(TcpFlags::SYN)));
        let t = e.tcp.unwrap();
        assert_eq!(
            (t.seq, t.ack, t.win, t.header_len),
            (123_456_789, 0, 65535, 20)
        );
        assert_eq!(e.length, 40);
        assert_eq!(e.caplen, pad + 40);

        let e = &evs[1];
        assert_eq!(e.proto, Some(Protocol::UDP));
        assert_eq!((e.src, e.dst), (ip("198.51.100.8"), ip("192.0.2.10")));
        assert_eq!((e.sport, e.dport), (Some(5353), Some(53)));
        assert_eq!((e.tcp_flags, e.icmp), (None, None));
        assert_eq!((e.length, e.payload_len), (28, Some(0)));

        let e = &evs[2];
        assert_eq!(e.proto, Some(Protocol::ICMP));
        assert_eq!((e.src, e.dst), (ip("198.51.100.9"), ip("192.0.2.10")));
        assert_eq!((e.sport, e.dport), (None, None));
        let i = e.icmp.unwrap();
        assert_eq!((i.kind, i.code, i.echo), (8, Some(0), Some((7, 3))));
        assert_eq!(e.length, 20 + 8 + 56);

        let e = &evs[3];
        assert_eq!((e.af, e.family), (v6, Some(Family::Inet6)));
        assert_eq!(e.proto, Some(Protocol::TCP));
        assert_eq!((e.src, e.dst), (ip("2001:db8::7"), ip("2001:db8::10")));
        assert_eq!((e.sport, e.dport), (Some(50000), Some(443)));
        assert_eq!(e.tcp_flags, Some(TcpFlags(TcpFlags::SYN)));
        assert_eq!(e.length, 60);

        let e = &evs[4];
        assert_eq!(e.proto, Some(Protocol::UDP));
        assert_eq!((e.sport, e.dport), (Some(1234), Some(123)));
        assert_eq!(e.length, 48);

        let e = &evs[5];
        assert_eq!(e.proto, Some(Protocol::ICMP6));
        assert_eq!((e.src, e.dst), (ip("2001:db8::9"), ip("2001:db8::10")));
        let i = e.icmp.unwrap();
        assert_eq!((i.kind, i.code, i.echo), (128, Some(0), Some((9, 1))));
    }
}

#[test]
fn non_default_header_fields_decode_exactly() {
    let mut fb = Rec::tcp("203.0.113.5", "192.0.2.1", 1, 2);
    fb.action = 0;
    fb.reason = 13;
    fb.dir = 2;
    fb.ifname = "igb1".into();
    fb.ruleset = String::new();
    fb.rulenr = 12;
    fb.subrulenr = u32::MAX;
    fb.uid = 1001;
    fb.pid = 4242;
    fb.rule_uid = 1002;
    fb.rule_pid = 77;
    fb.ridentifier = 0xdead_beef;
    let mut l4 = fb.l4;
    if let L4::Tcp { flags, ack, .. } = &mut l4 {
        *flags = 0x12;
        *ack = 99;
    }
    fb.l4 = l4;
    let mut ob = Rec::tcp("203.0.113.6", "192.0.2.1", 3, 4).with_layout(pcap::Layout::OpenBsd);
    ob.rewritten = Some((
        "10.0.0.6".parse().unwrap(),
        "192.0.2.100".parse().unwrap(),
        333,
        8080,
    ));
    ob.reason = 15;
    ob.dir = 3;
    ob.action = 13;
    for big_endian in [false, true] {
        let evs = events(
            &Pcap {
                big_endian,
                ..Pcap::default()
            }
            .file(&[fb.clone(), ob.clone()]),
        );
        let e = &evs[0];
        assert_eq!(
            (e.action.name(), e.reason_name(), e.dir.name()),
            (Some("pass"), Some("src-limit"), Some("out"))
        );
        assert_eq!(e.interface, "igb1");
        assert!(e.ruleset.is_empty());
        assert_eq!((e.rule, e.subrule), (Some(12), None));
        assert_eq!(
            (e.uid, e.pid, e.rule_uid, e.rule_pid),
            (Some(1001), Some(4242), Some(1002), Some(77))
        );
        assert_eq!(e.ridentifier, Some(0xdead_beef));
        assert_eq!(e.tcp_flags, Some(TcpFlags(0x12)));
        assert_eq!(e.tcp.unwrap().ack, 99);
        let e = &evs[1];
        assert_eq!(
            (e.action.name(), e.reason_name(), e.dir.name()),
            (Some("divert"), Some("translate"), Some("fwd"))
        );
        let r = e.rewritten.unwrap();
        assert_eq!(
            (r.src, r.dst, r.sport, r.dport),
            (ip("10.0.0.6"), ip("192.0.2.100"), 333, 8080)
        );
        assert_eq!(e.ridentifier, None);
    }
}

#[test]
fn byte_orders_timestamp_precisions_and_pcapng_agree() {
    let recs: Vec<Rec> = (0..5u16)
        .map(|i| {
            let mut r = Rec::tcp("198.51.100.7", "2001:db8::1", 0, 0);
            r.dst = "192.0.2.1".parse().unwrap();
            r.l4 = L4::Tcp {
                sport: 40000 + i,
                dport: 20 + i,
                seq: i as u32,
                ack: 0,
                flags: 2,
                win: 512,
            };
            r.uid = 1000 + i as u32;
            r.at(1_700_000_000 + i as u32, 987_654_321)
        })
        .collect();
    let mut files: Vec<(String, Vec<u8>, u32)> = Vec::new();
    for big_endian in [false, true] {
        for nanos in [false, true] {
            let p = Pcap {
                big_endian,
                nanos,
                ..Pcap::default()
            };
            files.push((
                format!("pcap be={big_endian} ns={nanos}"),
                p.file(&recs),
                if nanos { 987_654_321 } else { 987_654_000 },
            ));
        }
        for tsresol in [6u8, 9] {
            let p = PcapNg {
                big_endian,
                tsresol,
                ..PcapNg::default()
            };
            files.push((
                format!("pcapng be={big_endian} res={tsresol}"),
                p.file(&recs),
                if tsresol == 9 {
                    987_654_321
                } else {
                    987_654_000
                },
            ));
        }
    }
    for (name, bytes, nanos) in files {
        let evs = events(&bytes);
        assert_eq!(evs.len(), 5, "{name}");
        for (i, e) in evs.iter().enumerate() {
            let i = i as u16;
            assert_eq!(
                e.time,
                Timestamp::new(1_700_000_000 + i as i64, nanos as i32).unwrap(),
                "{name}"
            );
            assert_eq!(
                (e.sport, e.dport),
                (Some(40000 + i), Some(20 + i)),
                "{name}"
            );
            assert_eq!(e.tcp.unwrap().seq, i as u32, "{name}");
            assert_eq!(
                e.uid,
                Some(1000 + i as u32),
                "{name}: uid in the writer's byte order"
            );
        }
    }
}

#[test]
fn truncated_snap_lengths_decode_what_is_there_and_say_what_is_missing() {
    let v4 = Rec::tcp("198.51.100.7", "192.0.2.10", 41854, 22);
    let v6 = Rec::tcp("2001:db8::7", "2001:db8::10", 41854, 22);
    // FreeBSD pflogd's default snap length: 72 + 40 + 4 bytes of TCP for IPv6.
    let p = Pcap {
        snaplen: 116,
        ..Pcap::default()
    };
    let evs = events(&p.file(&[v4.clone(), v6.clone()]));
    assert_eq!(evs[0].missing, None);
    assert_eq!(evs[0].tcp_flags, Some(TcpFlags(TcpFlags::SYN)));
    let e = &evs[1];
    assert_eq!((e.caplen, e.origlen), (116, 132));
    assert_eq!((e.src, e.dst), (ip("2001:db8::7"), ip("2001:db8::10")));
    assert_eq!((e.sport, e.dport), (Some(41854), Some(22)));
    assert_eq!(e.tcp_flags, None);
    assert_eq!(e.missing, Some(Missing::TcpFlags));
    assert_eq!(e.length, 60, "length comes from the IPv6 header");

    for (snaplen, missing, src, dport) in [
        (72, Some(Missing::Packet), None, None),
        (80, Some(Missing::IpAddresses), None, None),
        (88, Some(Missing::IpAddresses), ip("198.51.100.7"), None),
        (92, Some(Missing::Transport), ip("198.51.100.7"), None),
        (96, Some(Missing::TcpFlags), ip("198.51.100.7"), Some(22)),
        (106, None, ip("198.51.100.7"), Some(22)),
    ] {
        let p = Pcap {
            snaplen,
            ..Pcap::default()
        };
        let e = &events(&p.file(std::slice::from_ref(&v4)))[0];
        assert_eq!(e.missing, missing, "snaplen {snaplen}");
        assert_eq!(e.src, src, "snaplen {snaplen}");
        assert_eq!(e.dport, dport, "snaplen {snaplen}");
        assert_eq!(e.length, 40, "snaplen {snaplen}");
        assert_default_header(e, pcap::Layout::FreeBsd);
    }
    // A snap length cutting the pflog header itself is a record error.
    let p = Pcap {
        snaplen: 60,
        ..Pcap::default()
    };
    let r = read_all(&p.file(&[v4.clone(), v4]));
    let e = r[0].as_ref().unwrap_err();
    assert!(!e.fatal);
    assert_eq!(
        e.to_string(),
        "mem.pcap: record 0 at offset 24: pflog header truncated: 60 bytes captured, header needs 72"
    );
    assert!(r[1].is_err());
}

#[test]
fn malformed_files_are_clear_errors() {
    let good = Rec::tcp("198.51.100.7", "192.0.2.10", 41854, 22);
    let msg = |bytes: &[u8]| -> Vec<String> {
        read_all(bytes)
            .into_iter()
            .map(|r| match r {
                Ok(e) => format!("ok {}", e.dport.unwrap_or(0)),
                Err(e) => format!("{}{e}", if e.fatal { "fatal " } else { "" }),
            })
            .collect()
    };
    let ethernet = Pcap {
        linktype: 1,
        ..Pcap::default()
    }
    .file(std::slice::from_ref(&good));
    assert_eq!(
        msg(&ethernet),
        ["fatal mem.pcap: offset 0: link type 1 is not pflog (117)"]
    );
    assert_eq!(
        msg(b"hello, world, not a capture"),
        ["fatal mem.pcap: offset 0: not a pcap or pcapng file (magic 0x6c6c6568)"]
    );
    assert_eq!(
        msg(b""),
        ["fatal mem.pcap: offset 0: file header truncated: 0 of 4 bytes present at end of file"]
    );
    let p = Pcap::default();
    assert_eq!(
        msg(&p.file_header()[..20]),
        [
            "fatal mem.pcap: offset 0: pcap file header truncated: 20 of 24 bytes present at end of file"
        ]
    );
    assert!(msg(&p.file_header()).is_empty());

    // A header length out of range spoils one record, not the file.
    let mut bytes = p.file_header();
    bytes.extend(p.record(&good));
    let bad_at = bytes.len();
    bytes.extend(p.record(&good));
    bytes[bad_at + 16] = 101;
    bytes.extend(p.record(&good));
    assert_eq!(
        msg(&bytes),
        [
            "ok 22".to_string(),
            format!(
                "mem.pcap: record 1 at offset {bad_at}: pflog header length 101 out of range (61 to 100)"
            ),
            "ok 22".to_string(),
        ]
    );
    bytes[bad_at + 16] = 3;
    assert!(msg(&bytes)[1].ends_with("pflog header length 3 out of range (61 to 100)"));

    // A record that claims an impossible length loses the framing.
    bytes[bad_at + 8..bad_at + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        msg(&bytes),
        [
            "ok 22".to_string(),
            format!(
                "fatal mem.pcap: record 1 at offset {bad_at}: record claims 4294967295 captured bytes, more than the limit of 262144"
            ),
        ]
    );
    // A length that points past the end of the file: truncated.
    bytes[bad_at + 8..bad_at + 12].copy_from_slice(&5000u32.to_le_bytes());
    assert_eq!(
        msg(&bytes)[1],
        format!(
            "fatal mem.pcap: record 1 at offset {bad_at}: record truncated: {} of 5016 bytes present at end of file",
            bytes.len() - bad_at
        )
    );
    // A file cut inside a record header.
    let cut = p.file(&[good.clone(), good.clone()]);
    let cut = &cut[..cut.len() - good.bytes(false).len() - 6];
    assert_eq!(
        msg(cut)[1],
        format!(
            "fatal mem.pcap: record 1 at offset {}: record header truncated: 10 of 16 bytes present at end of file",
            cut.len() - 10
        )
    );
    // pcapng: a packet for an interface nobody declared, a wrong link type, a lying block.
    let ng = PcapNg::default();
    let mut b = ng.section_header();
    b.extend(ng.packet(&good));
    assert!(
        msg(&b)[0]
            .ends_with("packet block names interface 0, which no interface description declared")
    );
    let eth = PcapNg {
        linktype: 1,
        ..PcapNg::default()
    };
    let b = eth.file(std::slice::from_ref(&good));
    assert!(
        msg(&b)[0].ends_with("record 0 at offset 60: interface 0 has link type 1, not pflog (117)"),
        "{:?}",
        msg(&b)
    );
    let mut b = ng.file(std::slice::from_ref(&good));
    let at = b.len() - ng.packet(&good).len();
    b[at + 4..at + 8].copy_from_slice(&7u32.to_le_bytes());
    assert_eq!(
        msg(&b),
        [format!(
            "fatal mem.pcap: record 0 at offset {at}: malformed pcapng block: block length 7"
        )]
    );
}

#[test]
fn reading_a_file_names_it_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pflog");
    fs::write(&path, b"\xd4\xc3\xb2\xa1\x02\x00").unwrap();
    let errs: Vec<String> = PflogReader::open(&path)
        .unwrap()
        .map(|r| r.unwrap_err().to_string())
        .collect();
    assert_eq!(
        errs,
        [format!(
            "{}: offset 0: pcap file header truncated: 6 of 24 bytes present at end of file",
            path.display()
        )]
    );
    let missing = dir.path().join("nope");
    let err = PflogReader::open(&missing).err().unwrap();
    assert!(
        err.to_string()
            .starts_with(&format!("{}: read failed:", missing.display()))
    );
}

// ---------------------------------------------------------------------------------------
// Following a growing, rotating file.

fn append(path: &Path, bytes: &[u8]) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}

fn ports(items: Vec<Result<PflogEvent, PflogError>>) -> Vec<u16> {
    items
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|e| panic!("unexpected error: {e}"))
                .dport
                .unwrap()
        })
        .collect()
}

fn rec(port: u16) -> Rec {
    Rec::tcp("198.51.100.7", "192.0.2.10", 40000, port)
}

#[test]
fn tail_waits_for_a_torn_last_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pflog");
    let p = Pcap {
        snaplen: 116,
        ..Pcap::default()
    };
    let mut tail = PflogTail::new(&path, StartAt::Beginning);
    assert!(tail.poll().items.is_empty(), "no file yet");
    // Even the file header arrives in pieces.
    let header = p.file_header();
    append(&path, &header[..10]);
    assert!(tail.poll().items.is_empty());
    append(&path, &header[10..]);
    append(&path, &p.record(&rec(1)));
    assert_eq!(ports(tail.poll().items), [1]);
    let r2 = p.record(&rec(2));
    for cut in [1, 15, 16, 17, 60, r2.len() - 1] {
        let before = tail.position().unwrap().offset;
        let r = p.record(&rec(cut as u16 + 100));
        append(&path, &r[..cut]);
        assert!(tail.poll().items.is_empty(), "torn at {cut}");
        assert_eq!(
            tail.position().unwrap().offset,
            before,
            "position stays before the torn record"
        );
        append(&path, &r[cut..]);
        assert_eq!(ports(tail.poll().items), [cut as u16 + 100]);
        assert_eq!(tail.position().unwrap().offset, before + r.len() as u64);
    }
    assert!(tail.poll().items.is_empty());
}

#[test]
fn tail_survives_rotation_without_losing_or_doubling_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pflog");
    let p = Pcap::default();
    let mut tail = PflogTail::new(&path, StartAt::Beginning);
    let mut seen = Vec::new();
    let mut next = 0u16;
    let mut write = |path: &Path, n: u16| {
        let mut b = Vec::new();
        for _ in 0..n {
            b.extend(p.record(&rec(next)));
            next += 1;
        }
        append(path, &b);
    };
    fs::write(&path, p.file_header()).unwrap();
    write(&path, 3);
    seen.extend(ports(tail.poll().items));
    for round in 0..3 {
        write(&path, 2);
        let old = dir.path().join(format!("pflog.{round}"));
        // newsyslog renames; pflogd keeps its descriptor and flushes into the renamed file.
        fs::rename(&path, &old).unwrap();
        write(&old, 2);
        // Nothing at the path yet: the old file is still read.
        seen.extend(ports(tail.poll().items));
        write(&old, 1);
        // pflogd reopens: a new file with a fresh header.
        fs::write(&path, p.file_header()).unwrap();
        write(&path, 2);
        seen.extend(ports(tail.poll().items));
        assert_eq!(
            tail.position().unwrap().ino,
            fs::metadata(&path)
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                .unwrap()
        );
    }
    write(&path, 1);
    seen.extend(ports(tail.poll().items));
    assert_eq!(seen, (0..next).collect::<Vec<_>>());
}

#[test]
fn tail_reports_a_rotated_file_that_ends_in_a_torn_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pflog");
    let p = Pcap::default();
    let mut bytes = p.file(&[rec(1)]);
    let torn = p.record(&rec(2));
    bytes.extend(&torn[..20]);
    fs::write(&path, &bytes).unwrap();
    let mut tail = PflogTail::new(&path, StartAt::Beginning);
    assert_eq!(ports(tail.poll().items), [1]);
    fs::rename(&path, dir.path().join("pflog.0")).unwrap();
    fs::write(&path, p.file(&[rec(3)])).unwrap();
    let items = tail.poll().items;
    assert_eq!(items.len(), 2);
    let err = items[0].as_ref().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: record 1 at offset {}: file was rotated with 20 bytes of an incomplete record at its end",
            path.display(),
            bytes.len() - 20
        )
    );
    assert_eq!(items[1].as_ref().unwrap().dport, Some(3));
}

#[test]
fn tail_resumes_from_a_saved_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pflog");
    for ng in [false, true] {
        let (header, recs): (Vec<u8>, Vec<Vec<u8>>) = if ng {
            let n = PcapNg::default();
            let mut h = n.section_header();
            h.extend(n.interface());
            (h, (0..6).map(|i| n.packet(&rec(i))).collect())
        } else {
            let p = Pcap::default();
            (p.file_header(), (0..6).map(|i| p.record(&rec(i))).collect())
        };
        fs::write(&path, &header).unwrap();
        for r in &recs[..3] {
            append(&path, r);
        }
        let mut tail = PflogTail::new(&path, StartAt::Beginning);
        assert_eq!(ports(tail.poll().items), [0, 1, 2]);
        let saved = tail.position().unwrap();
        let json = serde_json::to_string(&saved).unwrap();
        drop(tail);
        for r in &recs[3..] {
            append(&path, r);
        }
        let saved = serde_json::from_str(&json).unwrap();
        let mut tail = PflogTail::new(&path, StartAt::Resume(saved));
        assert_eq!(ports(tail.poll().items), [3, 4, 5], "pcapng={ng}");
        // A position of another file (rotated meanwhile) means reading the new file whole.
        let other = warden::source::pflog::PflogPosition {
            ino: saved.ino + 1,
            ..saved
        };
        let mut tail = PflogTail::new(&path, StartAt::Resume(other));
        assert_eq!(ports(tail.poll().items), [0, 1, 2, 3, 4, 5]);
        // Starting at the end reads only what comes later.
        let mut tail = PflogTail::new(&path, StartAt::End);
        assert!(tail.poll().items.is_empty());
        append(&path, &recs[0]);
        assert_eq!(ports(tail.poll().items), [0]);
        fs::remove_file(&path).unwrap();
    }
}

#[test]
fn tail_rereads_a_file_truncated_in_place_and_hands_out_bounded_batches() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pflog");
    let p = Pcap::default();
    fs::write(&path, p.file(&(0..10).map(rec).collect::<Vec<_>>())).unwrap();
    let mut tail = PflogTail::new(&path, StartAt::Beginning).with_batch_limit(4);
    let mut got = Vec::new();
    let mut polls = 0;
    loop {
        let polled = tail.poll();
        polls += 1;
        got.extend(ports(polled.items));
        if !polled.more {
            break;
        }
    }
    assert_eq!(got, (0..10).collect::<Vec<_>>());
    assert_eq!(polls, 3);
    // copytruncate: same inode, shorter file.
    fs::write(&path, p.file(&[rec(42)])).unwrap();
    assert_eq!(ports(tail.poll().items), [42]);
}

#[test]
fn tail_abandons_a_broken_file_until_it_is_rotated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pflog");
    fs::write(&path, b"garbage that is not a capture file").unwrap();
    let mut tail = PflogTail::new(&path, StartAt::Beginning);
    let items = tail.poll().items;
    assert_eq!(items.len(), 1);
    assert!(items[0].as_ref().unwrap_err().fatal);
    append(&path, b"more garbage");
    assert!(tail.poll().items.is_empty(), "the error is reported once");
    fs::remove_file(&path).unwrap();
    fs::write(&path, Pcap::default().file(&[rec(7)])).unwrap();
    assert_eq!(ports(tail.poll().items), [7]);
}

// ---------------------------------------------------------------------------------------
// `warden pflog` and tcpdump.

fn mixed_records() -> Vec<Rec> {
    let mut recs = Vec::new();
    for (i, l) in pcap::Layout::ALL.into_iter().enumerate() {
        let i = i as u16;
        let mut r = Rec::tcp("198.51.100.7", "192.0.2.10", 41854 + i, 22).with_layout(l);
        r.sec = 1_700_000_000 + i as u32;
        recs.push(r.clone());
        let mut r6 = Rec::tcp("2001:db8::7", "2001:db8::10", 50000 + i, 443).with_layout(l);
        r6.ruleset = "web".into();
        r6.rulenr = 9;
        r6.subrulenr = 3;
        r6.dir = 2;
        recs.push(r6);
        let mut u = Rec::udp("198.51.100.8", "192.0.2.10", 5353, 1000 + i).with_layout(l);
        u.ruleset = String::new();
        u.subrulenr = u32::MAX;
        u.rulenr = 2;
        u.action = 0;
        recs.push(u);
        recs.push(Rec::echo("198.51.100.9", "192.0.2.10", 1, i).with_layout(l));
        recs.push(Rec::echo("2001:db8::9", "2001:db8::10", 2, i).with_layout(l));
    }
    recs
}

#[test]
fn decoding_agrees_with_tcpdump_record_by_record() {
    if Command::new("tcpdump").arg("--version").output().is_err() {
        panic!("tcpdump is not installed (apt-get install tcpdump)");
    }
    let dir = tempfile::tempdir().unwrap();
    let line_re = regex::Regex::new(
        r"^(\d\d:\d\d:\d\d\.\d{6}) rule (\d+)(?:\.(.*?)\.(\d+))?/(\d+)\(([a-z-]+)\)((?: \[[^\]]*\])*): (\S+) (in|out|in/out|fwd) on (\S+): (.*)$",
    )
    .unwrap();
    let endpoints = regex::Regex::new(r"^(\S+) > (\S+): ").unwrap();
    for (name, pcap) in [
        ("le", Pcap::default()),
        (
            "be-nanos",
            Pcap {
                big_endian: true,
                nanos: true,
                ..Pcap::default()
            },
        ),
        (
            "snap116",
            Pcap {
                snaplen: 116,
                ..Pcap::default()
            },
        ),
    ] {
        let path = dir.path().join(format!("{name}.pcap"));
        fs::write(&path, pcap.file(&mixed_records())).unwrap();
        let out = Command::new("tcpdump")
            .args(["-n", "-e", "-r"])
            .arg(&path)
            .env("TZ", "UTC")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tcpdump: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let evs: Vec<PflogEvent> = PflogReader::open(&path)
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(
            lines.len(),
            evs.len(),
            "{name}: one tcpdump line per record"
        );
        for (line, ev) in lines.iter().zip(&evs) {
            let c = line_re
                .captures(line)
                .unwrap_or_else(|| panic!("{name}: unexpected tcpdump line {line}"));
            let ours = ev.to_string();
            assert_eq!(&ours[..15], &c[1], "{name}: time");
            assert_eq!(c[2].parse::<u32>().ok(), ev.rule, "{name}: {line}");
            match ev.subrule {
                Some(s) => {
                    assert_eq!(&c[3], ev.ruleset.as_str(), "{name}: {line}");
                    assert_eq!(c[4].parse::<u32>().unwrap(), s, "{name}: {line}");
                }
                None => assert!(c.get(3).is_none(), "{name}: {line}"),
            }
            assert_eq!(c[5].parse::<u8>().unwrap(), ev.reason.0);
            assert_eq!(Some(&c[6]), ev.reason_name());
            assert_eq!(Some(&c[8]), ev.action.name(), "{name}: {line}");
            assert_eq!(Some(&c[9]), ev.dir.name(), "{name}: {line}");
            assert_eq!(&c[10], ev.interface.as_str());
            let packet = &c[11];
            if ev.src.is_none() || ev.dst.is_none() {
                assert!(
                    packet.contains("[|"),
                    "{name}: tcpdump should see a cut packet: {line}"
                );
                continue;
            }
            let e = endpoints
                .captures(packet)
                .unwrap_or_else(|| panic!("{name}: packet part {packet}"));
            let split = |s: &str, has_port: bool| -> (Option<IpAddr>, Option<u16>) {
                match s.rsplit_once('.').filter(|_| has_port) {
                    Some((a, p)) => (a.parse().ok(), p.parse().ok()),
                    None => (s.parse().ok(), None),
                }
            };
            assert_eq!(
                split(&e[1], ev.sport.is_some()),
                (ev.src, ev.sport),
                "{name}: {line}"
            );
            assert_eq!(
                split(&e[2], ev.dport.is_some()),
                (ev.dst, ev.dport),
                "{name}: {line}"
            );
            // Whole TCP lines print the same as tcpdump's.
            if ev.proto == Some(Protocol::TCP) && ev.missing.is_none() {
                assert_eq!(ours, *line, "{name}");
            }
        }
    }
}

fn warden() -> Command {
    Command::new(env!("CARGO_BIN_EXE_warden"))
}

#[test]
fn warden_pflog_prints_text_and_json_and_fails_on_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pflog");
    let recs = mixed_records();
    fs::write(&path, Pcap::default().file(&recs)).unwrap();
    let out = warden()
        .arg("pflog")
        .arg(&path)
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), recs.len());
    assert_eq!(
        lines[0],
        "22:13:20.123456 rule 5.sshd.0/0(match): block in on vtnet0: 198.51.100.7.41854 > 192.0.2.10.22: Flags [S], seq 123456789, win 65535, length 0"
    );
    assert_eq!(
        lines[2],
        "22:13:20.123456 rule 2/0(match): pass in on vtnet0: 198.51.100.8.5353 > 192.0.2.10.1000: UDP, length 0"
    );
    assert_eq!(
        lines[3],
        "22:13:20.123456 rule 5.sshd.0/0(match): block in on vtnet0: 198.51.100.9 > 192.0.2.10: ICMP echo request, id 1, seq 0, length 64"
    );
    assert_eq!(
        lines[4],
        "22:13:20.123456 rule 5.sshd.0/0(match): block in on vtnet0: 2001:db8::9 > 2001:db8::10: ICMP6, echo request, id 2, seq 0, length 64"
    );

    let out = warden()
        .arg("pflog")
        .arg("--json")
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["time"], "2023-11-14T22:13:20.123456Z");
    assert_eq!(first["action"], "block");
    assert_eq!(first["action_code"], 1);
    assert_eq!(first["reason"], "match");
    assert_eq!(first["dir"], "in");
    assert_eq!(first["interface"], "vtnet0");
    assert_eq!(first["ruleset"], "sshd");
    assert_eq!(first["rule"], 5);
    assert_eq!(first["subrule"], 0);
    assert_eq!(first["layout"], "openbsd");
    assert_eq!(first["proto"], "tcp");
    assert_eq!(first["src"], "198.51.100.7");
    assert_eq!(first["sport"], 41854);
    assert_eq!(first["dst"], "192.0.2.10");
    assert_eq!(first["dport"], 22);
    assert_eq!(first["tcp_flags"], "S");
    assert_eq!(first["uid"], serde_json::Value::Null);
    assert_eq!(first["missing"], serde_json::Value::Null);
    assert_eq!(text.lines().count(), recs.len());

    // A bad record in the middle: the rest is printed, the error names file and offset.
    let p = Pcap::default();
    let mut bytes = p.file(&recs[..2]);
    let at = bytes.len();
    bytes.extend(p.record(&recs[0]));
    bytes[at + 16] = 7;
    bytes.extend(p.record(&recs[1]));
    fs::write(&path, &bytes).unwrap();
    let out = warden().arg("pflog").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 3);
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(&format!(
            "{}: record 2 at offset {at}: pflog header length 7 out of range (61 to 100)",
            path.display()
        )),
        "{err}"
    );
    fs::write(&path, b"not a capture").unwrap();
    let out = warden().arg("pflog").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("offset 0: not a pcap or pcapng file")
    );
}

#[test]
fn errors_are_values_with_kinds() {
    let r = read_all(
        &Pcap {
            linktype: 228,
            ..Pcap::default()
        }
        .file(&[]),
    );
    assert!(matches!(
        r[0].as_ref().unwrap_err().kind,
        ErrorKind::LinkType(228)
    ));
}

// ---------------------------------------------------------------------------------------
// Jail-side use: selecting records and detecting scans in a capture.

#[test]
fn port_scan_jail_finds_only_the_scanner_in_a_capture() {
    use std::collections::BTreeMap;
    use warden::jail::portscan::{PortScanConfig, PortScanDetector, Probe, ScanKind};
    use warden::source::pflog::{MatchContext, PflogJailFilter};

    let mut recs = Vec::new();
    // A crowd: 40 addresses trying port 22 once each, over 40 s.
    for i in 0..40u8 {
        recs.push(
            Rec::tcp(&format!("203.0.113.{i}"), "192.0.2.10", 40000, 22)
                .at(1_700_000_000 + i as u32, 0),
        );
    }
    // A slow prober: 30 ports, one every 5 s (12 per minute).
    for i in 0..30u16 {
        recs.push(
            Rec::tcp("198.51.100.99", "192.0.2.10", 40000, 1000 + i)
                .at(1_700_000_000 + 5 * i as u32, 0),
        );
    }
    // A scanner: 20 ports in 2 s, interleaved with SYN-ACK noise and outbound blocks.
    for i in 0..20u16 {
        let mut r = Rec::tcp("198.51.100.7", "192.0.2.10", 40000, 20 + i)
            .at(1_700_000_100, i as u32 * 100_000_000);
        recs.push(r.clone());
        r.l4 = L4::Tcp {
            sport: 40000,
            dport: 5000 + i,
            seq: 1,
            ack: 1,
            flags: 0x12,
            win: 1,
        };
        recs.push(r.clone());
        r.dir = 2;
        r.l4 = L4::Tcp {
            sport: 40000,
            dport: 6000 + i,
            seq: 1,
            ack: 0,
            flags: 0x02,
            win: 1,
        };
        recs.push(r);
    }
    recs.sort_by_key(|r| (r.sec, r.nsec));
    let evs = events(&Pcap::default().file(&recs));

    let mut options = BTreeMap::new();
    options.insert(
        "pflog_match".to_string(),
        "action=block dir=in proto=tcp flags=S/SA\naction=block dir=in proto=udp".to_string(),
    );
    options.insert("pflog_ignore".to_string(), "ruleset=@jails".to_string());
    options.insert("pflog_detect".to_string(), "portscan".to_string());
    options.insert("portscan_ports".to_string(), "15".to_string());
    let ctx = MatchContext {
        jails: vec!["recidive-only".into()],
    };
    let filter = PflogJailFilter::from_options(&options, &ctx).unwrap();
    let mut det =
        PortScanDetector::new(PortScanConfig::from_options(&options, 60).unwrap().unwrap());
    let mut failures = Vec::new();
    for e in &evs {
        if filter.failure_host(e).is_some()
            && let Some(f) = det.observe(e.epoch(), Probe::from_event(e).unwrap())
        {
            failures.push(f);
        }
    }
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].src, "198.51.100.7".parse::<IpAddr>().unwrap());
    assert_eq!(failures[0].kind, ScanKind::Ports);
    assert_eq!(failures[0].targets.len(), 15);
    assert!(
        failures[0]
            .targets
            .iter()
            .all(|t| t.starts_with("tcp/") && t[4..].parse::<u16>().unwrap() < 40)
    );
}

#[test]
fn recidive_filter_selects_blocks_by_warden_anchors() {
    use std::collections::BTreeMap;
    use warden::source::pflog::{MatchContext, PflogJailFilter};

    let mut recs = Vec::new();
    for (i, ruleset) in [
        "sshd",
        "nginx-http-auth",
        "pf-recidive",
        "",
        "someone-else",
        "postfix-sasl-lon",
    ]
    .iter()
    .enumerate()
    {
        let mut r = Rec::tcp(&format!("198.51.100.{i}"), "192.0.2.10", 40000, 22);
        r.ruleset = ruleset.to_string();
        recs.push(r.clone());
        r.action = 0;
        recs.push(r);
    }
    let evs = events(&Pcap::default().file(&recs));
    let mut options = BTreeMap::new();
    options.insert(
        "pflog_match".to_string(),
        "action=block dir=in ruleset=@jails".to_string(),
    );
    options.insert(
        "pflog_ignore".to_string(),
        "ruleset=pf-recidive".to_string(),
    );
    let ctx = MatchContext {
        jails: [
            "sshd",
            "nginx-http-auth",
            "pf-recidive",
            "postfix-sasl-long-name",
        ]
        .map(String::from)
        .to_vec(),
    };
    let filter = PflogJailFilter::from_options(&options, &ctx).unwrap();
    let hosts: Vec<String> = evs
        .iter()
        .filter_map(|e| filter.failure_host(e))
        .map(|a| a.to_string())
        .collect();
    // The writer, like PF, keeps 15 bytes of the anchor name.
    assert_eq!(hosts, ["198.51.100.0", "198.51.100.1", "198.51.100.5"]);
}
