//! Copies of one purchase agree. A client that retries, or a retry storm,
//! sends several copies of a purchase with the same `Idempotency-Key`; each
//! must get the same answer: queued (`202`, the same reservation) or refused
//! (`409 sold_out`). Near the sell-out they race: a copy that finds the event
//! sold out and no outcome in Redis would be told `sold_out` while another
//! copy, queued a moment before (its pending marker not in Redis yet), may
//! still win a seat — a broken idempotency, seen in the retry-storm scenario.
//!
//! So the first copy to choose records its route here, under the shard's
//! lock, and every later copy takes the same one. A copy's choice is made
//! after it read the sold-out flag, and the lock orders the choices: a copy
//! that chooses after a refusal reads the flag set too, so it is refused as
//! well. Routes are kept a few seconds, long enough for any copies racing;
//! after that Redis holds the reservation's outcome, which says the same.
//!
//! Only requests with a key are recorded; sharded so that a flash crowd does
//! not queue on one lock.

use flashgrid_wire::ReservationId;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: usize = 16;

/// Routes are forgotten between one and two of these after they were chosen.
const KEEP: Duration = Duration::from_secs(3);

/// What the copies of one purchase are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Into the queue (`202`): the worker decides the reservation once.
    Queue,
    /// `409 sold_out`, without touching the queue.
    SoldOut,
}

#[derive(Debug)]
struct Generations {
    current: HashMap<ReservationId, Route>,
    previous: HashMap<ReservationId, Route>,
    rotated_at: Instant,
}

#[derive(Debug)]
pub struct CopyRoutes {
    shards: [Mutex<Generations>; SHARDS],
}

impl Default for CopyRoutes {
    fn default() -> Self {
        let now = Instant::now();
        Self {
            shards: std::array::from_fn(|_| {
                Mutex::new(Generations {
                    current: HashMap::new(),
                    previous: HashMap::new(),
                    rotated_at: now,
                })
            }),
        }
    }
}

impl CopyRoutes {
    /// The route of the purchase `id`: the one a copy already chose, or else
    /// `chosen`, recorded for the copies to come.
    pub fn settle(&self, id: ReservationId, chosen: Route) -> Route {
        // Reservation ids are UUIDs: their low bits are spread evenly.
        let shard = &self.shards[(id.0.as_u128() % SHARDS as u128) as usize];
        let mut g = shard.lock().expect("copy routes");
        if g.rotated_at.elapsed() >= KEEP {
            g.previous = std::mem::take(&mut g.current);
            g.rotated_at = Instant::now();
        }
        if let Some(route) = g.current.get(&id).or_else(|| g.previous.get(&id)) {
            return *route;
        }
        g.current.insert(id, chosen);
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_choice_is_every_copys() {
        let routes = CopyRoutes::default();
        let (a, b) = (ReservationId::random(), ReservationId::random());
        assert_eq!(routes.settle(a, Route::Queue), Route::Queue);
        assert_eq!(
            routes.settle(a, Route::SoldOut),
            Route::Queue,
            "a copy follows"
        );
        assert_eq!(routes.settle(b, Route::SoldOut), Route::SoldOut);
        assert_eq!(routes.settle(b, Route::Queue), Route::SoldOut);
    }
}
