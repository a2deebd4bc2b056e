//! `idle`: what a server's memory grows by while it holds many idle
//! keep-alive connections. Each connection sends one request and reads its
//! answer (so the server has set it up as a served connection would be),
//! then stays open doing nothing while the server's resident memory is read
//! from `/proc`.

use crate::raw;
use anyhow::Context;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

/// What to hold against which server.
#[derive(Debug)]
pub struct Plan {
    pub addr: SocketAddr,
    /// The server's process, whose memory is read.
    pub pid: u32,
    pub connections: usize,
    /// Connections opened at once.
    pub concurrency: usize,
    /// The one request each connection sends (a whole HTTP/1.1 request).
    pub request: Vec<u8>,
}

/// Opens the connections, reads the server's memory, prints one JSON line.
pub async fn run(plan: Plan) -> anyhow::Result<()> {
    let before = rss_kib(plan.pid)?;
    let request: &'static [u8] = Vec::leak(plan.request);
    let mut held = Vec::with_capacity(plan.connections);
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let mut next = 0;
    while next < plan.connections {
        let n = plan.concurrency.min(plan.connections - next);
        let opened = futures::future::join_all((0..n).map(|_| open(plan.addr, request))).await;
        for c in opened {
            let (stream, status) = c?;
            *statuses.entry(status).or_default() += 1;
            held.push(stream);
        }
        next += n;
    }
    // Let the server finish whatever each answer left behind.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(plan.pid)?;
    drop(held);
    println!(
        "{}",
        serde_json::json!({
            "connections": plan.connections,
            "statuses": statuses,
            "rss_before_mib": before as f64 / 1024.0,
            "rss_mib": after as f64 / 1024.0,
            "per_connection_kib": (after.saturating_sub(before)) as f64 / plan.connections as f64,
        })
    );
    Ok(())
}

/// One connection that sent its request and read the whole answer.
async fn open(addr: SocketAddr, request: &[u8]) -> anyhow::Result<(TcpStream, u16)> {
    let mut s = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect to {addr}"))?;
    let (status, _) = raw::exchange(&mut s, request).await?;
    Ok((s, status))
}

/// A process's resident memory, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read the memory of process {pid}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))
}
