//! The worker daemon: consume → batch → decide (Lua) → commit → ack.
//!
//! Acks only after PostgreSQL committed (or the rejection was recorded in
//! Redis), with `multiple` up to the batch's last delivery, so a crash at any
//! point leaves the batch unacked and the broker redelivers it; every step is
//! idempotent per reservation id, so nothing is lost and nothing counted twice.
//! A lost connection to any service pauses the worker without acking; it
//! reconnects by itself. A batch that keeps being *refused* while PostgreSQL
//! and Redis answer is taken apart, and the one reservation that fails alone
//! is set aside in the dead-letter queue, so it cannot stall the sale.
//!
//! The pipeline, one file a step:
//! - [`consume`]: take a batch of deliveries, decode it, ack it once settled.
//! - [`retry`]: try the batch until it is done, waiting out services away.
//! - [`batch`]: decide → commit → settle → announce, each step idempotent.
//! - [`isolate`]: take a batch that keeps being refused apart.
//! - [`kept`]: the rejections of batches not done, kept through retries.
//! - [`report`]: the decisions, summed for the gateways' feeds.
//! - [`replay`]: `--replay-dead-letters`, what an operator runs afterwards.
//! - [`sweep`]: expires the holds that came due and puts their seats back.

pub mod batch;
mod consume;
mod isolate;
mod kept;
pub mod replay;
mod report;
mod retry;
pub mod sweep;

pub use batch::{BatchError, BatchReport, Decider, Epochs};
pub use kept::Claim;
pub use replay::{Replayed, replay};

use crate::backoff::Backoff;
use crate::config::WorkerConfig;
use crate::inventory::Inventory;
use crate::queue;
use crate::services::Connected;
use consume::Consume;
use report::Unreported;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Connects to the services (retrying until the start-up deadline) and runs
/// until `shutdown`.
/// How often the worker checks the events it committed to against their
/// floor (one Redis round trip each).
const AUDIT_EVERY: Duration = Duration::from_secs(1);

pub async fn run(cfg: WorkerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    cfg.validate().map_err(anyhow::Error::msg)?;
    let connected = crate::services::connect(&cfg.services, "flashgrid-worker", 4).await?;
    serve(&cfg, connected, shutdown).await
}

/// Runs on services already connected until `shutdown`; the current batch
/// is finished and acked before returning.
pub async fn serve(
    cfg: &WorkerConfig,
    connected: Connected,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let ns = connected.ns;
    let topology = cfg.services.topology();
    let inventory =
        Inventory::new(connected.redis, ns.clone()).with_outcome_ttl(cfg.services.outcome_ttl);
    let unreported = Arc::new(Unreported::default());
    let reporting = CancellationToken::new();
    let (nodes, prober) = crate::reach::spawn(&cfg.services, "flashgrid-worker", reporting.clone());
    let sweeper = tokio::spawn(sweep::run(
        connected.pool.clone(),
        inventory.clone(),
        unreported.clone(),
        reporting.clone(),
    ));
    let decider = Decider::new(connected.pool, inventory.clone());
    // Every worker's commits raise this one's floors (`Notice::Floor`).
    let floors = tokio::spawn({
        let (decider, stop) = (decider.clone(), reporting.clone());
        let nodes = connected.redis_subscribe;
        async move { decider.follow_floors(nodes, stop).await }
    });
    let reporter = tokio::spawn(report::report(
        unreported.clone(),
        report::Me {
            id: cfg.services.instance_id(),
            nodes,
        },
        inventory.connection(),
        ns.clone(),
        reporting.clone(),
    ));
    tracing::info!(
        namespace = ns.as_str(),
        queues = topology.partitions,
        queue_type = topology.kind.as_str(),
        "worker started"
    );
    // A Redis that came back older is rebuilt within a second even when no
    // purchase arrives to run into it (see `Decider::audit`).
    let auditor = tokio::spawn({
        let (decider, stop) = (decider.clone(), reporting.clone());
        async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(AUDIT_EVERY) => {
                        decider.audit().await;
                    }
                }
            }
        }
    });
    let consume = Consume {
        cfg,
        topology: &topology,
        decider: &decider,
        unreported: &unreported,
        shutdown: &shutdown,
    };
    let mut conn = Some(connected.amqp);
    let mut backoff = Backoff::reconnect(Duration::from_millis(100));
    loop {
        let attempt = match conn.take() {
            Some(c) => Ok(c),
            None => queue::connect(&cfg.services.amqp_url, "flashgrid-worker").await,
        };
        let (error, what) = match attempt {
            Err(e) => (e, "cannot reach RabbitMQ"),
            Ok(c) => {
                let consuming = Instant::now();
                match consume.run(&c).await {
                    Ok(()) => {
                        queue::close(&c, 200, "worker shutting down").await;
                        break;
                    }
                    Err(e) => {
                        // Its other channels may still hold deliveries:
                        // closing hands them back to the broker.
                        queue::close(&c, 320, "reconnecting").await;
                        // A consumer that ran a while lost its connection:
                        // come back at once. One that keeps failing at once
                        // must not spin.
                        if consuming.elapsed() > Duration::from_secs(10) {
                            backoff.reset();
                        }
                        (e, "lost RabbitMQ; unacked messages will be redelivered")
                    }
                }
            }
        };
        let delay = backoff.next_delay();
        tracing::warn!(
            error = format!("{error:#}"),
            "{what}; reconnecting in {delay:?}"
        );
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    reporting.cancel();
    let _ = reporter.await;
    let _ = auditor.await;
    let _ = floors.await;
    let _ = prober.await;
    let _ = sweeper.await;
    tracing::info!("worker stopped");
    Ok(())
}
