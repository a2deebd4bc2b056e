//! Redis lookups of one moment, gathered into one round trip. Near a
//! sell-out nearly every request is a keyed purchase of a sold-out event,
//! and each must ask Redis whether an earlier copy of it was decided (a
//! retrying winner is told its seat, not `sold_out`); status reads ask the
//! same. One at a time, each cost two Redis commands and a pass through the
//! connection's task; gathered, a batch costs two commands an event.
//!
//! The batching adapts by itself, as the publisher's does: while a batch
//! slot is free a lookup goes at once, alone; once both are taken the next
//! ones gather, and leave together when one frees. Each event's callers are
//! answered as soon as its own call is, not after the batch's slowest
//! event. A gathered caller waits for its answer at most Redis's response
//! timeout ([`WAIT`]), however many batches are ahead of it; one that the
//! gatherer cannot take (its backlog full, or stopped) or drops unanswered
//! (stopped meanwhile) goes to Redis alone.

use crate::inventory::{Inventory, InventoryError, Lookup, Sought};
use flashgrid_wire::{EventId, ReservationId};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Most lookups waiting to be gathered; beyond it they go alone.
const BACKLOG: usize = 4096;

/// Most lookups in one batch.
const BATCH_MAX: usize = 256;

/// Batches under way at once: a second one hides the first one's round trip.
const IN_FLIGHT: usize = 2;

/// The longest a caller waits for its answer, and a batch holds its slot: a
/// lookup on its own would wait as long for its reply. Past it the caller
/// is answered a Redis error (the routes then ask PostgreSQL, as when
/// Redis is away).
pub const WAIT: Duration = crate::store::RESPONSE_TIMEOUT;

type Reply = oneshot::Sender<Result<Lookup, InventoryError>>;

#[derive(Debug)]
struct Ask {
    event: EventId,
    sought: Sought,
    reply: Reply,
}

/// Lookups gathered, and batches sent, since the start.
#[derive(Debug, Default)]
struct Counts {
    gathered: AtomicU64,
    batches: AtomicU64,
}

/// The gateway's handle: cheap to clone.
#[derive(Debug, Clone)]
pub struct Lookups {
    inventory: Inventory,
    tx: mpsc::Sender<Ask>,
    counts: Arc<Counts>,
}

impl Lookups {
    /// The handle, and the gatherer's task (it ends with `stop`).
    pub fn start(
        inventory: Inventory,
        stop: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(BACKLOG);
        let counts = Arc::new(Counts::default());
        let task = tokio::spawn(gather(inventory.clone(), rx, counts.clone(), stop));
        (
            Self {
                inventory,
                tx,
                counts,
            },
            task,
        )
    }

    /// What Redis holds of reservation `id` (see [`Inventory::lookup`]).
    pub async fn lookup(
        &self,
        event: &EventId,
        sale: u32,
        id: &ReservationId,
    ) -> Result<Lookup, InventoryError> {
        let (reply, answer) = oneshot::channel();
        let ask = Ask {
            event: event.clone(),
            sought: (sale, *id),
            reply,
        };
        if self.tx.try_send(ask).is_err() {
            return self.inventory.lookup(event, sale, id).await;
        }
        match tokio::time::timeout(WAIT, answer).await {
            Ok(Ok(looked)) => looked,
            // The gatherer stopped (shutdown) or its batch failed without
            // answering: alone, then.
            Ok(Err(_)) => self.inventory.lookup(event, sale, id).await,
            Err(_) => Err(InventoryError::Redis(redis::RedisError::from(
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no answer to a gathered lookup in time",
                ),
            ))),
        }
    }

    /// Lookups gathered into batches, and the batches, since the start
    /// (their ratio is the mean batch size).
    pub fn gathered(&self) -> (u64, u64) {
        (
            self.counts.gathered.load(Ordering::Relaxed),
            self.counts.batches.load(Ordering::Relaxed),
        )
    }
}

async fn gather(
    inventory: Inventory,
    mut rx: mpsc::Receiver<Ask>,
    counts: Arc<Counts>,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        let first = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            ask = rx.recv() => match ask {
                Some(ask) => ask,
                None => break,
            },
        };
        // Waiting for a free slot is what lets a batch grow under load.
        let slot = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let mut batch = Vec::with_capacity(BATCH_MAX.min(rx.len() + 1));
        batch.push(first);
        while batch.len() < BATCH_MAX {
            match rx.try_recv() {
                Ok(ask) => batch.push(ask),
                Err(_) => break,
            }
        }
        counts
            .gathered
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        counts.batches.fetch_add(1, Ordering::Relaxed);
        let inventory = inventory.clone();
        tokio::spawn(async move {
            // Its callers have given up by then: the slot is freed.
            let _ = tokio::time::timeout(WAIT, answer(&inventory, batch)).await;
            drop(slot);
        });
    }
}

/// Answers a batch, each event's callers as soon as its call returns.
async fn answer(inventory: &Inventory, batch: Vec<Ask>) {
    // The events in the order they first appear; nearly always one.
    let mut events: Vec<(EventId, Vec<Sought>, Vec<Reply>)> = Vec::with_capacity(1);
    for Ask {
        event,
        sought,
        reply,
    } in batch
    {
        match events.iter_mut().find(|(e, _, _)| *e == event) {
            Some((_, s, r)) => {
                s.push(sought);
                r.push(reply);
            }
            None => events.push((event, vec![sought], vec![reply])),
        }
    }
    let calls = events
        .into_iter()
        .map(|(event, sought, replies)| async move {
            let answers = inventory.lookup_many(&event, &sought).await;
            for (reply, looked) in replies.into_iter().zip(answers) {
                // The buyer may have gone meanwhile.
                let _ = reply.send(looked);
            }
        });
    futures::future::join_all(calls).await;
}
