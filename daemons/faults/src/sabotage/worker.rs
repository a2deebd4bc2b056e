//! A worker with one defect, assembled from the real worker's public steps
//! (the same Lua scripts, the same commit, settle and announce) so that the
//! defect is the only difference the matrix can see.

use super::Sabotage;
use anyhow::Context;
use flashgrid::config::WorkerConfig;
use flashgrid::db::{self, EventSnapshot};
use flashgrid::inventory::{Ask, Expect, Inventory, InventoryError};
use flashgrid::queue::{self, Group, Queued};
use flashgrid::worker::{Decider, Epochs};
use flashgrid_wire::sale::{Event, Outcome};
use flashgrid_wire::{EventId, PerUserLimit};
use futures::{FutureExt, StreamExt};
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use sqlx::PgPool;
use std::collections::HashMap;
use std::time::Duration;

/// Consumes until the process is killed (the matrix SIGKILLs it).
pub async fn run(cfg: WorkerConfig, sabotage: Sabotage) -> anyhow::Result<()> {
    anyhow::ensure!(
        sabotage.in_worker(),
        "{} is no worker's defect",
        sabotage.name()
    );
    let connected = flashgrid::services::connect(&cfg.services, "sabotaged-worker", 4).await?;
    let ns = connected.ns.clone();
    if sabotage == Sabotage::IgnoreLimitUnguarded {
        // The matrix's own database, created for this run.
        sqlx::query("ALTER TABLE holdings DROP CONSTRAINT IF EXISTS holding_within_limit")
            .execute(&connected.pool)
            .await
            .context("drop the per-user guard")?;
    }
    let inventory = Inventory::new(connected.redis, ns.clone());
    let mut worker = Sabotaged {
        sabotage,
        pool: connected.pool.clone(),
        inventory: inventory.clone(),
        decider: Decider::new(connected.pool, inventory),
        events: HashMap::new(),
    };
    tracing::warn!(
        sabotage = sabotage.name(),
        "a worker broken on purpose started"
    );
    let mut conn = Some(connected.amqp);
    loop {
        let c = match conn.take() {
            Some(c) => c,
            None => match queue::connect(&cfg.services.amqp_url, "sabotaged-worker").await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "cannot reach RabbitMQ");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        if let Err(e) = worker.consume(&cfg, &ns, &c).await {
            tracing::warn!(error = format!("{e:#}"), "lost RabbitMQ");
        }
    }
}

struct Sabotaged {
    sabotage: Sabotage,
    pool: PgPool,
    inventory: Inventory,
    decider: Decider,
    events: HashMap<EventId, Event>,
}

impl Sabotaged {
    async fn consume(
        &mut self,
        cfg: &WorkerConfig,
        ns: &flashgrid::names::Namespace,
        conn: &lapin::Connection,
    ) -> anyhow::Result<()> {
        let channel = conn.create_channel().await?;
        queue::declare(&channel, &cfg.services.topology()).await?;
        channel
            .basic_qos(cfg.prefetch, BasicQosOptions::default())
            .await?;
        let mut consumer = channel
            .basic_consume(
                ns.queue().as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                Default::default(),
            )
            .await?;
        while let Some(first) = consumer.next().await {
            let mut deliveries = vec![first?];
            while deliveries.len() < cfg.batch_max {
                match consumer.next().now_or_never() {
                    Some(Some(d)) => deliveries.push(d?),
                    _ => break,
                }
            }
            let last = deliveries.last().map(|d| d.delivery_tag);
            let mut items = Vec::new();
            for d in &deliveries {
                items.extend(Group::decode(&d.data).context("a readable message")?.items);
            }
            let ack = || async {
                if let Some(tag) = last {
                    channel
                        .basic_ack(tag, BasicAckOptions { multiple: true })
                        .await
                } else {
                    Ok(())
                }
            };
            if self.sabotage == Sabotage::AckBeforeCommit {
                ack().await?;
            }
            // Retried until it goes through, as the real worker does.
            while let Err(e) = self.process(&items).await {
                tracing::warn!(error = %e, "batch failed; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if self.sabotage != Sabotage::AckBeforeCommit {
                ack().await?;
            }
        }
        anyhow::bail!("the consumer ended")
    }

    async fn process(&mut self, items: &[Queued]) -> anyhow::Result<()> {
        if self.sabotage == Sabotage::AckBeforeCommit {
            self.decider.process(items).await?;
            return Ok(());
        }
        let (mut outcomes, epochs) = self.decide(items).await?;
        self.decider.commit(items, &mut outcomes, &epochs).await?;
        self.decider.settle(items, &outcomes).await?;
        self.decider.announce(items).await;
        Ok(())
    }

    /// The real decide, but for the defect: a stock rebuilt as if nothing
    /// were sold, or the limit of the largest purchase allowed.
    async fn decide(&mut self, items: &[Queued]) -> anyhow::Result<(Vec<Outcome>, Epochs)> {
        let mut outcomes = Vec::with_capacity(items.len());
        // The oldest state an event's items were decided in: a rebuild
        // between two of them fences the batch, as in the real worker.
        let mut epochs = Epochs::new();
        for q in items {
            if !self.events.contains_key(&q.event) {
                let e = db::get_event(&self.pool, &q.event)
                    .await?
                    .context("an event of the matrix")?;
                self.events.insert(q.event.clone(), e);
            }
            let e = &self.events[&q.event];
            let limit = if matches!(
                self.sabotage,
                Sabotage::IgnoreLimit | Sabotage::IgnoreLimitUnguarded
            ) {
                PerUserLimit::new(10).expect("a valid limit")
            } else {
                e.per_user_limit
            };
            let ask = Ask {
                id: q.id,
                user: &q.user,
                quantity: q.qty,
                closed: !e.is_open_at(q.at),
                sale: q.sale,
                kept: None,
            };
            let decided = loop {
                match self
                    .inventory
                    .decide(
                        &q.event,
                        limit,
                        Expect::default(),
                        std::slice::from_ref(&ask),
                    )
                    .await
                {
                    Err(InventoryError::StockMissing) => {
                        let mut snap = db::snapshot(&self.pool, &q.event)
                            .await?
                            .context("the event's snapshot")?;
                        if self.sabotage == Sabotage::RestockFromCapacity {
                            snap = EventSnapshot {
                                confirmed: Vec::new(),
                                ..snap
                            };
                        }
                        self.inventory.restock(&q.event, &snap).await?;
                    }
                    other => break other?,
                }
            };
            let epoch = epochs.entry(q.event.clone()).or_insert(decided.epoch());
            *epoch = (*epoch).min(decided.epoch());
            outcomes.extend(decided.outcomes);
        }
        Ok((outcomes, epochs))
    }
}
