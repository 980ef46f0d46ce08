//! Failure counting: a true sliding window per failure id, with a memory bound.
//!
//! An id is banned when `maxretry` failures (weighted) fall within `findtime` of each
//! other. Unlike fail2ban's rate-scaled approximation, every failure time that can still
//! matter is kept — but never more than `maxretry` of them per id, because older ones can no
//! longer complete a window that the newer ones do not. The number of ids tracked is capped;
//! when a new id arrives at the cap, the id whose last failure is oldest is evicted (it is
//! the one least likely to reach `maxretry`), and the evictions are counted.

use std::collections::{BTreeSet, HashMap, VecDeque};

use crate::Epoch;

/// Default cap on ids tracked per jail.
pub const DEFAULT_CAPACITY: usize = 100_000;

#[derive(Debug, Clone)]
struct Entry {
    /// Failure times with their weights, oldest first; total weight < maxretry.
    times: VecDeque<(Epoch, u32)>,
    /// The last `maxmatches` matched lines.
    matches: VecDeque<String>,
    /// Key in the eviction index.
    last: Epoch,
    seq: u64,
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
    entries: HashMap<String, Entry>,
    /// (last failure, sequence, id): the eviction order.
    order: BTreeSet<(Epoch, u64, String)>,
    seq: u64,
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
            order: BTreeSet::new(),
            seq: 0,
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

    /// Records a failure of `id` at `time` with `weight` (1 normally; more for known
    /// offenders). `line` is the matched log text kept for the ban record.
    pub fn add(&mut self, id: &str, time: Epoch, weight: u32, line: Option<&str>) -> Outcome {
        self.total_failed += 1;
        let weight = weight.max(1);
        if !self.entries.contains_key(id) {
            if self.entries.len() >= self.capacity {
                self.evict_oldest();
            }
            self.seq += 1;
            self.entries.insert(
                id.to_string(),
                Entry {
                    times: VecDeque::new(),
                    matches: VecDeque::new(),
                    last: time,
                    seq: self.seq,
                    failures: 0,
                },
            );
            self.order.insert((time, self.seq, id.to_string()));
        }
        let (findtime, maxretry, maxmatches) = (self.findtime, self.maxretry, self.maxmatches);
        let entry = self.entries.get_mut(id).expect("inserted above");
        entry.failures += 1;
        // Failures may arrive slightly out of order (several files); keep times sorted.
        let pos = entry.times.partition_point(|(t, _)| *t <= time);
        entry.times.insert(pos, (time, weight));
        if let Some(l) = line
            && maxmatches > 0
        {
            entry.matches.push_back(l.to_string());
            while entry.matches.len() > maxmatches {
                entry.matches.pop_front();
            }
        }
        let newest = entry.times.back().map(|(t, _)| *t).unwrap_or(time);
        // Drop failures that can no longer share a window with the newest one.
        while let Some((t, _)) = entry.times.front() {
            if newest - *t >= findtime && entry.times.len() > 1 {
                entry.times.pop_front();
            } else {
                break;
            }
        }
        let in_window: u32 = entry.times.iter().map(|(_, w)| *w).sum();
        if in_window >= maxretry {
            let first = entry.times.front().map(|(t, _)| *t).unwrap_or(time);
            let failures = entry.failures;
            let matches = entry.matches.iter().cloned().collect();
            self.remove(id);
            return Outcome::Ban {
                failures,
                matches,
                first,
                last: newest,
            };
        }
        // Bound memory per id: weights below maxretry in total.
        while entry.times.len() > maxretry as usize {
            entry.times.pop_front();
        }
        if newest != entry.last {
            let key = (entry.last, entry.seq, id.to_string());
            entry.last = newest;
            let new_key = (entry.last, entry.seq, id.to_string());
            self.order.remove(&key);
            self.order.insert(new_key);
        }
        Outcome::Counted { in_window }
    }

    fn evict_oldest(&mut self) {
        if let Some((_, _, id)) = self.order.pop_first() {
            self.entries.remove(&id);
            self.evicted += 1;
        }
    }

    /// Forgets an id (after a ban, a success that clears it, or an ignore).
    pub fn remove(&mut self, id: &str) {
        if let Some(e) = self.entries.remove(id) {
            self.order.remove(&(e.last, e.seq, id.to_string()));
        }
    }

    /// Drops ids whose last failure is `findtime` or more before `now`.
    pub fn expire(&mut self, now: Epoch) {
        let horizon = now - self.findtime;
        while let Some((last, _, _)) = self.order.first() {
            if *last > horizon {
                break;
            }
            let (_, _, id) = self.order.pop_first().expect("checked");
            self.entries.remove(&id);
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

    #[test]
    fn bans_at_maxretry_within_findtime() {
        let mut w = FailureWindow::new(600, 3, 3, 10);
        assert_eq!(
            w.add("a", 0, 1, Some("l1")),
            Outcome::Counted { in_window: 1 }
        );
        assert_eq!(
            w.add("a", 100, 1, Some("l2")),
            Outcome::Counted { in_window: 2 }
        );
        match w.add("a", 599, 1, Some("l3")) {
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
            let o = w.add("a", i * 301, 1, None);
            assert!(
                matches!(o, Outcome::Counted { in_window } if in_window <= 2),
                "{o:?}"
            );
        }
        // A third failure soon after the last one puts three inside 600 s.
        let t = 49 * 301;
        assert!(matches!(w.add("a", t + 200, 1, None), Outcome::Ban { .. }));
    }

    #[test]
    fn boundary_is_exclusive_at_findtime() {
        let mut w = FailureWindow::new(600, 2, 0, 10);
        w.add("a", 0, 1, None);
        assert_eq!(w.add("a", 600, 1, None), Outcome::Counted { in_window: 1 });
        assert!(matches!(w.add("a", 1199, 1, None), Outcome::Ban { .. }));
    }

    #[test]
    fn out_of_order_failures_count() {
        let mut w = FailureWindow::new(600, 3, 0, 10);
        w.add("a", 500, 1, None);
        w.add("a", 100, 1, None);
        assert!(matches!(
            w.add("a", 300, 1, None),
            Outcome::Ban { first: 100, .. }
        ));
    }

    #[test]
    fn weights_count_as_several_failures() {
        let mut w = FailureWindow::new(600, 5, 0, 10);
        assert!(matches!(
            w.add("a", 0, 3, None),
            Outcome::Counted { in_window: 3 }
        ));
        assert!(matches!(w.add("a", 1, 2, None), Outcome::Ban { .. }));
    }

    #[test]
    fn memory_is_bounded_and_oldest_evicted() {
        let mut w = FailureWindow::new(600, 5, 2, 1000);
        for i in 0..10_000u32 {
            w.add(
                &format!("10.0.{}.{}", i / 256, i % 256),
                i as i64,
                1,
                Some("x"),
            );
        }
        assert_eq!(w.currently_failed(), 1000);
        assert_eq!(w.evicted(), 9000);
        // The survivors are the most recent ids.
        assert!(w.entries.contains_key("10.0.39.15")); // i = 9999
        assert!(!w.entries.contains_key("10.0.0.0"));
        // Per id, at most maxretry times and maxmatches lines are kept.
        for _ in 0..3 {
            w.add("10.0.39.15", 9999, 1, Some("y"));
        }
        let e = &w.entries["10.0.39.15"];
        assert!(e.times.len() <= 5 && e.matches.len() <= 2);
    }

    #[test]
    fn expire_drops_stale_ids_only() {
        let mut w = FailureWindow::new(600, 5, 0, 10);
        w.add("old", 0, 1, None);
        w.add("new", 500, 1, None);
        w.expire(700);
        assert_eq!(w.currently_failed(), 1);
        assert!(w.entries.contains_key("new"));
        w.expire(1100);
        assert_eq!(w.currently_failed(), 0);
    }

    #[test]
    fn reconfigure_keeps_counts() {
        let mut w = FailureWindow::new(600, 5, 0, 10);
        w.add("a", 0, 1, None);
        w.add("a", 1, 1, None);
        w.reconfigure(600, 3, 0, 10);
        assert!(matches!(w.add("a", 2, 1, None), Outcome::Ban { .. }));
    }
}
