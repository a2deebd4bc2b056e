//! The gateway's in-memory view of the events: what `/reserve` checks without
//! a round trip (exists? window open? sold out?). Kept fresh by pub/sub
//! notices and a periodic reload from PostgreSQL and Redis.

use crate::db::{self, Event};
use crate::inventory::Inventory;
use flashgrid_wire::EventId;
use sqlx::PgPool;
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

    /// Reloads every event from PostgreSQL and each stock from Redis. If Redis
    /// cannot be read, the sold-out flags already known are kept.
    pub async fn reload(&self, pool: &PgPool, inventory: &Inventory) -> Result<(), sqlx::Error> {
        let events = db::list_events(pool).await?;
        let ids: Vec<EventId> = events.iter().map(|e| e.id.clone()).collect();
        let stocks = inventory.stocks(&ids).await.ok();
        let mut map = HashMap::with_capacity(events.len());
        for (i, event) in events.into_iter().enumerate() {
            let sold_out = match stocks.as_ref().map(|s| s[i]) {
                Some(Some(stock)) => stock <= 0,
                Some(None) => event.remaining() == 0,
                None => event.remaining() == 0 || self.is_sold_out(&event.id),
            };
            map.insert(event.id.clone(), Arc::new(Entry::new(event, sold_out)));
        }
        *self.events.write().expect("catalog") = map;
        Ok(())
    }

    /// Reloads one event (after a create or reset notice).
    pub async fn reload_one(
        &self,
        pool: &PgPool,
        inventory: &Inventory,
        id: &EventId,
    ) -> Result<(), sqlx::Error> {
        let Some(event) = db::get_event(pool, id).await? else {
            return Ok(());
        };
        let stock = inventory
            .stocks(std::slice::from_ref(id))
            .await
            .ok()
            .and_then(|s| s.into_iter().next().flatten());
        let sold_out = match stock {
            Some(stock) => stock <= 0,
            None => event.remaining() == 0,
        };
        self.upsert(event, sold_out);
        Ok(())
    }
}
