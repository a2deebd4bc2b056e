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

pub mod batch;
pub mod replay;

pub use batch::{BatchError, BatchReport, Decider};
pub use replay::{Replayed, replay};

use crate::config::WorkerConfig;
use crate::inventory::Inventory;
use crate::names::Namespace;
use crate::notify::{self, Notice, WorkerReport};
use crate::queue::{self, Group, Queued};
use crate::services;
use anyhow::Context;
use futures::{FutureExt, StreamExt};
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions};
use lapin::types::FieldTable;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often a worker reports its decisions to the gateways' feeds.
const REPORT_EVERY: Duration = Duration::from_millis(250);

/// Decisions since the last report.
#[derive(Debug, Default)]
struct Pending {
    confirmed: AtomicU64,
    rejected: AtomicU64,
    written: AtomicU64,
}

impl Pending {
    fn add(&self, r: &BatchReport) {
        self.confirmed.fetch_add(r.confirmed, Ordering::Relaxed);
        self.rejected.fetch_add(r.rejected, Ordering::Relaxed);
        self.written.fetch_add(r.written, Ordering::Relaxed);
    }

    fn take(&self) -> WorkerReport {
        WorkerReport {
            confirmed: self.confirmed.swap(0, Ordering::Relaxed),
            rejected: self.rejected.swap(0, Ordering::Relaxed),
            written: self.written.swap(0, Ordering::Relaxed),
        }
    }
}

/// Publishes what this worker decided, once per interval (not per
/// reservation), until `stop`; then a last report.
async fn report(
    pending: Arc<Pending>,
    redis: redis::aio::ConnectionManager,
    ns: Namespace,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(REPORT_EVERY);
    loop {
        let stopping = tokio::select! {
            _ = stop.cancelled() => true,
            _ = tick.tick() => false,
        };
        let r = pending.take();
        if r != WorkerReport::default() {
            notify::publish(&redis, &ns, &Notice::Stats(r)).await;
        }
        if stopping {
            return;
        }
    }
}

/// Connects to the services and runs until `shutdown`; the current batch is
/// finished and acked before returning.
pub async fn run(cfg: WorkerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    cfg.validate().map_err(anyhow::Error::msg)?;
    let ns = Namespace::new(&cfg.services.namespace).map_err(anyhow::Error::msg)?;
    let pool = services::postgres(&cfg.services, 4).await?;
    let (_client, redis) = services::redis(&cfg.services).await?;
    // Fail fast at start on an unreachable broker; later losses reconnect.
    let conn = services::rabbitmq(&cfg.services, "flashgrid-worker").await?;
    let decider = Decider::new(pool, Inventory::new(redis.clone(), ns.clone()));
    let pending = Arc::new(Pending::default());
    let reporting = CancellationToken::new();
    let reporter = tokio::spawn(report(
        pending.clone(),
        redis,
        ns.clone(),
        reporting.clone(),
    ));
    tracing::info!(
        namespace = ns.as_str(),
        queue = ns.queue(),
        "worker started"
    );
    let mut conn = Some(conn);
    let mut delay = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        let c = match conn.take() {
            Some(c) => c,
            None => match queue::connect(&cfg.services.amqp_url, "flashgrid-worker").await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "cannot reach RabbitMQ; retrying in {delay:?}"
                    );
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(services::RECONNECT_MAX_DELAY);
                    continue;
                }
            },
        };
        let consuming = std::time::Instant::now();
        match consume(&c, &cfg, &ns, &decider, &pending, &shutdown).await {
            Ok(()) => {
                queue::close(&c, 200, "worker shutting down").await;
                break;
            }
            Err(e) => {
                // A consumer that ran a while lost its connection: come back
                // at once. One that keeps failing at once must not spin.
                if consuming.elapsed() > Duration::from_secs(10) {
                    delay = Duration::from_millis(100);
                }
                tracing::warn!(
                    error = format!("{e:#}"),
                    "lost RabbitMQ; unacked messages will be redelivered, reconnecting in {delay:?}"
                );
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(services::RECONNECT_MAX_DELAY);
            }
        }
    }
    reporting.cancel();
    let _ = reporter.await;
    tracing::info!("worker stopped");
    Ok(())
}

/// Consumes until shutdown (Ok) or until the connection fails (Err).
async fn consume(
    conn: &lapin::Connection,
    cfg: &WorkerConfig,
    ns: &Namespace,
    decider: &Decider,
    pending: &Pending,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let channel = conn.create_channel().await.context("open a channel")?;
    queue::declare(&channel, ns)
        .await
        .context("declare the queue")?;
    channel
        .basic_qos(cfg.prefetch, BasicQosOptions::default())
        .await
        .context("set the prefetch")?;
    let mut consumer = channel
        .basic_consume(
            ns.queue().as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .context("start consuming")?;
    tracing::info!(prefetch = cfg.prefetch, "consuming");
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            d = consumer.next() => d,
        };
        let first = match first {
            Some(d) => d.context("consumer")?,
            None => anyhow::bail!("the consumer was cancelled by the broker"),
        };
        // Take whatever else the broker already delivered, up to the batch size.
        let mut deliveries = vec![first];
        let mut count = 1usize;
        loop {
            if count >= cfg.batch_max {
                break;
            }
            match consumer.next().now_or_never() {
                Some(Some(Ok(d))) => {
                    deliveries.push(d);
                    count += 1;
                }
                _ => break,
            }
        }
        // Acked with `multiple` up to the last readable delivery; unreadable
        // ones are settled one by one (an ack must never name a tag that was
        // already rejected: the broker would close the channel).
        let mut last_good = None;
        let mut items: Vec<Queued> = Vec::new();
        // Each readable message's tag and its reservations in `items`.
        let mut messages: Vec<(u64, std::ops::Range<usize>)> = Vec::new();
        for d in &deliveries {
            match Group::decode(&d.data) {
                Ok(g) => {
                    let start = items.len();
                    items.extend(g.items);
                    messages.push((d.delivery_tag, start..items.len()));
                    last_good = Some(d.delivery_tag);
                }
                Err(e) => {
                    tracing::error!(error = %e, bytes = d.data.len(), "unreadable message sent to the dead-letter queue {}", ns.dead_letter_queue());
                    channel
                        .basic_reject(d.delivery_tag, BasicRejectOptions { requeue: false })
                        .await
                        .context("dead-letter a message")?;
                }
            }
        }
        if !items.is_empty() {
            match process_until_done(decider, &items, shutdown).await {
                Processed::Done(report) => pending.add(&report),
                // Shutting down with the batch undecided: leave it unacked,
                // the broker redelivers it to the next worker.
                Processed::Shutdown => return Ok(()),
                Processed::Stuck(e) => {
                    tracing::error!(
                        error = %e, reservations = items.len(), messages = messages.len(),
                        "a batch keeps failing while PostgreSQL and Redis answer: taking it apart to set aside what fails"
                    );
                    let isolated = Isolate {
                        amqp_url: &cfg.services.amqp_url,
                        channel: &channel,
                        ns,
                        decider,
                        pending,
                        shutdown,
                    };
                    if !isolated.run(&items, &messages).await? {
                        return Ok(());
                    }
                    continue; // every message of the batch is settled
                }
            }
        }
        if let Some(tag) = last_good {
            channel
                .basic_ack(tag, BasicAckOptions { multiple: true })
                .await
                .context("ack")?;
        }
    }
}

/// Refusals in a row (a service answered, refusing the work) after which a
/// batch whose services answer is deemed to hold a reservation that can never
/// be processed (about 0.75 s of backoff).
const STUCK_AFTER: u32 = 5;

/// Longest one attempt at a batch may take before it is abandoned and retried.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest the broker may take to confirm a reservation set aside.
const SET_ASIDE_TIMEOUT: Duration = Duration::from_secs(10);

/// How a batch ended.
#[derive(Debug)]
enum Processed {
    Done(BatchReport),
    /// Shutdown came first; nothing acked.
    Shutdown,
    /// It failed `STUCK_AFTER` times in a row although PostgreSQL and Redis
    /// answer: something in it fails whatever the retries.
    Stuck(BatchError),
}

/// Processes a batch, retrying with backoff while a service is away (for as
/// long as it takes).
async fn process_until_done(
    decider: &Decider,
    items: &[Queued],
    shutdown: &CancellationToken,
) -> Processed {
    let mut delay = Duration::from_millis(50);
    let mut failures = 0;
    loop {
        // A service that went silent (no reset, no answer) must not hold the
        // batch for TCP's retransmission timeout: every step is idempotent,
        // so an abandoned attempt is simply retried.
        let attempt = tokio::time::timeout(PROCESS_TIMEOUT, decider.process(items)).await;
        match attempt.unwrap_or(Err(BatchError::TimedOut(PROCESS_TIMEOUT))) {
            Ok(report) => {
                tracing::debug!(reservations = items.len(), ?report, "batch committed");
                return Processed::Done(report);
            }
            Err(e) => {
                // Only refusals of the work itself count; a service that
                // cannot work right now is waited for, however long it takes.
                if e.is_refusal() {
                    failures += 1;
                } else {
                    failures = 0;
                }
                if failures >= STUCK_AFTER {
                    if decider.services_answer().await {
                        return Processed::Stuck(e);
                    }
                    failures = 0;
                }
                tracing::warn!(error = %e, reservations = items.len(), "batch not committed, retrying in {delay:?} (nothing acked)");
                tokio::select! {
                    _ = shutdown.cancelled() => return Processed::Shutdown,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(services::RECONNECT_MAX_DELAY);
            }
        }
    }
}

/// Takes a stuck batch apart: message by message, then, within a message
/// that still fails, reservation by reservation. A reservation that fails
/// alone while the services answer is set aside — published on its own to
/// the dead-letter queue, where an operator can replay it once its cause is
/// fixed — so that one bad reservation never stalls a sale. Nothing is
/// dropped: each message is acked only once every reservation in it is
/// committed, rejected or set aside.
struct Isolate<'a> {
    /// Set-asides go over a connection of their own: a broker under a
    /// memory alarm blocks publishing connections, and this worker's acks
    /// must still get through.
    amqp_url: &'a str,
    channel: &'a lapin::Channel,
    ns: &'a Namespace,
    decider: &'a Decider,
    pending: &'a Pending,
    shutdown: &'a CancellationToken,
}

impl Isolate<'_> {
    /// `false` if shutdown came first.
    async fn run(
        &self,
        items: &[Queued],
        messages: &[(u64, std::ops::Range<usize>)],
    ) -> anyhow::Result<bool> {
        let mut aside: Option<(lapin::Connection, lapin::Channel)> = None;
        for (tag, range) in messages {
            let group = &items[range.clone()];
            match process_until_done(self.decider, group, self.shutdown).await {
                Processed::Done(r) => self.pending.add(&r),
                Processed::Shutdown => return Ok(false),
                Processed::Stuck(_) => {
                    for item in group {
                        let one = std::slice::from_ref(item);
                        match process_until_done(self.decider, one, self.shutdown).await {
                            Processed::Done(r) => self.pending.add(&r),
                            Processed::Shutdown => return Ok(false),
                            Processed::Stuck(e) => {
                                if let Err(err) = self.set_aside(&mut aside, item, &e).await {
                                    close_aside(aside).await;
                                    return Err(err);
                                }
                            }
                        }
                    }
                }
            }
            self.channel
                .basic_ack(*tag, BasicAckOptions { multiple: false })
                .await
                .context("ack")?;
        }
        close_aside(aside).await;
        Ok(true)
    }

    async fn set_aside(
        &self,
        aside: &mut Option<(lapin::Connection, lapin::Channel)>,
        item: &Queued,
        error: &BatchError,
    ) -> anyhow::Result<()> {
        let ch = match aside {
            Some((_, ch)) => ch,
            None => {
                let conn = queue::connect(self.amqp_url, "flashgrid-worker-set-aside").await?;
                let ch = queue::confirm_channel(&conn, self.ns).await?;
                &aside.insert((conn, ch)).1
            }
        };
        let dead = self.ns.dead_letter_queue();
        let body = Group::encode(std::slice::from_ref(item));
        queue::publish_kept(ch, &dead, &body, SET_ASIDE_TIMEOUT)
            .await
            .context("set a reservation aside")?;
        tracing::error!(
            error = %error, reservation_id = %item.id, event_id = %item.event,
            "reservation set aside in {dead}: it fails on its own while PostgreSQL and Redis answer; it stays pending until replayed"
        );
        Ok(())
    }
}

async fn close_aside(aside: Option<(lapin::Connection, lapin::Channel)>) {
    if let Some((conn, _)) = aside {
        queue::close(&conn, 200, "set-asides done").await;
    }
}
