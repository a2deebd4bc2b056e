//! Moves what waits in the dead-letter queue — reservations the worker set
//! aside, messages it could not read — back to the reservation queue, once an
//! operator has fixed the cause (`flashgrid-worker --replay-dead-letters`).

use crate::queue::{self, Group, Topology};
use anyhow::Context;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions};
use std::time::Duration;

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Messages moved back to the reservation queue.
    pub moved: u64,
    /// Reservations they hold.
    pub reservations: u64,
    /// Messages left in the dead-letter queue because no worker can read them.
    pub unreadable: u64,
}

/// Each message is re-published (persistent, mandatory, confirmed) before it
/// is acked in the dead-letter queue: a crash in between replays it twice,
/// which the worker counts once (every step is idempotent per reservation
/// id), and never loses it.
pub async fn replay(amqp_url: &str, topo: &Topology) -> anyhow::Result<Replayed> {
    let conn = queue::connect(amqp_url, "flashgrid-worker-replay").await?;
    let result = replay_on(&conn, topo).await;
    queue::close(&conn, 200, "replay done").await;
    result
}

async fn replay_on(conn: &lapin::Connection, topo: &Topology) -> anyhow::Result<Replayed> {
    let ch = queue::confirm_channel(conn, topo).await?;
    let dead = topo.ns.dead_letter_queue();
    let mut done = Replayed::default();
    // Held unacked (so `basic_get` moves past them), requeued at the end.
    let mut unreadable = Vec::new();
    while let Some(msg) = ch
        .basic_get(dead.as_str().into(), BasicGetOptions { no_ack: false })
        .await
        .context("read the dead-letter queue")?
    {
        let tag = msg.delivery.delivery_tag;
        let Ok(group) = Group::decode(&msg.delivery.data) else {
            unreadable.push(tag);
            continue;
        };
        // Back to the partition of its event (a group is of one partition).
        let main = topo.queue(topo.partition_of(&group.items[0].event));
        queue::publish_kept(&ch, &main, &msg.delivery.data, Duration::from_secs(10))
            .await
            .with_context(|| format!("replay a message (it stays in {dead})"))?;
        ch.basic_ack(tag, BasicAckOptions::default())
            .await
            .context("ack a replayed message")?;
        done.moved += 1;
        done.reservations += group.items.len() as u64;
    }
    for tag in unreadable {
        ch.basic_nack(
            tag,
            BasicNackOptions {
                requeue: true,
                ..Default::default()
            },
        )
        .await
        .context("leave an unreadable message where it was")?;
        done.unreadable += 1;
    }
    // Closed before its connection, which lapin otherwise reports as an error.
    let _ = ch.close(200, "replay done".into()).await;
    Ok(done)
}
