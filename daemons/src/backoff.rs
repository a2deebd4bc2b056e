//! The one backoff of the daemons' reconnect and retry loops: backon's
//! exponential schedule, doubling from a first wait up to
//! [`RECONNECT_MAX_DELAY`], started afresh after a success.

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use std::time::Duration;

/// The longest wait between two attempts to reach a service that went away
/// while running. Short: during a flash sale every second away is a second of
/// 503s, and reconnecting to a local service is cheap.
pub const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(1);

/// Waits between the attempts of one loop.
#[derive(Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    schedule: ExponentialBackoff,
    /// Whether a wait was handed out since the last reset.
    waited: bool,
}

impl Backoff {
    /// From `first`, doubling, at most [`RECONNECT_MAX_DELAY`].
    pub fn reconnect(first: Duration) -> Self {
        Self::new(first, RECONNECT_MAX_DELAY)
    }

    /// From `first`, doubling, at most `max`; no jitter, never gives up.
    pub fn new(first: Duration, max: Duration) -> Self {
        let builder = ExponentialBuilder::new()
            .with_min_delay(first)
            .with_max_delay(max)
            .with_factor(2.0)
            .without_max_times();
        Self {
            builder,
            schedule: builder.build(),
            waited: false,
        }
    }

    /// The next wait.
    pub fn next_delay(&mut self) -> Duration {
        self.waited = true;
        // Without a limit on attempts the schedule never ends.
        self.schedule.next().unwrap_or(RECONNECT_MAX_DELAY)
    }

    /// After a success: the next failure waits `first` again.
    pub fn reset(&mut self) {
        self.schedule = self.builder.build();
        self.waited = false;
    }

    /// Whether this loop had to wait since its last success.
    pub fn has_waited(&self) -> bool {
        self.waited
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_starts_again_after_a_reset() {
        let mut b = Backoff::reconnect(Duration::from_millis(100));
        let ms: Vec<u128> = (0..6).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000]);
        assert!(b.has_waited());
        b.reset();
        assert!(!b.has_waited());
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }
}
