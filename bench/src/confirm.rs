//! `confirm`: RabbitMQ's confirm latency at a fixed rate (an open model),
//! one persistent message a publish, as the gateway publishes at low load
//! (a group of one). Each publish has its scheduled time and is timed from
//! it to its confirm, so a publisher that falls behind is counted, not
//! hidden. The floor of a `202`'s latency at that rate: the gateway
//! answers once the broker confirmed.

use crate::QueueType;
use anyhow::Context;
use flashgrid::queue;
use flashgrid_load::latency::Latency;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use lapin::BasicProperties;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeleteOptions};
use std::time::Duration;
use tokio::time::Instant;

/// What to publish, how fast, for how long.
#[derive(Debug)]
pub struct Plan {
    pub amqp_url: String,
    pub queue_type: QueueType,
    /// Publishes a second.
    pub rate: f64,
    pub duration: Duration,
    /// The message body (a group of reservations, as the gateway sends).
    pub body: Vec<u8>,
}

/// Publishes on schedule, prints one JSON line of the confirm latencies.
pub async fn run(plan: Plan) -> anyhow::Result<()> {
    anyhow::ensure!(
        plan.rate > 0.0 && !plan.duration.is_zero(),
        "--rate and --seconds must be above 0"
    );
    let conn = queue::connect(&plan.amqp_url, "flashgrid-bench").await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let name = format!("bench-confirm-{}", std::process::id());
    crate::declare(&ch, &name, plan.queue_type)
        .await
        .with_context(|| format!("declare {name}"))?;

    let every = Duration::from_secs_f64(1.0 / plan.rate);
    let messages = (plan.rate * plan.duration.as_secs_f64()).round() as u32;
    let mut latency = Latency::default();
    let mut nacked = 0u64;
    let mut waiting = FuturesUnordered::new();
    let start = Instant::now();
    for i in 0..messages {
        let due = start + every * i;
        // Take the confirms that come in while this publish is not due yet.
        loop {
            tokio::select! {
                biased;
                Some(done) = waiting.next() => {
                    let (due, at, acked): (Instant, Instant, bool) = done?;
                    latency.record(at - due);
                    nacked += u64::from(!acked);
                }
                _ = tokio::time::sleep_until(due) => break,
            }
        }
        let confirm = ch
            .basic_publish(
                "".into(),
                name.as_str().into(),
                BasicPublishOptions::default(),
                &plan.body,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await?;
        waiting.push(async move {
            let c = confirm.await?;
            anyhow::Ok((due, Instant::now(), c.is_ack()))
        });
    }
    while let Some(done) = waiting.next().await {
        let (due, at, acked) = done?;
        latency.record(at - due);
        nacked += u64::from(!acked);
    }
    let secs = start.elapsed().as_secs_f64();
    let _ = ch
        .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = conn.close(200, "done".into()).await;
    println!(
        "{}",
        serde_json::json!({
            "queue_type": plan.queue_type.as_str(),
            "rate": plan.rate,
            "messages": messages,
            "nacked": nacked,
            "seconds": secs,
            "latency_ms": latency.percentiles(),
        })
    );
    Ok(())
}
