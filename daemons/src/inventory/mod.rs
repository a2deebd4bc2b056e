//! Redis state of each event's sale and the Lua scripts that change it
//! atomically: decide, rebuild, revoke and reset (see `lua/`). Outcomes are
//! stored in the [`record`] format the scripts share: confirmations in the
//! event's `won` hash, pending markers and rejections in keys of their own
//! that expire (see `names::EventKeys`), so Redis holds the winners for good
//! and everything else for [`DEFAULT_OUTCOME_TTL`].

pub mod record;

use crate::db::EventSnapshot;
use crate::names::{EventKeys, Namespace};
use crate::store::Store;
use flashgrid_wire::sale::Outcome;
use flashgrid_wire::{EventId, PerUserLimit, Quantity, Reason, ReservationId, UserId};
use redis::{AsyncCommands, Script};
use std::time::Duration;

/// How long a pending marker or a rejection stays readable in Redis; after
/// that its status URL is answered from PostgreSQL (see the status route).
pub const DEFAULT_OUTCOME_TTL: Duration = Duration::from_secs(24 * 3600);

/// Staged fields per command of a rebuild: each command stays well under a
/// millisecond of Redis's time.
const REBUILD_CHUNK: usize = 500;

/// Most confirmations one `settle.lua` call marks committed.
const SETTLE_CHUNK: usize = 512;

/// A rebuild abandoned half-way (its worker died) leaves staged hashes that
/// vanish after this long.
const STAGING_TTL_SECS: i64 = 300;

/// One reservation handed to `decide`.
#[derive(Debug, Clone)]
pub struct Ask<'a> {
    pub id: ReservationId,
    pub user: &'a UserId,
    pub quantity: Quantity,
    /// Accepted outside the sale window: rejected `sale_closed`.
    pub closed: bool,
    /// The event's sale generation it was accepted in; one older than
    /// Redis's state was accepted before a reset and is rejected
    /// `sale_closed`.
    pub sale: u32,
    /// A rejection the caller decided for it before (an earlier attempt at
    /// its batch): kept, even where Redis forgot it since (`decide.lua`).
    pub kept: Option<Reason>,
}

/// The most seats an event's Redis state may claim are left, from what
/// PostgreSQL held at the last commit or snapshot of it the worker made or
/// heard of (`Notice::Floor`): seats
/// confirmed there are never offered again. A state above it is behind
/// PostgreSQL and is rebuilt (`decide.lua`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Floor {
    /// The sale generation it holds for (a reset gives the seats back).
    pub sale: u32,
    pub max_stock: i64,
    /// The seats released holds had given back by then (only grows within
    /// a sale, see docs/HOLDS.md): a reading with more is the newer one,
    /// whatever seats it leaves.
    pub released: u32,
}

impl Floor {
    pub fn of(sale: u32, seats: flashgrid_wire::sale::SeatCounts, released: u32) -> Self {
        Self {
            sale,
            max_stock: i64::from(seats.capacity) - i64::from(seats.confirmed),
            released,
        }
    }

    /// Whether this reading of PostgreSQL is newer than `old`: a later
    /// sale, more seats released, or else fewer seats left (taken seats
    /// only grow between two releases).
    pub fn supersedes(&self, old: &Floor) -> bool {
        use std::cmp::Reverse;
        (self.sale, self.released, Reverse(self.max_stock))
            > (old.sale, old.released, Reverse(old.max_stock))
    }
}

/// Where an event's Redis state stood when a script last answered: its sale
/// generation, its epoch, and how many calls changed it since it was built
/// (`decide.lua`, "Marks"). A state only moves forward in this order, so
/// one below a mark a worker saw of it went back in time (a copy restored
/// from before, a lagging replica promoted) and is rebuilt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mark {
    pub sale: u32,
    pub epoch: i32,
    pub seq: i64,
}

impl Mark {
    /// A script's answer: sale generation, epoch, sequence.
    fn read(raw: &mut impl Iterator<Item = String>) -> Result<Self, InventoryError> {
        fn field<T: std::str::FromStr>(
            raw: &mut impl Iterator<Item = String>,
        ) -> Result<T, InventoryError> {
            let s = raw.next().unwrap_or_default();
            s.parse().map_err(|_| InventoryError::Corrupt(s))
        }
        Ok(Self {
            sale: field(raw)?,
            epoch: field(raw)?,
            seq: field(raw)?,
        })
    }
}

/// What the caller knows of an event's state, checked by `decide.lua`
/// before it decides anything: a state behind the floor or the mark is
/// rebuilt first ([`InventoryError::StockMissing`]), one of another epoch
/// than `epoch` refused ([`InventoryError::Rebuilt`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Expect {
    pub floor: Option<Floor>,
    pub mark: Option<Mark>,
    /// The epoch the batch's earlier calls for this event were decided
    /// under (`None` for its first call).
    pub epoch: Option<i32>,
}

/// A confirmation PostgreSQL refused, to be turned into a rejection.
#[derive(Debug, Clone)]
pub struct Refused<'a> {
    /// The sale generation it was accepted in (where its outcome is kept).
    pub sale: u32,
    pub id: ReservationId,
    pub user: &'a UserId,
    pub quantity: Quantity,
    /// The rule PostgreSQL enforced.
    pub reason: Reason,
}

/// The field every whole `won` and `users` hash holds (see `decide.lua`):
/// no reservation id or user id can be a control character.
const SENTINEL: &str = "\u{1}";
/// The `won` hash's field of the event's committed seats; its prefix of a
/// user's committed quantity (see `decide.lua`).
const COMMITTED: &str = "\u{2}";
/// The `won` hash's field counting the calls that changed the state (the
/// sequence of its [`Mark`]).
const SEQUENCE: &str = "\u{4}";

fn committed_field(user: &str) -> String {
    format!("{COMMITTED}{user}")
}

/// What one decide call decided, and in which state of the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    /// The state's mark once decided; its epoch is PostgreSQL's
    /// `events.epoch` the state was built under: the winners are committed
    /// under it, and refused if it moved on since.
    pub mark: Mark,
    pub outcomes: Vec<Outcome>,
}

impl Decided {
    pub fn epoch(&self) -> i32 {
        self.mark.epoch
    }
}

/// A reservation of an event to look up ([`Inventory::lookup_many`]): the
/// sale generation its outcome is recorded under, and its id.
pub type Sought = (u32, ReservationId);

/// What Redis knows of one reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub outcome: Option<Outcome>,
    /// The event's `won` hash is whole: a reservation missing from it was
    /// not confirmed in Redis since the hash was built (else Redis may have
    /// lost its confirmation).
    pub whole: bool,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum InventoryError {
    /// The event's stock is not in Redis, or its state is behind what the
    /// caller knows: rebuild it from PostgreSQL.
    #[error("stock missing from Redis")]
    StockMissing,
    /// The event's state was rebuilt since the batch's earlier calls were
    /// decided in it (`Expect::epoch`): nothing decided.
    #[error("the event's Redis state was rebuilt since the batch was first decided in it")]
    Rebuilt,
    #[error("Redis answered an outcome FlashGrid cannot read: {0:?}")]
    Corrupt(String),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Handle on the Redis state; cheap to clone (the connection multiplexes).
#[derive(Clone)]
pub struct Inventory {
    conn: Store,
    ns: Namespace,
    /// Seconds a pending marker or a rejection stays readable.
    outcome_ttl: u64,
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
    derive: Script,
}

impl Inventory {
    pub fn new(conn: impl Into<Store>, ns: Namespace) -> Self {
        Self {
            conn: conn.into(),
            ns,
            outcome_ttl: DEFAULT_OUTCOME_TTL.as_secs(),
            scripts: std::sync::Arc::new(Scripts {
                // parts.lua first: the bulk calls both scripts make.
                decide: Script::new(concat!(
                    include_str!("../lua/parts.lua"),
                    include_str!("../lua/decide.lua")
                )),
                settle: Script::new(concat!(
                    include_str!("../lua/parts.lua"),
                    include_str!("../lua/settle.lua")
                )),
                restock: Script::new(include_str!("../lua/restock.lua")),
                revoke: Script::new(include_str!("../lua/revoke.lua")),
                reset: Script::new(include_str!("../lua/reset.lua")),
                derive: Script::new(include_str!("../lua/derive.lua")),
            }),
        }
    }

    /// Pending markers and rejections expire after `ttl` (at least a second).
    pub fn with_outcome_ttl(mut self, ttl: Duration) -> Self {
        self.outcome_ttl = ttl.as_secs().max(1);
        self
    }

    pub fn namespace(&self) -> &Namespace {
        &self.ns
    }

    pub fn connection(&self) -> Store {
        self.conn.clone()
    }

    fn keys(&self, event: &EventId) -> EventKeys {
        self.ns.event_keys(event)
    }

    /// Decides `asks` (all of `event`) in one atomic script call; a state
    /// behind what the caller `expect`s is rebuilt first (`StockMissing`),
    /// one of another epoch refused (`Rebuilt`).
    pub async fn decide(
        &self,
        event: &EventId,
        limit: PerUserLimit,
        expect: Expect,
        asks: &[Ask<'_>],
    ) -> Result<Decided, InventoryError> {
        let k = self.keys(event);
        let Expect { floor, mark, epoch } = expect;
        let mark = mark.unwrap_or_default();
        let mut inv = self.scripts.decide.prepare_invoke();
        inv.key(&k.stock)
            .key(&k.users)
            .key(&k.won)
            .arg(limit.get())
            .arg(self.ns.notify_channel())
            .arg(event.as_str())
            .arg(self.outcome_ttl)
            .arg(floor.map_or(0, |f| f.sale))
            .arg(floor.map_or(0, |f| f.max_stock))
            .arg(mark.sale)
            .arg(mark.epoch)
            .arg(mark.seq);
        match epoch {
            Some(e) => inv.arg(e),
            None => inv.arg(""),
        };
        for a in asks {
            inv.key(k.outcome(a.sale, &a.id))
                .arg(a.id.0.to_string())
                .arg(a.user.as_str())
                .arg(a.quantity.get())
                .arg(if a.closed { "1" } else { "0" })
                .arg(a.sale)
                .arg(a.kept.map_or("", Reason::as_str));
        }
        let mut conn = self.conn.clone();
        let raw: Vec<String> = match inv.invoke_async(&mut conn).await {
            Ok(v) => v,
            Err(e) if e.code() == Some("NOSTOCK") => return Err(InventoryError::StockMissing),
            Err(e) if e.code() == Some("REBUILT") => return Err(InventoryError::Rebuilt),
            Err(e) => return Err(e.into()),
        };
        let mut raw = raw.into_iter();
        let mark = Mark::read(&mut raw)?;
        let outcomes = raw
            .map(|s| record::decode(&s).ok_or(InventoryError::Corrupt(s)))
            .collect::<Result<_, _>>()?;
        Ok(Decided { mark, outcomes })
    }

    /// Marks confirmations as committed (after PostgreSQL's commit), so the
    /// status URL says "confirmed". Entries changed since (revoked, reset)
    /// are left alone. A whole state behind `mark` is refused
    /// (`StockMissing`: rebuild it; PostgreSQL holds these already).
    /// Returns the state's mark after the last call, if it is whole.
    pub async fn settle(
        &self,
        event: &EventId,
        mark: Option<Mark>,
        ids: &[ReservationId],
    ) -> Result<Option<Mark>, InventoryError> {
        let k = self.keys(event);
        let mut conn = self.conn.clone();
        let mut mark = mark;
        // In calls of a bounded size, as the worker decides (a script blocks
        // Redis while it runs); each call is whole (see `settle.lua`), and
        // settling an entry twice changes nothing.
        for part in ids.chunks(SETTLE_CHUNK) {
            let seen = mark.unwrap_or_default();
            let mut inv = self.scripts.settle.prepare_invoke();
            inv.key(&k.won)
                .key(&k.users)
                .arg(seen.sale)
                .arg(seen.epoch)
                .arg(seen.seq);
            for id in part {
                inv.arg(id.0.to_string());
            }
            let raw: Vec<String> = match inv.invoke_async(&mut conn).await {
                Ok(v) => v,
                Err(e) if e.code() == Some("NOSTOCK") => {
                    return Err(InventoryError::StockMissing);
                }
                Err(e) => return Err(e.into()),
            };
            let now = Mark::read(&mut raw.into_iter())?;
            // 0 0 0: the state is not whole (a rebuild comes).
            if now != Mark::default() {
                mark = mark.max(Some(now));
            }
        }
        Ok(mark)
    }

    /// Rebuilds the event's state from PostgreSQL's snapshot (a no-op when
    /// another worker already rebuilt it from this snapshot or a newer one).
    /// Returns the stock when this call rebuilt it.
    ///
    /// The snapshot's rows are staged in chunks of [`REBUILD_CHUNK`] fields,
    /// then swapped in by one short script (`restock.lua`), so Redis is never
    /// blocked for long, and the cost grows with the winners only.
    pub async fn restock(
        &self,
        event: &EventId,
        snap: &EventSnapshot,
    ) -> Result<Option<i64>, InventoryError> {
        let k = self.keys(event);
        let (staged_won, staged_users) = k.staging(snap.epoch);
        let mut conn = self.conn.clone();
        let _: i64 = conn.unlink(&[&staged_won, &staged_users]).await?;
        let mut users: std::collections::HashMap<&str, i64> = Default::default();
        // A released hold stays in the won hash as decided (a redelivery of
        // its message must not be sold a seat again), and counts nowhere:
        // its seats are back in the stock. Its state is PostgreSQL's.
        let rows = snap
            .confirmed
            .iter()
            .map(|r| (r, true))
            .chain(snap.released.iter().map(|r| (r, false)))
            .collect::<Vec<_>>();
        for chunk in rows.chunks(REBUILD_CHUNK) {
            let mut hset = redis::cmd("HSET");
            hset.arg(&staged_won);
            for (row, takes_seats) in chunk {
                hset.arg(row.id.to_string())
                    .arg(record::committed(row.quantity, &row.user));
                if *takes_seats {
                    *users.entry(&row.user).or_default() += i64::from(row.quantity);
                }
            }
            // In one transaction: a staged key never outlives its expiry.
            let mut pipe = redis::pipe();
            pipe.atomic()
                .add_command(hset)
                .ignore()
                .expire(&staged_won, STAGING_TTL_SECS)
                .ignore();
            pipe.query_async::<()>(&mut conn).await?;
        }
        let users: Vec<(&str, i64)> = users.into_iter().collect();
        for chunk in users.chunks(REBUILD_CHUNK) {
            // Each buyer's committed quantity, twice: what the users hash
            // counts (everything confirmed) and what the won hash counts
            // (committed only; equal in a rebuilt state).
            let committed: Vec<(String, i64)> = chunk
                .iter()
                .map(|(user, qty)| (committed_field(user), *qty))
                .collect();
            let mut pipe = redis::pipe();
            pipe.atomic()
                .hset_multiple(&staged_users, chunk)
                .ignore()
                .expire(&staged_users, STAGING_TTL_SECS)
                .ignore()
                .hset_multiple(&staged_won, &committed)
                .ignore()
                .expire(&staged_won, STAGING_TTL_SECS)
                .ignore();
            pipe.query_async::<()>(&mut conn).await?;
        }
        let stock: i64 = self
            .scripts
            .restock
            .key(&k.stock)
            .key(&k.users)
            .key(&k.won)
            .key(&staged_won)
            .key(&staged_users)
            .arg(snap.capacity)
            .arg(snap.epoch)
            .arg(snap.seats().confirmed)
            .arg(snap.sale)
            .arg(rows.len() + users.len())
            .arg(users.len())
            .arg(u8::from(snap.released_seats > 0))
            .invoke_async(&mut conn)
            .await?;
        if stock == -2 {
            tracing::warn!(event_id = %event, "Redis lost part of a rebuild while it was staged: taking a new snapshot");
        }
        Ok((stock >= 0).then_some(stock))
    }

    /// Turns confirmations PostgreSQL refused into rejections (with the
    /// reason of the guard that refused each) and drops the stock so that
    /// the event's state is rebuilt.
    pub async fn revoke(
        &self,
        event: &EventId,
        refused: &[Refused<'_>],
    ) -> Result<(), InventoryError> {
        let k = self.keys(event);
        let mut inv = self.scripts.revoke.prepare_invoke();
        inv.key(&k.stock)
            .key(&k.users)
            .key(&k.won)
            .arg(self.outcome_ttl);
        for Refused {
            sale,
            id,
            user,
            quantity: qty,
            reason,
        } in refused
        {
            inv.key(k.outcome(*sale, id))
                .arg(id.0.to_string())
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

    /// Has Redis and the gateways follow a release PostgreSQL committed
    /// (docs/HOLDS.md): the stock is dropped, so the next decision rebuilds
    /// the state from PostgreSQL with the seats back, and the gateways are
    /// told the event changed (it is no longer sold out). Best effort: a
    /// worker's sweep finds a state older than PostgreSQL's epoch and drops
    /// it too.
    pub async fn follow_release(&self, event: &EventId) {
        if let Err(e) = self.drop_stock(event).await {
            tracing::warn!(error = %e, event_id = %event, "could not drop the stock after a release; the next sweep retries");
        }
        crate::notify::publish(
            &self.conn,
            &self.ns,
            &crate::notify::Notice::EventChanged(event.clone()),
        )
        .await;
    }

    /// The epoch of the event's Redis state (the PostgreSQL epoch it was
    /// built under, see `restock.lua`); `None` when Redis holds no whole
    /// state (its stock dropped: the next decision rebuilds it anyway).
    pub async fn state_epoch(&self, event: &EventId) -> Result<Option<i64>, InventoryError> {
        let mut conn = self.conn.clone();
        let k = self.keys(event);
        let (stock, epoch): (Option<i64>, Option<i64>) = redis::pipe()
            .get(&k.stock)
            .hget(&k.users, SENTINEL)
            .query_async(&mut conn)
            .await?;
        Ok(stock.and(epoch))
    }

    /// Full stock, no decisions, under the event's `epoch` and `sale`
    /// generation in PostgreSQL: a new event or a drill's reset.
    pub async fn reset(
        &self,
        event: &EventId,
        capacity: u32,
        epoch: i32,
        sale: u32,
    ) -> Result<(), InventoryError> {
        let k = self.keys(event);
        let mut conn = self.conn.clone();
        let _: i64 = self
            .scripts
            .reset
            .key(&k.stock)
            .key(&k.users)
            .key(&k.won)
            .arg(capacity)
            .arg(epoch)
            .arg(sale)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Records freshly accepted reservations as pending (never overwriting a
    /// rejection that raced ahead; a confirmation that did lives in the won
    /// hash, which is read first): one round trip on one server, one per
    /// event's slot at once on a cluster.
    pub async fn mark_pending<'a>(
        &self,
        items: impl Iterator<Item = (&'a EventId, u32, ReservationId, &'a Outcome)>,
    ) -> Result<(), InventoryError> {
        let ttl = redis::SetOptions::default()
            .conditional_set(redis::ExistenceCheck::NX)
            .with_expiration(redis::SetExpiry::EX(self.outcome_ttl));
        let mut pipes = SlotPipes::new(self.conn.is_cluster());
        for (event, sale, id, outcome) in items {
            pipes
                .of(event)
                .set_options(
                    self.keys(event).outcome(sale, &id),
                    record::encode(outcome),
                    ttl.clone(),
                )
                .ignore();
        }
        pipes.run(&self.conn).await
    }

    /// Records a rejection derived from what PostgreSQL makes certain,
    /// unless Redis already holds a decision of the reservation; returns
    /// the outcome recorded (see `derive.lua`).
    pub async fn record_derived(
        &self,
        event: &EventId,
        sale: u32,
        id: &ReservationId,
        rejection: &Outcome,
    ) -> Result<Outcome, InventoryError> {
        let k = self.keys(event);
        let mut conn = self.conn.clone();
        let raw: String = self
            .scripts
            .derive
            .key(&k.won)
            .key(k.outcome(sale, id))
            .arg(id.0.to_string())
            .arg(record::encode(rejection))
            .arg(self.outcome_ttl)
            .invoke_async(&mut conn)
            .await?;
        record::decode(&raw).ok_or(InventoryError::Corrupt(raw))
    }

    /// Records outcomes decided outside `decide.lua` (never a confirmation).
    pub async fn record(
        &self,
        event: &EventId,
        ids: &[(u32, ReservationId)],
        outcomes: &[Outcome],
    ) -> Result<(), InventoryError> {
        let keys = self.keys(event);
        let mut pipe = redis::pipe();
        for ((sale, id), o) in ids.iter().zip(outcomes) {
            pipe.set_ex(keys.outcome(*sale, id), record::encode(o), self.outcome_ttl)
                .ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    /// The recorded outcome of one reservation (its confirmation, else its
    /// rejection or pending marker) and whether the event's `won` hash is
    /// whole (its sentinel is there: Redis has not lost it since it was
    /// last built), in one round trip (two for a tentative rejection).
    pub async fn lookup(
        &self,
        event: &EventId,
        sale: u32,
        id: &ReservationId,
    ) -> Result<Lookup, InventoryError> {
        self.lookup_many(event, &[(sale, *id)])
            .await
            .pop()
            .expect("one answer a reservation")
    }

    /// [`Inventory::lookup`] of many reservations of one event at once: one
    /// pipeline of two commands whatever their number (a third, a second
    /// round trip, where one holds a tentative rejection; a cluster
    /// pipeline is of one slot, and an event's keys are all in its slot).
    /// An answer each, in order; a failure fails only the reservations it
    /// concerns (the call, an outcome FlashGrid cannot read, a tentative
    /// rejection that could not be resolved).
    pub async fn lookup_many(
        &self,
        event: &EventId,
        wanted: &[Sought],
    ) -> Vec<Result<Lookup, InventoryError>> {
        match self.lookup_event(event, wanted).await {
            Ok(answers) => answers,
            Err(e) => vec![Err(e); wanted.len()],
        }
    }

    async fn lookup_event(
        &self,
        event: &EventId,
        wanted: &[Sought],
    ) -> Result<Vec<Result<Lookup, InventoryError>>, InventoryError> {
        let k = self.keys(event);
        let mut pipe = redis::pipe();
        let hmget = pipe.cmd("HMGET").arg(&k.won).arg(SENTINEL);
        for (_, id) in wanted {
            hmget.arg(id.0.to_string());
        }
        let mget = pipe.cmd("MGET");
        for (sale, id) in wanted {
            mget.arg(k.outcome(*sale, id));
        }
        let mut conn = self.conn.clone();
        let (won, other): (Vec<Option<String>>, Vec<Option<String>>) =
            pipe.query_async(&mut conn).await?;
        if won.len() != wanted.len() + 1 || other.len() != wanted.len() {
            return Err(InventoryError::Corrupt(format!(
                "a lookup of {} reservations answered {} and {} values",
                wanted.len(),
                won.len(),
                other.len()
            )));
        }
        let mut won = won.into_iter();
        let whole = won.next().flatten().is_some();
        let mut answers = Vec::with_capacity(wanted.len());
        // The outcomes found, and where their answers go once resolved.
        let (mut found, mut outcomes) = (Vec::new(), Vec::new());
        for (w, o) in won.zip(other) {
            let outcome = match w
                .or(o)
                .map(|s| record::decode(&s).ok_or(InventoryError::Corrupt(s)))
            {
                Some(Ok(o)) => {
                    found.push(answers.len());
                    outcomes.push(o);
                    None // for now: answered once resolved, below
                }
                Some(Err(e)) => {
                    answers.push(Err(e));
                    continue;
                }
                None => None,
            };
            answers.push(Ok(Lookup { outcome, whole }));
        }
        // Only a tentative rejection needs the second round trip; if it
        // fails, the others are answered all the same.
        let resolved = self.resolve(event, &mut outcomes).await;
        for (i, o) in found.into_iter().zip(outcomes) {
            answers[i] = match &resolved {
                Err(e) if o.is_tentative() => Err(e.clone()),
                _ => Ok(Lookup {
                    outcome: Some(o),
                    whole,
                }),
            };
        }
        Ok(answers)
    }

    /// Makes certain each tentative rejection among `outcomes` (of one
    /// event) whose committed count has reached its mark by now (see
    /// `decide.lua`), in one round trip; the others stay tentative.
    pub async fn resolve(
        &self,
        event: &EventId,
        outcomes: &mut [Outcome],
    ) -> Result<(), InventoryError> {
        let fields: Vec<String> = outcomes
            .iter()
            .filter(|o| o.is_tentative())
            .map(|o| match o.reason {
                Some(Reason::UserLimit) => committed_field(o.user.as_str()),
                _ => COMMITTED.to_owned(),
            })
            .collect();
        if fields.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let counts: Vec<Option<u32>> = redis::cmd("HMGET")
            .arg(self.keys(event).won)
            .arg(&fields)
            .query_async(&mut conn)
            .await?;
        let tentative = outcomes.iter_mut().filter(|o| o.is_tentative());
        for (o, count) in tentative.zip(counts) {
            if o.certain_at.is_some_and(|n| count.unwrap_or(0) >= n) {
                o.certain_at = None;
            }
        }
        Ok(())
    }

    /// An event's stock, its state's sale generation and its mark (`None`
    /// where Redis holds no such key, or not the whole state): what
    /// `decide.lua` checks against the worker's floor and mark.
    pub async fn state_of(
        &self,
        event: &EventId,
    ) -> Result<(Option<i64>, Option<u32>, Option<Mark>), InventoryError> {
        let k = self.keys(event);
        let mut pipe = redis::pipe();
        pipe.get(&k.stock)
            .cmd("HMGET")
            .arg(&k.won)
            .arg(SENTINEL)
            .arg(SEQUENCE)
            .hget(&k.users, SENTINEL);
        let mut conn = self.conn.clone();
        type Raw = (Option<i64>, (Option<u32>, Option<i64>), Option<i32>);
        let (stock, (sale, seq), epoch): Raw = pipe.query_async(&mut conn).await?;
        let mark = sale.zip(epoch).map(|(sale, epoch)| Mark {
            sale,
            epoch,
            seq: seq.unwrap_or(0),
        });
        Ok((stock, sale, mark))
    }

    /// Seats left per event (`None` where Redis has no stock).
    pub async fn stocks(&self, events: &[EventId]) -> Result<Vec<Option<i64>>, InventoryError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        // One GET per key rather than MGET: the keys live in different
        // hash slots. One pipeline on one server; one call per event, all
        // at once, on a cluster (a cluster pipeline is of one slot).
        if self.conn.is_cluster() {
            let gets = events.iter().map(|e| {
                let mut conn = self.conn.clone();
                let key = self.keys(e).stock;
                async move { conn.get::<_, Option<i64>>(key).await }
            });
            return Ok(futures::future::try_join_all(gets).await?);
        }
        let mut pipe = redis::pipe();
        for e in events {
            pipe.get(self.keys(e).stock);
        }
        let mut conn = self.conn.clone();
        Ok(pipe.query_async(&mut conn).await?)
    }
}

/// Commands of no reply, gathered into one pipeline, or on a cluster into
/// one per event (every key of an event is in its slot), sent at once.
struct SlotPipes<'e> {
    cluster: bool,
    pipes: Vec<(&'e EventId, redis::Pipeline)>,
}

impl<'e> SlotPipes<'e> {
    fn new(cluster: bool) -> Self {
        Self {
            cluster,
            pipes: Vec::new(),
        }
    }

    fn of(&mut self, event: &'e EventId) -> &mut redis::Pipeline {
        let at = if self.cluster {
            self.pipes.iter().position(|(e, _)| *e == event)
        } else {
            (!self.pipes.is_empty()).then_some(0)
        };
        let at = at.unwrap_or_else(|| {
            self.pipes.push((event, redis::pipe()));
            self.pipes.len() - 1
        });
        &mut self.pipes[at].1
    }

    async fn run(self, conn: &Store) -> Result<(), InventoryError> {
        let sends = self.pipes.into_iter().map(|(_, pipe)| {
            let mut conn = conn.clone();
            async move { pipe.query_async::<()>(&mut conn).await }
        });
        futures::future::try_join_all(sends).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flashgrid_wire::sale::SeatCounts;

    #[test]
    fn a_floor_is_superseded_by_later_readings_only() {
        let seats = |confirmed| SeatCounts {
            capacity: 10,
            confirmed,
        };
        let old = Floor::of(1, seats(6), 0);
        assert!(Floor::of(1, seats(7), 0).supersedes(&old), "more taken");
        assert!(
            !Floor::of(1, seats(5), 0).supersedes(&old),
            "an older reading"
        );
        assert!(!old.supersedes(&old));
        // A release gives seats back: a reading after it is newer, though
        // it leaves more seats.
        assert!(Floor::of(1, seats(2), 4).supersedes(&old));
        assert!(!old.supersedes(&Floor::of(1, seats(2), 4)));
        assert!(
            Floor::of(2, seats(0), 0).supersedes(&Floor::of(1, seats(2), 4)),
            "a reset"
        );
    }
}
