//! `flashgrid-bench shard` and `flashgrid-bench winners`: the two
//! per-unit ceilings of the capacity model (docs/SCALING.md) that no other
//! benchmark gives — the decide script's calls per second on one Redis
//! shard, one reservation a call and a worker's batch a call; and winners
//! committed per second by the worker's own commit statement.
//!
//! Both drive the daemons' code (`Inventory::decide`, `db::commit_winners`)
//! on a namespace or a database of their own, removed at the end.

use anyhow::Context;
use flashgrid::db::{self, Winner};
use flashgrid::inventory::{Ask, Expect, Inventory};
use flashgrid::names::Namespace;
use flashgrid::store::RedisTarget;
use flashgrid_wire::{
    Capacity, CreateEvent, EventId, PerUserLimit, Quantity, ReservationId, UserId,
};
use futures::StreamExt;
use std::time::{Duration, Instant};

/// What `shard` runs.
#[derive(Debug, Clone)]
pub struct ShardPlan {
    pub redis_url: String,
    pub reservations: usize,
    /// Reservations per script call.
    pub batch: usize,
    /// Calls in flight.
    pub concurrency: usize,
    /// Events decided at once, each in its own slot (on a cluster, spread
    /// over the shards).
    pub events: usize,
}

/// Decides `reservations` with stock that never runs out; one JSON line.
pub async fn shard(plan: ShardPlan) -> anyhow::Result<()> {
    anyhow::ensure!(
        plan.batch > 0 && plan.concurrency > 0 && plan.events > 0 && plan.reservations > 0,
        "--reservations, --batch, --concurrency and --events must be at least 1"
    );
    let target = RedisTarget::parse(&plan.redis_url).map_err(anyhow::Error::msg)?;
    let store = target
        .connect(&Default::default())
        .await
        .context("connect to Redis")?;
    let ns = Namespace::new(&format!("bench-shard-{}", std::process::id()))
        .map_err(anyhow::Error::msg)?;
    // Outcomes expire soon after the run: a million of them would
    // otherwise stay for the default day.
    let inv = Inventory::new(store.clone(), ns.clone()).with_outcome_ttl(Duration::from_secs(30));
    let events: Vec<EventId> = (0..plan.events)
        .map(|i| EventId::parse(&format!("shard-bench-{i}")).expect("a slug"))
        .collect();
    for e in &events {
        inv.reset(e, Capacity::MAX, 1, 1).await?;
    }
    let limit = PerUserLimit::new(1).map_err(|e| anyhow::anyhow!("{e}"))?;
    let calls = plan.reservations.div_ceil(plan.batch);
    let started = Instant::now();
    let decided = futures::stream::iter(0..calls)
        .map(|call| {
            let (inv, events) = (&inv, &events);
            async move {
                let event = &events[call % events.len()];
                let users: Vec<UserId> = (0..plan.batch)
                    .map(|i| UserId::parse(&format!("b{call}-{i}")).expect("a user id"))
                    .collect();
                let asks: Vec<Ask<'_>> = users
                    .iter()
                    .map(|user| Ask {
                        id: ReservationId::random(),
                        user,
                        quantity: Quantity::ONE,
                        closed: false,
                        sale: 1,
                        kept: None,
                    })
                    .collect();
                let d = inv.decide(event, limit, Expect::default(), &asks).await?;
                Ok::<_, anyhow::Error>(d.outcomes.len())
            }
        })
        .buffer_unordered(plan.concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .sum::<anyhow::Result<usize>>()?;
    let took = started.elapsed().as_secs_f64();
    // The events' own keys; the outcomes expire by themselves.
    let mut c = store.clone();
    for e in &events {
        let k = ns.event_keys(e);
        for key in [k.stock, k.users, k.won] {
            let _: () = redis::cmd("DEL").arg(key).query_async(&mut c).await?;
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "cluster": target.is_cluster(),
            "events": plan.events,
            "batch": plan.batch,
            "concurrency": plan.concurrency,
            "calls": calls,
            "decisions": decided,
            "calls_per_s": (calls as f64 / took).round(),
            "decisions_per_s": (decided as f64 / took).round(),
        })
    );
    Ok(())
}

/// What `winners` runs.
#[derive(Debug, Clone)]
pub struct WinnersPlan {
    /// A PostgreSQL server URL; the database in it is replaced by one of
    /// the run's own.
    pub database_url: String,
    pub rows: usize,
    /// Winners per commit (the worker's batch).
    pub batch: usize,
    /// Commits in flight (workers).
    pub concurrency: usize,
}

/// Commits `rows` winners of one event; one JSON line.
pub async fn winners(plan: WinnersPlan) -> anyhow::Result<()> {
    anyhow::ensure!(
        plan.batch > 0 && plan.concurrency > 0 && plan.rows > 0,
        "--rows, --batch and --concurrency must be at least 1"
    );
    let mut url = url::Url::parse(&plan.database_url).context("--database-url")?;
    let name = format!("fg_bench_winners_{}", std::process::id());
    url.set_path(&name);
    let pool = db::connect(url.as_str(), plan.concurrency as u32 + 1).await?;
    // Whatever happens, the database goes at the end.
    let run = async {
        let event = EventId::parse("winners-bench").expect("a slug");
        db::insert_event(
            &pool,
            &event,
            &CreateEvent {
                event_id: None,
                name: "winners bench".into(),
                capacity: Capacity::new(Capacity::MAX.into()).expect("the most seats"),
                per_user_limit: PerUserLimit::new(1).map_err(|e| anyhow::anyhow!("{e}"))?,
                opens_at: None,
                closes_at: None,
                hold_seconds: None,
            },
        )
        .await?
        .context("the bench event exists already")?;
        let epoch: i32 = sqlx::query_scalar("SELECT epoch FROM events WHERE event_id = $1")
            .bind(event.as_str())
            .fetch_one(&pool)
            .await?;
        let calls = plan.rows.div_ceil(plan.batch);
        let started = Instant::now();
        let written = futures::stream::iter(0..calls)
            .map(|call| {
                let (pool, event) = (&pool, &event);
                async move {
                    let ws: Vec<Winner> = (0..plan.batch)
                        .map(|i| Winner {
                            id: ReservationId::random(),
                            event: event.clone(),
                            user: UserId::parse(&format!("w{call}-{i}")).expect("a user id"),
                            quantity: Quantity::ONE,
                            accepted_at: chrono::Utc::now(),
                            epoch,
                            sale: 1,
                        })
                        .collect();
                    let c = db::commit_winners(pool, &ws).await?;
                    Ok::<_, anyhow::Error>(c.written as usize)
                }
            })
            .buffer_unordered(plan.concurrency)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .sum::<anyhow::Result<usize>>()?;
        anyhow::Ok((written, started.elapsed().as_secs_f64(), calls))
    }
    .await;
    pool.close().await;
    let mut admin = url.clone();
    admin.set_path("postgres");
    if let Ok(admin) = sqlx::PgPool::connect(admin.as_str()).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .execute(&admin)
        .await;
    }
    let (written, took, calls) = run?;
    println!(
        "{}",
        serde_json::json!({
            "batch": plan.batch,
            "concurrency": plan.concurrency,
            "rows": written,
            "rows_per_s": (written as f64 / took).round(),
            "commits_per_s": (calls as f64 / took).round(),
        })
    );
    Ok(())
}
