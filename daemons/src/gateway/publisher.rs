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
//! of a `202` that could be lost.

use crate::backoff::Backoff;
use crate::inventory::Inventory;
use crate::names::Namespace;
use crate::queue::{self, Group, Queued};
use flashgrid_wire::sale::Outcome;
use flashgrid_wire::{EventId, ReservationId};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
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
}

/// How long a confirmed group waits for its pending markers before answering.
const MARK_GRACE: Duration = Duration::from_millis(250);

/// A reservation handed to the batcher, and how its buyer is answered.
struct Submission {
    item: Queued,
    /// `true` once the broker confirmed the message that holds it.
    done: oneshot::Sender<bool>,
}

/// Handle used by request handlers.
#[derive(Debug, Clone)]
pub struct Publisher {
    tx: mpsc::Sender<Submission>,
    up: Arc<AtomicBool>,
    probe: QueueProbe,
}

/// Reads the queue's depth on the publisher's channel. Separate from
/// [`Publisher`] so that holding it does not keep the batcher alive.
#[derive(Debug, Clone)]
pub struct QueueProbe {
    channel: watch::Receiver<Option<Channel>>,
    ns: Namespace,
}

impl QueueProbe {
    /// The reservation queue's depth and consumers, `None` while the broker is away.
    pub async fn depth(&self) -> Option<queue::Depth> {
        let ch = self.channel.borrow().clone()?;
        tokio::time::timeout(Duration::from_secs(1), queue::depth(&ch, &self.ns))
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
    pub ns: Namespace,
    pub group_max: usize,
    pub inflight: usize,
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
    ) -> (Publisher, PublisherTasks) {
        // Bounded: beyond this many reservations waiting for a slot, shed load
        // with 503 rather than grow memory without limit.
        let (tx, rx) = mpsc::channel(cfg.group_max * cfg.inflight * 8);
        let up = Arc::new(AtomicBool::new(false));
        let (chan_tx, chan_rx) = watch::channel(None);
        let broken = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let link = tokio::spawn(link(
            cfg.clone(),
            Some(conn),
            chan_tx,
            up.clone(),
            broken.clone(),
            stop.clone(),
        ));
        let ns = cfg.ns.clone();
        let batcher = tokio::spawn(batcher(cfg, rx, chan_rx.clone(), broken, inventory));
        (
            Publisher {
                tx,
                up,
                probe: QueueProbe {
                    channel: chan_rx,
                    ns,
                },
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
        self.up.load(Ordering::Relaxed)
    }

    pub fn probe(&self) -> QueueProbe {
        self.probe.clone()
    }

    /// Queues one reservation; returns once the broker confirmed it.
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
        match rx.await {
            Ok(true) => Ok(()),
            _ => Err(Unavailable::NotConfirmed),
        }
    }
}

impl PublisherTasks {
    /// After the last handler is gone: publishes what is queued, waits for
    /// every confirm, then closes the connection.
    pub async fn close(self, publisher: Publisher) {
        drop(publisher);
        let _ = self.batcher.await;
        self.stop.cancel();
        let _ = self.link.await;
    }
}

async fn batcher(
    cfg: PublisherConfig,
    mut rx: mpsc::Receiver<Submission>,
    channel: watch::Receiver<Option<Channel>>,
    broken: Arc<Notify>,
    inventory: Inventory,
) {
    let slots = Arc::new(Semaphore::new(cfg.inflight));
    let queue_name = cfg.ns.queue();
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
        let Some(ch) = channel.borrow().clone() else {
            fail(group);
            continue;
        };
        let items: Vec<&Queued> = group.iter().map(|p| &p.item).collect();
        let body = Group::encode(&items);
        // Record "pending" for status lookups; best effort, off the critical path.
        let marks: Vec<(EventId, u32, ReservationId, Outcome)> = group
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
        let marked = tokio::spawn(async move {
            if let Err(e) = inv
                .mark_pending(marks.iter().map(|(e, sale, id, o)| (e, *sale, *id, o)))
                .await
            {
                tracing::debug!(error = %e, "could not record pending reservations in Redis");
            }
        });
        let published = ch
            .basic_publish(
                "".into(),
                queue_name.as_str().into(),
                // Mandatory: if the queue vanished the broker returns the
                // message instead of confirming a message it dropped.
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &body,
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_content_type("application/json".into()),
            )
            .await;
        let confirm = match published {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "publish failed");
                broken.notify_one();
                fail(group);
                continue;
            }
        };
        let timeout = cfg.confirm_timeout;
        let broken = broken.clone();
        tokio::spawn(async move {
            let ok = match tokio::time::timeout(timeout, confirm).await {
                Ok(Ok(c)) if c.is_ack() => match c.take_message() {
                    None => true,
                    Some(_) => {
                        tracing::error!(
                            "the broker returned a group as unroutable: redeclaring the queue"
                        );
                        broken.notify_one();
                        false
                    }
                },
                Ok(Ok(_)) => {
                    tracing::warn!("the broker refused (nacked) a group");
                    false
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "lost the confirm of a group");
                    broken.notify_one();
                    false
                }
                Err(_) => {
                    tracing::warn!(?timeout, "no confirm from the broker in time");
                    false
                }
            };
            // A status lookup right after the 202 should find "pending": give
            // the marker a moment, but never hold buyers hostage to Redis.
            let _ = tokio::time::timeout(MARK_GRACE, marked).await;
            for p in group {
                let _ = p.done.send(ok);
            }
            drop(slot);
        });
    }
    // Every handler is gone: wait for the confirms still in flight.
    let _ = slots.acquire_many(cfg.inflight as u32).await;
}

fn fail(group: Vec<Submission>) {
    for p in group {
        let _ = p.done.send(false);
    }
}

/// Keeps one confirm-mode channel open, reconnecting with backoff.
async fn link(
    cfg: PublisherConfig,
    mut conn: Option<lapin::Connection>,
    channel: watch::Sender<Option<Channel>>,
    up: Arc<AtomicBool>,
    broken: Arc<Notify>,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::reconnect(Duration::from_millis(100));
    loop {
        let c = match conn.take() {
            Some(c) => Ok(c),
            None => queue::connect(&cfg.amqp_url, "flashgrid-gateway").await,
        };
        let ready = match c {
            Ok(c) => open(&c, &cfg.ns).await.map(|ch| (c, ch)),
            Err(e) => Err(e),
        };
        let delay = match ready {
            Ok((c, ch)) => {
                channel.send_replace(Some(ch.clone()));
                up.store(true, Ordering::Relaxed);
                if backoff.has_waited() {
                    tracing::info!("RabbitMQ is back: accepting reservations again");
                }
                backoff.reset();
                // Watch the connection; a failed publish also wakes us.
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => {
                            up.store(false, Ordering::Relaxed);
                            channel.send_replace(None);
                            queue::close(&c, 200, "gateway shutting down").await;
                            return;
                        }
                        // A failed publish or a returned message: start afresh
                        // (which also redeclares the queue).
                        _ = broken.notified() => break,
                        _ = tokio::time::sleep(Duration::from_millis(250)) => {
                            if !c.status().connected() || !ch.status().connected() {
                                break;
                            }
                        }
                    }
                }
                up.store(false, Ordering::Relaxed);
                channel.send_replace(None);
                tracing::warn!("lost RabbitMQ: answering 503 until it is back");
                queue::close(&c, 320, "reconnecting").await;
                backoff.next_delay()
            }
            Err(e) => {
                up.store(false, Ordering::Relaxed);
                let delay = backoff.next_delay();
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

async fn open(conn: &lapin::Connection, ns: &Namespace) -> anyhow::Result<Channel> {
    let ch = conn.create_channel().await?;
    queue::declare(&ch, ns).await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    Ok(ch)
}
