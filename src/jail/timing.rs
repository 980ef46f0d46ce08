//! fail2ban's rules for the time of a failure, relative to "now".
//!
//! - While a source catches up with what was written before the daemon started (its
//!   backlog), a line older than `findtime` cannot take part in a ban any more and is
//!   ignored. A line from the future is taken as now.
//! - Once the source has caught up, a line whose time is more than [`MAX_DEVIATION`] away
//!   from now is taken as now: its clock or time zone is off, and a jail that ignored it
//!   would never ban. Each kind of oddity is logged once a day per jail, with the line.
//!
//! Sources whose timestamps are reliable and possibly late (pflog, whose writer buffers
//! up to a minute; the ledger's ban history) use [`Phase::Recorded`]: their own time,
//! capped at now, and ignored once older than `findtime`.

use tracing::warn;

use crate::Epoch;

/// Largest accepted distance between a live line's time and now (fail2ban's 60 s).
pub const MAX_DEVIATION: i64 = 60;

/// How often each warning is repeated at most.
const WARN_EVERY: i64 = 86_400;

/// Where a source stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading what was written before the daemon started.
    CatchUp,
    /// Following new writes.
    Live,
    /// Records carry trustworthy times of their own (capped at now, never replaced).
    Recorded,
}

/// The time rules of one jail, with its once-a-day warning state.
#[derive(Debug, Clone)]
pub struct TimeRules {
    jail: String,
    findtime: i64,
    next_old_warning: Epoch,
    next_odd_warning: Epoch,
    /// Lines ignored as too old, and lines whose time was replaced by now.
    pub ignored_old: u64,
    pub replaced: u64,
}

impl TimeRules {
    pub fn new(jail: &str, findtime: i64) -> TimeRules {
        TimeRules {
            jail: jail.to_string(),
            findtime,
            next_old_warning: Epoch::MIN,
            next_odd_warning: Epoch::MIN,
            ignored_old: 0,
            replaced: 0,
        }
    }

    pub fn set_findtime(&mut self, findtime: i64) {
        self.findtime = findtime;
    }

    /// The time to count a failure at, or None to ignore it. `line` is only used in the
    /// warning.
    pub fn apply(&mut self, time: Epoch, now: Epoch, phase: Phase, line: &str) -> Option<Epoch> {
        match phase {
            Phase::CatchUp => {
                if time < now - self.findtime {
                    self.ignored_old += 1;
                    if now >= self.next_old_warning {
                        self.next_old_warning = now + WARN_EVERY;
                        warn!(jail = %self.jail, time, findtime = self.findtime, line = %line,
                              "Ignoring a line older than findtime; if it is recent, the jail may have a time zone problem (logged once a day).");
                    }
                    return None;
                }
                Some(time.min(now))
            }
            Phase::Live => {
                if (time - now).abs() > MAX_DEVIATION {
                    self.replaced += 1;
                    if now >= self.next_odd_warning {
                        self.next_odd_warning = now + WARN_EVERY;
                        warn!(jail = %self.jail, time, now, line = %line,
                              "A line's time is more than 60 s away from now; counting it as now. The jail may have a time zone problem (logged once a day).");
                    }
                    return Some(now);
                }
                Some(time.min(now))
            }
            Phase::Recorded => {
                if time < now - self.findtime {
                    self.ignored_old += 1;
                    return None;
                }
                Some(time.min(now))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catch_up_ignores_lines_older_than_findtime() {
        let mut r = TimeRules::new("j", 600);
        let now = 10_000;
        assert_eq!(r.apply(now - 601, now, Phase::CatchUp, ""), None);
        assert_eq!(r.apply(now - 600, now, Phase::CatchUp, ""), Some(now - 600));
        assert_eq!(r.apply(now - 5, now, Phase::CatchUp, ""), Some(now - 5));
        assert_eq!(r.apply(now + 500, now, Phase::CatchUp, ""), Some(now));
        assert_eq!(r.ignored_old, 1);
    }

    #[test]
    fn live_lines_far_from_now_become_now() {
        let mut r = TimeRules::new("j", 600);
        let now = 10_000;
        assert_eq!(r.apply(now - 60, now, Phase::Live, ""), Some(now - 60));
        assert_eq!(r.apply(now - 61, now, Phase::Live, ""), Some(now));
        assert_eq!(r.apply(now - 3600, now, Phase::Live, ""), Some(now));
        assert_eq!(r.apply(now + 30, now, Phase::Live, ""), Some(now));
        assert_eq!(r.apply(now + 3600, now, Phase::Live, ""), Some(now));
        assert_eq!(r.replaced, 3);
    }

    #[test]
    fn recorded_times_are_kept_but_never_in_the_future() {
        let mut r = TimeRules::new("j", 1000);
        assert_eq!(r.apply(100, 1000, Phase::Recorded, ""), Some(100));
        assert_eq!(r.apply(100, 1101, Phase::Recorded, ""), None);
        assert_eq!(r.apply(2000, 1000, Phase::Recorded, ""), Some(1000));
    }

    #[test]
    fn warnings_are_rate_limited_to_one_a_day() {
        let mut r = TimeRules::new("j", 600);
        r.apply(0, 10_000, Phase::Live, "");
        let next = r.next_odd_warning;
        assert_eq!(next, 10_000 + WARN_EVERY);
        r.apply(0, 20_000, Phase::Live, "");
        assert_eq!(r.next_odd_warning, next, "no second warning the same day");
        r.apply(0, next, Phase::Live, "");
        assert_eq!(r.next_odd_warning, next + WARN_EVERY);
    }
}
