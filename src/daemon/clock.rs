//! The daemon's notion of "now", injected so that timers can be tested with tokio's paused
//! time.
//!
//! Bans are stored in wall-clock epoch seconds, so the daemon sleeps until a wall-clock
//! instant: the sleep is recomputed from the clock each time the engine loops, so a clock
//! step (NTP) costs at most one early or late wake-up.

use std::fmt::Debug;
use std::time::Duration;

use jiff::Timestamp;

use crate::Epoch;

/// A source of the current time.
pub trait Clock: Send + Sync + Debug {
    /// The current time.
    fn timestamp(&self) -> Timestamp;

    /// The current time in epoch seconds.
    fn now(&self) -> Epoch {
        self.timestamp().as_second()
    }

    /// How long until the clock reads `at` (zero when it is past).
    fn until(&self, at: Epoch) -> Duration {
        let now = self.timestamp();
        let target = Timestamp::from_second(at).unwrap_or(Timestamp::MAX);
        let d = now.duration_until(target);
        if d.is_negative() {
            Duration::ZERO
        } else {
            Duration::try_from(d).unwrap_or(Duration::MAX)
        }
    }
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn timestamp(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that starts at a given time and advances with tokio's clock, so paused-time
/// tests drive it with `tokio::time::advance`.
#[derive(Debug, Clone)]
pub struct TokioClock {
    base: Timestamp,
    start: tokio::time::Instant,
}

impl TokioClock {
    pub fn starting_at(epoch: Epoch) -> TokioClock {
        TokioClock {
            base: Timestamp::from_second(epoch).expect("test epoch in range"),
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn timestamp(&self) -> Timestamp {
        let elapsed = tokio::time::Instant::now() - self.start;
        self.base
            .checked_add(jiff::SignedDuration::try_from(elapsed).unwrap_or_default())
            .unwrap_or(Timestamp::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let c = TokioClock::starting_at(1_000);
        assert_eq!(c.now(), 1_000);
        assert_eq!(c.until(1_010), Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(15)).await;
        assert_eq!(c.now(), 1_015);
        assert_eq!(c.until(1_010), Duration::ZERO);
    }
}
