//! Date detection throughput: lines per second for common formats with the template
//! cached (the steady state of a log source), and the worst case of a line without a date,
//! where every template is tried.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use warden::date::DateDetector;

const LINES: usize = 1000;

fn lines(f: impl Fn(usize) -> String) -> Vec<String> {
    (0..LINES).map(f).collect()
}

fn bench_case(c: &mut Criterion, name: &str, datepattern: Option<&str>, input: &[String]) {
    let zone = TimeZone::posix("CET-01CEST-02,M3.5.0,M10.5.0").unwrap();
    let now = Timestamp::from_second(1_124_013_600).unwrap();
    let mut det = DateDetector::new(datepattern, zone).unwrap();
    // Warm up: the template is found and moved to the front.
    for l in input.iter().take(10) {
        det.detect(l, now);
    }
    let mut group = c.benchmark_group("date");
    group.throughput(Throughput::Elements(input.len() as u64));
    group.bench_function(name, |b| {
        b.iter(|| {
            let mut found = 0usize;
            for l in input {
                if det.detect(black_box(l), now).is_some() {
                    found += 1;
                }
            }
            black_box(found)
        })
    });
    group.finish();
}

fn detection(c: &mut Criterion) {
    let syslog = lines(|i| {
        format!(
            "Aug 14 09:{:02}:{:02} host sshd[{}]: Failed password for root from 192.0.2.{} port 22 ssh2",
            i / 60 % 60,
            i % 60,
            1000 + i,
            i % 250
        )
    });
    let iso = lines(|i| {
        format!(
            "2005-08-14 09:{:02}:{:02},{:03} fail2ban.actions [{}]: NOTICE [sshd] Ban 192.0.2.{}",
            i / 60 % 60,
            i % 60,
            i % 1000,
            1000 + i,
            i % 250
        )
    });
    let apache = lines(|i| {
        format!(
            "192.0.2.{} - - [14/Aug/2005:09:{:02}:{:02} +0200] \"GET /index.php?id={i} HTTP/1.1\" 404 1234 \"-\" \"Mozilla/5.0\"",
            i % 250,
            i / 60 % 60,
            i % 60
        )
    });
    let no_date = lines(|i| {
        format!(
            "Failed password for invalid user admin{i} from 192.0.2.{} port {} ssh2, no date anywhere in this line",
            i % 250,
            1024 + i
        )
    });
    bench_case(c, "syslog/defaults", None, &syslog);
    bench_case(c, "syslog/ln-beg", Some("{^LN-BEG}"), &syslog);
    bench_case(c, "iso/defaults", None, &iso);
    bench_case(c, "apache/defaults", None, &apache);
    bench_case(
        c,
        "apache/date-keyword",
        Some("^[^\\[]*\\[({DATE})\n{^LN-BEG}"),
        &apache,
    );
    bench_case(c, "no-date/defaults", None, &no_date);
    bench_case(c, "no-date/ln-beg", Some("{^LN-BEG}"), &no_date);
}

criterion_group!(benches, detection);
criterion_main!(benches);
