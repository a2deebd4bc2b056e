//! The worker's decisions, summed between two reports and published to every
//! gateway's feed once per interval (never once per reservation).

use super::batch::BatchReport;
use crate::names::Namespace;
use crate::notify::{self, Notice, WorkerReport};
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
}

impl Unreported {
    pub(super) fn add(&self, r: &BatchReport) {
        self.confirmed.fetch_add(r.confirmed, Ordering::Relaxed);
        self.rejected.fetch_add(r.rejected, Ordering::Relaxed);
        self.written.fetch_add(r.written, Ordering::Relaxed);
        self.revoked.fetch_add(r.revoked, Ordering::Relaxed);
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
        }
    }
}

/// Publishes what this worker decided, once per interval, until `stop`;
/// then a last report.
pub(super) async fn report(
    unreported: Arc<Unreported>,
    redis: crate::store::Store,
    ns: Namespace,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(REPORT_EVERY);
    loop {
        let stopping = tokio::select! {
            _ = stop.cancelled() => true,
            _ = tick.tick() => false,
        };
        let r = unreported.take();
        if r != WorkerReport::default() {
            notify::publish(&redis, &ns, &Notice::Stats(r)).await;
        }
        if stopping {
            return;
        }
    }
}
