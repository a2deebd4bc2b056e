//! Retrying one batch: while a service is away the batch is tried again,
//! with backoff, for as long as it takes; a batch that the services keep
//! *refusing* while they answer is reported stuck, to be taken apart.

use super::batch::{BatchError, BatchReport, Decider};
use crate::backoff::Backoff;
use crate::queue::Queued;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Refusals in a row (a service answered, refusing the work) after which a
/// batch whose services answer is deemed to hold a reservation that can never
/// be processed (about 0.75 s of backoff).
const STUCK_AFTER: u32 = 5;

/// Longest one attempt at a batch may take before it is abandoned and retried.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(10);

/// How a batch ended.
#[derive(Debug)]
pub(super) enum Processed {
    Done(BatchReport),
    /// Shutdown came first; nothing acked.
    Shutdown,
    /// It failed `STUCK_AFTER` times in a row although PostgreSQL and Redis
    /// answer: something in it fails whatever the retries.
    Stuck(BatchError),
}

/// Processes a batch, retrying with backoff while a service is away;
/// `decided` is cancelled once an attempt's decisions are over (see
/// `Decider::process_in_turn`).
pub(super) async fn until_done(
    decider: &Decider,
    items: &[Queued],
    decided: &CancellationToken,
    shutdown: &CancellationToken,
) -> Processed {
    let mut backoff = Backoff::reconnect(Duration::from_millis(50));
    let mut refusals = 0;
    loop {
        // A service that went silent (no reset, no answer) must not hold the
        // batch for TCP's retransmission timeout: every step is idempotent,
        // so an abandoned attempt is simply retried.
        let attempt =
            tokio::time::timeout(PROCESS_TIMEOUT, decider.process_in_turn(items, decided)).await;
        let e = match attempt.unwrap_or(Err(BatchError::TimedOut(PROCESS_TIMEOUT))) {
            Ok(report) => {
                tracing::debug!(reservations = items.len(), ?report, "batch committed");
                return Processed::Done(report);
            }
            Err(e) => e,
        };
        // Only refusals of the work itself count; a service that cannot
        // work right now is waited for, however long it takes.
        if e.is_refusal() {
            refusals += 1;
        } else {
            refusals = 0;
        }
        if refusals >= STUCK_AFTER {
            if decider.services_answer().await {
                return Processed::Stuck(e);
            }
            refusals = 0;
        }
        let delay = backoff.next_delay();
        tracing::warn!(error = %e, reservations = items.len(), "batch not committed, retrying in {delay:?} (nothing acked)");
        tokio::select! {
            _ = shutdown.cancelled() => return Processed::Shutdown,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}
