//! The fault matrix: a burst of real-client buyers against a small stock,
//! one fault injected mid-burst, then the end state judged against
//! PostgreSQL. `flashgrid-faults` (`just faults`, `just soak`) and the
//! `faults` test run it.
//!
//! Every run is a [`Stack`] of its own (database, namespace), with both
//! daemons as real processes reaching PostgreSQL, Redis and RabbitMQ through
//! [`Proxy`]s the run controls: one gateway and one worker, or two (or more)
//! of each ([`Options::instances`]) sharing the services as a scaled-out
//! deployment does. On the local clusters ([`Options::clusters`]) every
//! Redis and RabbitMQ node has a proxy of its own, and the cluster drills
//! ([`Scenario::CLUSTER`]) kill or cut nodes.

pub mod buyers;
pub mod cluster;
pub mod endstate;
pub mod holds;
pub mod report;
pub mod sabotage;
pub mod scenario;
pub mod verdict;

pub use report::Report;
pub use scenario::Scenario;
pub use verdict::Verdicts;

use anyhow::{Context, bail};
use buyers::{Answer, Plan};
use flashgrid_testkit::{Instance, Proxy, Role, Services, Stack, TOKEN};
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
    /// Gateways, and workers, the run starts (at least the scenario's
    /// [`Scenario::min_instances`]): buyer `i` buys through gateway
    /// `i % n` and reads its status through the next one.
    pub instances: usize,
    /// The local clusters to run on (`scripts/cluster.sh`'s), instead of
    /// this machine's Redis and RabbitMQ.
    pub clusters: Option<cluster::Clusters>,
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
            instances: 1,
            clusters: None,
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

/// The most instances of each daemon a run starts: each is a process, and
/// the matrix runs on a couple of cores.
pub const MAX_INSTANCES: usize = 4;

/// Runs one scenario on a stack of its own and judges it.
pub async fn run(scenario: Scenario, opts: &Options) -> anyhow::Result<Report> {
    let started = Instant::now();
    let instances = opts.instances.max(scenario.min_instances());
    anyhow::ensure!(
        (1..=MAX_INSTANCES).contains(&instances),
        "instances must be 1..={MAX_INSTANCES}, not {instances}"
    );
    anyhow::ensure!(
        !scenario.needs_cluster() || opts.clusters.is_some(),
        "{} drills a cluster: run it with --cluster",
        scenario.name()
    );
    anyhow::ensure!(
        opts.clusters.is_none() || scenario.runs_on_cluster(),
        "{} acts on this machine's Redis: run it without --cluster",
        scenario.name()
    );
    let services = opts
        .clusters
        .as_ref()
        .map_or_else(Services::local, |c| c.services.clone());
    let stack = Stack::on(services, instances).await;
    // Each worker reaches PostgreSQL through a proxy of its own, so that a
    // stall there holds its commits and nothing of the gateways' or the
    // other workers'. Every Redis and RabbitMQ node has one, shared by
    // the daemons.
    let postgres = Proxy::start(5432).await;
    let (redis_ports, amqp_ports) = match &opts.clusters {
        Some(c) => (c.redis_ports(), c.amqp_ports()),
        None => (vec![6379], vec![5672]),
    };
    let mut redis = Vec::with_capacity(redis_ports.len());
    for &p in &redis_ports {
        redis.push(Proxy::start(p).await);
    }
    let mut rabbitmq = Vec::with_capacity(amqp_ports.len());
    for &p in &amqp_ports {
        rabbitmq.push(Proxy::start(p).await);
    }
    let mut worker_postgres = Vec::with_capacity(instances);
    for _ in 0..instances {
        worker_postgres.push(Proxy::start(5432).await);
    }
    let db_via = |p: &Proxy| stack.db_url.replace(":5432/", &format!(":{}/", p.port));
    let amqp_url = rabbitmq
        .iter()
        .map(|p| format!("amqp://guest:guest@127.0.0.1:{}/%2f", p.port))
        .collect::<Vec<_>>()
        .join(",");
    let mut env = vec![("AMQP_URL", amqp_url)];
    if let Some(c) = opts
        .clusters
        .as_ref()
        .filter(|_| !scenario.cuts_redis_nodes())
    {
        // Straight to the nodes: a killed node refuses connections, as it
        // does without a proxy in between.
        env.push(("REDIS_URL", c.services.redis_url.clone()));
    } else if opts.clusters.is_some() {
        // The daemons are given the proxies as seeds; the nodes announce
        // their own ports, which the map sends through the proxies too.
        let seeds: Vec<String> = redis
            .iter()
            .map(|p| format!("127.0.0.1:{}", p.port))
            .collect();
        let map: Vec<String> = redis_ports
            .iter()
            .zip(&redis)
            .map(|(node, p)| format!("127.0.0.1:{node}=127.0.0.1:{}", p.port))
            .collect();
        env.push(("REDIS_URL", format!("redis+cluster://{}", seeds.join(","))));
        env.push(("FLASHGRID_REDIS_NODE_MAP", map.join(",")));
    } else {
        env.push(("REDIS_URL", format!("redis://127.0.0.1:{}", redis[0].port)));
    }
    if let Some(s) = opts.sabotage.filter(|s| s.in_worker()) {
        env.push((sabotage::ENV, s.name().to_owned()));
    }
    std::fs::create_dir_all(&opts.log_dir)
        .with_context(|| format!("create {}", opts.log_dir.display()))?;
    // Every daemon instance, gateways first; one log file each.
    let daemons: Vec<Instance> = [Role::Gateway, Role::Worker]
        .into_iter()
        .flat_map(|role| (0..instances).map(move |n| Instance { role, n }))
        .collect();
    let logs: HashMap<Instance, PathBuf> = daemons
        .iter()
        .map(|&d| {
            let role = match d.role {
                Role::Gateway => "gateway",
                Role::Worker => "worker",
            };
            // One instance keeps the names it always had.
            let name = if instances == 1 {
                role.to_owned()
            } else {
                format!("{role}{}", d.n)
            };
            let file = format!("{}-{}-{name}.log", scenario.name(), stack.ns);
            (d, opts.log_dir.join(file))
        })
        .collect();
    let gateway_env: Vec<_> = env
        .iter()
        .cloned()
        .chain([("DATABASE_URL", db_via(&postgres))])
        .collect();
    let worker_env: Vec<Vec<_>> = worker_postgres
        .iter()
        .map(|p| {
            env.iter()
                .cloned()
                .chain([("DATABASE_URL", db_via(p))])
                .collect()
        })
        .collect();
    let start = |which: Instance| {
        let (bin, env): (&Path, _) = match which.role {
            Role::Gateway => (&opts.binaries.gateway, &gateway_env),
            Role::Worker => (&opts.binaries.worker, &worker_env[which.n]),
        };
        stack.start_process_with(which, bin, env, Some(&logs[&which]));
    };
    // Workers first, as ever, then gateway 0, which the event is created
    // through. The other gateways start after it, so that they load it
    // with their catalog before serving: a gateway learns of an event
    // created through another by a notice, and a purchase arriving in the
    // milliseconds before it is answered `404 unknown_event` — a window a
    // real sale (created long before it opens) never meets, but a burst
    // starting right after the creation does.
    for &d in daemons.iter().filter(|d| d.role == Role::Worker) {
        start(d);
    }
    start(Instance::gateway(0));
    stack.wait_ready().await;
    let http = buyers::client();
    let event = EventId::parse("fault-sale").expect("a valid event id");
    create_event(&http, &stack.gateway_url(0), &event, opts.capacity).await?;
    for n in 1..instances {
        start(Instance::gateway(n));
    }
    for n in 1..instances {
        stack.wait_gateway_ready(n).await;
    }

    // Buyers and the verdicts reach the gateways here: through a lying
    // status route in front of each when that is the sabotage.
    let mut lying = Vec::new();
    if opts.sabotage == Some(sabotage::Sabotage::UnknownIsRejected) {
        for n in 0..instances {
            lying.push(sabotage::status::LyingStatus::start(&stack.gateway_url(n)).await?);
        }
    }
    let gateways: Vec<String> = if lying.is_empty() {
        (0..instances).map(|n| stack.gateway_url(n)).collect()
    } else {
        lying.iter().map(|l| l.url.clone()).collect()
    };
    let base = gateways[0].as_str();

    let burst_start = Instant::now();
    let plan = Arc::new(Plan {
        gateways: gateways.clone(),
        event: event.clone(),
        copies: scenario.copies(),
        // In every scenario: a wiped rejection for the limit is derived
        // again from PostgreSQL's holdings.
        second_tries: true,
        purchase_deadline: burst_start + PURCHASE_WINDOW,
        decide_deadline: burst_start + DECIDE_WINDOW,
    });
    let crowd = buyers::crowd(&http, plan.clone(), opts.buyers, opts.spread);
    let reach = scenario::Reach {
        stack: &stack,
        event: &event,
        postgres: &postgres,
        worker_postgres: &worker_postgres,
        redis: &redis,
        redis_ports: &redis_ports,
        rabbitmq: &rabbitmq,
        clusters: opts.clusters.as_ref(),
        restart: &start,
    };
    let fault = async {
        // Each step once PostgreSQL holds its seats; the first step's
        // moment is the fault's.
        let mut carry = scenario::Carry::default();
        let (mut first, mut details) = (None, Vec::new());
        for (step, seats) in scenario.fires_at(opts.capacity).into_iter().enumerate() {
            let landed = wait_for_sales(&stack, &event, seats).await?;
            let at = burst_start.elapsed();
            first.get_or_insert((landed, at));
            let detail = scenario::inject(scenario, step, &reach, &mut carry).await?;
            details.push(if step == 0 {
                detail
            } else {
                format!(
                    "then at {:.2} s with {landed} sold: {detail}",
                    at.as_secs_f64()
                )
            });
        }
        let (landed, at) = first.context("a fault has at least one step")?;
        let ended = Instant::now();
        let ready = every_ready_within(&http, &gateways, Duration::from_secs(30)).await;
        Ok::<_, anyhow::Error>((
            landed,
            at,
            details.join("; "),
            ready.then(|| ended.elapsed()),
        ))
    };
    let (journeys, fault) = tokio::join!(crowd, fault);
    let (landed, fault_at, detail, ready_after) = fault?;

    // The end state is judged once nothing is on its way: a duplicate still
    // in the queue would be counted after the snapshot.
    let ns = stack.namespace();
    let queue = endstate::drain(opts.clusters.as_ref(), &stack.topology(), DRAIN_WINDOW).await?;
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
    // Through the gateway each buyer reads from (another than it bought
    // through, with two or more).
    let event_ref = &event;
    let accepted: Vec<(ReservationId, String)> = journeys
        .iter()
        .enumerate()
        .flat_map(|(i, j)| {
            let via = plan.read_through(i);
            j.ids.iter().map(move |id| {
                let path = j.status_urls.get(id).cloned();
                let path = path.unwrap_or_else(|| flashgrid_wire::status_path(event_ref, id));
                (*id, format!("{via}{path}"))
            })
        })
        .collect();
    let statuses = final_statuses(&http, &accepted).await;
    let cache = match endstate::cache(&stack.services.redis_url, &ns, &event).await {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, "could not read Redis at the end");
            None
        }
    };
    if ready_after.is_none() {
        dead.push("a gateway was not ready 30 s after the fault".to_owned());
    }
    for &d in &daemons {
        if stack.process_alive(d) != Some(true) {
            dead.push(format!("the {d} process exited"));
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
        instances,
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
        logs: daemons.iter().map(|d| logs[d].clone()).collect(),
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

/// How long the reads at the end retry a status URL that answers `503` or
/// `429` (its gateway shedding a burst of reads: a client is told to retry)
/// or not at all (a pooled connection its gateway closed meanwhile).
const FINAL_READ_WINDOW: Duration = Duration::from_secs(30);

/// Every accepted reservation's status, read once more at the end through
/// its status URL (`http://host:port/events/…`, long-polled): its decision,
/// or what the URL gave instead.
async fn final_statuses(
    http: &buyers::Http,
    accepted: &[(ReservationId, String)],
) -> HashMap<ReservationId, verdict::FinalRead> {
    use futures::StreamExt;
    let deadline = Instant::now() + FINAL_READ_WINDOW;
    futures::stream::iter(
        accepted
            .iter()
            .map(|(id, url)| async move { (*id, final_status(http, url, deadline).await) }),
    )
    // Many at once: a run that lost hundreds (a sabotage) has each of
    // them wait out its 8 s (926 lost at 32 at a time took 4 minutes).
    .buffer_unordered(256)
    .collect()
    .await
}

/// One status URL read as a client would: told to retry, it retries (until
/// `deadline`); anything else is its answer.
async fn final_status(http: &buyers::Http, url: &str, deadline: Instant) -> verdict::FinalRead {
    // Long-polled: a decision may still be on its way (8 s at most, within
    // the 10 s a request may take here).
    let uri = format!("{url}?wait_ms=8000");
    loop {
        let req = http::Request::get(&uri)
            .body(http_body_util::Full::default())
            .map_err(|e| format!("an invalid URL: {e}"))?;
        let (wait, what) = match buyers::send(http, req).await {
            Ok((http::StatusCode::OK, _, body)) => {
                return match serde_json::from_slice::<flashgrid_wire::ReservationView>(&body) {
                    Ok(v) if v.status != Status::Pending => Ok(v.status),
                    Ok(_) => Err("pending after an 8 s long-poll".into()),
                    Err(e) => Err(format!("a 200 that is no reservation: {e}")),
                };
            }
            Ok((s, retry_after, _))
                if s == http::StatusCode::SERVICE_UNAVAILABLE
                    || s == http::StatusCode::TOO_MANY_REQUESTS =>
            {
                let wait = retry_after.unwrap_or(Duration::from_millis(200));
                (wait.min(Duration::from_secs(1)), format!("{s}"))
            }
            Ok((s, _, body)) => {
                return Err(format!("{s}: {}", String::from_utf8_lossy(&body)));
            }
            Err(e) => (Duration::from_millis(200), e),
        };
        if Instant::now() + wait >= deadline {
            return Err(format!(
                "still {what} at the end of the reads' {FINAL_READ_WINDOW:?}"
            ));
        }
        tokio::time::sleep(wait).await;
    }
}

/// Whether every gateway's `/readyz` answers 200 before `limit`.
async fn every_ready_within(http: &buyers::Http, gateways: &[String], limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    for base in gateways {
        loop {
            let v: Option<serde_json::Value> = get_json(http, format!("{base}/readyz")).await;
            if v.is_some() {
                break;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    true
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
