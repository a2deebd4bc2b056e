//! Group publish: the gateway gathers the reservations that arrive while
//! earlier groups await their broker confirms into one persistent message,
//! and answers each buyer once RabbitMQ confirmed the message that holds it.
//!
//! The batching adapts by itself: at low load every reservation goes alone
//! (no added latency); when all `publish_inflight` slots wait for confirms,
//! arrivals pile up and leave together in the next group.
//!
//! The link task owns the AMQP connection: it reconnects with backoff, and
//! while it is down `is_up()` is false so requests get `503` at once instead
//! of a `202` that could be lost. A broker that stays connected but stops
//! taking messages (a memory or disk alarm blocks publishers; a connection
//! that is no longer read) is caught two ways: lapin's `blocked` flag, and
//! the publish deadline — a publish or confirm that does not come within it
//! fails its group and sends the link to reconnect, and a new connection is
//! trusted only once the broker confirmed a probe on it. No buyer waits
//! longer than the deadline.

use super::stats::Stats;
use crate::backoff::Backoff;
use crate::inventory::Inventory;
use crate::queue::{self, Group, Queued, Topology};
use flashgrid_wire::sale::Outcome;
use flashgrid_wire::{EventId, ReservationId};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The name of the gateway's AMQP connection (RabbitMQ's management UI).
pub const CONNECTION_NAME: &str = "flashgrid-gateway";
use tokio::sync::{Notify, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Why a reservation could not be queued durably (answered 503).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("the message broker is unreachable")]
    BrokerDown,
    #[error("the gateway is overloaded")]
    Overloaded,
    #[error("the message broker did not confirm the reservation")]
    NotConfirmed,
    /// The broker refused the message (nack): its queue is at its length
    /// limit, or lost its leader. Nothing was kept.
    #[error("the message broker refused the reservation: the sale's queue is full or failing over")]
    Refused,
}

/// What the broker answered for the message holding a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Confirm {
    /// Kept (acked): the reservation will be decided.
    Kept,
    /// Refused (nacked), or never published: not kept.
    Refused,
    /// No answer (a lost connection, the deadline): it may have been kept.
    Unknown,
}

/// How long a confirmed group waits for its pending markers before
/// answering: the marker only spares a status lookup a trip to PostgreSQL,
/// so a slow Redis costs each buyer at most this.
const MARK_GRACE: Duration = Duration::from_millis(20);

/// Reservations waiting for a slot, in full groups; beyond them a
/// purchase is answered `503` (overloaded).
const BACKLOG_GROUPS: usize = 128;

/// Pending-marker writes under way at once per in-flight slot; beyond it a
/// group goes unmarked (a stalled Redis must not pile up tasks).
const MARKS_PER_SLOT: usize = 2;

/// At shutdown, how long the confirms still in flight are awaited once no
/// request is left to answer.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// Whether the broker takes reservations, and why not: written by the link
/// and the batcher, read by every purchase (`up`) and `/readyz` (`why`).
#[derive(Debug, Default)]
struct Health {
    up: AtomicBool,
    why: Mutex<Option<String>>,
}

impl Health {
    fn set_up(&self) {
        *self.why.lock().expect("health") = None;
        self.up.store(true, Ordering::Release);
    }

    fn set_down(&self, why: impl Into<String>) {
        self.up.store(false, Ordering::Release);
        *self.why.lock().expect("health") = Some(why.into());
    }

    fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    fn why(&self) -> Option<String> {
        if self.is_up() {
            return None;
        }
        Some(
            self.why
                .lock()
                .expect("health")
                .clone()
                .unwrap_or_else(|| "connecting to RabbitMQ".into()),
        )
    }
}

/// A reservation handed to the batcher, and how its buyer is answered.
struct Submission {
    item: Queued,
    /// What the broker answered for the message that holds it.
    done: oneshot::Sender<Confirm>,
}

/// Handle used by request handlers.
#[derive(Debug, Clone)]
pub struct Publisher {
    tx: mpsc::Sender<Submission>,
    health: Arc<Health>,
    probe: QueueProbe,
    deadline: Duration,
}

/// The link's current channel and its generation (one per connection the
/// link opened): a failure reported on an older one is old news.
#[derive(Debug, Clone)]
struct Live {
    generation: u64,
    channel: Channel,
}

/// Reads the queue's depth on the publisher's channel. Separate from
/// [`Publisher`] so that holding it does not keep the batcher alive.
#[derive(Debug, Clone)]
pub struct QueueProbe {
    channel: watch::Receiver<Option<Live>>,
    topology: Topology,
}

impl QueueProbe {
    /// The reservation queue's depth and consumers, `None` while the broker is away.
    pub async fn depth(&self) -> Option<queue::Depth> {
        let ch = self.channel.borrow().as_ref()?.channel.clone();
        tokio::time::timeout(Duration::from_secs(1), queue::depth(&ch, &self.topology))
            .await
            .ok()?
            .ok()
    }
}

impl std::fmt::Debug for Submission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.item.fmt(f)
    }
}

/// Tuning of the group publisher.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    pub amqp_url: String,
    pub topology: Topology,
    pub group_max: usize,
    pub inflight: usize,
    /// The publish deadline: from a purchase's submission to its confirm.
    pub confirm_timeout: Duration,
}

/// The running publisher's tasks; `close` drains them.
#[derive(Debug)]
pub struct PublisherTasks {
    batcher: JoinHandle<()>,
    link: JoinHandle<()>,
    stop: CancellationToken,
}

impl Publisher {
    /// Starts the link (on `conn`, already connected at start-up) and the batcher.
    pub fn start(
        cfg: PublisherConfig,
        conn: lapin::Connection,
        inventory: Inventory,
        stats: Arc<Stats>,
    ) -> (Publisher, PublisherTasks) {
        // Bounded: beyond this many reservations waiting for a slot, shed load
        // with 503 rather than grow memory without limit. Not in proportion
        // to the slots: fewer of them gather more, and a flash crowd of
        // 10,000 at once must fit (32,768 at the defaults).
        let (tx, rx) = mpsc::channel(cfg.group_max * BACKLOG_GROUPS);
        let health = Arc::new(Health::default());
        let (chan_tx, chan_rx) = watch::channel(None);
        let broken = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let link = tokio::spawn(link(
            cfg.clone(),
            Some(conn),
            chan_tx,
            health.clone(),
            broken.clone(),
            stop.clone(),
        ));
        let topology = cfg.topology.clone();
        let deadline = cfg.confirm_timeout;
        let batcher = tokio::spawn(batcher(
            cfg,
            rx,
            chan_rx.clone(),
            broken,
            health.clone(),
            inventory,
            stats,
        ));
        (
            Publisher {
                tx,
                health,
                probe: QueueProbe {
                    channel: chan_rx,
                    topology,
                },
                deadline,
            },
            PublisherTasks {
                batcher,
                link,
                stop,
            },
        )
    }

    /// Whether the broker can take reservations durably right now.
    pub fn is_up(&self) -> bool {
        self.health.is_up()
    }

    /// Why the broker cannot take reservations right now (`None`: it can).
    pub fn unavailable_because(&self) -> Option<String> {
        self.health.why()
    }

    pub fn probe(&self) -> QueueProbe {
        self.probe.clone()
    }

    /// Queues one reservation; returns once the broker confirmed it, or
    /// fails within the publish deadline.
    pub async fn submit(&self, item: Queued) -> Result<(), Unavailable> {
        if !self.is_up() {
            return Err(Unavailable::BrokerDown);
        }
        let (done, rx) = oneshot::channel();
        self.tx
            .try_send(Submission { item, done })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => Unavailable::Overloaded,
                mpsc::error::TrySendError::Closed(_) => Unavailable::BrokerDown,
            })?;
        // The batcher bounds the publish and the confirm each; this bounds
        // the whole wait, a free slot included.
        match tokio::time::timeout(self.deadline, rx).await {
            Ok(Ok(Confirm::Kept)) => Ok(()),
            Ok(Ok(Confirm::Refused)) => Err(Unavailable::Refused),
            _ => Err(Unavailable::NotConfirmed),
        }
    }
}

impl PublisherTasks {
    /// After the last handler is gone: publishes what is queued, waits for
    /// the confirms in flight (at most the publish deadline, or
    /// `CLOSE_GRACE` once `forced`: no buyer is left to answer), then
    /// closes the connection.
    pub async fn close(mut self, publisher: Publisher, forced: bool) {
        let wait = if forced {
            CLOSE_GRACE
        } else {
            publisher.deadline + CLOSE_GRACE
        };
        drop(publisher);
        if tokio::time::timeout(wait, &mut self.batcher).await.is_err() {
            tracing::warn!(
                ?wait,
                "broker confirms still missing at shutdown; closing without them"
            );
            self.batcher.abort();
        }
        self.stop.cancel();
        let _ = self.link.await;
    }
}

async fn batcher(
    cfg: PublisherConfig,
    mut rx: mpsc::Receiver<Submission>,
    channel: watch::Receiver<Option<Live>>,
    broken: Arc<Notify>,
    health: Arc<Health>,
    inventory: Inventory,
    stats: Arc<Stats>,
) {
    let slots = Arc::new(Semaphore::new(cfg.inflight));
    let marks = Arc::new(Semaphore::new(cfg.inflight * MARKS_PER_SLOT));
    let deadline = cfg.confirm_timeout;
    // Named once, not per group.
    let queues: Vec<String> = cfg.topology.queues().collect();
    while let Some(first) = rx.recv().await {
        // Waiting for a free slot is what lets a group grow under load.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let mut group = Vec::with_capacity(cfg.group_max.min(64));
        group.push(first);
        while group.len() < cfg.group_max {
            match rx.try_recv() {
                Ok(p) => group.push(p),
                Err(_) => break,
            }
        }
        let Some(Live {
            generation,
            channel: ch,
        }) = channel.borrow().clone()
        else {
            fail(group, Confirm::Refused);
            continue;
        };
        if !health.is_up() {
            fail(group, Confirm::Refused);
            continue;
        }
        // Record "pending" for status lookups; best effort, off the critical
        // path. While Redis is slow every permit is taken: this group goes
        // unmarked (its status lookups fall back to the receipt and
        // PostgreSQL), and nothing is copied for it.
        let marked = marks.clone().try_acquire_owned().ok().map(|permit| {
            let group_marks: Vec<(EventId, u32, ReservationId, Outcome)> = group
                .iter()
                .map(|p| {
                    (
                        p.item.event.clone(),
                        p.item.sale,
                        p.item.id,
                        Outcome::pending(p.item.qty, p.item.user.clone()),
                    )
                })
                .collect();
            let inv = inventory.clone();
            tokio::spawn(async move {
                if let Err(e) = inv.mark_pending(marks_of(&group_marks)).await {
                    tracing::debug!(error = %e, "could not record pending reservations in Redis");
                }
                drop(permit);
            })
        });
        // One message per partition the group's events fall in (one, unless
        // several events sell at once); they share the group's slot.
        let started = tokio::time::Instant::now();
        let mut sent = Vec::with_capacity(1);
        let mut parts = by_partition(&cfg.topology, group).into_iter();
        for (p, part) in parts.by_ref() {
            match publish(&ch, &queues[usize::from(p)], &part, deadline).await {
                Ok(confirm) => {
                    stats.published.inc();
                    sent.push((part, confirm));
                }
                Err(why) => {
                    start_afresh(&health, &broken, why);
                    // Its frames may still reach the broker.
                    fail(part, Confirm::Unknown);
                    break;
                }
            }
        }
        for (_, part) in parts {
            fail(part, Confirm::Refused);
        }
        let broken = broken.clone();
        let health = health.clone();
        let link = channel.clone();
        tokio::spawn(async move {
            // A failure on a channel the link already replaced says nothing
            // about the new one.
            let current = || {
                link.borrow()
                    .as_ref()
                    .is_some_and(|l| l.generation == generation)
            };
            let mut answered = Vec::with_capacity(sent.len());
            for (part, confirm) in sent {
                let ok = match tokio::time::timeout_at(started + deadline, confirm).await {
                    Ok(Ok(c)) if c.is_ack() => match c.take_message() {
                        None => Confirm::Kept,
                        Some(_) => {
                            tracing::error!(
                                "the broker returned a group as unroutable: redeclaring the queues"
                            );
                            broken.notify_one();
                            Confirm::Refused
                        }
                    },
                    Ok(Ok(_)) => {
                        tracing::warn!(
                            "the broker refused (nacked) a group: its queue is full (FLASHGRID_QUEUE_MAX_LENGTH) or lost its leader"
                        );
                        Confirm::Refused
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "lost the confirm of a group");
                        if current() {
                            start_afresh(
                                &health,
                                &broken,
                                format!("lost the connection to RabbitMQ: {e}"),
                            );
                        }
                        Confirm::Unknown
                    }
                    Err(_) => {
                        tracing::warn!(?deadline, "no confirm from the broker in time");
                        if current() {
                            start_afresh(
                                &health,
                                &broken,
                                not_moving("confirm a publish", deadline),
                            );
                        }
                        Confirm::Unknown
                    }
                };
                answered.push((part, ok));
            }
            // The slot is free as soon as the broker answered: a slow Redis
            // must not slow the publishes.
            drop(slot);
            // A status lookup right after the 202 should find "pending": give
            // the marker a moment, but never hold buyers hostage to Redis.
            if let Some(marked) = marked {
                let _ = tokio::time::timeout(MARK_GRACE, marked).await;
            }
            for (part, ok) in answered {
                for p in part {
                    let _ = p.done.send(ok);
                }
            }
        });
    }
    // Every handler is gone: wait for the confirms still in flight.
    let _ = slots.acquire_many(cfg.inflight as u32).await;
}

/// The broker failed the connection the link holds: buyers are told `503`
/// at once, and the link starts afresh.
fn start_afresh(health: &Health, broken: &Notify, why: String) {
    health.set_down(why);
    broken.notify_one();
}

/// Why a broker that did not `what` within the deadline is taken for down.
fn not_moving(what: &str, deadline: Duration) -> String {
    format!(
        "RabbitMQ did not {what} within {deadline:?}: blocked by a resource alarm, or not reading this connection"
    )
}

fn marks_of(
    marks: &[(EventId, u32, ReservationId, Outcome)],
) -> impl Iterator<Item = (&EventId, u32, ReservationId, &Outcome)> {
    marks.iter().map(|(e, sale, id, o)| (e, *sale, *id, o))
}

/// The group's submissions by their event's partition.
fn by_partition(topo: &Topology, group: Vec<Submission>) -> Vec<(u16, Vec<Submission>)> {
    if topo.partitions == 1 {
        return vec![(0, group)];
    }
    let mut parts: Vec<(u16, Vec<Submission>)> = Vec::with_capacity(1);
    for s in group {
        let p = topo.partition_of(&s.item.event);
        match parts.iter_mut().find(|(q, _)| *q == p) {
            Some((_, part)) => part.push(s),
            None => parts.push((p, vec![s])),
        }
    }
    parts
}

/// Publishes one group message, persistent and mandatory (if the queue
/// vanished the broker returns the message instead of confirming a message
/// it dropped), within the deadline; the error says why the link must
/// start afresh.
async fn publish(
    ch: &Channel,
    queue_name: &str,
    part: &[Submission],
    deadline: Duration,
) -> Result<lapin::PublisherConfirm, String> {
    let items: Vec<&Queued> = part.iter().map(|p| &p.item).collect();
    let body = Group::encode(&items);
    let published = tokio::time::timeout(
        deadline,
        ch.basic_publish(
            "".into(),
            queue_name.into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            &body,
            BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into()),
        ),
    )
    .await;
    match published {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "publish failed");
            Err(format!("lost the connection to RabbitMQ: {e}"))
        }
        Err(_) => {
            tracing::warn!(
                ?deadline,
                "a publish did not go out in time: the broker blocks this connection"
            );
            Err(not_moving("take a publish", deadline))
        }
    }
}

/// Answers a group the broker did not confirm.
fn fail(group: Vec<Submission>, answer: Confirm) {
    for p in group {
        let _ = p.done.send(answer);
    }
}

/// Keeps one confirm-mode channel open, reconnecting with backoff; says
/// the broker is up only while a confirmed probe or publishes prove it.
async fn link(
    cfg: PublisherConfig,
    mut conn: Option<lapin::Connection>,
    channel: watch::Sender<Option<Live>>,
    health: Arc<Health>,
    broken: Arc<Notify>,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::reconnect(Duration::from_millis(100));
    let mut generation = 0u64;
    loop {
        let c = match conn.take() {
            Some(c) => Ok(c),
            // Each node within its own connect timeout (a broker that
            // accepts TCP but never answers the handshake), in turn.
            None => queue::connect(&cfg.amqp_url, CONNECTION_NAME).await,
        };
        let ready = match c {
            Ok(c) => match open(&c, &cfg).await {
                Ok(ch) => Ok((c, ch)),
                Err(e) => {
                    queue::close(&c, 320, "not taking messages").await;
                    Err(e)
                }
            },
            Err(e) => Err(e),
        };
        let delay = match ready {
            Ok((c, ch)) => {
                generation += 1;
                channel.send_replace(Some(Live {
                    generation,
                    channel: ch.clone(),
                }));
                health.set_up();
                if backoff.has_waited() {
                    tracing::info!("RabbitMQ is back: accepting reservations again");
                }
                backoff.reset();
                // A stall signalled before this connection was up is old news.
                let _ = tokio::time::timeout(Duration::ZERO, broken.notified()).await;
                let mut blocked = false;
                // Watch the connection; a failed publish also wakes us.
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => {
                            health.set_down("the gateway is shutting down");
                            channel.send_replace(None);
                            queue::close(&c, 200, "gateway shutting down").await;
                            return;
                        }
                        // A failed or stalled publish, or a returned message:
                        // start afresh (which also redeclares the queue).
                        _ = broken.notified() => break,
                        _ = tokio::time::sleep(Duration::from_millis(250)) => {
                            if !c.status().connected() || !ch.status().connected() {
                                health.set_down("lost the connection to RabbitMQ");
                                break;
                            }
                            // The broker says it blocks publishers (a memory
                            // or disk alarm): 503 at once, rather than each
                            // buyer waiting out the deadline.
                            match (blocked, c.status().blocked()) {
                                (false, true) => {
                                    blocked = true;
                                    health.set_down("RabbitMQ blocks publishing: a memory or disk alarm is raised on the broker (`rabbitmqctl status` names it)");
                                    tracing::warn!("RabbitMQ blocked this connection (resource alarm): answering 503 until it is lifted");
                                }
                                (true, false) => {
                                    blocked = false;
                                    health.set_up();
                                    tracing::info!("RabbitMQ lifted its block: accepting reservations again");
                                }
                                _ => {}
                            }
                        }
                    }
                }
                if health.is_up() {
                    health.set_down("reconnecting to RabbitMQ");
                }
                channel.send_replace(None);
                tracing::warn!(
                    why = health.why().unwrap_or_default(),
                    "RabbitMQ is not taking reservations: answering 503 until it is back"
                );
                queue::close(&c, 320, "reconnecting").await;
                backoff.next_delay()
            }
            Err(e) => {
                let delay = backoff.next_delay();
                health.set_down(format!("cannot reach RabbitMQ: {e:#}"));
                tracing::warn!(
                    error = format!("{e:#}"),
                    "cannot reach RabbitMQ; answering 503, retrying in {delay:?}"
                );
                delay
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// A confirm-mode channel with the queue declared, trusted once the broker
/// confirmed a probe on it: a broker that accepts connections but blocks
/// publishers fails here, within the publish deadline.
async fn open(conn: &lapin::Connection, cfg: &PublisherConfig) -> anyhow::Result<Channel> {
    let deadline = cfg.confirm_timeout;
    let ready = async {
        let ch = conn.create_channel().await?;
        queue::declare(&ch, &cfg.topology).await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        // No queue is bound to this key: the broker confirms and drops it.
        let confirm = ch
            .basic_publish(
                "".into(),
                cfg.topology.ns.link_probe().as_str().into(),
                BasicPublishOptions::default(),
                b"",
                BasicProperties::default(),
            )
            .await?
            .await?;
        anyhow::ensure!(
            confirm.is_ack(),
            "the broker refused (nacked) the link probe"
        );
        anyhow::Ok(ch)
    };
    match tokio::time::timeout(deadline, ready).await {
        Ok(r) => r,
        Err(_) => Err(anyhow::anyhow!(not_moving(
            "confirm a probe publish",
            deadline
        ))),
    }
}
