//! Keeps the [`Catalog`] and the long-poll [`Waiters`] in step with the rest
//! of the stack: pub/sub notices from workers and other gateways (sold out,
//! event changed, decided, worker stats, other daemons' views), and beneath them a reload from
//! PostgreSQL and Redis every few seconds, in case a notice was lost.

use super::catalog::{Catalog, Stock};
use super::peers::Peers;
use super::stats::Stats;
use super::waiters::Waiters;
use crate::db;
use crate::inventory::Inventory;
use crate::notify::{self, Notice, Received};
use flashgrid_wire::EventId;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the catalog is reloaded whatever the notices said.
const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// What the refresh tasks read from and write to.
#[derive(Debug, Clone)]
pub struct Refresh {
    pub pool: PgPool,
    pub inventory: Inventory,
    pub catalog: Arc<Catalog>,
    pub waiters: Arc<Waiters>,
    pub stats: Arc<Stats>,
    pub peers: Arc<Peers>,
}

impl Refresh {
    /// Reloads every event from PostgreSQL and each stock from Redis.
    pub async fn reload(&self) -> Result<(), sqlx::Error> {
        let events = db::list_events(&self.pool).await?;
        let ids: Vec<EventId> = events.iter().map(|e| e.id.clone()).collect();
        let stocks = self.inventory.stocks(&ids).await.ok();
        let with_stock = events
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let stock = match stocks.as_ref().map(|s| s[i]) {
                    Some(Some(left)) => Stock::Left(left),
                    Some(None) => Stock::Missing,
                    None => Stock::Unknown,
                };
                (e, stock)
            })
            .collect();
        self.catalog.replace(with_stock);
        Ok(())
    }

    /// Reloads one event (after a create or reset notice).
    pub async fn reload_one(&self, id: &EventId) -> Result<(), sqlx::Error> {
        let Some(event) = db::get_event(&self.pool, id).await? else {
            return Ok(());
        };
        let stock = match self.inventory.stocks(std::slice::from_ref(id)).await {
            Ok(s) => s
                .into_iter()
                .next()
                .flatten()
                .map_or(Stock::Missing, Stock::Left),
            Err(_) => Stock::Missing,
        };
        let sold_out = self.catalog.sold_out_by(&event, stock);
        self.catalog.upsert(event, sold_out);
        Ok(())
    }

    /// Follows the namespace's notices until `stop`.
    pub async fn follow_notices(self, nodes: Vec<redis::Client>, stop: CancellationToken) {
        let ns = self.inventory.namespace().clone();
        // Reloads run in their own tasks so the subscription never stalls.
        notify::listen(nodes, ns, stop, move |received| match received {
            Received::Notice(Notice::SoldOut(e)) => self.catalog.mark_sold_out(&e),
            Received::Notice(Notice::Decided(_, ids)) => self.waiters.wake(&ids),
            Received::Notice(Notice::Stats(r)) => {
                self.stats.worker_confirmed.inc_by(r.confirmed);
                self.stats.worker_rejected.inc_by(r.rejected);
                self.stats.worker_written.inc_by(r.written);
                self.stats.worker_revoked.inc_by(r.revoked);
                self.stats.worker_handed_back.inc_by(r.handed_back);
                self.stats.worker_expired.inc_by(r.expired);
            }
            Received::Notice(Notice::Daemon(view)) => {
                self.peers.heard(*view, std::time::Instant::now());
            }
            Received::Notice(Notice::Left(kind, id)) => self.peers.left(kind, &id),
            // The workers' own.
            Received::Notice(Notice::Floor(..)) => {}
            Received::Notice(Notice::EventChanged(e)) => {
                let this = self.clone();
                tokio::spawn(async move {
                    if let Err(err) = this.reload_one(&e).await {
                        tracing::warn!(error = %err, event_id = %e, "could not reload an event");
                    }
                });
            }
            Received::Subscribed => {
                self.waiters.wake_all();
                let this = self.clone();
                tokio::spawn(async move {
                    let _ = this.reload().await;
                });
            }
        })
        .await;
    }

    /// The safety net under the notices: reload the catalog every few
    /// seconds, and forget long-polls whose clients left.
    pub async fn periodically(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(RELOAD_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.reload().await {
                tracing::warn!(error = %e, "could not reload the events from PostgreSQL; serving the last known ones");
            }
            self.waiters.sweep();
        }
    }
}
