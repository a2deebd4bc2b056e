//! Redis state of each event's sale and the Lua scripts that change it
//! atomically: decide, rebuild, revoke and reset (see `lua/`). Outcomes are
//! stored in the [`record`] format the scripts share.

pub mod record;

use crate::db::EventSnapshot;
use crate::names::{EventKeys, Namespace};
use flashgrid_wire::sale::Outcome;
use flashgrid_wire::{EventId, PerUserLimit, Quantity, Reason, ReservationId, UserId};
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};

/// One reservation handed to `decide`.
#[derive(Debug, Clone)]
pub struct Ask<'a> {
    pub id: ReservationId,
    pub user: &'a UserId,
    pub quantity: Quantity,
    /// Accepted outside the sale window: rejected `sale_closed`.
    pub closed: bool,
}

/// The field every whole outcomes hash holds (see `decide.lua`): no
/// reservation id can be a control character.
const SENTINEL: &str = "\u{1}";

/// What one decide call decided, and under which epoch of the event's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    /// PostgreSQL's `events.epoch` the Redis state was built under: the
    /// winners are committed under it, and refused if it moved on since.
    pub epoch: i32,
    pub outcomes: Vec<Outcome>,
}

/// What Redis knows of one reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub outcome: Option<Outcome>,
    /// The event's outcomes hash is whole: a missing outcome was never
    /// recorded since the hash was built (else Redis may have lost it).
    pub whole: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The event's stock is not in Redis: rebuild it from PostgreSQL.
    #[error("stock missing from Redis")]
    StockMissing,
    #[error("Redis answered an outcome FlashGrid cannot read: {0:?}")]
    Corrupt(String),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Handle on the Redis state; cheap to clone (the connection multiplexes).
#[derive(Clone)]
pub struct Inventory {
    conn: ConnectionManager,
    ns: Namespace,
    scripts: std::sync::Arc<Scripts>,
}

impl std::fmt::Debug for Inventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inventory").field("ns", &self.ns).finish()
    }
}

struct Scripts {
    decide: Script,
    settle: Script,
    restock: Script,
    revoke: Script,
    reset: Script,
}

impl Inventory {
    pub fn new(conn: ConnectionManager, ns: Namespace) -> Self {
        Self {
            conn,
            ns,
            scripts: std::sync::Arc::new(Scripts {
                decide: Script::new(include_str!("../lua/decide.lua")),
                settle: Script::new(include_str!("../lua/settle.lua")),
                restock: Script::new(include_str!("../lua/restock.lua")),
                revoke: Script::new(include_str!("../lua/revoke.lua")),
                reset: Script::new(include_str!("../lua/reset.lua")),
            }),
        }
    }

    pub fn namespace(&self) -> &Namespace {
        &self.ns
    }

    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    fn keys(&self, event: &EventId) -> EventKeys {
        self.ns.event_keys(event)
    }

    /// Decides `asks` (all of `event`) in one atomic script call.
    pub async fn decide(
        &self,
        event: &EventId,
        limit: PerUserLimit,
        asks: &[Ask<'_>],
    ) -> Result<Decided, InventoryError> {
        let k = self.keys(event);
        let mut inv = self.scripts.decide.prepare_invoke();
        inv.key(&k.stock)
            .key(&k.users)
            .key(&k.outcomes)
            .arg(limit.get())
            .arg(self.ns.notify_channel())
            .arg(event.as_str());
        for a in asks {
            inv.arg(a.id.0.to_string())
                .arg(a.user.as_str())
                .arg(a.quantity.get())
                .arg(if a.closed { "1" } else { "0" });
        }
        let mut conn = self.conn.clone();
        let raw: Vec<String> = match inv.invoke_async(&mut conn).await {
            Ok(v) => v,
            Err(e) if e.code() == Some("NOSTOCK") => return Err(InventoryError::StockMissing),
            Err(e) => return Err(e.into()),
        };
        let mut raw = raw.into_iter();
        let epoch = raw.next().unwrap_or_default();
        let epoch = epoch.parse().map_err(|_| InventoryError::Corrupt(epoch))?;
        let outcomes = raw
            .map(|s| record::decode(&s).ok_or(InventoryError::Corrupt(s)))
            .collect::<Result<_, _>>()?;
        Ok(Decided { epoch, outcomes })
    }

    /// Marks confirmations as committed (after PostgreSQL's commit), so the
    /// status URL says "confirmed". Entries changed since (revoked, reset)
    /// are left alone.
    pub async fn settle(
        &self,
        event: &EventId,
        ids: &[ReservationId],
    ) -> Result<(), InventoryError> {
        if ids.is_empty() {
            return Ok(());
        }
        let k = self.keys(event);
        let mut inv = self.scripts.settle.prepare_invoke();
        inv.key(&k.outcomes);
        for id in ids {
            inv.arg(id.0.to_string());
        }
        let mut conn = self.conn.clone();
        let _: i64 = inv.invoke_async(&mut conn).await?;
        Ok(())
    }

    /// Rebuilds a missing stock from PostgreSQL's snapshot (no-op when another
    /// worker already did). Returns the stock when this call rebuilt it.
    pub async fn restock(
        &self,
        event: &EventId,
        snap: &EventSnapshot,
    ) -> Result<Option<i64>, InventoryError> {
        let k = self.keys(event);
        let mut inv = self.scripts.restock.prepare_invoke();
        inv.key(&k.stock)
            .key(&k.users)
            .key(&k.outcomes)
            .arg(snap.capacity)
            .arg(snap.epoch);
        for row in &snap.confirmed {
            inv.arg(row.id.to_string()).arg(&row.user).arg(row.quantity);
        }
        let mut conn = self.conn.clone();
        let stock: i64 = inv.invoke_async(&mut conn).await?;
        Ok((stock >= 0).then_some(stock))
    }

    /// Turns confirmations PostgreSQL refused into rejections (with the
    /// reason of the guard that refused each) and drops the stock so that
    /// the event's state is rebuilt.
    pub async fn revoke(
        &self,
        event: &EventId,
        refused: &[(ReservationId, &UserId, Quantity, Reason)],
    ) -> Result<(), InventoryError> {
        let k = self.keys(event);
        let mut inv = self.scripts.revoke.prepare_invoke();
        inv.key(&k.stock).key(&k.users).key(&k.outcomes);
        for (id, user, qty, reason) in refused {
            inv.arg(id.0.to_string())
                .arg(user.as_str())
                .arg(qty.get())
                .arg(reason.as_str());
        }
        let mut conn = self.conn.clone();
        let _: i64 = inv.invoke_async(&mut conn).await?;
        Ok(())
    }

    /// Drops the event's stock, so that the next decision rebuilds the whole
    /// state from PostgreSQL.
    pub async fn drop_stock(&self, event: &EventId) -> Result<(), InventoryError> {
        let mut conn = self.conn.clone();
        let _: i64 = conn.del(self.keys(event).stock).await?;
        Ok(())
    }

    /// Full stock, no decisions, under the event's `epoch` in PostgreSQL:
    /// a new event or a drill's reset.
    pub async fn reset(
        &self,
        event: &EventId,
        capacity: u32,
        epoch: i32,
    ) -> Result<(), InventoryError> {
        let k = self.keys(event);
        let mut conn = self.conn.clone();
        let _: i64 = self
            .scripts
            .reset
            .key(&k.stock)
            .key(&k.users)
            .key(&k.outcomes)
            .arg(capacity)
            .arg(epoch)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Records freshly accepted reservations as pending (never overwriting a
    /// decision that raced ahead), in one round trip.
    pub async fn mark_pending<'a>(
        &self,
        items: impl Iterator<Item = (&'a EventId, ReservationId, &'a Outcome)>,
    ) -> Result<(), InventoryError> {
        let mut pipe = redis::pipe();
        for (event, id, outcome) in items {
            pipe.hset_nx(
                self.keys(event).outcomes,
                id.0.to_string(),
                record::encode(outcome),
            )
            .ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    /// Records outcomes decided outside `decide.lua` (never a confirmation).
    pub async fn record(
        &self,
        event: &EventId,
        ids: &[ReservationId],
        outcomes: &[Outcome],
    ) -> Result<(), InventoryError> {
        let key = self.keys(event).outcomes;
        let mut pipe = redis::pipe();
        for (id, o) in ids.iter().zip(outcomes) {
            pipe.hset(&key, id.0.to_string(), record::encode(o))
                .ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    /// The recorded outcome of one reservation and whether the event's
    /// outcomes are whole (their sentinel is there: Redis has not lost the
    /// hash since it was last built), in one round trip.
    pub async fn lookup(
        &self,
        event: &EventId,
        id: &ReservationId,
    ) -> Result<Lookup, InventoryError> {
        let mut conn = self.conn.clone();
        let (raw, sentinel): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(self.keys(event).outcomes)
            .arg(id.0.to_string())
            .arg(SENTINEL)
            .query_async(&mut conn)
            .await?;
        let outcome = raw
            .map(|s| record::decode(&s).ok_or(InventoryError::Corrupt(s)))
            .transpose()?;
        Ok(Lookup {
            outcome,
            whole: sentinel.is_some(),
        })
    }

    /// The recorded outcome of one reservation, if Redis has it.
    pub async fn outcome(
        &self,
        event: &EventId,
        id: &ReservationId,
    ) -> Result<Option<Outcome>, InventoryError> {
        let mut conn = self.conn.clone();
        let raw: Option<String> = conn
            .hget(self.keys(event).outcomes, id.0.to_string())
            .await?;
        raw.map(|s| record::decode(&s).ok_or(InventoryError::Corrupt(s)))
            .transpose()
    }

    /// Seats left per event (`None` where Redis has no stock).
    pub async fn stocks(&self, events: &[EventId]) -> Result<Vec<Option<i64>>, InventoryError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        // One GET per key in a pipeline rather than MGET: the keys live in
        // different hash slots.
        let mut pipe = redis::pipe();
        for e in events {
            pipe.get(self.keys(e).stock);
        }
        let mut conn = self.conn.clone();
        Ok(pipe.query_async(&mut conn).await?)
    }
}
