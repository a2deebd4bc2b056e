//! PostgreSQL: the database of record. Creation and migration at start, the
//! events, and the worker's batched commit whose guards make the database
//! itself refuse an oversell or a user over the per-user limit.

use crate::redact::redact;
use anyhow::Context;
use chrono::{DateTime, Utc};
use flashgrid_wire::sale::{Event, SeatCounts};
use flashgrid_wire::{
    Capacity, CreateEvent, EventId, PerUserLimit, Quantity, Reason, ReservationId, UserId,
};
use sqlx::postgres::{PgPoolOptions, PgRow};
use sqlx::{PgPool, Row};
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

/// The migrations of `migrations/`, embedded in the binaries.
pub mod holds;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Creates the database if it does not exist, connects and migrates.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    use sqlx::migrate::MigrateDatabase;
    if !sqlx::Postgres::database_exists(url)
        .await
        .context("check that the database exists")?
    {
        match sqlx::Postgres::create_database(url).await {
            Ok(()) => tracing::info!(url = %redact(url), "created the database"),
            // Another daemon starting at the same moment created it first.
            Err(e) if is_code(&e, "42P04") || is_code(&e, "23505") => {}
            Err(e) => return Err(e).context("create the database"),
        }
    }
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(3))
        .connect(url)
        .await
        .context("connect")?;
    MIGRATOR.run(&pool).await.context("apply the migrations")?;
    // Resets and released holds delete rows, and every commit inserts into
    // the indexes they leave behind: without autovacuum they bloat run after
    // run (a drain measured 57k/s fell to 38k/s over four). Said, not
    // changed: the server's settings are its operator's.
    if let Ok(setting) = sqlx::query_scalar::<_, String>("SHOW autovacuum")
        .fetch_one(&pool)
        .await
        && setting != "on"
    {
        tracing::warn!(
            "PostgreSQL's autovacuum is off: rows deleted by resets and released holds are never reclaimed, and commits slow down sale after sale; set autovacuum = on, or VACUUM reservations, holdings and events after each sale"
        );
    }
    Ok(pool)
}

/// Whether `e` is a database error with SQLSTATE `code`.
pub fn is_code(e: &sqlx::Error, code: &str) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some(code))
}

/// Reads an event row (the columns of `event_columns!`).
fn event_from_row(row: &PgRow) -> Result<Event, sqlx::Error> {
    let id: String = row.try_get("event_id")?;
    let limit: i16 = row.try_get("per_user_limit")?;
    let decode = |e: flashgrid_wire::InvalidValue| sqlx::Error::Decode(e.into());
    Ok(Event {
        id: EventId::parse(&id).map_err(decode)?,
        name: row.try_get("name")?,
        seats: SeatCounts {
            capacity: row.try_get::<i32, _>("capacity")?.max(0) as u32,
            confirmed: row.try_get::<i32, _>("confirmed")?.max(0) as u32,
        },
        per_user_limit: PerUserLimit::new(limit.into()).map_err(decode)?,
        opens_at: row.try_get("opens_at")?,
        closes_at: row.try_get("closes_at")?,
        sale: row.try_get::<i32, _>("sale")?.max(0) as u32,
        hold_seconds: row
            .try_get::<Option<i32>, _>("hold_seconds")?
            .map(|h| h.max(1) as u32),
        purchased: row.try_get::<i32, _>("purchased")?.max(0) as u32,
        released: row.try_get::<i32, _>("released")?.max(0) as u32,
    })
}

/// The columns `event_from_row` reads (a macro so queries stay literals).
macro_rules! event_columns {
    () => {
        "event_id, name, capacity, confirmed, per_user_limit, opens_at, closes_at, sale, \
         hold_seconds, purchased, released"
    };
}

pub async fn list_events(pool: &PgPool) -> Result<Vec<Event>, sqlx::Error> {
    sqlx::query(concat!(
        "SELECT ",
        event_columns!(),
        " FROM events ORDER BY created_at, event_id"
    ))
    .try_map(|r: PgRow| event_from_row(&r))
    .fetch_all(pool)
    .await
}

pub async fn get_event(pool: &PgPool, id: &EventId) -> Result<Option<Event>, sqlx::Error> {
    sqlx::query(concat!(
        "SELECT ",
        event_columns!(),
        " FROM events WHERE event_id = $1"
    ))
    .bind(id.as_str())
    .try_map(|r: PgRow| event_from_row(&r))
    .fetch_optional(pool)
    .await
}

/// Inserts a new event; `None` when the id is taken.
pub async fn insert_event(
    pool: &PgPool,
    id: &EventId,
    req: &CreateEvent,
) -> Result<Option<Event>, sqlx::Error> {
    sqlx::query(concat!(
        "INSERT INTO events (event_id, name, capacity, per_user_limit, opens_at, closes_at,
                             hold_seconds)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (event_id) DO NOTHING
         RETURNING ",
        event_columns!(),
        ""
    ))
    .bind(id.as_str())
    .bind(&req.name)
    .bind(req.capacity.get() as i32)
    .bind(i16::from(req.per_user_limit.get()))
    .bind(req.opens_at)
    .bind(req.closes_at)
    .bind(req.hold_seconds.map(|h| h as i32))
    .try_map(|r: PgRow| event_from_row(&r))
    .fetch_optional(pool)
    .await
}

/// What a reset did, or why it did nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reset {
    /// No such event.
    Unknown,
    /// The event has confirmed reservations and the caller did not say to
    /// discard them: nothing changed.
    HoldsConfirmed { seats: u32, reservations: u64 },
    /// Done: the event (with its new sale), its new epoch, and what was
    /// removed.
    Done {
        event: Event,
        epoch: i32,
        seats: u32,
        reservations: u64,
    },
}

/// Removes an event's reservations and restores its stock (to a new capacity
/// if given), moving its epoch on so that nothing decided before the reset
/// is committed after it, and its sale generation, so that nothing accepted
/// before it is sold in the new sale. An event with confirmed reservations
/// is reset only when `discard_confirmed` says so (checked under the row
/// lock, so a sale confirmed meanwhile is not wiped unasked).
pub async fn reset_event(
    pool: &PgPool,
    id: &EventId,
    capacity: Option<Capacity>,
    discard_confirmed: bool,
    hold_seconds: Option<Option<u32>>,
) -> Result<Reset, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let held: Option<(i32, i64)> = sqlx::query_as(
        "SELECT e.confirmed, (SELECT count(*) FROM reservations r WHERE r.event_id = e.event_id)
         FROM events e WHERE e.event_id = $1 FOR UPDATE",
    )
    .bind(id.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let Some((seats, reservations)) = held else {
        return Ok(Reset::Unknown);
    };
    let (seats, reservations) = (seats.max(0) as u32, reservations.max(0) as u64);
    if reservations > 0 && !discard_confirmed {
        return Ok(Reset::HoldsConfirmed {
            seats,
            reservations,
        });
    }
    let (event, epoch) = sqlx::query(concat!(
        "UPDATE events SET confirmed = 0, revoked = 0, purchased = 0, released = 0,
                capacity = COALESCE($2, capacity),
                hold_seconds = CASE WHEN $3 THEN $4 ELSE hold_seconds END,
                epoch = epoch + 1, sale = sale + 1
         WHERE event_id = $1 RETURNING epoch, ",
        event_columns!(),
        ""
    ))
    .bind(id.as_str())
    .bind(capacity.map(|c| c.get() as i32))
    .bind(hold_seconds.is_some())
    .bind(hold_seconds.flatten().map(|h| h as i32))
    .try_map(|r: PgRow| Ok((event_from_row(&r)?, r.try_get::<i32, _>("epoch")?)))
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "WITH gone AS (DELETE FROM reservations WHERE event_id = $1)
         DELETE FROM holdings WHERE event_id = $1",
    )
    .bind(id.as_str())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Reset::Done {
        event,
        epoch,
        seats,
        reservations,
    })
}

/// A reservation Redis confirmed, to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Winner {
    pub id: ReservationId,
    pub event: EventId,
    pub user: UserId,
    pub quantity: Quantity,
    pub accepted_at: DateTime<Utc>,
    /// The epoch of the event's Redis state it was decided in.
    pub epoch: i32,
    /// The sale generation it was accepted in (where Redis keeps its
    /// outcome, should it be revoked).
    pub sale: u32,
}

/// What PostgreSQL holds of one event's sale, read under its row lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// The sale generation (`reset_event` moves it on).
    pub sale: u32,
    pub seats: SeatCounts,
    /// Seats released holds gave back in this sale (docs/HOLDS.md).
    pub released: u32,
}

/// What a commit wrote, and what it fenced out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// Rows newly written.
    pub written: u64,
    /// Each event of the batch as PostgreSQL holds it after the commit: a
    /// Redis state claiming more seats left than this is behind (see
    /// `inventory::Floor`).
    pub held: Vec<(EventId, Held)>,
    /// Events whose winners were decided under another epoch than
    /// PostgreSQL's (the state was rebuilt or reset since): nothing of
    /// theirs was written. With PostgreSQL's epoch.
    pub fenced: Vec<(EventId, i32)>,
}

/// Why a batch could not be committed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// PostgreSQL refused: the batch would sell more than an event's
    /// capacity, or put a user over its per-user limit. Redis was wrong (it
    /// lost data, came back older, or was rebuilt while a commit was in
    /// flight); the caller settles the batch event by event.
    #[error("PostgreSQL's guard refused the batch: {0}")]
    Guard(&'static str),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The winners' commit statement (see `commit_winners`), with `$conflict`
/// inserted where the reservations' insert may say what to do with a row
/// already there.
macro_rules! commit_statement {
    ($conflict:literal) => {
        concat!(
            "WITH locked AS (
             -- In a fixed order, so two batches never deadlock.
             SELECT event_id, epoch, sale, capacity, confirmed, hold_seconds, released FROM events
             WHERE event_id IN (SELECT DISTINCT unnest($2::text[]))
             ORDER BY event_id FOR UPDATE
         ), ins AS (
             -- A hold starts at its commit: a retried commit of the same
             -- reservation is skipped (COMMIT_SKIPPING), so never extends it.
             INSERT INTO reservations (reservation_id, event_id, user_id, quantity, created_at,
                                       state, expires_at)
             SELECT b.id, b.event_id, b.user_id, b.qty, b.at,
                    CASE WHEN l.hold_seconds IS NULL THEN 'confirmed' ELSE 'held' END,
                    now() + make_interval(secs => l.hold_seconds)
             FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::int2[], $5::timestamptz[], $6::int4[])
                  AS b (id, event_id, user_id, qty, at, epoch)
             JOIN locked l ON l.event_id = b.event_id AND l.epoch = b.epoch
             -- A WHERE, so that ON CONFLICT is not read as the JOIN's ON.
             WHERE true
",
            $conflict,
            "             RETURNING event_id, user_id, quantity
         ), per_user AS (
             -- Executed although nothing reads it (a data-modifying WITH
             -- always runs to completion): the per-user guard.
             INSERT INTO holdings (event_id, user_id, quantity, per_user_limit)
             SELECT i.event_id, i.user_id, SUM(i.quantity), e.per_user_limit
             FROM ins i JOIN events e USING (event_id)
             GROUP BY i.event_id, i.user_id, e.per_user_limit
             ON CONFLICT (event_id, user_id)
             DO UPDATE SET quantity = holdings.quantity + EXCLUDED.quantity
         ), per_event AS (
             SELECT event_id, SUM(quantity)::int AS q, COUNT(*) AS n FROM ins GROUP BY event_id
         ), counted AS (
             UPDATE events e SET confirmed = e.confirmed + p.q
             FROM per_event p WHERE e.event_id = p.event_id
             RETURNING p.event_id, p.n, e.confirmed
         )
         SELECT l.event_id, l.epoch, COALESCE(c.n, 0), l.sale, l.capacity,
                COALESCE(c.confirmed, l.confirmed), l.released
         FROM locked l
         LEFT JOIN counted c USING (event_id)",
        )
    };
}

/// Every winner new, as in nearly every batch: the insert's own uniqueness
/// check is the one descent of the reservations' primary key a winner
/// takes. A winner written already fails the whole statement (SQLSTATE
/// 23505, nothing written), and the batch is committed again with
/// [`COMMIT_SKIPPING`].
const COMMIT_NEW: &str = commit_statement!("");

/// A winner written already is skipped (a batch redelivered or retried
/// after its commit). `ON CONFLICT` looks each row up before inserting it:
/// a second descent of the key a winner. When every batch paid for it, it
/// was 9.5% of the instructions PostgreSQL spent on a winner (callgrind, the
/// statement alone); with the ids' "C" collation, PostgreSQL's CPU a winner
/// in a drain fell by about 13% (the migration of 2026-12-07).
const COMMIT_SKIPPING: &str =
    commit_statement!("             ON CONFLICT (reservation_id) DO NOTHING\n");

/// Writes all winners and counts them against their events and their users
/// in one statement: one round trip (two when a winner is written already,
/// see `COMMIT_NEW`), atomic, idempotent (a winner already
/// written is skipped and not counted again), and refused whole by a CHECK
/// if any event would exceed its capacity or any user its per-user limit.
///
/// The fence: each event's row is locked first, and only winners decided
/// under its current epoch are written. A snapshot for a rebuild (or a
/// reset) moves the epoch on under the same lock, so a decision made in a
/// Redis state from before can never land after the state was rebuilt from
/// a snapshot that does not hold it (it is decided again instead).
pub async fn commit_winners(pool: &PgPool, winners: &[Winner]) -> Result<Committed, CommitError> {
    if winners.is_empty() {
        return Ok(Committed::default());
    }
    let mut ids = Vec::with_capacity(winners.len());
    let mut events = Vec::with_capacity(winners.len());
    let mut users = Vec::with_capacity(winners.len());
    let mut qtys = Vec::with_capacity(winners.len());
    let mut ats = Vec::with_capacity(winners.len());
    let mut epochs = Vec::with_capacity(winners.len());
    for w in winners {
        ids.push(w.id.0);
        events.push(w.event.as_str());
        users.push(w.user.as_str());
        qtys.push(i16::from(w.quantity.get()));
        ats.push(w.accepted_at);
        epochs.push(w.epoch);
    }
    let run = |sql: &'static str| {
        sqlx::query(sql)
            .bind(&ids)
            .bind(&events)
            .bind(&users)
            .bind(&qtys)
            .bind(&ats)
            .bind(&epochs)
            .fetch_all(pool)
    };
    let res = match run(COMMIT_NEW).await {
        Err(e) if already_written(&e) => run(COMMIT_SKIPPING).await,
        res => res,
    };
    match res {
        Ok(rows) => {
            let mut done = Committed::default();
            for r in rows {
                let event: String = r.try_get(0).map_err(CommitError::Database)?;
                let epoch: i32 = r.try_get(1).map_err(CommitError::Database)?;
                done.written += r.try_get::<i64, _>(2).unwrap_or(0) as u64;
                let count = |i: usize| -> Result<u32, CommitError> {
                    Ok(r.try_get::<i32, _>(i)
                        .map_err(CommitError::Database)?
                        .max(0) as u32)
                };
                let held = Held {
                    sale: count(3)?,
                    seats: SeatCounts {
                        capacity: count(4)?,
                        confirmed: count(5)?,
                    },
                    released: count(6)?,
                };
                let id = EventId::parse(&event)
                    .map_err(|e| CommitError::Database(sqlx::Error::Decode(e.into())))?;
                if winners
                    .iter()
                    .any(|w| w.event.as_str() == event && w.epoch != epoch)
                {
                    done.fenced.push((id.clone(), epoch));
                }
                done.held.push((id, held));
            }
            Ok(done)
        }
        Err(e) => Err(guard_refusal(&e).map_or(CommitError::Database(e), CommitError::Guard)),
    }
}

/// Whether the fast commit failed only because a winner's id is taken: by a
/// winner written already, or by one listed twice in the batch (a unique
/// violation of the primary key, SQLSTATE 23505).
fn already_written(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d)
        if d.code().as_deref() == Some("23505") && d.constraint() == Some("reservations_pkey"))
}

/// Which guard refused a write, if one did (a CHECK violation, SQLSTATE
/// 23514, of one of the two constraints that guard a sale).
fn guard_refusal(e: &sqlx::Error) -> Option<&'static str> {
    let sqlx::Error::Database(d) = e else {
        return None;
    };
    if d.code().as_deref() != Some("23514") {
        return None;
    }
    match d.constraint() {
        Some("confirmed_within_capacity") => Some("capacity"),
        Some("holding_within_limit") => Some("per-user limit"),
        _ => None,
    }
}

/// What the exact path wrote for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardedCommit {
    /// Winners that did not fit, each with the rule it would have broken:
    /// they must be rejected with that reason.
    pub overflow: Vec<(Winner, Reason)>,
    /// The event's seats after the commit.
    pub seats: SeatCounts,
    /// PostgreSQL's epoch when the winners were decided under another one:
    /// nothing was written (see `commit_winners`).
    pub fenced: Option<i32>,
}

/// The slow, exact path after a guard tripped: under the event's row lock
/// (and the row locks of its buyers' holdings), writes the winners in order
/// while they fit the capacity and each user's limit.
pub async fn commit_event_guarded(
    pool: &PgPool,
    event: &EventId,
    winners: &[Winner],
) -> Result<GuardedCommit, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query(
        "SELECT capacity, confirmed, per_user_limit, epoch, hold_seconds FROM events
         WHERE event_id = $1 FOR UPDATE",
    )
    .bind(event.as_str())
    .fetch_one(&mut *tx)
    .await?;
    let capacity = row.try_get::<i32, _>(0)?.max(0) as u32;
    let mut confirmed = row.try_get::<i32, _>(1)?.max(0) as u32;
    let limit = row.try_get::<i16, _>(2)?;
    let epoch = row.try_get::<i32, _>(3)?;
    let hold_seconds = row.try_get::<Option<i32>, _>(4)?;
    if winners.iter().any(|w| w.epoch != epoch) {
        tx.rollback().await?;
        return Ok(GuardedCommit {
            overflow: Vec::new(),
            seats: SeatCounts {
                capacity,
                confirmed,
            },
            fenced: Some(epoch),
        });
    }
    let ids: Vec<Uuid> = winners.iter().map(|w| w.id.0).collect();
    let existing: Vec<Uuid> = sqlx::query_scalar(
        "SELECT reservation_id FROM reservations WHERE reservation_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    let users: Vec<&str> = winners.iter().map(|w| w.user.as_str()).collect();
    let mut held: HashMap<String, (i32, i32)> = sqlx::query(
        "SELECT user_id, quantity, per_user_limit FROM holdings
         WHERE event_id = $1 AND user_id = ANY($2) FOR UPDATE",
    )
    .bind(event.as_str())
    .bind(&users)
    .try_map(|r: PgRow| {
        Ok((
            r.try_get::<String, _>(0)?,
            (r.try_get(1)?, i32::from(r.try_get::<i16, _>(2)?)),
        ))
    })
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    let mut overflow = Vec::new();
    for w in winners {
        if existing.contains(&w.id.0) {
            continue;
        }
        let q = u32::from(w.quantity.get());
        let (user_has, user_limit) = held
            .entry(w.user.as_str().to_owned())
            .or_insert((0, i32::from(limit)));
        // The limit first, in the order decide.lua and the status route's
        // derivation check.
        if *user_has + q as i32 > *user_limit {
            overflow.push((w.clone(), Reason::UserLimit));
            continue;
        }
        if confirmed + q > capacity {
            overflow.push((w.clone(), Reason::SoldOut));
            continue;
        }
        sqlx::query(
            "WITH ins AS (
                 INSERT INTO reservations (reservation_id, event_id, user_id, quantity, created_at,
                                           state, expires_at)
                 VALUES ($1, $2, $3, $4, $5,
                         CASE WHEN $7::int IS NULL THEN 'confirmed' ELSE 'held' END,
                         now() + make_interval(secs => $7::int))
             )
             INSERT INTO holdings (event_id, user_id, quantity, per_user_limit)
             VALUES ($2, $3, $4, $6)
             ON CONFLICT (event_id, user_id)
             DO UPDATE SET quantity = holdings.quantity + EXCLUDED.quantity",
        )
        .bind(w.id.0)
        .bind(w.event.as_str())
        .bind(w.user.as_str())
        .bind(i16::from(w.quantity.get()))
        .bind(w.accepted_at)
        .bind(limit)
        .bind(hold_seconds)
        .execute(&mut *tx)
        .await?;
        confirmed += q;
        *user_has += q as i32;
    }
    sqlx::query("UPDATE events SET confirmed = $2, revoked = revoked + $3 WHERE event_id = $1")
        .bind(event.as_str())
        .bind(confirmed as i32)
        .bind(i32::try_from(overflow.len()).unwrap_or(i32::MAX))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(GuardedCommit {
        overflow,
        seats: SeatCounts {
            capacity,
            confirmed,
        },
        fenced: None,
    })
}

/// What Redis needs to rebuild one event's state: the capacity and every
/// confirmed reservation (so a redelivered message is still recognised as
/// decided, and each user's total is known again).
#[derive(Debug, Clone, Default)]
pub struct EventSnapshot {
    pub capacity: u32,
    /// The event's sale generation (see `reset_event`).
    pub sale: u32,
    /// The event's epoch, moved on by this snapshot (see `commit_winners`).
    pub epoch: i32,
    /// The reservations that take seats (confirmed, held, purchased).
    pub confirmed: Vec<SnapshotRow>,
    /// Holds given back (expired, cancelled): decided, taking no seat.
    pub released: Vec<SnapshotRow>,
    /// The seats they gave back, as the event counts them (`Floor`).
    pub released_seats: u32,
}

impl EventSnapshot {
    /// The seats the snapshot holds: the sum of its rows' quantities.
    pub fn seats(&self) -> SeatCounts {
        SeatCounts {
            capacity: self.capacity,
            confirmed: self
                .confirmed
                .iter()
                .map(|r| r.quantity.max(0) as u32)
                .sum(),
        }
    }
}

/// One confirmed reservation of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRow {
    pub id: ReservationId,
    pub user: String,
    pub quantity: i16,
}

/// The event's capacity and confirmed rows, read in one consistent view.
pub async fn snapshot(
    pool: &PgPool,
    event: &EventId,
) -> Result<Option<EventSnapshot>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Moving the epoch on locks the event's row: no commit runs until this
    // transaction ends (each locks the row first), so the rows read next are
    // every commit under the old epoch, and none under it can follow.
    let Some((capacity, epoch, sale, released_seats)) = sqlx::query_as::<_, (i32, i32, i32, i32)>(
        "UPDATE events SET epoch = epoch + 1 WHERE event_id = $1
         RETURNING capacity, epoch, sale, released",
    )
    .bind(event.as_str())
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(None);
    };
    let rows = sqlx::query(
        "SELECT reservation_id, user_id, quantity, state IN ('expired', 'cancelled')
         FROM reservations WHERE event_id = $1",
    )
    .bind(event.as_str())
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let (mut confirmed, mut released) = (Vec::new(), Vec::new());
    for r in rows {
        let row = SnapshotRow {
            id: ReservationId(r.try_get(0)?),
            user: r.try_get(1)?,
            quantity: r.try_get(2)?,
        };
        if r.try_get::<bool, _>(3)? {
            released.push(row);
        } else {
            confirmed.push(row);
        }
    }
    Ok(Some(EventSnapshot {
        capacity: capacity.max(0) as u32,
        sale: sale.max(0) as u32,
        epoch,
        confirmed,
        released,
        released_seats: released_seats.max(0) as u32,
    }))
}

/// A committed reservation's row, as the database holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedRow {
    pub user: String,
    pub quantity: i16,
}

/// A confirmed reservation as the database knows it (for status answers when
/// Redis lost the outcome).
pub async fn find_reservation(
    pool: &PgPool,
    event: &EventId,
    id: &ReservationId,
) -> Result<Option<CommittedRow>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT user_id, quantity FROM reservations WHERE reservation_id = $1 AND event_id = $2",
    )
    .bind(id.0)
    .bind(event.as_str())
    .fetch_optional(pool)
    .await?;
    row.map(|r| {
        Ok(CommittedRow {
            user: r.try_get(0)?,
            quantity: r.try_get(1)?,
        })
    })
    .transpose()
}

/// The key that signs status URLs, shared by every gateway (migration
/// `secrets`).
pub async fn status_url_key(pool: &PgPool) -> Result<Vec<u8>, sqlx::Error> {
    sqlx::query_scalar("SELECT value FROM secrets WHERE name = 'status_url_key'")
        .fetch_one(pool)
        .await
}

/// What PostgreSQL makes certain about one reservation: its row if it was
/// committed, and the event's and its buyer's counts, from which a
/// rejection can be derived when Redis forgot it. One round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certainty {
    pub row: Option<CommittedRow>,
    pub seats: SeatCounts,
    pub per_user_limit: u32,
    pub opens_at: Option<DateTime<Utc>>,
    pub closes_at: Option<DateTime<Utc>>,
    /// What the buyer holds in this event (their holdings row).
    pub held: u32,
    /// The event's sale generation.
    pub sale: u32,
    /// The event holds its seats (docs/HOLDS.md): its counts can shrink,
    /// so no `sold_out` or `user_limit` is certain by them.
    pub holds: bool,
}

/// `None` when the event does not exist.
pub async fn certainty(
    pool: &PgPool,
    event: &EventId,
    id: &ReservationId,
    user: &UserId,
) -> Result<Option<Certainty>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT e.capacity, e.confirmed, e.per_user_limit, e.opens_at, e.closes_at,
                (SELECT h.quantity FROM holdings h
                 WHERE h.event_id = e.event_id AND h.user_id = $3) AS held,
                r.user_id, r.quantity, e.sale, e.hold_seconds IS NOT NULL
         FROM events e
         LEFT JOIN reservations r ON r.reservation_id = $2 AND r.event_id = e.event_id
         WHERE e.event_id = $1",
    )
    .bind(event.as_str())
    .bind(id.0)
    .bind(user.as_str())
    .fetch_optional(pool)
    .await?;
    row.map(|r| {
        let committed = match r.try_get::<Option<String>, _>(6)? {
            Some(user) => Some(CommittedRow {
                user,
                quantity: r.try_get(7)?,
            }),
            None => None,
        };
        Ok(Certainty {
            row: committed,
            seats: SeatCounts {
                capacity: r.try_get::<i32, _>(0)?.max(0) as u32,
                confirmed: r.try_get::<i32, _>(1)?.max(0) as u32,
            },
            per_user_limit: r.try_get::<i16, _>(2)?.max(0) as u32,
            opens_at: r.try_get(3)?,
            closes_at: r.try_get(4)?,
            held: r.try_get::<Option<i32>, _>(5)?.unwrap_or(0).max(0) as u32,
            sale: r.try_get::<i32, _>(8)?.max(0) as u32,
            holds: r.try_get(9)?,
        })
    })
    .transpose()
}
