//! `flashgrid-bench memory`: Redis memory per accepted request, as the
//! daemons leave it, for a sale of a million requests — right after the
//! sale, and once the outcomes' time to live has passed.
//!
//! It drives the same code the daemons run: the gateway's pending markers
//! (`Inventory::mark_pending`) and the worker's decisions and settlements
//! (`Inventory::decide`, `settle`), in batches as the worker takes them,
//! against a namespace of its own, then reads `used_memory` from Redis.
//! Figures are differences from the baseline read first, so run it on a
//! Redis nobody else is writing to at the time.

use anyhow::Context;
use flashgrid::inventory::{Ask, Expect, Inventory};
use flashgrid::names::Namespace;
use flashgrid_wire::sale::Outcome;
use flashgrid_wire::{EventId, PerUserLimit, Quantity, ReservationId, Status, UserId};
use futures::StreamExt;
use std::time::{Duration, Instant};

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub redis_url: String,
    pub requests: usize,
    pub capacity: u32,
    /// Reservations per decide call (the worker's batch).
    pub batch: usize,
    /// `FLASHGRID_OUTCOME_TTL` for the run.
    pub ttl: Duration,
    /// How long to wait for Redis to expire the outcomes.
    pub expiry_limit: Duration,
}

pub async fn run(plan: Plan) -> anyhow::Result<()> {
    let client = redis::Client::open(plan.redis_url.as_str()).context("REDIS_URL")?;
    let conn = redis::aio::ConnectionManager::new(client.clone())
        .await
        .context("connect to Redis")?;
    let mut probe = client.get_multiplexed_async_connection().await?;
    let ns =
        Namespace::new(&format!("bench-mem-{}", std::process::id())).map_err(anyhow::Error::msg)?;
    let inv = Inventory::new(conn, ns.clone()).with_outcome_ttl(plan.ttl);
    let event = EventId::parse("memory-bench").expect("a slug");
    let limit = PerUserLimit::new(4).expect("a limit");

    let baseline = used_memory(&mut probe).await?;
    inv.reset(&event, plan.capacity, 1, 1).await?;
    let started = Instant::now();
    let batches: Vec<Vec<usize>> = (0..plan.requests)
        .collect::<Vec<_>>()
        .chunks(plan.batch)
        .map(<[usize]>::to_vec)
        .collect();
    let won = futures::stream::iter(batches)
        .map(|batch| {
            let (inv, event) = (&inv, &event);
            async move {
                let ids: Vec<ReservationId> =
                    batch.iter().map(|_| ReservationId::random()).collect();
                let users: Vec<UserId> = batch
                    .iter()
                    .map(|i| UserId::parse(&format!("buyer-{i}")).expect("a user id"))
                    .collect();
                let marks: Vec<Outcome> = users
                    .iter()
                    .map(|u| Outcome::pending(Quantity::ONE, u.clone()))
                    .collect();
                inv.mark_pending(ids.iter().zip(&marks).map(|(id, o)| (event, 1, *id, o)))
                    .await?;
                let asks: Vec<Ask<'_>> = ids
                    .iter()
                    .zip(&users)
                    .map(|(id, user)| Ask {
                        id: *id,
                        user,
                        quantity: Quantity::ONE,
                        closed: false,
                        sale: 1,
                        kept: None,
                    })
                    .collect();
                let decided = inv.decide(event, limit, Expect::default(), &asks).await?;
                let winners: Vec<ReservationId> = ids
                    .iter()
                    .zip(&decided.outcomes)
                    .filter(|(_, o)| o.status == Status::Confirmed)
                    .map(|(id, _)| *id)
                    .collect();
                inv.settle(event, None, &winners).await?;
                Ok::<_, anyhow::Error>(winners.len())
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .sum::<anyhow::Result<usize>>()?;
    let took = started.elapsed();
    let after_sale = used_memory(&mut probe).await?;
    let pattern = ns.event_keys(&event).outcome_pattern();

    // Redis expires keys by sampling; wait until the outcome keys are gone
    // (counted with SCAN, which only reads) or the limit passes.
    let expiry_started = Instant::now();
    let mut left = count_keys(&mut probe, &pattern).await?;
    while left > 0 && expiry_started.elapsed() < plan.expiry_limit + plan.ttl {
        tokio::time::sleep(Duration::from_millis(500)).await;
        left = count_keys(&mut probe, &pattern).await?;
    }
    let expired_after = expiry_started.elapsed();
    let after_expiry = used_memory(&mut probe).await?;
    let (won_entries, won_bytes): (i64, Option<i64>) = redis::pipe()
        .hlen(ns.event_keys(&event).won)
        .cmd("MEMORY")
        .arg("USAGE")
        .arg(ns.event_keys(&event).won)
        .query_async(&mut probe)
        .await?;
    cleanup(&mut probe, &ns).await?;

    let per = |bytes: i64| bytes as f64 / plan.requests as f64;
    println!(
        "{}",
        serde_json::json!({
            "requests": plan.requests,
            "capacity": plan.capacity,
            "confirmed": won,
            "decided_per_s": (plan.requests as f64 / took.as_secs_f64()).round(),
            "ttl_s": plan.ttl.as_secs(),
            "bytes_after_sale": after_sale - baseline,
            "bytes_per_request_after_sale": per(after_sale - baseline).round(),
            "outcome_keys_left": left,
            "expired_within_s": (expired_after.as_secs_f64() * 10.0).round() / 10.0,
            "bytes_after_expiry": after_expiry - baseline,
            "bytes_per_request_after_expiry": (per(after_expiry - baseline) * 100.0).round() / 100.0,
            "won_hash_entries": won_entries,
            "won_hash_bytes": won_bytes,
        })
    );
    Ok(())
}

async fn used_memory(c: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<i64> {
    let info: String = redis::cmd("INFO").arg("memory").query_async(c).await?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .context("INFO memory has no used_memory")
}

async fn count_keys(
    c: &mut redis::aio::MultiplexedConnection,
    pattern: &str,
) -> anyhow::Result<usize> {
    use futures::TryStreamExt;
    use redis::AsyncCommands;
    let scan = redis::ScanOptions::default()
        .with_pattern(pattern)
        .with_count(10_000);
    let n = c
        .scan_options::<String>(scan)
        .await?
        .try_fold(0, |n, _| async move { Ok(n + 1) })
        .await?;
    Ok(n)
}

async fn cleanup(c: &mut redis::aio::MultiplexedConnection, ns: &Namespace) -> anyhow::Result<()> {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(ns.key_pattern())
        .query_async(c)
        .await?;
    for chunk in keys.chunks(1_000) {
        let _: () = redis::cmd("DEL").arg(chunk).query_async(c).await?;
    }
    Ok(())
}
