//! The attack engine: `concurrency` workers, each with its own connection,
//! take request numbers from a shared counter and send them — as fast as they
//! go (closed model) or at their scheduled times (open model). Each result is
//! one [`Sample`] on the channel; the channel closes when the attack ends.

use crate::client::{self, ClientError, Connection};
use crate::schedule;
use crate::spec::{AttackSpec, Target};
use backon::{ExponentialBuilder, Retryable};
use flashgrid_wire::Accepted;
use http::Method;
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
pub fn run(spec: AttackSpec) -> (mpsc::Receiver<Sample>, Arc<Live>, JoinHandle<()>) {
    // Bounded so a slow consumer slows the attack instead of growing memory.
    let (tx, rx) = mpsc::channel(16_384);
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
    tx: mpsc::Sender<Sample>,
    live: Arc<Live>,
) {
    let mut conn: Option<Connection> = None;
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if !schedule::in_run(i, spec.rate, spec.requests, spec.duration) {
            return;
        }
        let due = match spec.rate {
            Some(rate) => {
                let due = schedule::due(i, rate);
                tokio::time::sleep_until((start + due).into()).await;
                due
            }
            None => {
                let now = start.elapsed();
                if spec.duration.is_some_and(|z| now >= z) {
                    return;
                }
                now
            }
        };
        live.in_flight.fetch_add(1, Ordering::Relaxed);
        let outcome = send(&spec, n, i, &mut conn, &live).await;
        live.in_flight.fetch_sub(1, Ordering::Relaxed);
        let latency = start.elapsed().saturating_sub(due);
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
        if tx.send(sample).await.is_err() {
            return; // the consumer stopped the attack
        }
    }
}

async fn send(
    spec: &AttackSpec,
    n: usize,
    i: u64,
    conn: &mut Option<Connection>,
    live: &Live,
) -> Result<(u16, Option<Accepted>), ClientError> {
    if conn.as_ref().is_none_or(|c| !c.is_open()) {
        *conn = Some(connect(spec.gateway(n), live).await?);
    }
    let c = conn.as_mut().expect("connected above");
    let key = spec.key(i);
    let req = client::request(
        spec.gateway(n),
        Method::POST,
        "/reserve",
        &[("idempotency-key", &key)],
        Some(spec.body(i)),
    );
    let resp = c.send(req, REQUEST_TIMEOUT).await?;
    let status = resp.status().as_u16();
    let accepted = if status == 202 {
        serde_json::from_slice(resp.body()).ok()
    } else {
        None
    };
    Ok((status, accepted))
}

async fn connect(target: &Target, live: &Live) -> Result<Connection, ClientError> {
    // 20 ms, doubling, between the tries.
    let schedule = ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(20))
        .with_factor(2.0)
        .with_max_times(CONNECT_TRIES as usize - 1);
    (|| Connection::open(target))
        .retry(schedule)
        .sleep(tokio::time::sleep)
        .notify(|_, _| {
            live.connect_retries.fetch_add(1, Ordering::Relaxed);
        })
        .await
}
