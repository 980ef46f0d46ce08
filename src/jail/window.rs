//! Failure counting: a true sliding window per failure id, with a memory bound.
//!
//! An id is banned when `maxretry` failures (weighted) fall within `findtime` of each
//! other. Unlike fail2ban's rate-scaled approximation, every failure time that can still
//! matter is kept — but never more than `maxretry` of them per id, because older ones can no
//! longer complete a window that the newer ones do not. The number of ids tracked is capped;
//! when a new id arrives at the cap, the least recently failing id is evicted (it is the one
//! least likely to reach `maxretry`), and the evictions are counted.
//!
//! Layout, chosen for a flood of distinct addresses (the case that costs memory): the ids
//! live in a slab of fixed-size slots, threaded on a doubly linked list in the order they
//! last failed, and a hash table of slot numbers (4 bytes a bucket) finds them. Eviction and
//! expiry take from the head of the list, so nothing is ever sorted or compacted. A slot
//! holds the key (an address or network, or a shared raw id), one failure inline (time,
//! weight and the matched line, which is shared with every other jail that counted the same
//! line) and the list links; an id with several failures keeps them in one heap block. No
//! allocation is made for the first failure of an address.
//!
//! The table hashes with foldhash, seeded per process: addresses are chosen by attackers
//! (an IPv6 attacker picks freely inside a /64), so the hash must not be predictable.

use std::fmt;
use std::sync::Arc;

use hashbrown::DefaultHashBuilder;
use hashbrown::HashTable;
use ipnet::IpNet;
use smallvec::SmallVec;
use std::hash::BuildHasher;

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

/// No slot (end of the list).
const NIL: u32 = u32::MAX;

#[derive(Debug, Clone)]
struct Slot {
    key: FailureKey,
    /// Failures, oldest first; total weight < maxretry.
    items: SmallVec<[Item; 1]>,
    /// Failures seen since the id was first tracked (for the ban record).
    failures: u32,
    /// Neighbours in the list, in the order of the ids' latest failures.
    prev: u32,
    next: u32,
}

impl Slot {
    /// The newest failure time.
    fn last(&self) -> Epoch {
        self.items.last().map_or(Epoch::MIN, |i| i.0)
    }
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
    /// Slot numbers, found by the hash of their key.
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
    slots: Vec<Option<Slot>>,
    /// Slots to reuse.
    free: Vec<u32>,
    /// The id that failed least recently, and the one that failed last.
    head: u32,
    tail: u32,
    len: usize,
    evicted: u64,
    total_failed: u64,
}

impl FailureWindow {
    pub fn new(findtime: i64, maxretry: u32, maxmatches: u32, capacity: usize) -> Self {
        FailureWindow {
            findtime: findtime.max(0),
            maxretry: maxretry.max(1),
            maxmatches: maxmatches as usize,
            capacity: capacity.clamp(1, NIL as usize - 1),
            index: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            slots: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            len: 0,
            evicted: 0,
            total_failed: 0,
        }
    }

    /// Changes the rule without losing counts (a reload that keeps the jail).
    pub fn reconfigure(&mut self, findtime: i64, maxretry: u32, maxmatches: u32, capacity: usize) {
        self.findtime = findtime.max(0);
        self.maxretry = maxretry.max(1);
        self.maxmatches = maxmatches as usize;
        self.capacity = capacity.clamp(1, NIL as usize - 1);
        while self.len > self.capacity {
            self.evict_oldest();
        }
    }

    fn slot(&self, i: u32) -> &Slot {
        self.slots[i as usize]
            .as_ref()
            .expect("linked slots are live")
    }

    fn slot_mut(&mut self, i: u32) -> &mut Slot {
        self.slots[i as usize]
            .as_mut()
            .expect("linked slots are live")
    }

    fn find(&self, key: &FailureKey) -> Option<u32> {
        let hash = self.hasher.hash_one(key);
        let slots = &self.slots;
        self.index
            .find(hash, |&i| {
                slots[i as usize].as_ref().is_some_and(|s| s.key == *key)
            })
            .copied()
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = {
            let s = self.slot(i);
            (s.prev, s.next)
        };
        match prev {
            NIL => self.head = next,
            p => self.slot_mut(p).next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.slot_mut(n).prev = prev,
        }
    }

    fn push_tail(&mut self, i: u32) {
        let tail = self.tail;
        {
            let s = self.slot_mut(i);
            s.prev = tail;
            s.next = NIL;
        }
        match tail {
            NIL => self.head = i,
            t => self.slot_mut(t).next = i,
        }
        self.tail = i;
    }

    /// Takes slot `i` out of the table, the list and the slab.
    fn remove_slot(&mut self, i: u32) -> Slot {
        self.unlink(i);
        let hash = self.hasher.hash_one(&self.slot(i).key);
        if let Ok(e) = self.index.find_entry(hash, |&j| j == i) {
            e.remove();
        }
        let slot = self.slots[i as usize].take().expect("live slot");
        self.free.push(i);
        self.len -= 1;
        slot
    }

    /// A new slot for `key`, at the tail of the list.
    fn insert(&mut self, key: &FailureKey) -> u32 {
        let slot = Slot {
            key: key.clone(),
            items: SmallVec::new(),
            failures: 0,
            prev: NIL,
            next: NIL,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as u32
            }
        };
        let hasher = &self.hasher;
        let slots = &self.slots;
        let hash = hasher.hash_one(key);
        self.index.insert_unique(hash, i, |&j| {
            hasher.hash_one(
                &slots[j as usize]
                    .as_ref()
                    .expect("indexed slots are live")
                    .key,
            )
        });
        self.push_tail(i);
        self.len += 1;
        i
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
        let i = match self.find(key) {
            Some(i) => {
                self.unlink(i);
                self.push_tail(i);
                i
            }
            None => {
                if self.len >= self.capacity {
                    self.evict_oldest();
                }
                self.insert(key)
            }
        };
        let (findtime, maxretry, maxmatches) = (self.findtime, self.maxretry, self.maxmatches);
        let slot = self.slot_mut(i);
        slot.failures += 1;
        // Failures may arrive slightly out of order (several files); keep times sorted.
        let pos = slot.items.partition_point(|(t, _, _)| *t <= time);
        let line = if maxmatches > 0 { line } else { None };
        // One more item at a time: the allocator grows a block in place while its size
        // class has room, and an id with n failures then holds about n items, not the
        // next power of two (the difference is most of the memory of a long flood).
        if slot.items.len() == slot.items.capacity() {
            slot.items.reserve_exact(1);
        }
        slot.items.insert(pos, (time, weight, line));
        let newest = slot.last();
        // Drop failures that can no longer share a window with the newest one.
        let stale = slot
            .items
            .iter()
            .take(slot.items.len() - 1)
            .take_while(|i| newest - i.0 >= findtime)
            .count();
        if stale > 0 {
            slot.items.drain(..stale);
        }
        let in_window: u32 = slot.items.iter().map(|i| i.1).sum();
        if in_window >= maxretry {
            let slot = self.remove_slot(i);
            let first = slot.items.first().map_or(time, |i| i.0);
            let lines: Vec<&Arc<str>> = slot.items.iter().filter_map(|i| i.2.as_ref()).collect();
            let skip = lines.len().saturating_sub(maxmatches);
            return Outcome::Ban {
                failures: slot.failures,
                matches: lines[skip..].iter().map(|l| l.to_string()).collect(),
                first,
                last: newest,
            };
        }
        // Bound memory per id: weights below maxretry in total, lines for the last
        // maxmatches failures only.
        let n = slot.items.len();
        if n > maxretry as usize {
            slot.items.drain(..n - maxretry as usize);
        }
        let n = slot.items.len();
        if n > maxmatches {
            for i in &mut slot.items[..n - maxmatches] {
                i.2 = None;
            }
        }
        Outcome::Counted { in_window }
    }

    fn evict_oldest(&mut self) {
        if self.head != NIL {
            self.remove_slot(self.head);
            self.evicted += 1;
        }
    }

    /// Forgets an id (after a ban, a success that clears it, or an ignore).
    pub fn remove(&mut self, key: &FailureKey) {
        if let Some(i) = self.find(key) {
            self.remove_slot(i);
        }
    }

    /// Drops ids whose last failure is `findtime` or more before `now`. The list is in
    /// the order of the latest failures as they arrived, so this stops at the first id
    /// still inside the window (times that arrive out of order only delay a drop).
    pub fn expire(&mut self, now: Epoch) {
        let horizon = now - self.findtime;
        while self.head != NIL && self.slot(self.head).last() <= horizon {
            self.remove_slot(self.head);
        }
        // Give memory back once a flood has passed.
        if self.len == 0 && self.slots.len() > 1024 {
            self.slots = Vec::new();
            self.free = Vec::new();
            self.index = HashTable::new();
        }
    }

    /// Ids with failures in memory.
    pub fn currently_failed(&self) -> usize {
        self.len
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

    /// The failures kept for `key` (time, weight, whether the line is kept).
    #[cfg(test)]
    fn kept(&self, key: &FailureKey) -> Option<Vec<(Epoch, u32, bool)>> {
        self.find(key).map(|i| {
            self.slot(i)
                .items
                .iter()
                .map(|(t, w, l)| (*t, *w, l.is_some()))
                .collect()
        })
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
        assert_eq!(w.slots.len(), 1000, "evicted slots are reused");
        assert_eq!(w.index.len(), 1000);
        // The survivors are the most recent ids.
        assert!(w.find(&k("10.0.39.15")).is_some()); // i = 9999
        assert!(w.find(&k("10.0.0.0")).is_none());
        assert!(w.find(&k("10.0.35.40")).is_some()); // i = 9000, the oldest kept
        assert!(w.find(&k("10.0.35.39")).is_none());
        // Per id, at most maxretry times and maxmatches lines are kept.
        for _ in 0..3 {
            w.add(&k("10.0.39.15"), 9999, 1, l("y"));
        }
        let kept = w.kept(&k("10.0.39.15")).unwrap();
        assert_eq!(kept.len(), 4);
        assert_eq!(kept.iter().filter(|i| i.2).count(), 2);
    }

    #[test]
    fn a_recently_failing_id_survives_eviction() {
        let mut w = FailureWindow::new(600, 50, 0, 2);
        w.add(&k("a"), 0, 1, None);
        w.add(&k("b"), 1, 1, None);
        w.add(&k("a"), 2, 1, None);
        w.add(&k("c"), 3, 1, None);
        assert!(w.find(&k("a")).is_some());
        assert!(w.find(&k("b")).is_none(), "b failed least recently");
        assert!(w.find(&k("c")).is_some());
    }

    #[test]
    fn expire_drops_stale_ids_only() {
        let mut w = FailureWindow::new(600, 5, 0, 10);
        w.add(&k("old"), 0, 1, None);
        w.add(&k("new"), 500, 1, None);
        w.expire(700);
        assert_eq!(w.currently_failed(), 1);
        assert!(w.find(&k("new")).is_some());
        w.expire(1100);
        assert_eq!(w.currently_failed(), 0);
        assert!(w.find(&k("new")).is_none());
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
    fn removal_keeps_the_order_of_the_others() {
        let mut w = FailureWindow::new(600, 50, 0, 3);
        for (i, id) in ["a", "b", "c"].iter().enumerate() {
            w.add(&k(id), i as i64, 1, None);
        }
        w.remove(&k("b"));
        w.remove(&k("zzz"));
        assert_eq!(w.currently_failed(), 2);
        // The freed slot is reused; "a" is still the oldest.
        w.add(&k("d"), 3, 1, None);
        w.add(&k("e"), 4, 1, None);
        assert!(w.find(&k("a")).is_none());
        for id in ["c", "d", "e"] {
            assert!(w.find(&k(id)).is_some(), "{id}");
        }
        assert_eq!(w.slots.len(), 3);
    }

    #[test]
    fn a_banned_id_starts_again_from_zero() {
        let mut w = FailureWindow::new(600, 2, 2, 10);
        w.add(&k("a"), 0, 1, l("1"));
        assert!(matches!(w.add(&k("a"), 1, 1, l("2")), Outcome::Ban { .. }));
        assert_eq!(w.currently_failed(), 0);
        assert_eq!(
            w.add(&k("a"), 2, 1, l("3")),
            Outcome::Counted { in_window: 1 }
        );
    }

    #[test]
    fn memory_is_given_back_when_every_id_expired() {
        let mut w = FailureWindow::new(600, 5, 0, 100_000);
        for i in 0..5000u32 {
            w.add(&k(&format!("10.1.{}.{}", i / 256, i % 256)), 0, 1, None);
        }
        w.expire(600);
        assert_eq!(w.currently_failed(), 0);
        assert_eq!(w.slots.capacity(), 0);
        w.add(&k("10.1.0.1"), 700, 1, None);
        assert_eq!(w.currently_failed(), 1);
    }

    /// The window against a plain model: a map of failure times per id and a counter of
    /// touches for the eviction order (times never go back, so expiry is exact).
    mod model {
        use super::*;
        use proptest::prelude::*;
        use std::collections::HashMap;

        #[derive(Debug, Clone)]
        enum Op {
            Add { id: u8, dt: u8, weight: u8 },
            Remove(u8),
            Expire(u16),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                8 => (0u8..12, 0u8..40, 1u8..3).prop_map(|(id, dt, weight)| Op::Add { id, dt, weight }),
                1 => (0u8..12).prop_map(Op::Remove),
                1 => (0u16..200).prop_map(Op::Expire),
            ]
        }

        type ModelEntry = (Vec<(Epoch, u32)>, u32, u64);

        struct Model {
            findtime: i64,
            maxretry: u32,
            capacity: usize,
            /// Per id: failure times and weights, failures seen, last touch.
            ids: HashMap<u8, ModelEntry>,
            touch: u64,
        }

        impl Model {
            fn add(&mut self, id: u8, t: Epoch, w: u32) -> Option<(u32, Epoch, Epoch)> {
                self.touch += 1;
                if !self.ids.contains_key(&id) && self.ids.len() >= self.capacity {
                    let oldest = *self.ids.iter().min_by_key(|(_, e)| e.2).unwrap().0;
                    self.ids.remove(&oldest);
                }
                let e = self.ids.entry(id).or_insert((Vec::new(), 0, 0));
                e.1 += 1;
                e.2 = self.touch;
                e.0.push((t, w));
                let newest = t;
                e.0.retain(|(x, _)| newest - *x < self.findtime || *x == newest);
                let sum: u32 = e.0.iter().map(|i| i.1).sum();
                if sum >= self.maxretry {
                    let r = (e.1, e.0[0].0, newest);
                    self.ids.remove(&id);
                    return Some(r);
                }
                let n = e.0.len();
                if n > self.maxretry as usize {
                    e.0.drain(..n - self.maxretry as usize);
                }
                None
            }
        }

        proptest! {
            #[test]
            fn behaves_like_the_model(
                findtime in 1i64..120,
                maxretry in 1u32..6,
                capacity in 1usize..8,
                ops in proptest::collection::vec(op(), 1..300),
            ) {
                let mut w = FailureWindow::new(findtime, maxretry, maxretry, capacity);
                let mut m = Model { findtime, maxretry, capacity, ids: HashMap::new(), touch: 0 };
                let mut now: Epoch = 0;
                let key = |id: u8| k(&format!("192.0.2.{id}"));
                for op in ops {
                    match op {
                        Op::Add { id, dt, weight } => {
                            now += dt as i64;
                            let got = w.add(&key(id), now, weight as u32, l("x"));
                            match (got, m.add(id, now, weight as u32)) {
                                (Outcome::Ban { failures, first, last, matches }, Some(e)) => {
                                    prop_assert_eq!((failures, first, last), e);
                                    prop_assert!(matches.len() <= maxretry as usize);
                                }
                                (Outcome::Counted { .. }, None) => {}
                                (g, e) => prop_assert!(false, "window {:?}, model {:?}", g, e),
                            }
                        }
                        Op::Remove(id) => {
                            w.remove(&key(id));
                            m.ids.remove(&id);
                        }
                        Op::Expire(back) => {
                            let horizon = now - back as i64 - findtime;
                            w.expire(now - back as i64);
                            m.ids.retain(|_, e| e.0.last().unwrap().0 > horizon);
                        }
                    }
                    prop_assert_eq!(w.currently_failed(), m.ids.len());
                    for (id, e) in &m.ids {
                        let kept = w.kept(&key(*id)).unwrap();
                        let times: Vec<(Epoch, u32)> = kept.iter().map(|x| (x.0, x.1)).collect();
                        prop_assert_eq!(&times, &e.0);
                    }
                }
            }
        }
    }

    #[test]
    fn failures_are_kept_without_spare_room() {
        let mut w = FailureWindow::new(600, 100, 100, 10);
        for t in 0..9 {
            w.add(&k("a"), t, 1, l("x"));
        }
        let i = w.find(&k("a")).unwrap();
        assert_eq!(w.slot(i).items.len(), 9);
        assert_eq!(w.slot(i).items.capacity(), 9);
    }

    #[test]
    fn a_slot_is_small() {
        // `core::BYTES_PER_TRACKED` and docs/daemon.md count on this.
        assert_eq!(std::mem::size_of::<Option<Slot>>(), 80);
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
