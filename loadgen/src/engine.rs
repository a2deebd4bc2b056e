//! The attack engine: `concurrency` workers, each with its own connection,
//! take request numbers from a shared counter and send them — as fast as they
//! go (closed model) or at their scheduled times (open model). Each result is
//! one [`Sample`]; a worker sends its samples a few at a time (a send per
//! request would wake the consumer per request), and the channel closes when
//! the attack ends.

use crate::client::ClientError;
use crate::schedule;
use crate::spec::{AttackSpec, Target};
use crate::wire::Wire;
use backon::{ExponentialBuilder, Retryable};
use flashgrid_wire::Accepted;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long one reserve may take before it counts as a timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Connect attempts per request before it counts as a transport error: a
/// flash crowd's connect storm overflows the listen backlog, and the kernel's
/// answer is a refused or dropped SYN; trying again is what real clients do.
const CONNECT_TRIES: u32 = 5;

/// Samples a worker gathers before it sends them.
const SAMPLES_AT_ONCE: usize = 32;
/// Held samples older than this are sent with the next one, or before the
/// worker sleeps until its next request (the live view stays live at low
/// rates). A `202` is sent at once: a hold sale's winner acts on it.
const SAMPLE_HOLD: Duration = Duration::from_millis(50);

/// One request's result.
#[derive(Debug, Clone)]
pub struct Sample {
    pub index: u64,
    /// When it was due (open model) or sent (closed model), from the start.
    pub at: Duration,
    pub latency: Duration,
    pub outcome: Result<u16, &'static str>,
    /// The body of a `202`.
    pub accepted: Option<Accepted>,
}

/// Counters shared with the consumer while the attack runs.
#[derive(Debug, Default)]
pub struct Live {
    pub connect_retries: AtomicU64,
    pub in_flight: AtomicU64,
}

/// Starts the attack; samples arrive on the returned channel until it closes.
pub fn run(spec: AttackSpec) -> (mpsc::Receiver<Vec<Sample>>, Arc<Live>, JoinHandle<()>) {
    // Bounded so a slow consumer slows the attack instead of growing memory.
    let (tx, rx) = mpsc::channel(1024);
    let live = Arc::new(Live::default());
    let spec = Arc::new(spec);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let l = live.clone();
    let handle = tokio::spawn(async move {
        let workers: Vec<_> = (0..spec.concurrency)
            .map(|n| {
                tokio::spawn(worker(
                    n,
                    spec.clone(),
                    next.clone(),
                    start,
                    tx.clone(),
                    l.clone(),
                ))
            })
            .collect();
        drop(tx);
        for w in workers {
            let _ = w.await;
        }
    });
    (rx, live, handle)
}

async fn worker(
    n: usize,
    spec: Arc<AttackSpec>,
    next: Arc<AtomicU64>,
    start: Instant,
    tx: mpsc::Sender<Vec<Sample>>,
    live: Arc<Live>,
) {
    let mut samples = Samples {
        tx,
        held: Vec::with_capacity(SAMPLES_AT_ONCE),
        since: Duration::ZERO,
    };
    let mut conn: Option<Wire> = None;
    // The request's bytes, written afresh into the same buffer each time.
    let mut request = Vec::with_capacity(512);
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if !schedule::in_run(i, spec.rate, spec.requests, spec.duration) {
            samples.flush().await;
            return;
        }
        // `due`: when the request should leave; `from`: what its latency
        // is measured from.
        let (due, from) = match spec.rate {
            Some(rate) => {
                let due = schedule::due(i, rate);
                if samples.would_outwait(due) && !samples.flush().await {
                    return;
                }
                let free_at = start.elapsed();
                tokio::time::sleep_until((start + due).into()).await;
                (due, schedule::measured_from(due, free_at, start.elapsed()))
            }
            None => {
                let now = start.elapsed();
                if spec.duration.is_some_and(|z| now >= z) {
                    samples.flush().await;
                    return;
                }
                (now, now)
            }
        };
        live.in_flight.fetch_add(1, Ordering::Relaxed);
        spec.write_request(n, i, &mut request);
        let outcome = send(spec.gateway(n), &request, &mut conn, &live).await;
        live.in_flight.fetch_sub(1, Ordering::Relaxed);
        let now = start.elapsed();
        let latency = now.saturating_sub(from);
        let (outcome, accepted) = match outcome {
            Ok((status, accepted)) => (Ok(status), accepted),
            Err(e) => {
                conn = None;
                (Err(e.kind()), None)
            }
        };
        let sample = Sample {
            index: i,
            at: due,
            latency,
            outcome,
            accepted,
        };
        if !samples.push(sample, now).await {
            return; // the consumer stopped the attack
        }
    }
}

/// A worker's samples not sent yet.
struct Samples {
    tx: mpsc::Sender<Vec<Sample>>,
    held: Vec<Sample>,
    /// When the oldest held sample was taken, from the start.
    since: Duration,
}

impl Samples {
    /// Holds `s`, taken at `now`; sends what is held once there are enough,
    /// the oldest waited long enough, or `s` is a `202`. `false`: the
    /// consumer is gone.
    async fn push(&mut self, s: Sample, now: Duration) -> bool {
        if self.held.is_empty() {
            self.since = now;
        }
        let urgent = s.accepted.is_some();
        self.held.push(s);
        if !urgent && self.held.len() < SAMPLES_AT_ONCE && now - self.since < SAMPLE_HOLD {
            return true;
        }
        self.flush().await
    }

    /// Whether waiting until `until` (from the start) would hold a sample
    /// longer than [`SAMPLE_HOLD`].
    fn would_outwait(&self, until: Duration) -> bool {
        !self.held.is_empty() && until.saturating_sub(self.since) >= SAMPLE_HOLD
    }

    async fn flush(&mut self) -> bool {
        if self.held.is_empty() {
            return true;
        }
        let batch = std::mem::replace(&mut self.held, Vec::with_capacity(SAMPLES_AT_ONCE));
        self.tx.send(batch).await.is_ok()
    }
}

async fn send(
    target: &Target,
    request: &[u8],
    conn: &mut Option<Wire>,
    live: &Live,
) -> Result<(u16, Option<Accepted>), ClientError> {
    if conn.as_ref().is_none_or(|c| !c.is_open()) {
        *conn = Some(connect(target, live).await?);
    }
    let c = conn.as_mut().expect("connected above");
    let answer = match c.send(request, REQUEST_TIMEOUT).await {
        // The server closed the kept-alive connection while it was idle
        // (a gateway restarted, an idle timeout): once more on a new one,
        // as any client does. The request carries its idempotency key, so
        // even one the server did read is the same purchase again.
        Err(ClientError::Stale) => {
            *conn = Some(connect(target, live).await?);
            let c = conn.as_mut().expect("connected above");
            c.send(request, REQUEST_TIMEOUT).await?
        }
        other => other?,
    };
    let accepted = if answer.status == 202 {
        serde_json::from_slice(answer.body).ok()
    } else {
        None
    };
    Ok((answer.status, accepted))
}

async fn connect(target: &Target, live: &Live) -> Result<Wire, ClientError> {
    // 20 ms, doubling, between the tries.
    let schedule = ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(20))
        .with_factor(2.0)
        .with_max_times(CONNECT_TRIES as usize - 1);
    (|| Wire::open(target))
        .retry(schedule)
        .sleep(tokio::time::sleep)
        .notify(|_, _| {
            live.connect_retries.fetch_add(1, Ordering::Relaxed);
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use flashgrid_wire::{ReservationId, Status};

    fn sample(accepted: bool) -> Sample {
        Sample {
            index: 0,
            at: Duration::ZERO,
            latency: Duration::ZERO,
            outcome: Ok(if accepted { 202 } else { 409 }),
            accepted: accepted.then(|| Accepted {
                reservation_id: ReservationId::random(),
                status: Status::Pending,
                status_url: "/s".into(),
            }),
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test]
    async fn samples_wait_for_company_but_never_long_and_a_202_goes_at_once() {
        let (tx, mut rx) = mpsc::channel(8);
        let mut s = Samples {
            tx,
            held: Vec::new(),
            since: Duration::ZERO,
        };
        assert!(s.push(sample(false), ms(0)).await);
        assert!(rx.try_recv().is_err(), "one 409 is held");
        assert!(s.push(sample(true), ms(1)).await);
        assert_eq!(
            rx.try_recv().unwrap().len(),
            2,
            "a 202 takes the held along"
        );

        assert!(s.push(sample(false), ms(10)).await);
        assert!(!s.would_outwait(ms(59)));
        assert!(s.would_outwait(ms(60)), "a sleep past the hold sends first");
        assert!(s.push(sample(false), ms(60)).await);
        assert_eq!(rx.try_recv().unwrap().len(), 2, "the oldest waited 50 ms");
        assert!(!s.would_outwait(ms(1000)), "nothing held, nothing to send");

        for k in 0..SAMPLES_AT_ONCE as u64 {
            assert!(
                s.push(sample(false), ms(100) + Duration::from_micros(k))
                    .await
            );
        }
        assert_eq!(rx.try_recv().unwrap().len(), SAMPLES_AT_ONCE);
        assert!(s.flush().await);
        assert!(rx.try_recv().is_err(), "nothing left to flush");

        drop(rx);
        assert!(!s.push(sample(true), ms(200)).await, "the consumer is gone");
    }
}
