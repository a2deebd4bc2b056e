//! The fault matrix: a burst of real-client buyers against a small stock,
//! one fault injected mid-burst, then the end state judged against
//! PostgreSQL. `flashgrid-faults` (`just faults`, `just soak`) and the
//! `faults` test run it.
//!
//! Every run is a [`Stack`] of its own (database, namespace), with both
//! daemons as real processes reaching PostgreSQL, Redis and RabbitMQ through
//! [`Proxy`]s the run controls.

pub mod buyers;
pub mod endstate;
pub mod report;
pub mod sabotage;
pub mod scenario;
pub mod verdict;

pub use report::Report;
pub use scenario::Scenario;
pub use verdict::Verdicts;

use anyhow::{Context, bail};
use buyers::{Answer, Plan};
use flashgrid_testkit::{Proxy, Role, Stack, TOKEN};
use flashgrid_wire::{EventId, EventView, ReservationId, Status};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The daemons' binaries.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub gateway: PathBuf,
    pub worker: PathBuf,
}

impl Binaries {
    /// The ones built beside the running executable (`target/<profile>/`).
    pub fn beside_current_exe() -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("where am I")?;
        Self::beside(exe.parent().context("the executable's directory")?)
    }

    /// The ones in `dir`.
    pub fn beside(dir: &Path) -> anyhow::Result<Self> {
        let b = Self {
            gateway: dir.join("flashgrid-gateway"),
            worker: dir.join("flashgrid-worker"),
        };
        for p in [&b.gateway, &b.worker] {
            if !p.is_file() {
                bail!(
                    "{} is missing: build the daemons first (`cargo build --release --workspace --bins`)",
                    p.display()
                );
            }
        }
        Ok(b)
    }
}

/// How big a run is.
#[derive(Debug, Clone)]
pub struct Options {
    pub binaries: Binaries,
    pub buyers: usize,
    pub capacity: u32,
    /// Buyers arrive evenly over this long.
    pub spread: Duration,
    /// Daemon logs go here, one file per daemon and run.
    pub log_dir: PathBuf,
    /// A defect to run the daemons with (`binaries.worker` is then the
    /// sabotaged worker for a worker's defect): the run must fail.
    pub sabotage: Option<sabotage::Sabotage>,
}

impl Options {
    /// 3,000 buyers for 300 seats, arriving over 3 s.
    pub fn new(binaries: Binaries, log_dir: PathBuf) -> Self {
        Self {
            binaries,
            buyers: 3_000,
            capacity: 300,
            spread: Duration::from_secs(3),
            log_dir,
            sabotage: None,
        }
    }
}

/// Seats a user may hold: one, so that the buyers' second tries
/// ([`buyers::user_of`]) test the limit.
const PER_USER_LIMIT: u32 = 1;
/// Buyers give up retrying a purchase after this long.
const PURCHASE_WINDOW: Duration = Duration::from_secs(30);
/// A `202` still undecided this long after the burst began is lost.
const DECIDE_WINDOW: Duration = Duration::from_secs(60);
/// How long the queue may take to drain once the buyers are done.
const DRAIN_WINDOW: Duration = Duration::from_secs(30);

/// Runs one scenario on a stack of its own and judges it.
pub async fn run(scenario: Scenario, opts: &Options) -> anyhow::Result<Report> {
    let started = Instant::now();
    let stack = Stack::empty().await;
    // The worker reaches PostgreSQL through a proxy of its own, so that a
    // stall there holds its commits and nothing of the gateway's.
    let (postgres, worker_postgres, redis, rabbitmq) = (
        Proxy::start(5432).await,
        Proxy::start(5432).await,
        Proxy::start(6379).await,
        Proxy::start(5672).await,
    );
    let db_via = |p: &Proxy| stack.db_url.replace(":5432/", &format!(":{}/", p.port));
    let mut env = vec![
        ("REDIS_URL", format!("redis://127.0.0.1:{}", redis.port)),
        (
            "AMQP_URL",
            format!("amqp://guest:guest@127.0.0.1:{}/%2f", rabbitmq.port),
        ),
    ];
    if let Some(s) = opts.sabotage.filter(|s| s.in_worker()) {
        env.push((sabotage::ENV, s.name().to_owned()));
    }
    std::fs::create_dir_all(&opts.log_dir)
        .with_context(|| format!("create {}", opts.log_dir.display()))?;
    let logs: Vec<PathBuf> = ["gateway", "worker"]
        .iter()
        .map(|d| {
            opts.log_dir
                .join(format!("{}-{}-{d}.log", scenario.name(), stack.ns))
        })
        .collect();
    let gateway_env: Vec<_> = env
        .iter()
        .cloned()
        .chain([("DATABASE_URL", db_via(&postgres))])
        .collect();
    let worker_env: Vec<_> = env
        .iter()
        .cloned()
        .chain([("DATABASE_URL", db_via(&worker_postgres))])
        .collect();
    let start = |which: Role| {
        let (bin, log, env): (&Path, &Path, _) = match which {
            Role::Gateway => (&opts.binaries.gateway, &logs[0], &gateway_env),
            Role::Worker => (&opts.binaries.worker, &logs[1], &worker_env),
        };
        stack.start_process_with(which, bin, env, Some(log));
    };
    start(Role::Worker);
    start(Role::Gateway);
    stack.wait_ready().await;

    // Buyers and the verdicts reach the gateway here: through a lying
    // status route when that is the sabotage.
    let lying = match opts.sabotage {
        Some(sabotage::Sabotage::UnknownIsRejected) => {
            Some(sabotage::status::LyingStatus::start(&stack.url).await?)
        }
        _ => None,
    };
    let base = lying
        .as_ref()
        .map_or(stack.url.as_str(), |l| l.url.as_str());

    let http = buyers::client();
    let event = EventId::parse("fault-sale").expect("a valid event id");
    create_event(&http, base, &event, opts.capacity).await?;

    let burst_start = Instant::now();
    let plan = Arc::new(Plan {
        base: base.to_owned(),
        event: event.clone(),
        copies: scenario.copies(),
        // In every scenario: a wiped rejection for the limit is derived
        // again from PostgreSQL's holdings.
        second_tries: true,
        purchase_deadline: burst_start + PURCHASE_WINDOW,
        decide_deadline: burst_start + DECIDE_WINDOW,
    });
    let crowd = buyers::crowd(&http, plan, opts.buyers, opts.spread);
    let reach = scenario::Reach {
        stack: &stack,
        postgres: &postgres,
        worker_postgres: &worker_postgres,
        redis: &redis,
        rabbitmq: &rabbitmq,
        restart: &start,
    };
    let fault = async {
        let landed = wait_for_sales(&stack, &event, scenario.fires_at(opts.capacity)).await?;
        let at = burst_start.elapsed();
        let detail = scenario::inject(scenario, &reach).await?;
        let ended = Instant::now();
        let ready = ready_within(&http, base, Duration::from_secs(30)).await;
        Ok::<_, anyhow::Error>((landed, at, detail, ready.then(|| ended.elapsed())))
    };
    let (journeys, fault) = tokio::join!(crowd, fault);
    let (landed, fault_at, detail, ready_after) = fault?;

    // The end state is judged once nothing is on its way: a duplicate still
    // in the queue would be counted after the snapshot.
    let ns = stack.namespace();
    let queue = endstate::drain(&ns, DRAIN_WINDOW).await?;
    let mut dead = Vec::new();
    if !queue.drained() {
        dead.push(format!(
            "the queue did not drain within {DRAIN_WINDOW:?}: {} ready, {} unacked",
            queue.ready, queue.unacked
        ));
    }
    if queue.consumers == 0 {
        dead.push("no worker consumes the queue at the end".to_owned());
    }

    // The end state, as PostgreSQL and the API tell it; the rows and the
    // counter from one snapshot of the database.
    let mut tx = stack.pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *tx)
        .await?;
    let rows: Vec<(ReservationId, String, i32)> = sqlx::query_as::<_, (uuid::Uuid, String, i32)>(
        "SELECT reservation_id, user_id, quantity::int4 FROM reservations WHERE event_id = $1",
    )
    .bind(event.as_str())
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|(id, u, q)| (ReservationId(id), u, q))
    .collect();
    let (counter, revoked): (i32, i32) =
        sqlx::query_as("SELECT confirmed, revoked FROM events WHERE event_id = $1")
            .bind(event.as_str())
            .fetch_one(&mut *tx)
            .await?;
    tx.commit().await?;
    let view = event_view(&http, base, &event).await;
    // Each read through the status URL its buyer was given (a receipt the
    // gateway can answer from even when Redis forgot).
    let accepted: Vec<(ReservationId, String)> = journeys
        .iter()
        .flat_map(|j| {
            j.ids.iter().map(|id| {
                let url = j.status_urls.get(id).cloned();
                (
                    *id,
                    url.unwrap_or_else(|| flashgrid_wire::status_path(&event, id)),
                )
            })
        })
        .collect();
    let statuses = final_statuses(&http, base, &accepted).await;
    let cache = match endstate::cache(flashgrid_testkit::REDIS, &ns, &event).await {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, "could not read Redis at the end");
            None
        }
    };
    if ready_after.is_none() {
        dead.push("the gateway was not ready 30 s after the fault".to_owned());
    }
    for (which, name) in [(Role::Gateway, "gateway"), (Role::Worker, "worker")] {
        if stack.process_alive(which) != Some(true) {
            dead.push(format!("the {name} process exited"));
        }
    }

    let facts = verdict::Facts {
        event: &event,
        capacity: opts.capacity,
        per_user_limit: PER_USER_LIMIT,
        journeys: &journeys,
        rows: &rows,
        counter: i64::from(counter),
        revoked: i64::from(revoked),
        view: view.as_ref(),
        statuses: &statuses,
        dead: &dead,
        cache: cache.as_ref(),
    };
    let (verdicts, problems) = verdict::judge(&facts);
    let mut tally = buyers::Attempts::default();
    for j in &journeys {
        tally.add(&j.tally);
    }
    let count = |a: Answer| journeys.iter().filter(|j| j.answer == a).count();
    Ok(Report {
        scenario,
        verdicts,
        problems,
        capacity: opts.capacity,
        buyers: journeys.len(),
        sold: rows.iter().map(|r| i64::from(r.2)).sum(),
        accepted: count(Answer::Accepted),
        sold_out: count(Answer::SoldOut),
        gave_up: count(Answer::GaveUp),
        tally,
        landed_at_sold: landed,
        detail,
        fault_at,
        ready_after,
        wall: started.elapsed(),
        logs,
    })
}

async fn create_event(
    http: &buyers::Http,
    base: &str,
    event: &EventId,
    capacity: u32,
) -> anyhow::Result<()> {
    let body = serde_json::json!({
        "event_id": event, "name": "Fault drill", "capacity": capacity,
        "per_user_limit": PER_USER_LIMIT,
    });
    let req = http::Request::post(format!("{base}/admin/events"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))?;
    let resp = http.request(req).await.context("create the event")?;
    anyhow::ensure!(
        resp.status() == http::StatusCode::CREATED,
        "creating the event answered {}",
        resp.status()
    );
    Ok(())
}

async fn get_json<T: serde::de::DeserializeOwned>(http: &buyers::Http, uri: String) -> Option<T> {
    use http_body_util::BodyExt;
    let req = http::Request::get(uri)
        .body(http_body_util::Full::default())
        .ok()?;
    let resp = tokio::time::timeout(Duration::from_secs(10), http.request(req))
        .await
        .ok()?
        .ok()?;
    if resp.status() != http::StatusCode::OK {
        return None;
    }
    let bytes = resp.into_body().collect().await.ok()?.to_bytes();
    serde_json::from_slice(&bytes).ok()
}

async fn event_view(http: &buyers::Http, base: &str, event: &EventId) -> Option<EventView> {
    get_json(http, format!("{base}/events/{event}")).await
}

/// Every accepted reservation's status, read once more at the end through
/// its status URL (long-polled).
async fn final_statuses(
    http: &buyers::Http,
    base: &str,
    accepted: &[(ReservationId, String)],
) -> HashMap<ReservationId, Option<Status>> {
    use futures::StreamExt;
    futures::stream::iter(accepted.iter().map(|(id, path)| async move {
        // Long-polled: a decision may still be on its way (8 s at most,
        // within the 10 s a read may take here).
        let v: Option<flashgrid_wire::ReservationView> =
            get_json(http, format!("{base}{path}?wait_ms=8000")).await;
        (*id, v.map(|v| v.status).filter(|s| *s != Status::Pending))
    }))
    .buffer_unordered(32)
    .collect()
    .await
}

/// Whether `/readyz` answers 200 before `limit`.
async fn ready_within(http: &buyers::Http, base: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let v: Option<serde_json::Value> = get_json(http, format!("{base}/readyz")).await;
        if v.is_some() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Waits until PostgreSQL holds at least `seats` confirmed; returns how many.
async fn wait_for_sales(stack: &Stack, event: &EventId, seats: u32) -> anyhow::Result<i64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let sold: i32 = sqlx::query_scalar("SELECT confirmed FROM events WHERE event_id = $1")
            .bind(event.as_str())
            .fetch_one(&stack.pool)
            .await?;
        if i64::from(sold) >= i64::from(seats) {
            return Ok(sold.into());
        }
        if Instant::now() > deadline {
            bail!("the sale never reached {seats} seats before the fault (at {sold})");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
