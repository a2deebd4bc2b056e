//! The rejections a worker decided for batches not done yet, kept so that
//! a retry never sells a seat to a purchase whose buyer may have read its
//! rejection already (see `Decider::process`).

use flashgrid_wire::{Reason, ReservationId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A reservation, by id and sale generation.
pub(crate) type Key = (ReservationId, u32);

/// The rejections kept, and which batches in flight hold them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Kept(Arc<Mutex<Inner>>);

#[derive(Debug, Default)]
struct Inner {
    kept: HashMap<Key, Reason>,
    /// How many batches in flight hold each reservation (see
    /// [`Kept::claim`]): a rejection is kept while one does, so that one
    /// batch done never takes it from another still retrying. The same
    /// purchase can be in two messages (a client's retries), and a worker
    /// has several batches in flight.
    claims: HashMap<Key, u32>,
}

/// A batch's hold on the rejections of its reservations, from the moment
/// it is taken until it is acked or given up.
#[derive(Debug)]
#[must_use = "the rejections are released when the claim is dropped"]
pub struct Claim {
    kept: Kept,
    keys: Vec<Key>,
}

impl Kept {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().expect("kept rejections")
    }

    /// Holds the rejections of `keys` until the claim is dropped.
    pub(crate) fn claim(&self, keys: Vec<Key>) -> Claim {
        let mut inner = self.lock();
        for k in &keys {
            *inner.claims.entry(*k).or_default() += 1;
        }
        Claim {
            kept: self.clone(),
            keys,
        }
    }

    /// The rejection kept for `k`, if any.
    pub(crate) fn get(&self, k: &Key) -> Option<Reason> {
        self.lock().kept.get(k).copied()
    }

    /// Keeps the first rejection decided for each key: the one its buyer
    /// may have read.
    pub(crate) fn keep_first(&self, rejections: impl IntoIterator<Item = (Key, Reason)>) {
        let mut inner = self.lock();
        for (k, reason) in rejections {
            inner.kept.entry(k).or_insert(reason);
        }
    }

    /// Keeps these rejections, over what was kept (a confirmation revoked:
    /// the revocation is what its buyer reads now).
    pub(crate) fn keep(&self, rejections: impl IntoIterator<Item = (Key, Reason)>) {
        self.lock().kept.extend(rejections);
    }

    /// One attempt at a batch holding `keys` is done: their rejections go,
    /// except those a batch in flight claims (they go with its claim).
    pub(crate) fn forget(&self, keys: impl IntoIterator<Item = Key>) {
        let mut inner = self.lock();
        for k in keys {
            if !inner.claims.contains_key(&k) {
                inner.kept.remove(&k);
            }
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut inner = self.kept.lock();
        for k in &self.keys {
            if let Some(n) = inner.claims.get_mut(k) {
                *n -= 1;
                if *n == 0 {
                    inner.claims.remove(k);
                    inner.kept.remove(k);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u128) -> Key {
        (ReservationId(uuid::Uuid::from_u128(n)), 1)
    }

    #[test]
    fn without_a_claim_a_rejection_goes_when_its_batch_is_done() {
        let kept = Kept::default();
        kept.keep_first([(key(1), Reason::SoldOut)]);
        kept.keep_first([(key(1), Reason::UserLimit)]);
        assert_eq!(kept.get(&key(1)), Some(Reason::SoldOut), "the first stays");
        kept.forget([key(1)]);
        assert_eq!(kept.get(&key(1)), None);
    }

    #[test]
    fn a_rejection_stays_while_any_batch_in_flight_holds_it() {
        let kept = Kept::default();
        // The same purchase in two batches in flight.
        let first = kept.claim(vec![key(1), key(2)]);
        let second = kept.claim(vec![key(1)]);
        kept.keep_first([(key(1), Reason::SoldOut), (key(2), Reason::SoldOut)]);
        // The first batch is done: its attempt forgets, its claim goes.
        kept.forget([key(1), key(2)]);
        drop(first);
        assert_eq!(
            kept.get(&key(1)),
            Some(Reason::SoldOut),
            "the second batch may still be retried"
        );
        assert_eq!(kept.get(&key(2)), None, "nobody holds it any more");
        drop(second);
        assert_eq!(kept.get(&key(1)), None);
    }

    #[test]
    fn a_revocation_replaces_what_was_kept() {
        let kept = Kept::default();
        let _claim = kept.claim(vec![key(1)]);
        kept.keep_first([(key(1), Reason::SoldOut)]);
        kept.keep([(key(1), Reason::UserLimit)]);
        assert_eq!(kept.get(&key(1)), Some(Reason::UserLimit));
    }
}
