//! Holds in PostgreSQL, the only truth of them (docs/HOLDS.md): purchase,
//! cancel, and the release of the holds that came due.
//!
//! Every transaction here takes the event's row first and the
//! reservation's second, the order the winners' commit takes them, so none
//! deadlocks another; and each changes a hold only while it is `held`, under
//! its row lock: of a purchase and an expiry at the same instant exactly one
//! changes it, and a release gives its seats back once. PostgreSQL's clock
//! is the one every decision reads, as it is once the locks are held
//! (`clock_timestamp()`, not the transaction's start: a purchase that
//! waited on the event's lock past `expires_at` finds the hold expired, as
//! a status read meanwhile said).

use chrono::{DateTime, Utc};
use flashgrid_wire::{EventId, Quantity, ReservationId, Status, UserId};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, Row, Transaction};

/// Most holds one release transaction gives back.
pub const RELEASE_BATCH: i64 = 256;

/// A won reservation as PostgreSQL holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WonRow {
    pub user: UserId,
    pub quantity: Quantity,
    /// `Confirmed` (an event without holds), `Held`, `Purchased`,
    /// `Expired` or `Cancelled`; a hold past its `expires_at` that the
    /// sweeper has not released yet reads `Expired` (it can no longer be
    /// purchased).
    pub status: Status,
    pub expires_at: Option<DateTime<Utc>>,
    pub payment_ref: Option<String>,
}

/// Why a purchase or a cancel changed nothing (each a `409`, but `Unknown`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No such reservation was won in this event (pending, rejected, or
    /// never issued).
    Unknown,
    /// Its event holds no seats: the decision was final.
    NotHeld(WonRow),
    /// The hold ended before the call (`expired` or `cancelled`), or was
    /// purchased and cannot be cancelled any more.
    Ended(WonRow),
    /// Purchased already, with another payment reference.
    OtherPayment(WonRow),
}

/// The outcome of a purchase or a cancel: the row as it stands after it.
pub type Checkout = Result<WonRow, Refusal>;

fn won_row(r: &PgRow) -> Result<WonRow, sqlx::Error> {
    let decode = |e: flashgrid_wire::InvalidValue| sqlx::Error::Decode(e.into());
    let state: String = r.try_get("state")?;
    let live: Option<bool> = r.try_get("live")?;
    let status = match state.as_str() {
        "held" if live == Some(true) => Status::Held,
        "held" | "expired" => Status::Expired,
        "purchased" => Status::Purchased,
        "cancelled" => Status::Cancelled,
        _ => Status::Confirmed,
    };
    Ok(WonRow {
        user: UserId::parse(&r.try_get::<String, _>("user_id")?).map_err(decode)?,
        quantity: Quantity::new(r.try_get::<i16, _>("quantity")?.into()).map_err(decode)?,
        status,
        expires_at: r.try_get("expires_at")?,
        payment_ref: r.try_get("payment_ref")?,
    })
}

/// The columns `won_row` reads.
macro_rules! won_columns {
    () => {
        "user_id, quantity, state, expires_at, payment_ref, expires_at > clock_timestamp() AS live"
    };
}

/// A won reservation, as it stands.
pub async fn won(
    pool: &PgPool,
    event: &EventId,
    id: &ReservationId,
) -> Result<Option<WonRow>, sqlx::Error> {
    sqlx::query(concat!(
        "SELECT ",
        won_columns!(),
        " FROM reservations WHERE reservation_id = $1 AND event_id = $2"
    ))
    .bind(id.0)
    .bind(event.as_str())
    .try_map(|r: PgRow| won_row(&r))
    .fetch_optional(pool)
    .await
}

/// Locks the event's row, the first lock of every transaction here (see
/// the module's doc); `false` if there is no such event.
async fn lock_event(
    tx: &mut Transaction<'_, Postgres>,
    event: &EventId,
) -> Result<bool, sqlx::Error> {
    let exists: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM events WHERE event_id = $1 FOR NO KEY UPDATE")
            .bind(event.as_str())
            .fetch_optional(&mut **tx)
            .await?;
    Ok(exists.is_some())
}

/// Locks the event's row, then the reservation's; `None` if either is missing.
async fn lock(
    tx: &mut Transaction<'_, Postgres>,
    event: &EventId,
    id: &ReservationId,
) -> Result<Option<WonRow>, sqlx::Error> {
    if !lock_event(tx, event).await? {
        return Ok(None);
    }
    sqlx::query(concat!(
        "SELECT ",
        won_columns!(),
        " FROM reservations WHERE reservation_id = $1 AND event_id = $2 FOR UPDATE"
    ))
    .bind(id.0)
    .bind(event.as_str())
    .try_map(|r: PgRow| won_row(&r))
    .fetch_optional(&mut **tx)
    .await
}

/// Turns a live hold into a purchase. Idempotent: a purchased reservation
/// answers as it stands, unless another payment reference is named.
pub async fn purchase(
    pool: &PgPool,
    event: &EventId,
    id: &ReservationId,
    payment_ref: Option<&str>,
) -> Result<Checkout, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let Some(row) = lock(&mut tx, event, id).await? else {
        return Ok(Err(Refusal::Unknown));
    };
    let answer = match row.status {
        Status::Held => {
            let row = sqlx::query(concat!(
                "UPDATE reservations SET state = 'purchased', payment_ref = $3, settled_at = now()
                 WHERE reservation_id = $1 AND event_id = $2 RETURNING ",
                won_columns!()
            ))
            .bind(id.0)
            .bind(event.as_str())
            .bind(payment_ref)
            .try_map(|r: PgRow| won_row(&r))
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query("UPDATE events SET purchased = purchased + $2 WHERE event_id = $1")
                .bind(event.as_str())
                .bind(i32::from(row.quantity.get()))
                .execute(&mut *tx)
                .await?;
            Ok(row)
        }
        Status::Purchased if payment_ref.is_none() || payment_ref == row.payment_ref.as_deref() => {
            Ok(row)
        }
        Status::Purchased => Err(Refusal::OtherPayment(row)),
        Status::Confirmed => Err(Refusal::NotHeld(row)),
        _ => Err(Refusal::Ended(row)),
    };
    tx.commit().await?;
    Ok(answer)
}

/// Gives a live hold back at once. Idempotent: a cancelled reservation
/// answers as it stands. Returns whether this call released seats (the
/// caller then has Redis follow, see `release_due`).
pub async fn cancel(
    pool: &PgPool,
    event: &EventId,
    id: &ReservationId,
) -> Result<(Checkout, bool), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let Some(row) = lock(&mut tx, event, id).await? else {
        return Ok((Err(Refusal::Unknown), false));
    };
    let mut released = false;
    let answer = match row.status {
        Status::Held => {
            released = release(&mut tx, event, &[id.0], "cancelled").await?.0 > 0;
            Ok(WonRow {
                status: Status::Cancelled,
                ..row
            })
        }
        Status::Cancelled => Ok(row),
        Status::Confirmed => Err(Refusal::NotHeld(row)),
        _ => Err(Refusal::Ended(row)),
    };
    tx.commit().await?;
    Ok((answer, released))
}

/// Moves the listed holds still `held` to `state` and gives their seats
/// back: the event's taken seats and its buyers' holdings, and the epoch
/// moved on (a Redis state from before is stale, see docs/HOLDS.md). The
/// caller holds the event's row lock. Returns the holds and seats released.
async fn release(
    tx: &mut Transaction<'_, Postgres>,
    event: &EventId,
    ids: &[uuid::Uuid],
    state: &str,
) -> Result<(i64, i64), sqlx::Error> {
    let row = sqlx::query(
        "WITH gone AS (
             UPDATE reservations SET state = $3, settled_at = now()
             WHERE reservation_id = ANY($2) AND event_id = $1 AND state = 'held'
             RETURNING user_id, quantity
         ), per_user AS (
             UPDATE holdings h SET quantity = h.quantity - g.q
             FROM (SELECT user_id, SUM(quantity)::int AS q FROM gone GROUP BY user_id) g
             WHERE h.event_id = $1 AND h.user_id = g.user_id
         ), total AS (
             SELECT COUNT(*) AS n, COALESCE(SUM(quantity), 0)::int AS q FROM gone
         )
         UPDATE events e SET confirmed = e.confirmed - t.q, released = e.released + t.q,
                epoch = e.epoch + (t.n > 0)::int
         FROM total t WHERE e.event_id = $1
         RETURNING t.n, t.q",
    )
    .bind(event.as_str())
    .bind(ids)
    .bind(state)
    .fetch_one(&mut **tx)
    .await?;
    Ok((
        row.try_get::<i64, _>(0)?,
        i64::from(row.try_get::<i32, _>(1)?),
    ))
}

/// Expires up to [`RELEASE_BATCH`] of the event's holds whose `expires_at`
/// has passed, oldest first; returns how many (0: none was due, or another
/// worker released them first). Several workers may run it at once: the
/// event's row lock puts them in turn, and each releases only what is still
/// `held`.
pub async fn release_due(pool: &PgPool, event: &EventId) -> Result<(i64, i64), sqlx::Error> {
    // Asked first without a lock (the index of held rows answers): an
    // event with nothing due costs no lock that would hold up its commits.
    let due: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM reservations
                        WHERE event_id = $1 AND state = 'held' AND expires_at <= clock_timestamp())",
    )
    .bind(event.as_str())
    .fetch_one(pool)
    .await?;
    if !due {
        return Ok((0, 0));
    }
    let mut tx = pool.begin().await?;
    if !lock_event(&mut tx, event).await? {
        return Ok((0, 0));
    }
    let due: Vec<uuid::Uuid> = sqlx::query_scalar(
        "SELECT reservation_id FROM reservations
         WHERE event_id = $1 AND state = 'held' AND expires_at <= clock_timestamp()
         ORDER BY expires_at LIMIT $2",
    )
    .bind(event.as_str())
    .bind(RELEASE_BATCH)
    .fetch_all(&mut *tx)
    .await?;
    if due.is_empty() {
        return Ok((0, 0));
    }
    let released = release(&mut tx, event, &due, "expired").await?;
    tx.commit().await?;
    Ok(released)
}

/// The events that hold seats, each with its epoch (the sweeper's list).
pub async fn hold_events(pool: &PgPool) -> Result<Vec<(EventId, i32)>, sqlx::Error> {
    let rows: Vec<(String, i32)> =
        sqlx::query_as("SELECT event_id, epoch FROM events WHERE hold_seconds IS NOT NULL")
            .fetch_all(pool)
            .await?;
    rows.into_iter()
        .map(|(id, epoch)| {
            EventId::parse(&id)
                .map(|id| (id, epoch))
                .map_err(|e| sqlx::Error::Decode(e.into()))
        })
        .collect()
}
