//! Writes a pflog pcap file of synthetic records, for the benchmark in `bench/pflog.sh`:
//! `pflog_gen OUT RECORDS [snaplen]`. The records cycle through the three header layouts,
//! IPv4 and IPv6, TCP, UDP and ICMP, with varying addresses and ports.

#[path = "../tests/support/pcap.rs"]
mod pcap;

use std::io::{BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use pcap::{L4, Layout, Pcap, Rec};

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: pflog_gen OUT RECORDS [SNAPLEN]");
        std::process::exit(2);
    }
    let records: u64 = args[2].parse().expect("RECORDS is a number");
    let snaplen: u32 = args
        .get(3)
        .map_or(160, |s| s.parse().expect("SNAPLEN is a number"));
    let p = Pcap {
        snaplen,
        ..Pcap::default()
    };
    let mut out = BufWriter::new(std::fs::File::create(&args[1])?);
    out.write_all(&p.file_header())?;
    for i in 0..records {
        let n = i as u32;
        let v6 = i % 4 == 3;
        let mut r = Rec::tcp("198.51.100.1", "192.0.2.1", 0, 0);
        (r.src, r.dst) = if v6 {
            (
                IpAddr::V6(Ipv6Addr::new(
                    0x2001,
                    0xdb8,
                    0,
                    0,
                    0,
                    0,
                    (n >> 16) as u16,
                    n as u16,
                )),
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1)),
            )
        } else {
            (
                IpAddr::V4(Ipv4Addr::from(
                    0xc633_6400 | (n & 0xff) | ((n >> 8) & 0xff) << 8,
                )),
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
            )
        };
        r.layout = Layout::ALL[(i % 3) as usize];
        r.l4 = match i % 10 {
            8 => L4::Udp {
                sport: 1024 + (n % 60000) as u16,
                dport: 53,
            },
            9 => L4::Echo {
                id: n as u16,
                seq: 1,
            },
            _ => L4::Tcp {
                sport: 1024 + (n % 60000) as u16,
                dport: (n % 1024) as u16,
                seq: n,
                ack: 0,
                flags: 0x02,
                win: 65535,
            },
        };
        r.sec = 1_700_000_000 + n / 1000;
        r.nsec = (n % 1000) * 1_000_000;
        out.write_all(&p.record(&r))?;
    }
    out.flush()
}
