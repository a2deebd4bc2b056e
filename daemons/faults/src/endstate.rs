//! The end of a run: wait until the queues have drained (nothing ready,
//! nothing unacked) so that nothing is still on its way, then read what
//! Redis holds of the event for the verdicts to compare with PostgreSQL.

use crate::cluster::Clusters;
use crate::verdict::Cache;
use flashgrid::names::Namespace;
use flashgrid::queue::{QueueType, Topology};
use flashgrid::store::RedisTarget;
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

/// How the queue `queue` stands, as this machine's broker tells it.
pub async fn queue_named(queue: &str) -> anyhow::Result<QueueState> {
    queue_on(None, queue).await
}

/// How the queue `queue` stands, as the broker (this machine's, or the
/// cluster's) tells it (`rabbitmqctl`: the unacked count is not in AMQP's
/// answers).
async fn queue_on(clusters: Option<&Clusters>, queue: &str) -> anyhow::Result<QueueState> {
    let text = rabbitmqctl(
        clusters,
        &[
            "list_queues",
            "name",
            "messages_ready",
            "messages_unacknowledged",
            "consumers",
        ],
    )
    .await?;
    for line in text.lines() {
        let mut cols = line.split_whitespace();
        if cols.next() != Some(queue) {
            continue;
        }
        // A count that cannot be read is not taken for empty.
        let mut n = || {
            cols.next()
                .and_then(|c| c.parse::<u64>().ok())
                .unwrap_or(u64::MAX / 4)
        };
        let (ready, unacked, listed) = (n(), n(), n());
        // A quorum queue's count in `list_queues` comes from statistics
        // emitted every few seconds: a consumer minutes old may not be in
        // it yet. `list_consumers` asks the queue itself.
        let consumers = rabbitmqctl(clusters, &["list_consumers", "queue_name"])
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

/// Every partition of the reservation queue together: messages summed,
/// consumers those of the least consumed partition.
async fn partitions_state(
    clusters: Option<&Clusters>,
    topology: &Topology,
) -> anyhow::Result<QueueState> {
    let mut all = QueueState {
        consumers: u64::MAX,
        ..QueueState::default()
    };
    for q in topology.queues() {
        let s = queue_on(clusters, &q).await?;
        all.ready += s.ready;
        all.unacked += s.unacked;
        all.consumers = all.consumers.min(s.consumers);
    }
    Ok(all)
}

/// What `rabbitmqctl <command> -q --no-table-headers <columns>` prints
/// (it reads what AMQP's answers leave out: the unacked count, consumers),
/// on this machine's broker or a node of the cluster.
async fn rabbitmqctl(clusters: Option<&Clusters>, args: &[&str]) -> anyhow::Result<String> {
    if let Some(c) = clusters {
        return c.rabbitmqctl(args).await;
    }
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

/// Waits until every partition drained, at most `limit`; the last state
/// read. A quorum queue's counts are statistics a few seconds old, so it
/// counts as drained only once it has read so for [`QUORUM_STATS_LAG`].
pub async fn drain(
    clusters: Option<&Clusters>,
    topology: &Topology,
    limit: Duration,
) -> anyhow::Result<QueueState> {
    let settle = match topology.kind {
        QueueType::Quorum => QUORUM_STATS_LAG,
        QueueType::Classic => Duration::ZERO,
    };
    let deadline = Instant::now() + limit;
    let mut drained_since = None;
    loop {
        let state = partitions_state(clusters, topology).await?;
        let since = if state.drained() {
            *drained_since.get_or_insert_with(Instant::now)
        } else {
            drained_since = None;
            Instant::now()
        };
        if (state.drained() && since.elapsed() >= settle) || Instant::now() > deadline {
            return Ok(state);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How stale a quorum queue's message counts in `rabbitmqctl` may be: the
/// queue emits them on its tick (5 s by default), plus a margin.
const QUORUM_STATS_LAG: Duration = Duration::from_secs(6);

/// What Redis (one server or a cluster) holds of the event: its stock,
/// confirmations (the `won` hash: what the verdicts compare with the rows)
/// and per-user counts.
pub async fn cache(redis_url: &str, ns: &Namespace, event: &EventId) -> anyhow::Result<Cache> {
    let target = RedisTarget::parse(redis_url).map_err(anyhow::Error::msg)?;
    let mut c = target.connect(&Default::default()).await?;
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
