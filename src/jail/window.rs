//! Failure counting: a true sliding window per failure id, with a memory bound.
//!
//! An id is banned when `maxretry` failures (weighted) fall within `findtime` of each
//! other. Unlike fail2ban's rate-scaled approximation, every failure time that can still
//! matter is kept — but never more than `maxretry` of them per id, because older ones can no
//! longer complete a window that the newer ones do not. The number of ids tracked is capped;
//! when a new id arrives at the cap, the least recently failing id is evicted (it is the one
//! least likely to reach `maxretry`), and the evictions are counted.
//!
//! Memory per id is fixed and small: the key (an address or network, or a shared raw id),
//! up to three failures stored inline (time, weight and the matched line, which is shared
//! with every other jail that counted the same line), and one slot in the eviction queue.
//! No per-failure allocation is made for ids that are addresses.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;

use ipnet::IpNet;
use smallvec::SmallVec;

use crate::Epoch;

/// Default cap on ids tracked per jail.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// What failures are counted by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FailureKey {
    /// An address (a /32 or /128) or the network a jail bans.
    Net(IpNet),
    /// A failure id that is no address (`<F-ID>` text, an unresolved name).
    Raw(Arc<str>),
}

impl fmt::Display for FailureKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureKey::Net(n) => f.write_str(&super::target::display(n)),
            FailureKey::Raw(s) => f.write_str(s),
        }
    }
}

impl From<&str> for FailureKey {
    fn from(s: &str) -> FailureKey {
        match super::target::parse_target(s) {
            Some(n) if !s.contains('/') || s.parse::<IpNet>().is_ok() => FailureKey::Net(n),
            _ => FailureKey::Raw(Arc::from(s)),
        }
    }
}

/// One failure kept: its time, its weight, and its matched line (while it is among the
/// last `maxmatches`).
type Item = (Epoch, u32, Option<Arc<str>>);

#[derive(Debug, Clone)]
struct Entry {
    /// Failures, oldest first; total weight < maxretry.
    items: SmallVec<[Item; 3]>,
    /// The newest failure time.
    last: Epoch,
    /// Stamp of the entry's latest slot in the eviction queue.
    stamp: u64,
    /// Failures seen since the entry was created (for the ban record).
    failures: u32,
}

/// What one failure led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Counted; `in_window` failures of the id now lie within findtime.
    Counted { in_window: u32 },
    /// The id reached maxretry: ban it. The entry is cleared.
    Ban {
        failures: u32,
        matches: Vec<String>,
        first: Epoch,
        last: Epoch,
    },
}

/// Per-jail failure windows.
#[derive(Debug, Clone)]
pub struct FailureWindow {
    findtime: i64,
    maxretry: u32,
    maxmatches: usize,
    capacity: usize,
    entries: HashMap<FailureKey, Entry>,
    /// Touch order, oldest first: (time of the id's newest failure then, stamp, id). A
    /// slot whose stamp is not its entry's current one is stale and skipped.
    queue: VecDeque<(Epoch, u64, FailureKey)>,
    next_stamp: u64,
    evicted: u64,
    total_failed: u64,
}

impl FailureWindow {
    pub fn new(findtime: i64, maxretry: u32, maxmatches: u32, capacity: usize) -> Self {
        FailureWindow {
            findtime: findtime.max(0),
            maxretry: maxretry.max(1),
            maxmatches: maxmatches as usize,
            capacity: capacity.max(1),
            entries: HashMap::new(),
            queue: VecDeque::new(),
            next_stamp: 0,
            evicted: 0,
            total_failed: 0,
        }
    }

    /// Changes the rule without losing counts (a reload that keeps the jail).
    pub fn reconfigure(&mut self, findtime: i64, maxretry: u32, maxmatches: u32, capacity: usize) {
        self.findtime = findtime.max(0);
        self.maxretry = maxretry.max(1);
        self.maxmatches = maxmatches as usize;
        self.capacity = capacity.max(1);
        while self.entries.len() > self.capacity {
            self.evict_oldest();
        }
    }

    /// Records a failure of `key` at `time` with `weight` (1 normally; more for known
    /// offenders). `line` is the matched log text kept for the ban record.
    pub fn add(
        &mut self,
        key: &FailureKey,
        time: Epoch,
        weight: u32,
        line: Option<Arc<str>>,
    ) -> Outcome {
        self.total_failed += 1;
        let weight = weight.max(1);
        if !self.entries.contains_key(key) {
            if self.entries.len() >= self.capacity {
                self.evict_oldest();
            }
            self.entries.insert(
                key.clone(),
                Entry {
                    items: SmallVec::new(),
                    last: time,
                    stamp: 0,
                    failures: 0,
                },
            );
        }
        let (findtime, maxretry, maxmatches) = (self.findtime, self.maxretry, self.maxmatches);
        let entry = self.entries.get_mut(key).expect("inserted above");
        entry.failures += 1;
        // Failures may arrive slightly out of order (several files); keep times sorted.
        let pos = entry.items.partition_point(|(t, _, _)| *t <= time);
        let line = if maxmatches > 0 { line } else { None };
        entry.items.insert(pos, (time, weight, line));
        let newest = entry.items.last().map(|i| i.0).unwrap_or(time);
        // Drop failures that can no longer share a window with the newest one.
        while entry.items.len() > 1 && newest - entry.items[0].0 >= findtime {
            entry.items.remove(0);
        }
        let in_window: u32 = entry.items.iter().map(|i| i.1).sum();
        if in_window >= maxretry {
            let first = entry.items.first().map(|i| i.0).unwrap_or(time);
            let failures = entry.failures;
            let matches: Vec<String> = entry
                .items
                .iter()
                .filter_map(|i| i.2.as_deref().map(str::to_string))
                .collect();
            let skip = matches.len().saturating_sub(maxmatches);
            self.entries.remove(key);
            return Outcome::Ban {
                failures,
                matches: matches[skip..].to_vec(),
                first,
                last: newest,
            };
        }
        // Bound memory per id: weights below maxretry in total, lines for the last
        // maxmatches failures only.
        while entry.items.len() > maxretry as usize {
            entry.items.remove(0);
        }
        let n = entry.items.len();
        if n > maxmatches {
            for i in &mut entry.items[..n - maxmatches] {
                i.2 = None;
            }
        }
        entry.last = newest;
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        entry.stamp = stamp;
        self.queue.push_back((newest, stamp, key.clone()));
        if self.queue.len() > 2 * self.entries.len() + 1024 {
            self.compact();
        }
        Outcome::Counted { in_window }
    }

    /// Rebuilds the eviction queue without stale slots.
    fn compact(&mut self) {
        let mut live: Vec<(Epoch, u64, FailureKey)> = self
            .entries
            .iter()
            .map(|(k, e)| (e.last, e.stamp, k.clone()))
            .collect();
        live.sort_unstable_by_key(|(t, s, _)| (*t, *s));
        self.queue = live.into();
    }

    fn is_live(&self, stamp: u64, key: &FailureKey) -> bool {
        self.entries.get(key).is_some_and(|e| e.stamp == stamp)
    }

    fn evict_oldest(&mut self) {
        while let Some((_, stamp, key)) = self.queue.pop_front() {
            if self.is_live(stamp, &key) {
                self.entries.remove(&key);
                self.evicted += 1;
                return;
            }
        }
    }

    /// Forgets an id (after a ban, a success that clears it, or an ignore).
    pub fn remove(&mut self, key: &FailureKey) {
        // Its queue slots become stale.
        self.entries.remove(key);
    }

    /// Drops ids whose last failure is `findtime` or more before `now`.
    pub fn expire(&mut self, now: Epoch) {
        let horizon = now - self.findtime;
        while let Some((last, stamp, key)) = self.queue.front() {
            if *last > horizon {
                break;
            }
            if self.is_live(*stamp, key) {
                let key = key.clone();
                self.entries.remove(&key);
            }
            self.queue.pop_front();
        }
    }

    /// Ids with failures in memory.
    pub fn currently_failed(&self) -> usize {
        self.entries.len()
    }

    /// Failures counted since the jail started.
    pub fn total_failed(&self) -> u64 {
        self.total_failed
    }

    /// Ids dropped because the cap was reached.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> FailureKey {
        FailureKey::from(s)
    }

    fn l(s: &str) -> Option<Arc<str>> {
        Some(Arc::from(s))
    }

    #[test]
    fn bans_at_maxretry_within_findtime() {
        let mut w = FailureWindow::new(600, 3, 3, 10);
        assert_eq!(
            w.add(&k("192.0.2.1"), 0, 1, l("l1")),
            Outcome::Counted { in_window: 1 }
        );
        assert_eq!(
            w.add(&k("192.0.2.1"), 100, 1, l("l2")),
            Outcome::Counted { in_window: 2 }
        );
        match w.add(&k("192.0.2.1"), 599, 1, l("l3")) {
            Outcome::Ban {
                failures,
                matches,
                first,
                last,
            } => {
                assert_eq!((failures, first, last), (3, 0, 599));
                assert_eq!(matches, ["l1", "l2", "l3"]);
            }
            o => panic!("{o:?}"),
        }
        assert_eq!(w.currently_failed(), 0, "a banned id is cleared");
    }

    #[test]
    fn window_slides_instead_of_scaling() {
        // Failures every 301 s never put 3 inside 600 s: no ban, however many there are.
        let mut w = FailureWindow::new(600, 3, 0, 10);
        for i in 0..50 {
            let o = w.add(&k("a"), i * 301, 1, None);
            assert!(
                matches!(o, Outcome::Counted { in_window } if in_window <= 2),
                "{o:?}"
            );
        }
        // A third failure soon after the last one puts three inside 600 s.
        let t = 49 * 301;
        assert!(matches!(
            w.add(&k("a"), t + 200, 1, None),
            Outcome::Ban { .. }
        ));
    }

    #[test]
    fn boundary_is_exclusive_at_findtime() {
        let mut w = FailureWindow::new(600, 2, 0, 10);
        w.add(&k("a"), 0, 1, None);
        assert_eq!(
            w.add(&k("a"), 600, 1, None),
            Outcome::Counted { in_window: 1 }
        );
        assert!(matches!(w.add(&k("a"), 1199, 1, None), Outcome::Ban { .. }));
    }

    #[test]
    fn out_of_order_failures_count() {
        let mut w = FailureWindow::new(600, 3, 0, 10);
        w.add(&k("a"), 500, 1, None);
        w.add(&k("a"), 100, 1, None);
        assert!(matches!(
            w.add(&k("a"), 300, 1, None),
            Outcome::Ban { first: 100, .. }
        ));
    }

    #[test]
    fn weights_count_as_several_failures() {
        let mut w = FailureWindow::new(600, 5, 0, 10);
        assert!(matches!(
            w.add(&k("a"), 0, 3, None),
            Outcome::Counted { in_window: 3 }
        ));
        assert!(matches!(w.add(&k("a"), 1, 2, None), Outcome::Ban { .. }));
    }

    #[test]
    fn memory_is_bounded_and_oldest_evicted() {
        let mut w = FailureWindow::new(600, 5, 2, 1000);
        for i in 0..10_000u32 {
            w.add(
                &k(&format!("10.0.{}.{}", i / 256, i % 256)),
                i as i64,
                1,
                l("x"),
            );
        }
        assert_eq!(w.currently_failed(), 1000);
        assert_eq!(w.evicted(), 9000);
        assert!(w.queue.len() <= 2 * 1000 + 1024, "the queue is compacted");
        // The survivors are the most recent ids.
        assert!(w.entries.contains_key(&k("10.0.39.15"))); // i = 9999
        assert!(!w.entries.contains_key(&k("10.0.0.0")));
        // Per id, at most maxretry times and maxmatches lines are kept.
        for _ in 0..3 {
            w.add(&k("10.0.39.15"), 9999, 1, l("y"));
        }
        let e = &w.entries[&k("10.0.39.15")];
        assert!(e.items.len() <= 5);
        assert!(e.items.iter().filter(|i| i.2.is_some()).count() <= 2);
    }

    #[test]
    fn a_recently_failing_id_survives_eviction() {
        let mut w = FailureWindow::new(600, 50, 0, 2);
        w.add(&k("a"), 0, 1, None);
        w.add(&k("b"), 1, 1, None);
        w.add(&k("a"), 2, 1, None);
        w.add(&k("c"), 3, 1, None);
        assert!(w.entries.contains_key(&k("a")));
        assert!(!w.entries.contains_key(&k("b")), "b failed least recently");
    }

    #[test]
    fn expire_drops_stale_ids_only() {
        let mut w = FailureWindow::new(600, 5, 0, 10);
        w.add(&k("old"), 0, 1, None);
        w.add(&k("new"), 500, 1, None);
        w.expire(700);
        assert_eq!(w.currently_failed(), 1);
        assert!(w.entries.contains_key(&k("new")));
        w.expire(1100);
        assert_eq!(w.currently_failed(), 0);
    }

    #[test]
    fn reconfigure_keeps_counts() {
        let mut w = FailureWindow::new(600, 5, 0, 10);
        w.add(&k("a"), 0, 1, None);
        w.add(&k("a"), 1, 1, None);
        w.reconfigure(600, 3, 0, 10);
        assert!(matches!(w.add(&k("a"), 2, 1, None), Outcome::Ban { .. }));
    }

    #[test]
    fn keys_of_addresses_and_raw_ids() {
        assert_eq!(
            k("192.0.2.7"),
            FailureKey::Net("192.0.2.7/32".parse().unwrap())
        );
        assert_eq!(k("192.0.2.7").to_string(), "192.0.2.7");
        assert!(matches!(k("user-42"), FailureKey::Raw(_)));
        assert_eq!(k("user-42").to_string(), "user-42");
    }
}
