//! Property tests for the pflog decoder, mirroring the fuzz target
//! (`fuzz/fuzz_targets/pflog_decode.rs`) so stable CI runs the same entry point: random
//! bytes and mutated valid captures never panic, fatal errors end the stream, and a file
//! that grows in arbitrary pieces yields exactly the records of the whole file.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::IpAddr;

use proptest::prelude::*;
use warden::source::pflog::{self, PflogEvent, PflogReader, PflogTail, StartAt};

use crate::support::pcap::{L4, Layout, Pcap, PcapNg, Rec};

fn rec_strategy() -> impl Strategy<Value = Rec> {
    (
        0usize..3,
        any::<bool>(),
        0u8..3,
        any::<(u16, u16, u32, u8)>(),
        (any::<u32>(), 0u32..1_000_000_000),
        0usize..40,
        any::<(u8, u8, u8, u32, u32)>(),
    )
        .prop_map(
            |(
                layout,
                v6,
                kind,
                (sport, dport, seq, flags),
                (sec, nsec),
                payload,
                (action, reason, dir, rule, uid),
            )| {
                let (src, dst) = if v6 {
                    ("2001:db8::7", "2001:db8::10")
                } else {
                    ("198.51.100.7", "192.0.2.10")
                };
                let mut r = Rec::tcp(src, dst, sport, dport).with_layout(Layout::ALL[layout]);
                r.l4 = match kind {
                    0 => L4::Tcp {
                        sport,
                        dport,
                        seq,
                        ack: seq ^ 1,
                        flags,
                        win: 1024,
                    },
                    1 => L4::Udp { sport, dport },
                    _ => L4::Echo {
                        id: sport,
                        seq: dport,
                    },
                };
                r.sec = sec;
                r.nsec = nsec / 1000 * 1000;
                r.payload = payload;
                r.action = action;
                r.reason = reason;
                r.dir = dir;
                r.rulenr = rule;
                r.uid = uid;
                r
            },
        )
}

#[derive(Debug, Clone)]
enum Format {
    Pcap(Pcap),
    Ng(PcapNg),
}

fn format_strategy() -> impl Strategy<Value = Format> {
    prop_oneof![
        (
            any::<bool>(),
            any::<bool>(),
            prop_oneof![Just(65535u32), 100u32..200]
        )
            .prop_map(|(big_endian, nanos, snaplen)| Format::Pcap(Pcap {
                big_endian,
                nanos,
                snaplen,
                linktype: 117
            })),
        (
            any::<bool>(),
            prop_oneof![Just(6u8), Just(9u8)],
            prop_oneof![Just(65535u32), 100u32..200]
        )
            .prop_map(|(big_endian, tsresol, snaplen)| Format::Ng(PcapNg {
                big_endian,
                tsresol,
                snaplen,
                linktype: 117
            })),
    ]
}

fn file(format: &Format, recs: &[Rec]) -> Vec<u8> {
    match format {
        Format::Pcap(p) => p.file(recs),
        Format::Ng(n) => n.file(recs),
    }
}

/// Every item until the first fatal error, which must be the last.
fn read(bytes: &[u8]) -> Vec<Result<PflogEvent, String>> {
    let items: Vec<_> = PflogReader::new(bytes, "prop").collect();
    for (i, it) in items.iter().enumerate() {
        if let Err(e) = it {
            assert!(!e.to_string().is_empty());
            if e.fatal {
                assert_eq!(i, items.len() - 1, "a fatal error ends the stream");
            }
        }
    }
    items
        .into_iter()
        .map(|r| r.map_err(|e| e.to_string()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        pflog::decode_everything(&data);
        read(&data);
    }

    #[test]
    fn random_bytes_behind_a_valid_header_never_panic(
        be in any::<bool>(),
        data in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut bytes = Pcap { big_endian: be, ..Pcap::default() }.file_header();
        bytes.extend(&data);
        pflog::decode_everything(&bytes);
        let mut ng = PcapNg { big_endian: be, ..PcapNg::default() }.section_header();
        ng.extend(PcapNg { big_endian: be, ..PcapNg::default() }.interface());
        ng.extend(&data);
        pflog::decode_everything(&ng);
    }

    #[test]
    fn mutated_valid_files_never_panic(
        format in format_strategy(),
        recs in proptest::collection::vec(rec_strategy(), 1..6),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = file(&format, &recs);
        for (at, v) in flips {
            let i = at.index(bytes.len());
            bytes[i] = v;
        }
        pflog::decode_everything(&bytes);
        read(&bytes);
        let end = cut.index(bytes.len() + 1);
        read(&bytes[..end]);
    }

    #[test]
    fn valid_files_decode_every_record(
        format in format_strategy(),
        recs in proptest::collection::vec(rec_strategy(), 0..8),
    ) {
        let bytes = file(&format, &recs);
        let items = read(&bytes);
        prop_assert_eq!(items.len(), recs.len());
        let full = match &format { Format::Pcap(p) => p.snaplen >= 65535, Format::Ng(n) => n.snaplen >= 65535 };
        for (item, r) in items.iter().zip(&recs) {
            let e = item.as_ref().unwrap();
            prop_assert_eq!(e.action.0, r.action);
            prop_assert_eq!(e.reason.0, r.reason);
            prop_assert_eq!(e.dir.0, r.dir);
            prop_assert_eq!(e.rule, (r.rulenr != u32::MAX).then_some(r.rulenr));
            prop_assert_eq!(e.time.as_second(), r.sec as i64);
            if full {
                prop_assert_eq!(e.missing, None);
                prop_assert_eq!(e.src, Some(r.src));
                prop_assert_eq!(e.dst, Some(r.dst));
                let (sport, dport) = match r.l4 {
                    L4::Tcp { sport, dport, .. } | L4::Udp { sport, dport } => (Some(sport), Some(dport)),
                    L4::Echo { .. } => (None, None),
                };
                prop_assert_eq!((e.sport, e.dport), (sport, dport));
                if let L4::Tcp { flags, .. } = r.l4 {
                    prop_assert_eq!(e.tcp_flags.map(|f| f.0), Some(flags));
                }
            } else {
                // Whatever survives the snap length is right.
                prop_assert!(e.src.is_none() || e.src == Some(r.src));
                prop_assert!(e.dst.is_none() || e.dst == Some(r.dst));
            }
            prop_assert!(matches!(e.src, Some(IpAddr::V4(_)) | Some(IpAddr::V6(_)) | None));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Appending a file in arbitrary pieces and polling after each gives the records of
    /// the whole file, once each, in order: torn records are waited for, never lost.
    #[test]
    fn a_file_growing_in_pieces_yields_the_whole_file(
        format in format_strategy(),
        recs in proptest::collection::vec(rec_strategy(), 1..12),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        batch in 1usize..5,
    ) {
        let bytes = file(&format, &recs);
        let whole: Vec<_> = read(&bytes);
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len())).collect();
        cuts.push(bytes.len());
        cuts.sort_unstable();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pflog");
        let mut tail = PflogTail::new(&path, StartAt::Beginning).with_batch_limit(batch);
        let mut got = Vec::new();
        let mut written = 0;
        let mut f = OpenOptions::new().create(true).append(true).open(&path).unwrap();
        for c in cuts {
            f.write_all(&bytes[written..c]).unwrap();
            written = c;
            loop {
                let polled = tail.poll();
                got.extend(polled.items.into_iter().map(|r| r.map_err(|e| e.to_string())));
                if !polled.more {
                    break;
                }
            }
        }
        prop_assert_eq!(got.len(), whole.len());
        for (a, b) in got.iter().zip(&whole) {
            match (a, b) {
                (Ok(x), Ok(y)) => prop_assert_eq!(x, y),
                (Err(x), Err(y)) => prop_assert_eq!(x.replace(&path.display().to_string(), "prop"), y.clone()),
                _ => prop_assert!(false, "{a:?} != {b:?}"),
            }
        }
    }
}
