//! Per-client rate limits (`429 rate_limited`): of `POST /reserve`, keyed by
//! user id or client address, and of the read routes, by address. Keyed
//! GCRA limiters from `governor`, swept so their memory stays bounded.
//!
//! Off by default: a gateway without `FLASHGRID_RATE_LIMIT` holds no
//! [`Limiter`] at all, so the hot path pays one `None` check.

use crate::config::RateKey;
use flashgrid_wire::UserId;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often keys whose bucket is full again are forgotten. Between two
/// sweeps the limiter holds at most the keys seen within this interval plus
/// the ones still throttled, each a few dozen bytes.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// One keyed limiter, by the key kind chosen at start. Each variant is keyed
/// by a value the request already holds, so checking a known client
/// allocates nothing; a new one costs a copy of its key.
enum Keyed {
    User(DefaultKeyedRateLimiter<UserId>),
    Addr(DefaultKeyedRateLimiter<IpAddr>),
}

/// The gateway's rate limiter.
pub struct Limiter {
    keyed: Keyed,
    clock: DefaultClock,
    rate: f64,
    burst: NonZeroU32,
}

impl std::fmt::Debug for Limiter {
    // governor's own Debug would print every key (user ids) it holds.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("key", &self.key())
            .field("rate", &self.rate)
            .field("burst", &self.burst)
            .field("keys", &self.len())
            .finish()
    }
}

impl Limiter {
    /// `rate` requests per second per key (fractions allowed, > 0), `burst`
    /// at once.
    pub fn new(key: RateKey, rate: f64, burst: NonZeroU32) -> Self {
        let quota = quota(rate, burst);
        let keyed = match key {
            RateKey::User => Keyed::User(DefaultKeyedRateLimiter::keyed(quota)),
            RateKey::Addr => Keyed::Addr(DefaultKeyedRateLimiter::keyed(quota)),
        };
        Self {
            keyed,
            clock: DefaultClock::default(),
            rate,
            burst,
        }
    }

    pub fn key(&self) -> RateKey {
        match self.keyed {
            Keyed::User(_) => RateKey::User,
            Keyed::Addr(_) => RateKey::Addr,
        }
    }

    /// Counts one request of `user` from `peer`; `Err(wait)` when it is over
    /// the limit, `wait` being how long until one more would conform.
    pub fn check(&self, user: &UserId, peer: IpAddr) -> Result<(), Duration> {
        let verdict = match &self.keyed {
            Keyed::User(l) => l.check_key(user),
            Keyed::Addr(l) => l.check_key(&peer),
        };
        verdict.map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Counts one request from `peer` of a limiter keyed by address (the
    /// read routes' limit): `Err(wait)` when it is over.
    pub fn check_addr(&self, peer: IpAddr) -> Result<(), Duration> {
        match &self.keyed {
            Keyed::Addr(l) => l
                .check_key(&peer)
                .map_err(|not_until| not_until.wait_time_from(self.clock.now())),
            // Built by address for the read routes; never keyed by user.
            Keyed::User(_) => Ok(()),
        }
    }

    /// Keys currently held.
    pub fn len(&self) -> usize {
        match &self.keyed {
            Keyed::User(l) => l.len(),
            Keyed::Addr(l) => l.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets the keys whose bucket is full again (they would start fresh
    /// anyway), and gives memory back after a crowd left.
    pub fn sweep(&self) {
        let before = self.len();
        match &self.keyed {
            Keyed::User(l) => l.retain_recent(),
            Keyed::Addr(l) => l.retain_recent(),
        }
        let after = self.len();
        if before >= 1024 && after < before / 4 {
            match &self.keyed {
                Keyed::User(l) => l.shrink_to_fit(),
                Keyed::Addr(l) => l.shrink_to_fit(),
            }
        }
    }

    /// Sweeps every few seconds until `stop`.
    pub async fn sweep_until(self: std::sync::Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => self.sweep(),
            }
        }
    }
}

/// One request every `1/rate` seconds, `burst` at once. The interval is at
/// least a nanosecond (rates are validated to at most a million a second).
fn quota(rate: f64, burst: NonZeroU32) -> Quota {
    let period = Duration::from_secs_f64(1.0 / rate).max(Duration::from_nanos(1));
    Quota::with_period(period)
        .expect("a non-zero period")
        .allow_burst(burst)
}

/// `Retry-After` for a wait: whole seconds rounded up, at least 1 (a client
/// told 0 would retry at once and be refused again).
pub fn retry_after_secs(wait: Duration) -> u32 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    u32::try_from(secs).unwrap_or(u32::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_and_is_at_least_one() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_nanos(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(999)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(5)), 5);
        assert_eq!(retry_after_secs(Duration::from_secs(u64::MAX)), u32::MAX);
    }

    #[test]
    fn fractional_rates_become_long_intervals() {
        let burst = NonZeroU32::new(3).unwrap();
        assert_eq!(
            quota(0.5, burst).replenish_interval(),
            Duration::from_secs(2)
        );
        assert_eq!(
            quota(100.0, burst).replenish_interval(),
            Duration::from_millis(10)
        );
        assert_eq!(quota(100.0, burst).burst_size(), burst);
    }

    #[test]
    fn user_keying_limits_each_user_alone() {
        let l = Limiter::new(RateKey::User, 1.0, NonZeroU32::new(2).unwrap());
        let ip: IpAddr = [127, 0, 0, 1].into();
        assert!(l.check(&user("a"), ip).is_ok());
        assert!(l.check(&user("a"), ip).is_ok());
        let wait = l.check(&user("a"), ip).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // Another user from the same address is not affected.
        assert!(l.check(&user("b"), ip).is_ok());
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn addr_keying_limits_each_address_whatever_the_user() {
        let l = Limiter::new(RateKey::Addr, 1.0, NonZeroU32::new(1).unwrap());
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        assert!(l.check(&user("x"), a).is_ok());
        assert!(l.check(&user("y"), a).is_err());
        assert!(l.check(&user("x"), b).is_ok());
    }

    #[test]
    fn sweeping_forgets_only_idle_keys() {
        // A bucket refills in a nanosecond-scale interval: after any pause
        // it is full again, so a sweep drops the key.
        let l = Limiter::new(RateKey::User, MAX_RATE, NonZeroU32::new(1).unwrap());
        let ip: IpAddr = [127, 0, 0, 1].into();
        l.check(&user("idle"), ip).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        l.sweep();
        assert!(l.is_empty());
        // A slow bucket that was just used stays.
        let l = Limiter::new(RateKey::User, 0.01, NonZeroU32::new(1).unwrap());
        l.check(&user("busy"), ip).unwrap();
        l.sweep();
        assert_eq!(l.len(), 1);
    }

    const MAX_RATE: f64 = crate::config::MAX_RATE_LIMIT;
}
