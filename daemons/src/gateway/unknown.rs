//! Events a purchase names that this gateway's catalog does not hold. With
//! several gateways, an event created through another one reaches this
//! one by a pub/sub notice (or the reload every 2 s); a purchase in those
//! milliseconds asks PostgreSQL instead of being told `404 unknown_event`.
//! A few lookups at a time, and an id PostgreSQL did not know is not asked
//! again for a second, so made-up event ids cannot flood the pool. Only
//! that known miss is a `404`: a lookup turned away (too many under way)
//! is a `503`, since the event may exist.

use flashgrid_wire::EventId;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, SemaphorePermit};

/// PostgreSQL lookups of unknown events at once, per gateway.
const AT_ONCE: usize = 2;
/// How long an id PostgreSQL did not know is answered `404` without asking.
const REMEMBERED: Duration = Duration::from_secs(1);
/// Ids remembered at most (forgotten all at once beyond it).
const REMEMBERED_MAX: usize = 10_000;

#[derive(Debug)]
pub struct UnknownEvents {
    permits: Semaphore,
    missed: Mutex<HashMap<EventId, Instant>>,
}

impl Default for UnknownEvents {
    fn default() -> Self {
        Self {
            permits: Semaphore::new(AT_ONCE),
            missed: Mutex::default(),
        }
    }
}

/// Whether PostgreSQL may be asked about an event.
#[derive(Debug)]
pub enum Ask<'a> {
    /// Yes, within this permit.
    Go(SemaphorePermit<'a>),
    /// It was asked, and did not know it, within the last second.
    Missed,
    /// Too many lookups are under way.
    Busy,
}

impl UnknownEvents {
    /// Leave to ask PostgreSQL about `id`.
    pub fn may_ask(&self, id: &EventId) -> Ask<'_> {
        let missed = self.missed.lock().expect("missed events");
        if missed.get(id).is_some_and(|at| at.elapsed() < REMEMBERED) {
            return Ask::Missed;
        }
        drop(missed);
        match self.permits.try_acquire() {
            Ok(p) => Ask::Go(p),
            Err(_) => Ask::Busy,
        }
    }

    /// PostgreSQL did not know `id` either.
    pub fn missed(&self, id: &EventId) {
        let mut missed = self.missed.lock().expect("missed events");
        if missed.len() >= REMEMBERED_MAX {
            missed.retain(|_, at| at.elapsed() < REMEMBERED);
            if missed.len() >= REMEMBERED_MAX {
                missed.clear();
            }
        }
        missed.insert(id.clone(), Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missed_id_is_not_asked_again_at_once_and_lookups_are_bounded() {
        let u = UnknownEvents::default();
        let (a, b, c) = (
            EventId::parse("a").unwrap(),
            EventId::parse("b").unwrap(),
            EventId::parse("c").unwrap(),
        );
        let (Ask::Go(first), Ask::Go(second)) = (u.may_ask(&a), u.may_ask(&b)) else {
            panic!("two lookups at once");
        };
        assert!(matches!(u.may_ask(&c), Ask::Busy), "two at once at most");
        drop((first, second));
        u.missed(&a);
        assert!(matches!(u.may_ask(&a), Ask::Missed), "just missed");
        assert!(matches!(u.may_ask(&b), Ask::Go(_)));
    }
}
