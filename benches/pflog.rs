//! pflog throughput: decoding a capture in memory, matching decoded records with a jail
//! filter, and counting probes in the port-scan detector. `bench/pflog.sh` compares the
//! whole `warden pflog` command with tcpdump.

#[path = "../tests/support/pcap.rs"]
mod pcap;

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use warden::jail::portscan::{PortScanConfig, PortScanDetector, Probe};
use warden::source::pflog::{MatchContext, PflogEvent, PflogFilter, PflogReader};

use pcap::{Layout, Pcap, Rec};

const RECORDS: usize = 100_000;

fn capture() -> Vec<u8> {
    let p = Pcap {
        snaplen: 160,
        ..Pcap::default()
    };
    let mut bytes = p.file_header();
    for i in 0..RECORDS {
        let n = i as u32;
        let mut r = if i % 4 == 3 {
            Rec::tcp("2001:db8::7", "2001:db8::10", 40000, (n % 1024) as u16)
        } else {
            Rec::tcp("198.51.100.7", "192.0.2.10", 40000, (n % 1024) as u16)
        };
        if i % 4 != 3 {
            r.src = IpAddr::V4(Ipv4Addr::from(0xc633_6400 | (n & 0xff)));
        }
        r.layout = Layout::ALL[i % 3];
        bytes.extend(p.record(&r));
    }
    bytes
}

fn bench(c: &mut Criterion) {
    let bytes = capture();
    let mut g = c.benchmark_group("pflog");
    g.throughput(Throughput::Elements(RECORDS as u64));
    g.bench_function("decode_100k_records", |b| {
        b.iter(|| {
            let n = PflogReader::new(black_box(&bytes[..]), "bench")
                .filter(|r| r.is_ok())
                .count();
            assert_eq!(n, RECORDS);
        })
    });

    let events: Vec<PflogEvent> = PflogReader::new(&bytes[..], "bench")
        .map(|r| r.expect("generated records decode"))
        .collect();
    let filter = PflogFilter::parse(
        "action=block dir=in ruleset=sshd proto=tcp dport=22,80,1000-2000 !src=10.0.0.0/8",
        &MatchContext::default(),
    )
    .expect("filter parses");
    g.bench_function("match_100k_records", |b| {
        b.iter(|| {
            events
                .iter()
                .filter(|e| filter.matches(black_box(e)))
                .count()
        })
    });

    g.bench_function("portscan_100k_probes", |b| {
        b.iter(|| {
            let mut d = PortScanDetector::new(PortScanConfig {
                ports: 30,
                hosts: 0,
                findtime: 60,
                max_sources: 10_000,
            });
            let mut found = 0;
            for (i, e) in events.iter().enumerate() {
                if let Some(p) = Probe::from_event(e)
                    && d.observe(1_700_000_000 + (i / 1000) as i64, p).is_some()
                {
                    found += 1;
                }
            }
            found
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
