//! The worker's decisions, summed between two reports and published to every
//! gateway's feed once per interval (never once per reservation), with the
//! worker's own view (its rates, totals and the nodes it reaches).

use super::batch::BatchReport;
use crate::names::Namespace;
use crate::notify::{self, Notice, WorkerReport};
use flashgrid_wire::{DaemonKind, DaemonView, WorkerStats};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often a worker reports its decisions to the gateways' feeds.
const REPORT_EVERY: Duration = Duration::from_millis(250);

/// Decisions not reported yet.
#[derive(Debug, Default)]
pub(super) struct Unreported {
    confirmed: AtomicU64,
    rejected: AtomicU64,
    written: AtomicU64,
    revoked: AtomicU64,
    handed_back: AtomicU64,
    expired: AtomicU64,
}

impl Unreported {
    pub(super) fn add(&self, r: &BatchReport) {
        self.confirmed.fetch_add(r.confirmed, Ordering::Relaxed);
        self.rejected.fetch_add(r.rejected, Ordering::Relaxed);
        self.written.fetch_add(r.written, Ordering::Relaxed);
        self.revoked.fetch_add(r.revoked, Ordering::Relaxed);
    }

    /// Seats of holds the sweeper expired.
    pub(super) fn expired(&self, seats: u64) {
        self.expired.fetch_add(seats, Ordering::Relaxed);
    }

    /// Messages handed back to the queue (see `Consume::hand_back`).
    pub(super) fn handed_back(&self, messages: u64) {
        self.handed_back.fetch_add(messages, Ordering::Relaxed);
    }

    fn take(&self) -> WorkerReport {
        WorkerReport {
            confirmed: self.confirmed.swap(0, Ordering::Relaxed),
            rejected: self.rejected.swap(0, Ordering::Relaxed),
            written: self.written.swap(0, Ordering::Relaxed),
            revoked: self.revoked.swap(0, Ordering::Relaxed),
            handed_back: self.handed_back.swap(0, Ordering::Relaxed),
            expired: self.expired.swap(0, Ordering::Relaxed),
        }
    }
}

/// Who reports: the worker's name and its view of the nodes.
pub(super) struct Me {
    pub id: String,
    pub nodes: crate::reach::Nodes,
}

/// Publishes what this worker decided, once per interval, until `stop`;
/// then a last report.
pub(super) async fn report(
    unreported: Arc<Unreported>,
    me: Me,
    redis: crate::store::Store,
    ns: Namespace,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(REPORT_EVERY);
    // A late tick is not made up for with a burst (the rates would jump).
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut totals = WorkerReport::default();
    let mut last = tokio::time::Instant::now();
    loop {
        let stopping = tokio::select! {
            _ = stop.cancelled() => true,
            _ = tick.tick() => false,
        };
        // The interval the decisions were taken over ends where they are.
        let r = unreported.take();
        let now = tokio::time::Instant::now();
        let view = totals.add(&r).view(&r, now.duration_since(last), &me);
        last = now;
        // Bounded: a Redis that is away must not stretch the intervals nor
        // hold up the worker's shutdown (the gateways notice the silence).
        let publish = async {
            if r != WorkerReport::default() {
                notify::publish(&redis, &ns, &Notice::Stats(r)).await;
            }
            notify::publish(&redis, &ns, &Notice::Daemon(Box::new(view))).await;
            if stopping {
                // Gone on purpose: the gateways drop it at once instead of
                // showing it silent.
                let left = Notice::Left(DaemonKind::Worker, me.id.clone());
                notify::publish(&redis, &ns, &left).await;
            }
        };
        let _ = tokio::time::timeout(REPORT_EVERY * 4, publish).await;
        if stopping {
            return;
        }
    }
}

impl WorkerReport {
    /// Adds one interval's decisions to these totals.
    fn add(&mut self, r: &WorkerReport) -> &Self {
        self.confirmed += r.confirmed;
        self.rejected += r.rejected;
        self.written += r.written;
        self.revoked += r.revoked;
        self.handed_back += r.handed_back;
        self.expired += r.expired;
        self
    }

    /// The worker's view: these totals, and `interval`'s decisions as rates.
    fn view(&self, interval: &WorkerReport, over: Duration, me: &Me) -> DaemonView {
        let secs = over.as_secs_f64().max(1e-3);
        let rate = |n: u64| n as f64 / secs;
        DaemonView {
            id: me.id.clone(),
            kind: DaemonKind::Worker,
            listen: None,
            silent_ms: 0,
            gateway: None,
            latency_buckets: Vec::new(),
            worker: Some(WorkerStats {
                confirmed_per_s: rate(interval.confirmed),
                rejected_per_s: rate(interval.rejected),
                db_writes_per_s: rate(interval.written),
                confirmed_total: self.confirmed,
                rejected_total: self.rejected,
                db_writes_total: self.written,
                expired_per_s: rate(interval.expired),
                expired_total: self.expired,
            }),
            nodes: me.nodes.borrow().as_ref().clone(),
        }
    }
}
