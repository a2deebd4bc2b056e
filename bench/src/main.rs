//! `flashgrid-bench`: the ceilings FlashGrid's figures are measured against,
//! on the same machine in the same run (see `scripts/bench.sh`).
//!
//! - `bare`: the gateway's HTTP stack (same listener, same hyper settings)
//!   answering fixed bytes, without any FlashGrid logic.
//! - `broker`: persistent publishes with confirms to RabbitMQ, one
//!   reservation per message, many in flight — the per-message rate that
//!   group publish is meant to beat; with `--queue-type quorum` and
//!   `--queues N`, the rate of N quorum queues at once (spread over the
//!   nodes of a comma-separated `--amqp-url`, each queue declared through
//!   its own node so that its leader lands there).
//! - `confirm`: the broker's confirm latency at a fixed rate, one message
//!   a publish — the floor of a `202`'s latency at that rate (`confirm`).
//! - `memory`: Redis memory per accepted request for a sale of a million
//!   requests, after the sale and once the outcomes expired (`memory`).
//! - `drain`: resumes a paused worker and times its drain of the backlog
//!   queued meanwhile (`drain`).
//! - `idle`: a server's resident memory while it holds many idle
//!   keep-alive connections (`idle`).
//! - `shard`, `winners`: the decide script's calls per second on one Redis
//!   shard, and winners committed per second by the worker's statement —
//!   the per-unit figures of docs/SCALING.md (`capacity`).

mod capacity;
mod confirm;
mod drain;
mod idle;
mod memory;
mod raw;

use anyhow::Context;
use bytes::Bytes;
use clap::{Parser, Subcommand};
use flashgrid::gateway::http;
use flashgrid::names::Namespace;
use flashgrid::queue::{self, Group, Queued};
use flashgrid_wire::{EventId, Quantity, ReservationId, UserId};
use http_body_util::Full;
use lapin::BasicProperties;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeleteOptions};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(name = "flashgrid-bench", about = "Ceilings for FlashGrid's benchmark")]
struct Opts {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Serve fixed bytes with the gateway's HTTP stack until Ctrl-C/SIGTERM.
    Bare {
        #[arg(long, default_value = "127.0.0.1:18099")]
        listen: std::net::SocketAddr,
        #[arg(long, default_value = "202")]
        status: u16,
        #[arg(long)]
        body: String,
    },
    /// Publish persistent messages with confirms; prints one JSON line.
    Broker {
        #[command(flatten)]
        amqp: Amqp,
        #[arg(long, default_value = "50000")]
        messages: u64,
        /// Unconfirmed messages kept in flight.
        #[arg(long, default_value = "512")]
        inflight: usize,
        /// Reservations per message (1 = the per-message ceiling).
        #[arg(long, default_value = "1")]
        per_message: usize,
        /// `classic` or `quorum`.
        #[arg(long, default_value = "classic")]
        queue_type: QueueType,
        /// Queues published to at once, each on its own connection (the
        /// messages are shared out among them).
        #[arg(long, default_value = "1")]
        queues: usize,
    },
    /// RabbitMQ's confirm latency at a fixed rate, each publish timed from
    /// its scheduled time; prints one JSON line.
    Confirm {
        #[command(flatten)]
        amqp: Amqp,
        /// Publishes a second.
        #[arg(long, default_value = "5000")]
        rate: f64,
        #[arg(long, default_value = "10")]
        seconds: u64,
        /// Reservations per message (1: what the gateway sends at low load).
        #[arg(long, default_value = "1")]
        per_message: usize,
        /// `quorum` (the stack's default) or `classic`.
        #[arg(long, default_value = "quorum")]
        queue_type: QueueType,
    },
    /// The decide script's calls per second on one Redis (or a cluster,
    /// events spread over its shards); prints one JSON line.
    Shard {
        #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
        redis_url: String,
        #[arg(long, default_value = "200000")]
        reservations: usize,
        /// Reservations per call: 1 as a gateway-side decision would be,
        /// 256 as the worker batches.
        #[arg(long, default_value = "1")]
        batch: usize,
        #[arg(long, default_value = "64")]
        concurrency: usize,
        /// Events decided at once (each in its own slot).
        #[arg(long, default_value = "1")]
        events: usize,
    },
    /// Winners committed per second by the worker's commit statement, into
    /// a database of its own; prints one JSON line.
    Winners {
        #[arg(
            long,
            env = "DATABASE_URL",
            default_value = "postgres://postgres@127.0.0.1:5432/postgres"
        )]
        database_url: String,
        #[arg(long, default_value = "500000")]
        rows: usize,
        #[arg(long, default_value = "256")]
        batch: usize,
        /// Commits in flight (as many workers).
        #[arg(long, default_value = "4")]
        concurrency: usize,
    },
    /// Resumes a paused worker and times the commit of the backlog queued
    /// while it was paused; prints one JSON line.
    Drain {
        /// The gateway's address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: std::net::SocketAddr,
        #[arg(long)]
        event: String,
        /// The paused worker's process id (resumed with SIGCONT).
        #[arg(long)]
        worker_pid: u32,
        /// Seats the backlog confirms.
        #[arg(long)]
        backlog: u64,
        /// Give up after this many seconds.
        #[arg(long, default_value = "300")]
        limit: u64,
    },
    /// A server's memory while it holds idle keep-alive connections, each
    /// after one request; prints one JSON line.
    Idle {
        /// The server's address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: std::net::SocketAddr,
        /// The server's process id (its memory is read from /proc).
        #[arg(long)]
        pid: u32,
        #[arg(long, default_value = "10000")]
        connections: usize,
        /// The event of the `POST /reserve` each connection sends.
        #[arg(long, default_value = "demo")]
        event: String,
    },
    /// Redis memory per accepted request, after the sale and after expiry;
    /// prints one JSON line. Run it on an otherwise idle Redis.
    Memory {
        #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
        redis_url: String,
        #[arg(long, default_value = "1000000")]
        requests: usize,
        #[arg(long, default_value = "1000")]
        capacity: u32,
        /// Reservations per decision (the worker's batch).
        #[arg(long, default_value = "256")]
        batch: usize,
        /// The outcomes' time to live for the run (seconds).
        #[arg(long, default_value = "10")]
        ttl: u64,
        /// How long to wait for Redis to expire them (seconds).
        #[arg(long, default_value = "120")]
        expiry_limit: u64,
    },
}

/// The RabbitMQ the broker ceilings publish to.
#[derive(Debug, clap::Args)]
struct Amqp {
    /// A node's URL (`broker`: several comma-separated, one queue declared
    /// through each in turn).
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    amqp_url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum QueueType {
    Classic,
    Quorum,
}

impl QueueType {
    fn as_str(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The bare server and the idle probe each hold thousands of sockets; a
    // soft limit of 1024 would fail them half way.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    match Opts::parse().cmd {
        Cmd::Bare {
            listen,
            status,
            body,
        } => bare(listen, status, body).await,
        Cmd::Shard {
            redis_url,
            reservations,
            batch,
            concurrency,
            events,
        } => {
            capacity::shard(capacity::ShardPlan {
                redis_url,
                reservations,
                batch,
                concurrency,
                events,
            })
            .await
        }
        Cmd::Winners {
            database_url,
            rows,
            batch,
            concurrency,
        } => {
            capacity::winners(capacity::WinnersPlan {
                database_url,
                rows,
                batch,
                concurrency,
            })
            .await
        }
        Cmd::Confirm {
            amqp: Amqp { amqp_url },
            rate,
            seconds,
            per_message,
            queue_type,
        } => {
            confirm::run(confirm::Plan {
                amqp_url,
                queue_type,
                rate,
                duration: Duration::from_secs(seconds),
                body: group_body(per_message.max(1)),
            })
            .await
        }
        Cmd::Broker {
            amqp: Amqp { amqp_url },
            messages,
            inflight,
            per_message,
            queue_type,
            queues,
        } if queue_type == QueueType::Classic && queues == 1 && !amqp_url.contains(',') => {
            broker(&amqp_url, messages, inflight, per_message).await
        }
        Cmd::Broker {
            amqp: Amqp { amqp_url },
            messages,
            inflight,
            per_message,
            queue_type,
            queues,
        } => {
            anyhow::ensure!(
                queues > 0 && inflight > 0 && per_message > 0,
                "--queues, --inflight and --per-message must be at least 1"
            );
            let urls: Vec<String> = amqp_url.split(',').map(str::to_owned).collect();
            partitions(&urls, queue_type, queues, messages, inflight, per_message).await
        }
        Cmd::Drain {
            addr,
            event,
            worker_pid,
            backlog,
            limit,
        } => {
            drain::run(drain::Plan {
                addr,
                event,
                worker_pid,
                backlog,
                limit: Duration::from_secs(limit),
            })
            .await
        }
        Cmd::Idle {
            addr,
            pid,
            connections,
            event,
        } => {
            let body = serde_json::json!({"event_id": event, "user_id": "idle-probe"}).to_string();
            let request = format!(
                "POST /reserve HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            idle::run(idle::Plan {
                addr,
                pid,
                connections,
                concurrency: 256,
                request: request.into_bytes(),
            })
            .await
        }
        Cmd::Memory {
            redis_url,
            requests,
            capacity,
            batch,
            ttl,
            expiry_limit,
        } => {
            anyhow::ensure!(batch > 0 && ttl > 0, "--batch and --ttl must be at least 1");
            memory::run(memory::Plan {
                redis_url,
                requests,
                capacity,
                batch,
                ttl: Duration::from_secs(ttl),
                expiry_limit: Duration::from_secs(expiry_limit),
            })
            .await
        }
    }
}

async fn bare(listen: std::net::SocketAddr, status: u16, body: String) -> anyhow::Result<()> {
    let listener = http::bind(listen).with_context(|| format!("listen on {listen}"))?;
    let status = ::http::StatusCode::from_u16(status).context("--status")?;
    let body = Bytes::from(body);
    let shutdown = flashgrid::shutdown::on_signals();
    eprintln!("bare server on {listen}");
    http::serve(
        listener,
        http::Limits {
            header_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            max_connections: 16_384,
            // The load comes from this host.
            per_addr: 16_384,
            drain_timeout: Duration::from_secs(1),
        },
        shutdown,
        move |_req, _peer| {
            let body = body.clone();
            async move {
                let mut r = ::http::Response::new(Full::new(body));
                *r.status_mut() = status;
                r.headers_mut().insert(
                    ::http::header::CONTENT_TYPE,
                    ::http::HeaderValue::from_static("application/json"),
                );
                r
            }
        },
    )
    .await;
    Ok(())
}

async fn broker(
    url: &str,
    messages: u64,
    inflight: usize,
    per_message: usize,
) -> anyhow::Result<()> {
    let ns =
        Namespace::new(&format!("bench-{}", std::process::id())).map_err(anyhow::Error::msg)?;
    let conn = queue::connect(url, "flashgrid-bench").await?;
    let ch = conn.create_channel().await?;
    queue::declare(&ch, &queue::Topology::single(ns.clone())).await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let body = group_body(per_message);
    let start = Instant::now();
    publish_confirmed(&ch, &ns.queue(), &body, messages, inflight).await?;
    let secs = start.elapsed().as_secs_f64();
    for q in [ns.queue(), ns.dead_letter_queue()] {
        let _ = ch
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    let _ = ch
        .exchange_delete(
            ns.dead_letter_exchange().as_str().into(),
            Default::default(),
        )
        .await;
    let _ = conn.close(200, "done".into()).await;
    println!(
        "{}",
        serde_json::json!({
            "messages": messages,
            "per_message": per_message,
            "seconds": secs,
            "msgs_per_s": messages as f64 / secs,
            "reservations_per_s": (messages as usize * per_message) as f64 / secs,
        })
    );
    Ok(())
}

/// `queues` queues of `kind` published to at once, queue k through node
/// `k mod urls` on a connection of its own; one JSON line with the total
/// rate and each queue's.
async fn partitions(
    urls: &[String],
    kind: QueueType,
    queues: usize,
    messages: u64,
    inflight: usize,
    per_message: usize,
) -> anyhow::Result<()> {
    let body = group_body(per_message);
    let each = messages / queues as u64;
    // Connected and declared first, so that the clock measures publishing.
    let mut lanes = Vec::with_capacity(queues);
    for k in 0..queues {
        let url = &urls[k % urls.len()];
        let conn = queue::connect(url, "flashgrid-bench")
            .await
            .with_context(|| format!("connect to {url}"))?;
        let ch = conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        let name = format!("bench-{}.q{k}", std::process::id());
        declare(&ch, &name, kind)
            .await
            .with_context(|| format!("declare {name} through {url}"))?;
        lanes.push((conn, ch, name));
    }
    let start = Instant::now();
    let tasks: Vec<_> = lanes
        .iter()
        .map(|(_, ch, name)| {
            let (ch, name, body) = (ch.clone(), name.clone(), body.clone());
            tokio::spawn(async move {
                let begun = Instant::now();
                publish_confirmed(&ch, &name, &body, each, inflight).await?;
                Ok::<_, anyhow::Error>(each as f64 / begun.elapsed().as_secs_f64())
            })
        })
        .collect();
    let mut rates = Vec::with_capacity(queues);
    for t in tasks {
        rates.push(t.await??);
    }
    let secs = start.elapsed().as_secs_f64();
    for (conn, ch, name) in &lanes {
        let _ = ch
            .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
            .await;
        let _ = conn.close(200, "done".into()).await;
    }
    let total = each * queues as u64;
    println!(
        "{}",
        serde_json::json!({
            "queue_type": kind.as_str(),
            "queues": queues,
            "nodes": urls.len(),
            "messages": total,
            "per_message": per_message,
            "seconds": secs,
            "msgs_per_s": total as f64 / secs,
            "reservations_per_s": (total as usize * per_message) as f64 / secs,
            "msgs_per_s_per_queue": rates,
        })
    );
    Ok(())
}

/// One group of `per_message` reservations, encoded as the gateway sends it.
/// Declares a durable queue of `kind` for a ceiling (deleted by its caller).
async fn declare(ch: &lapin::Channel, name: &str, kind: QueueType) -> lapin::Result<()> {
    let mut args = lapin::types::FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        lapin::types::AMQPValue::LongString(kind.as_str().into()),
    );
    let durable = lapin::options::QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(name.into(), durable, args).await?;
    Ok(())
}

fn group_body(per_message: usize) -> Vec<u8> {
    let items: Vec<Queued> = (0..per_message)
        .map(|i| Queued {
            id: ReservationId::random(),
            event: EventId::parse("bench").expect("slug"),
            user: UserId::parse(&format!("buyer-bench-{i}")).expect("user"),
            qty: Quantity::ONE,
            at: chrono::Utc::now(),
            sale: 1,
        })
        .collect();
    Group::encode(&items)
}

/// Publishes `messages` persistent copies of `body` to `queue`, keeping
/// `inflight` unconfirmed, and waits for every confirm (a nack is an error).
async fn publish_confirmed(
    ch: &lapin::Channel,
    queue: &str,
    body: &[u8],
    messages: u64,
    inflight: usize,
) -> anyhow::Result<()> {
    let mut pending = VecDeque::with_capacity(inflight);
    for _ in 0..messages {
        if pending.len() >= inflight {
            let c: lapin::PublisherConfirm = pending.pop_front().expect("non-empty");
            anyhow::ensure!(c.await?.is_ack(), "nacked");
        }
        let c = ch
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await?;
        pending.push_back(c);
    }
    for c in pending {
        anyhow::ensure!(c.await?.is_ack(), "nacked");
    }
    Ok(())
}
