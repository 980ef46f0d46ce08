//! Ledger costs: bytes on disk per ban (printed before the timings), the time to record
//! 10,000 bans one by one against batched, the price of `synchronous=FULL`, and lookups
//! in a ledger of 100,000 holds.
//!
//! Run with `cargo bench -j2 --bench ledger`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{BatchSize, BenchmarkId, Criterion};
use ipnet::IpNet;
use tempfile::TempDir;
use warden::ledger::{Durability, Ledger, LedgerOptions, NewBan};

const T0: i64 = 1_700_000_000;

fn host(i: u32) -> IpNet {
    IpNet::from(IpAddr::from(Ipv4Addr::from(0x0a00_0000 + i)))
}

/// A ban as an sshd jail records it: 5 failures, the 3 lines that matched, a user name.
fn sshd_ban(target: IpNet, start: i64) -> NewBan {
    let mut b = NewBan::new(target, "sshd", start, 600);
    b.failures = 5;
    b.matches = (0..3)
        .map(|k| {
            format!(
                "Nov 21 05:38:5{k} host sshd[1234{k}]: Failed password for invalid user admin \
                 from {} port 4{k}222 ssh2",
                target.addr()
            )
        })
        .collect();
    b.fields = BTreeMap::from([("user".to_string(), "admin".to_string())]);
    b
}

fn fresh(durability: Durability) -> (TempDir, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let opts = LedgerOptions {
        durability,
        ..LedgerOptions::default()
    };
    let ledger = Ledger::open(&dir.path().join("ledger.db"), opts).unwrap();
    (dir, ledger)
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Records `bans`, closes the ledger (checkpointing the WAL into the file), and prints
/// the file size per ban.
fn measure_size(label: &str, bans: Vec<NewBan>, max_matches: u32) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let opts = LedgerOptions {
        max_matches,
        ..LedgerOptions::default()
    };
    let mut l = Ledger::open(&path, opts).unwrap();
    let n = bans.len();
    let started = Instant::now();
    for chunk in bans.chunks(1000) {
        l.record_bans(chunk).unwrap();
    }
    let took = started.elapsed();
    let size = l.size().unwrap();
    l.close().unwrap();
    let bytes = file_size(&path);
    println!(
        "ledger size: {label}: {n} bans, {} holds, {} events: {bytes} bytes, {:.0} bytes/ban \
         (recorded in {:.2?})",
        size.holds,
        size.events,
        bytes as f64 / n as f64,
        took
    );
}

fn size_report() {
    const N: u32 = 100_000;
    // Every ban a different address: one hold and one event per ban.
    measure_size(
        "distinct addresses, 3 matches kept",
        (0..N)
            .map(|i| sshd_ban(host(i), T0 + i64::from(i)))
            .collect(),
        10,
    );
    measure_size(
        "distinct addresses, dbmaxmatches=0",
        (0..N)
            .map(|i| sshd_ban(host(i), T0 + i64::from(i)))
            .collect(),
        0,
    );
    // 1,000 addresses banned 100 times each: history dominates.
    measure_size(
        "1,000 addresses banned 100 times",
        (0..N)
            .map(|i| sshd_ban(host(i % 1000), T0 + i64::from(i / 1000) * 700))
            .collect(),
        10,
    );
}

fn record_10k(c: &mut Criterion) {
    const N: u32 = 10_000;
    let bans: Vec<NewBan> = (0..N).map(|i| sshd_ban(host(i), T0)).collect();
    let mut g = c.benchmark_group("record_10k");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("one_by_one", |b| {
        b.iter_batched(
            || fresh(Durability::Normal),
            |(dir, mut l)| {
                for ban in &bans {
                    black_box(l.record_ban(ban).unwrap());
                }
                (dir, l)
            },
            BatchSize::PerIteration,
        )
    });
    for batch in [100usize, 10_000] {
        g.bench_with_input(
            BenchmarkId::new("batches_of", batch),
            &batch,
            |b, &batch| {
                b.iter_batched(
                    || fresh(Durability::Normal),
                    |(dir, mut l)| {
                        for chunk in bans.chunks(batch) {
                            black_box(l.record_bans(chunk).unwrap());
                        }
                        (dir, l)
                    },
                    BatchSize::PerIteration,
                )
            },
        );
    }
    g.finish();
}

fn record_full_sync(c: &mut Criterion) {
    // One fsync per commit: 200 bans keep a sample short on slow disks.
    const N: u32 = 200;
    let bans: Vec<NewBan> = (0..N).map(|i| sshd_ban(host(i), T0)).collect();
    let mut g = c.benchmark_group("record_200_sync_full");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(15));
    g.bench_function("one_by_one", |b| {
        b.iter_batched(
            || fresh(Durability::Full),
            |(dir, mut l)| {
                for ban in &bans {
                    black_box(l.record_ban(ban).unwrap());
                }
                (dir, l)
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("one_batch", |b| {
        b.iter_batched(
            || fresh(Durability::Full),
            |(dir, mut l)| {
                black_box(l.record_bans(&bans).unwrap());
                (dir, l)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn lookups_100k(c: &mut Criterion) {
    const N: u32 = 100_000;
    let (_dir, mut l) = fresh(Durability::Normal);
    let bans: Vec<NewBan> = (0..N)
        .map(|i| sshd_ban(host(i * 7), T0 + i64::from(i % 3600)))
        .collect();
    for chunk in bans.chunks(1000) {
        l.record_bans(chunk).unwrap();
    }
    let mut g = c.benchmark_group("lookups_100k_holds");
    let mut i = 0u32;
    g.bench_function("holders_of_a_host", |b| {
        b.iter(|| {
            i = (i + 7919) % (N * 7);
            black_box(l.holders(&host(i), T0).unwrap())
        })
    });
    g.bench_function("next_expiry", |b| {
        b.iter(|| black_box(l.next_expiry().unwrap()))
    });
    g.bench_function("prior_bans", |b| {
        b.iter(|| {
            i = (i + 7919) % (N * 7);
            black_box(l.prior_bans(&host(i), "sshd", true).unwrap())
        })
    });
    let mut next = N * 7;
    g.bench_function("record_one_more", |b| {
        b.iter(|| {
            next += 1;
            black_box(l.record_ban(&sshd_ban(host(next), T0)).unwrap())
        })
    });
    g.finish();
}

fn main() {
    let listing = std::env::args().any(|a| a == "--list" || a == "--test");
    if !listing {
        size_report();
    }
    let mut c = Criterion::default().configure_from_args();
    record_10k(&mut c);
    record_full_sync(&mut c);
    lookups_100k(&mut c);
    c.final_summary();
}
