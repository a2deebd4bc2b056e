//! The gateway's in-memory view of the events: what `/reserve` checks without
//! a round trip (exists? window open? sold out?). Pure memory; [`super::refresh`]
//! keeps it fresh from pub/sub notices and a periodic reload.

use flashgrid_wire::EventId;
use flashgrid_wire::sale::Event;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// One event as the gateway knows it.
#[derive(Debug)]
pub struct Entry {
    pub event: Event,
    sold_out: AtomicBool,
    /// The `409 sold_out` body, serialised once: after the sale, nearly every
    /// request gets it.
    pub sold_out_body: bytes::Bytes,
}

impl Entry {
    fn new(event: Event, sold_out: bool) -> Self {
        let body = super::error::ApiError::sold_out(event.id.as_str()).body();
        Self {
            event,
            sold_out: AtomicBool::new(sold_out),
            sold_out_body: body,
        }
    }

    pub fn sold_out(&self) -> bool {
        self.sold_out.load(Ordering::Relaxed)
    }
}

/// Seats left of one event as Redis last said, if it could be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stock {
    /// Redis answered with this many seats left.
    Left(i64),
    /// Redis answered but holds no stock (it is rebuilt on the next decision).
    Missing,
    /// Redis could not be read.
    Unknown,
}

#[derive(Debug, Default)]
pub struct Catalog {
    events: RwLock<HashMap<EventId, Arc<Entry>>>,
}

impl Catalog {
    pub fn get(&self, id: &EventId) -> Option<Arc<Entry>> {
        self.events.read().expect("catalog").get(id).cloned()
    }

    pub fn is_sold_out(&self, id: &EventId) -> bool {
        self.get(id).is_some_and(|e| e.sold_out())
    }

    pub fn mark_sold_out(&self, id: &EventId) {
        if let Some(e) = self.get(id) {
            e.sold_out.store(true, Ordering::Relaxed);
        }
    }

    pub fn upsert(&self, event: Event, sold_out: bool) {
        let entry = Arc::new(Entry::new(event, sold_out));
        self.events
            .write()
            .expect("catalog")
            .insert(entry.event.id.clone(), entry);
    }

    /// Whether an event is sold out, by Redis's stock when it answered, else
    /// by PostgreSQL's counts; while Redis is away a sold-out flag already
    /// known is kept.
    pub fn sold_out_by(&self, event: &Event, stock: Stock) -> bool {
        match stock {
            Stock::Left(left) => left <= 0,
            Stock::Missing => event.remaining() == 0,
            Stock::Unknown => event.remaining() == 0 || self.is_sold_out(&event.id),
        }
    }

    /// Replaces every event at once (a full reload), each with its stock.
    pub fn replace(&self, events: Vec<(Event, Stock)>) {
        let map = events
            .into_iter()
            .map(|(event, stock)| {
                let sold_out = self.sold_out_by(&event, stock);
                (event.id.clone(), Arc::new(Entry::new(event, sold_out)))
            })
            .collect();
        *self.events.write().expect("catalog") = map;
    }
}
