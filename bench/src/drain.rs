//! `drain`: how fast the worker decides and commits a backlog. The worker
//! was paused (SIGSTOP) while the queue filled; this resumes it (SIGCONT)
//! and follows the event's `confirmed` count (PostgreSQL's, through the
//! gateway) until the whole backlog is committed.

use crate::raw;
use anyhow::Context;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// How often the event's count is read.
const POLL: Duration = Duration::from_millis(10);

#[derive(Debug)]
pub struct Plan {
    /// The gateway.
    pub addr: SocketAddr,
    pub event: String,
    /// The paused worker.
    pub worker_pid: u32,
    /// Seats the backlog confirms once committed (every reservation a
    /// winner, one seat each).
    pub backlog: u64,
    pub limit: Duration,
}

/// Resumes the worker, waits for the backlog, prints one JSON line.
pub async fn run(plan: Plan) -> anyhow::Result<()> {
    let mut s = TcpStream::connect(plan.addr)
        .await
        .with_context(|| format!("connect to the gateway at {}", plan.addr))?;
    let request = format!(
        "GET /events/{} HTTP/1.1\r\nhost: {}\r\n\r\n",
        plan.event, plan.addr
    )
    .into_bytes();
    let before = confirmed(&mut s, &request).await?;
    let resumed = std::process::Command::new("kill")
        .args(["-CONT", &plan.worker_pid.to_string()])
        .status()
        .context("run kill -CONT")?;
    anyhow::ensure!(
        resumed.success(),
        "could not resume worker {}",
        plan.worker_pid
    );
    let start = Instant::now();
    let mut first = None;
    let mut now = before;
    while now < before + plan.backlog {
        anyhow::ensure!(
            start.elapsed() < plan.limit,
            "{} of {} confirmed after {:?}",
            now - before,
            plan.backlog,
            plan.limit
        );
        tokio::time::sleep(POLL).await;
        now = confirmed(&mut s, &request).await?;
        if first.is_none() && now > before {
            first = Some(start.elapsed());
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "backlog": plan.backlog,
            "seconds": secs,
            "first_commit_s": first.map(|d| d.as_secs_f64()),
            "confirmed_per_s": plan.backlog as f64 / secs,
        })
    );
    Ok(())
}

/// The event's `confirmed` count.
async fn confirmed(s: &mut TcpStream, request: &[u8]) -> anyhow::Result<u64> {
    let (status, body) = raw::exchange(s, request).await?;
    anyhow::ensure!(status == 200, "GET event answered {status}");
    let view: serde_json::Value = serde_json::from_slice(&body).context("event view")?;
    view["confirmed"]
        .as_u64()
        .context("no confirmed count in the event view")
}
