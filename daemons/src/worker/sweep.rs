//! The hold sweeper (docs/HOLDS.md): every worker, every [`SWEEP_EVERY`],
//! expires the holds that came due in PostgreSQL (each release counts its
//! seats back once, whichever worker runs it), then has Redis follow: the
//! event's stock is dropped so the next decision rebuilds the state from
//! PostgreSQL, and the gateways are told the event changed (it is no longer
//! sold out). A Redis state older than PostgreSQL's epoch (a worker died
//! between a release and the drop) is dropped on the next sweep.

use super::report::Unreported;
use crate::db::holds;
use crate::inventory::Inventory;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the due holds are released: a hold is gone within this (plus
/// a rebuild) of its `expires_at`.
pub const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Holds expired.
    pub expired: u64,
    /// Seats they gave back.
    pub seats: u64,
}

/// Sweeps until `stop`.
pub(super) async fn run(
    pool: PgPool,
    inventory: Inventory,
    unreported: Arc<Unreported>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = sweep(&pool, &inventory, |seats| unreported.expired(seats)).await {
            tracing::warn!(error = %e, "could not sweep the due holds; retrying on the next tick");
        }
    }
}

/// One sweep over every event with holds; `expired` hears of each
/// committed release's seats at once (a later failure loses no count).
pub async fn sweep(
    pool: &PgPool,
    inventory: &Inventory,
    expired: impl Fn(u64),
) -> Result<Swept, sqlx::Error> {
    let mut swept = Swept::default();
    for (event, epoch) in holds::hold_events(pool).await? {
        let mut released = false;
        loop {
            let (n, seats) = holds::release_due(pool, &event).await?;
            swept.expired += n as u64;
            swept.seats += seats as u64;
            expired(seats as u64);
            released |= n > 0;
            if n < holds::RELEASE_BATCH {
                break;
            }
        }
        if released {
            inventory.follow_release(&event).await;
            tracing::debug!(event_id = %event, "expired holds: seats back on sale");
        } else if let Ok(Some(state)) = inventory.state_epoch(&event).await
            && state < i64::from(epoch)
        {
            // Released (by a cancel, or a sweep that died before this step)
            // and not followed yet, or rebuilt right now: dropping the stock
            // costs at most one rebuild.
            inventory.follow_release(&event).await;
        }
    }
    Ok(swept)
}
