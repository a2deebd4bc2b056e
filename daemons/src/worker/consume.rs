//! Consume: one loop per reservation queue (partition), each on a channel
//! of its own: take a batch (the first delivery, then whatever else the
//! broker already handed over, up to `batch_max`, waiting up to `--linger`
//! for more while the batches before it are in flight), decode each message into
//! its reservations, dead-letter the unreadable ones, have the batch decided
//! and committed, and ack — with `multiple`, up to the last readable
//! delivery, only after PostgreSQL committed. An event's reservations are
//! all on one partition, each partition consumed in order by one loop per
//! worker (several workers share a partition, as they always shared the one
//! queue); a message handed back goes to the back of its queue. A loop keeps
//! up to `--pipeline` batches in flight: each is first decided after the
//! one taken before it (while that one commits), and acked after it.

use super::isolate::Isolate;
use super::report::Unreported;
use super::retry::{Processed, until_done};
use crate::config::WorkerConfig;
use crate::queue::{self, Group, Queued, Topology};
use crate::worker::Decider;
use anyhow::{Context, anyhow};
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions};
use lapin::types::FieldTable;
use std::ops::Range;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long closing a channel may take at shutdown.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a message handed back may take to be confirmed by the broker.
const HAND_BACK_TIMEOUT: Duration = Duration::from_secs(10);

/// What a consumer works with.
#[derive(Debug, Clone, Copy)]
pub(super) struct Consume<'a> {
    pub cfg: &'a WorkerConfig,
    pub topology: &'a Topology,
    pub decider: &'a Decider,
    pub unreported: &'a Unreported,
    pub shutdown: &'a CancellationToken,
}

/// One readable message of a batch: its delivery tag and its reservations.
#[derive(Debug, Clone)]
pub(super) struct Message {
    pub tag: u64,
    pub items: Range<usize>,
}

/// Where a batch in flight stands, for the batch taken after it.
#[derive(Debug, Clone)]
struct Turn {
    /// Cancelled once its decisions are over.
    decided: CancellationToken,
    /// Cancelled once it is acked (never if it is not).
    acked: CancellationToken,
}

impl Turn {
    fn new() -> Self {
        Self {
            decided: CancellationToken::new(),
            acked: CancellationToken::new(),
        }
    }

    /// Before the first batch: nothing to wait for.
    fn done() -> Self {
        let t = Self::new();
        t.decided.cancel();
        t.acked.cancel();
        t
    }
}

/// A batch, decoded.
#[derive(Debug, Default)]
struct Batch {
    items: Vec<Queued>,
    messages: Vec<Message>,
}

impl Batch {
    /// Acked with `multiple` up to the last readable delivery; unreadable
    /// ones were rejected one by one (an ack must never name a tag that was
    /// already rejected: the broker would close the channel).
    fn last_good(&self) -> Option<u64> {
        self.messages.last().map(|m| m.tag)
    }
}

impl Consume<'_> {
    /// Consumes every partition until shutdown (Ok) or until the connection
    /// or one partition's channel fails (Err): the other partitions then
    /// finish their batch in hand, unacked, and stop too.
    pub(super) async fn run(&self, conn: &lapin::Connection) -> anyhow::Result<()> {
        // Once per connection, for every partition.
        let setup = conn.create_channel().await.context("open a channel")?;
        queue::declare(&setup, self.topology)
            .await
            .context("declare the queues")?;
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, setup.close(200, "declared".into())).await;
        let restart = self.shutdown.child_token();
        let this = Consume {
            shutdown: &restart,
            ..*self
        };
        let loops = self.topology.queues().map(|q| {
            let restart = &restart;
            async move {
                let r = this.partition(conn, &q).await;
                if r.is_err() {
                    restart.cancel();
                }
                r
            }
        });
        let ended = futures::future::join_all(loops).await;
        ended.into_iter().find(Result::is_err).unwrap_or(Ok(()))
    }

    /// Consumes one partition's queue until shutdown (Ok) or until its
    /// channel fails (Err).
    async fn partition(&self, conn: &lapin::Connection, queue_name: &str) -> anyhow::Result<()> {
        let channel = conn.create_channel().await.context("open a channel")?;
        channel
            .basic_qos(self.cfg.prefetch, BasicQosOptions::default())
            .await
            .context("set the prefetch")?;
        // Where messages are handed back (see `hand_back`).
        let back = queue::confirm_mode(conn).await?;
        let mut consumer = channel
            .basic_consume(
                queue_name.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("start consuming {queue_name}"))?;
        tracing::info!(
            prefetch = self.cfg.prefetch,
            pipeline = self.cfg.pipeline,
            queue = queue_name,
            "consuming"
        );
        // Up to `pipeline` batches in flight, oldest first: the next batch
        // is taken once the last one's first attempt has decided (so first
        // attempts decide in the order the batches were taken, and one
        // decides while the one before it commits), and each acks only
        // after the one before it acked (an ack with `multiple` must never
        // cover a batch not done).
        let mut inflight = FuturesOrdered::new();
        let mut last = Turn::done();
        let mut stopping = false;
        let mut failure = None;
        // The next batch, while it waits for more (see `Gathering`).
        let mut gathering = Gathering::default();
        loop {
            if stopping && inflight.is_empty() {
                break;
            }
            let room = !stopping && inflight.len() < usize::from(self.cfg.pipeline);
            let full = gathering.deliveries.len() >= self.cfg.batch_max;
            let linger = gathering.until;
            tokio::select! {
                biased;
                done = inflight.next(), if !inflight.is_empty() => {
                    // `Ok(false)`: shutdown came before it was done. Nothing
                    // after it is acked either: closing hands them back.
                    match done.expect("a batch in flight") {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(e) => {
                            let e: anyhow::Error = e;
                            failure = Some(match failure.take() {
                                Some(f) => e.context(format!("after the consumer failed ({f:#})")),
                                None => e,
                            });
                            break;
                        }
                    }
                }
                _ = self.shutdown.cancelled(), if !stopping => stopping = true,
                _ = sleep_until(linger), if linger.is_some() => {}
                next = async { last.decided.cancelled().await; consumer.next().await }, if room && !full => {
                    let next = match next {
                        Some(Ok(d)) => d,
                        Some(Err(e)) => {
                            failure = Some(anyhow::Error::new(e).context("consumer"));
                            stopping = true;
                            continue;
                        }
                        None => {
                            failure = Some(anyhow!("the consumer of {queue_name} was cancelled by the broker"));
                            stopping = true;
                            continue;
                        }
                    };
                    gathering.deliveries.push(next);
                }
            }
            // With whatever else is ready now: a batch about to go, after a
            // wait, takes what arrived meanwhile. Not once the consumer
            // failed: its end would follow, and hide the first error.
            if failure.is_none()
                && let Some(e) = gathering.take_ready(&mut consumer, self.cfg.batch_max)
            {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "the consumer failed while a batch was taken; settling the batches in hand first"
                );
                failure = Some(e);
                stopping = true;
            }
            if gathering.deliveries.is_empty() {
                continue;
            }
            if failure.is_none() {
                // Once stopping for shutdown nothing new starts: what was
                // gathered is dropped unacked, so closing the channel hands
                // it back. After a failure it is settled first, as the rest.
                if stopping {
                    drop(gathering.take());
                    continue;
                }
                let now = Instant::now();
                let in_flight = !last.acked.is_cancelled();
                if !gathering.ready(self.cfg.batch_max, in_flight, self.cfg.linger, now) {
                    continue;
                }
            }
            let batch = self.decode(&channel, gathering.take()).await?;
            let mine = Turn::new();
            let before = std::mem::replace(&mut last, mine.clone());
            inflight.push_back(self.in_turn(
                &channel,
                &back,
                queue_name,
                batch,
                before.acked,
                mine,
            ));
        }
        drop(inflight);
        // Before the connection, which lapin otherwise reports as an error;
        // deliveries not acked go back to the queue. Bounded: a broker that
        // stopped answering must not hold the shutdown.
        for ch in [&back, &channel] {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, ch.close(200, "stopping".into())).await;
        }
        failure.map_or(Ok(()), Err)
    }

    /// Decodes each delivery; an unreadable one goes to the dead-letter
    /// queue instead of looping.
    async fn decode(
        &self,
        channel: &lapin::Channel,
        deliveries: Vec<Delivery>,
    ) -> anyhow::Result<Batch> {
        let mut batch = Batch::default();
        for d in deliveries {
            match Group::decode(&d.data) {
                Ok(g) => {
                    let start = batch.items.len();
                    batch.items.extend(g.items);
                    batch.messages.push(Message {
                        tag: d.delivery_tag,
                        items: start..batch.items.len(),
                    });
                }
                Err(e) => {
                    tracing::error!(error = %e, bytes = d.data.len(), "unreadable message sent to the dead-letter queue {}", self.topology.ns.dead_letter_queue());
                    channel
                        .basic_reject(d.delivery_tag, BasicRejectOptions { requeue: false })
                        .await
                        .context("dead-letter a message")?;
                }
            }
        }
        Ok(batch)
    }

    /// Decides and commits `batch` (its decisions start at once: the
    /// caller took it in turn), then, once the batch before it acked
    /// (`before`), acks it; `false` if shutdown came first (nothing acked:
    /// the broker redelivers it to the next worker).
    async fn in_turn(
        &self,
        channel: &lapin::Channel,
        back: &lapin::Channel,
        queue_name: &str,
        batch: Batch,
        before: CancellationToken,
        mine: Turn,
    ) -> anyhow::Result<bool> {
        // Held until this batch is acked or given up (see `Decider::claim`).
        let _claim = self.decider.claim(&batch.items);
        let processed = if batch.items.is_empty() {
            None
        } else {
            Some(until_done(self.decider, &batch.items, &mine.decided, self.shutdown).await)
        };
        // Already, unless it was empty or each attempt timed out deciding.
        mine.decided.cancel();
        before.cancelled().await;
        let settled = self
            .settle(channel, back, queue_name, &batch, processed)
            .await;
        if matches!(settled, Ok(true)) {
            mine.acked.cancel();
        }
        settled
    }

    /// Acks a batch as it was processed; `false` if shutdown came first.
    async fn settle(
        &self,
        channel: &lapin::Channel,
        back: &lapin::Channel,
        queue_name: &str,
        batch: &Batch,
        processed: Option<Processed>,
    ) -> anyhow::Result<bool> {
        if let Some(processed) = processed {
            match processed {
                Processed::Done(report) if !report.tentative.is_empty() => {
                    self.unreported.add(&report);
                    return self
                        .hand_back(channel, back, queue_name, batch, &report.tentative)
                        .await;
                }
                Processed::Done(report) => self.unreported.add(&report),
                Processed::Shutdown => return Ok(false),
                Processed::Stuck(e) => {
                    tracing::error!(
                        error = %e, reservations = batch.items.len(), messages = batch.messages.len(),
                        "a batch keeps failing while PostgreSQL and Redis answer: taking it apart to set aside what fails"
                    );
                    let isolate = Isolate {
                        amqp_url: &self.cfg.services.amqp_url,
                        channel,
                        topology: self.topology,
                        decider: self.decider,
                        unreported: self.unreported,
                        shutdown: self.shutdown,
                    };
                    // Each message of the batch is acked on its own there.
                    return isolate.run(&batch.items, &batch.messages).await;
                }
            }
        }
        if let Some(tag) = batch.last_good() {
            channel
                .basic_ack(tag, BasicAckOptions { multiple: true })
                .await
                .context("ack")?;
        }
        Ok(true)
    }
}

impl Consume<'_> {
    /// Acks the batch's messages one by one, except those holding a
    /// reservation whose rejection is still tentative (items `tentative`,
    /// see `Decider::make_certain`): those go back to their queue, to be
    /// decided again until their rejection is certain or they are sold a
    /// seat. Their other reservations are decided already, and get the same
    /// decision back.
    ///
    /// A message goes back as a copy, published (confirmed) before the
    /// original is acked, rather than requeued: a quorum queue counts every
    /// requeue against its delivery limit, which is there for the crashes
    /// of workers holding a poison message, not for waiting. A crash in
    /// between leaves both, which decide the same (idempotent per id).
    async fn hand_back(
        &self,
        channel: &lapin::Channel,
        back: &lapin::Channel,
        queue_name: &str,
        batch: &Batch,
        tentative: &[usize],
    ) -> anyhow::Result<bool> {
        let mut handed = 0;
        for m in &batch.messages {
            if tentative.iter().any(|i| m.items.contains(i)) {
                handed += 1;
                let body = Group::encode(&batch.items[m.items.clone()]);
                if let Err(e) =
                    queue::publish_kept(back, queue_name, &body, HAND_BACK_TIMEOUT).await
                {
                    // The queue is full (a sell-out fills it) or failing
                    // over: requeue the original instead, which costs one
                    // delivery of its limit but never the partition.
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "could not hand a copy back; requeueing the message"
                    );
                    channel
                        .basic_reject(m.tag, BasicRejectOptions { requeue: true })
                        .await
                        .context("hand a message back to the queue")?;
                    continue;
                }
            }
            channel
                .basic_ack(m.tag, BasicAckOptions { multiple: false })
                .await
                .context("ack")?;
        }
        self.unreported.handed_back(handed);
        tracing::info!(
            handed,
            reservations = tentative.len(),
            "messages with rejections not certain yet handed back to the queue"
        );
        Ok(true)
    }
}

/// The next batch while it is gathered: a batch smaller than `--batch-max`
/// waits, at most `--linger`, while the batches before it are in flight
/// (Nagle's rule), and goes no sooner than `--linger` after the batch
/// before it went. At a low rate each message would otherwise be a batch
/// of its own, and each batch pays a PostgreSQL commit: its fsync, under the
/// event's row lock, so the commits of one event wait for each other anyway.
/// Without the spacing, a moderate rate cuts a batch each time the one
/// before it is acked (every ~3 ms here): at 5,000 reservations a second,
/// 359 commits of 14 reservations, and PostgreSQL, the worker and Redis
/// spent four times the CPU a reservation they spend on a backlog, taken
/// from the cores that answer the buyers. A batch after a quiet spell
/// still goes at once.
/// Kept in the consume loop, not in a future of its own, so that nothing
/// taken is lost when another branch of the loop wins.
#[derive(Default)]
struct Gathering {
    deliveries: Vec<Delivery>,
    /// When it goes anyway; set while it waits.
    until: Option<Instant>,
    /// When the batch before it went.
    last_went: Option<Instant>,
}

impl Gathering {
    /// Adds whatever the broker already handed over, up to `max` in all,
    /// if a batch is being gathered. A delivery error or the consumer's end
    /// stops it; it is returned, and the deliveries in hand are settled
    /// first.
    fn take_ready(&mut self, consumer: &mut lapin::Consumer, max: usize) -> Option<anyhow::Error> {
        while !self.deliveries.is_empty() && self.deliveries.len() < max {
            match consumer.next().now_or_never() {
                None => break, // nothing more ready now
                Some(Some(Ok(d))) => self.deliveries.push(d),
                Some(Some(Err(e))) => return Some(anyhow::Error::new(e).context("consumer")),
                Some(None) => return Some(anyhow!("the consumer was cancelled by the broker")),
            }
        }
        None
    }

    /// Whether the batch goes now (see `goes_now`).
    fn ready(&mut self, max: usize, in_flight: bool, linger: Duration, now: Instant) -> bool {
        goes_now(
            self.deliveries.len(),
            max,
            Before {
                in_flight,
                went: self.last_went,
            },
            linger,
            now,
            &mut self.until,
        )
    }

    fn take(&mut self) -> Vec<Delivery> {
        self.until = None;
        self.last_went = Some(Instant::now());
        std::mem::take(&mut self.deliveries)
    }
}

/// The batch before the one gathered.
#[derive(Debug, Clone, Copy)]
struct Before {
    /// Not acked yet.
    in_flight: bool,
    /// When it went (none yet: the first batch).
    went: Option<Instant>,
}

/// Whether a batch of `len` goes now: it is full; or nothing is in flight
/// before it and the one before went `linger` ago or more; or it waited
/// until `until`, first set to the later of the two (`linger` from its
/// first look while one is in flight, `linger` after the one before
/// went otherwise).
fn goes_now(
    len: usize,
    max: usize,
    before: Before,
    linger: Duration,
    now: Instant,
    until: &mut Option<Instant>,
) -> bool {
    if len >= max || linger.is_zero() {
        return true;
    }
    let spaced = before.went.map(|t| t + linger);
    if !before.in_flight && spaced.is_none_or(|t| now >= t) {
        return true;
    }
    let wait = if before.in_flight {
        now + linger
    } else {
        spaced.unwrap_or(now)
    };
    now >= *until.get_or_insert(wait)
}

/// Pending forever without a deadline (a `select!` branch guarded off).
async fn sleep_until(until: Option<Instant>) {
    match until {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINGER: Duration = Duration::from_millis(2);

    fn ready_with(n: usize, until: &mut Option<Instant>, in_flight: bool, now: Instant) -> bool {
        let went = None;
        goes_now(n, 4, Before { in_flight, went }, LINGER, now, until)
    }

    #[test]
    fn a_small_batch_waits_only_while_one_is_in_flight_and_at_most_the_linger() {
        let t0 = Instant::now();
        let mut until = None;
        // Nothing in flight: at once, and no wait starts.
        assert!(ready_with(1, &mut until, false, t0));
        assert_eq!(until, None);
        // One in flight: it waits, from the first look on...
        assert!(!ready_with(1, &mut until, true, t0));
        assert_eq!(until, Some(t0 + LINGER));
        assert!(!ready_with(2, &mut until, true, t0 + LINGER / 2));
        // ...not longer than the linger, counted from its start.
        assert!(ready_with(2, &mut until, true, t0 + LINGER));
        // A full batch goes at once.
        let mut until = None;
        assert!(ready_with(4, &mut until, true, t0));
    }

    #[test]
    fn a_batch_goes_no_sooner_than_the_linger_after_the_one_before_it() {
        let t0 = Instant::now();
        let before = |in_flight| Before {
            in_flight,
            went: Some(t0),
        };
        // The one before went just now and is done: this one waits until
        // the linger since that one went...
        let mut until = None;
        assert!(!goes_now(
            1,
            4,
            before(false),
            LINGER,
            t0 + LINGER / 4,
            &mut until
        ));
        assert_eq!(until, Some(t0 + LINGER));
        assert!(!goes_now(
            2,
            4,
            before(false),
            LINGER,
            t0 + LINGER / 2,
            &mut until
        ));
        assert!(goes_now(
            2,
            4,
            before(false),
            LINGER,
            t0 + LINGER,
            &mut until
        ));
        // ...goes at once after a quiet spell...
        let mut until = None;
        assert!(goes_now(
            1,
            4,
            before(false),
            LINGER,
            t0 + LINGER * 3,
            &mut until
        ));
        assert_eq!(until, None);
        // ...and at once when full.
        assert!(goes_now(4, 4, before(false), LINGER, t0, &mut None));
        // A linger of 0 takes each batch at once.
        assert!(goes_now(1, 4, before(true), Duration::ZERO, t0, &mut None));
    }
}
