//! The end of a run: wait until the queue has drained (nothing ready,
//! nothing unacked) so that nothing is still on its way, then read what
//! Redis holds of the event for the verdicts to compare with PostgreSQL.

use crate::verdict::Cache;
use flashgrid::names::Namespace;
use flashgrid_wire::{EventId, ReservationId, UserId};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The reservation queue as the broker tells it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueState {
    pub ready: u64,
    pub unacked: u64,
    pub consumers: u64,
}

impl QueueState {
    pub fn drained(&self) -> bool {
        self.ready == 0 && self.unacked == 0
    }
}

/// Asks the broker (`rabbitmqctl`: the unacked count is not in AMQP's
/// answers) how the namespace's reservation queue stands.
pub async fn queue_state(ns: &Namespace) -> anyhow::Result<QueueState> {
    queue_named(&ns.queue()).await
}

/// How the queue `queue` stands, as the broker tells it.
pub async fn queue_named(queue: &str) -> anyhow::Result<QueueState> {
    let text = rabbitmqctl(&[
        "list_queues",
        "name",
        "messages_ready",
        "messages_unacknowledged",
        "consumers",
    ])
    .await?;
    for line in text.lines() {
        let mut cols = line.split_whitespace();
        if cols.next() != Some(queue) {
            continue;
        }
        let mut n = || cols.next().and_then(|c| c.parse::<u64>().ok()).unwrap_or(0);
        let (ready, unacked, listed) = (n(), n(), n());
        // A quorum queue's count in `list_queues` comes from statistics
        // emitted every few seconds: a consumer minutes old may not be in
        // it yet. `list_consumers` asks the queue itself.
        let consumers = rabbitmqctl(&["list_consumers", "queue_name"])
            .await?
            .lines()
            .filter(|l| l.trim() == queue)
            .count() as u64;
        return Ok(QueueState {
            ready,
            unacked,
            consumers: listed.max(consumers),
        });
    }
    anyhow::bail!("the queue {queue} is missing")
}

/// What `rabbitmqctl <command> -q --no-table-headers <columns>` prints
/// (it reads what AMQP's answers leave out: the unacked count, consumers).
async fn rabbitmqctl(args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::process::Command::new("rabbitmqctl")
        .args(&args[..1])
        .args(["-q", "--no-table-headers"])
        .args(&args[1..])
        .output()
        .await
        .map_err(|e| anyhow::anyhow!("run rabbitmqctl {}: {e}", args[0]))?;
    anyhow::ensure!(
        out.status.success(),
        "rabbitmqctl {} failed: {}",
        args[0],
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Waits until the queue drained, at most `limit`; the last state read.
pub async fn drain(ns: &Namespace, limit: Duration) -> anyhow::Result<QueueState> {
    let deadline = Instant::now() + limit;
    loop {
        let state = queue_state(ns).await?;
        if state.drained() || Instant::now() > deadline {
            return Ok(state);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What Redis holds of the event: its stock, confirmations (the `won` hash:
/// what the verdicts compare with the rows) and per-user counts.
pub async fn cache(redis_url: &str, ns: &Namespace, event: &EventId) -> anyhow::Result<Cache> {
    let mut c = redis::Client::open(redis_url)?
        .get_multiplexed_async_connection()
        .await?;
    let keys = ns.event_keys(event);
    let stock: Option<i64> = redis::cmd("GET")
        .arg(&keys.stock)
        .query_async(&mut c)
        .await?;
    let outcomes: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(&keys.won)
        .query_async(&mut c)
        .await?;
    let users: HashMap<String, i64> = redis::cmd("HGETALL")
        .arg(&keys.users)
        .query_async(&mut c)
        .await?;
    // The committed counts: "\u{2}" the seats, "\u{2}<user>" a buyer's.
    let committed = outcomes
        .iter()
        .filter_map(|(field, n)| Some((field.strip_prefix('\u{2}')?.to_owned(), n.parse().ok()?)))
        .collect();
    let outcomes = outcomes
        .into_iter()
        // Fields that are no reservation id are the sentinels and counts.
        .filter_map(|(id, raw)| {
            let id: ReservationId = id.parse().ok()?;
            let o = flashgrid::inventory::record::decode(&raw);
            Some((id, o.map(|o| (o.status, o.committed))))
        })
        .collect();
    let users = users
        .into_iter()
        .filter(|(user, _)| UserId::parse(user).is_ok())
        .collect();
    Ok(Cache {
        stock,
        outcomes,
        users,
        committed,
    })
}
