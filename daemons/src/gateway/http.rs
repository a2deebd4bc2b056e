//! The HTTP server: accept with a deep backlog and a connection cap, hyper
//! HTTP/1.1 per connection with a header deadline, body reading with a size
//! limit and a deadline, and a bounded graceful drain on shutdown.

use super::error::{ApiError, Body};
use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Binds with a backlog deep enough for a flash crowd: tokio's default (1024)
/// turns the connects beyond it into SYN retries a second later. The kernel
/// caps it at `net.core.somaxconn`.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(65_535)
}

/// Limits applied to every connection.
#[derive(Debug, Clone)]
pub struct Limits {
    pub header_timeout: Duration,
    pub max_connections: usize,
    pub drain_timeout: Duration,
}

/// Serves until `shutdown`, then stops accepting, lets in-flight requests
/// finish (up to the drain timeout) and returns. The handler gets each request
/// with its client's IP address.
pub async fn serve<H, F>(
    listener: TcpListener,
    limits: Limits,
    shutdown: CancellationToken,
    handler: H,
) where
    H: Fn(Request<Incoming>, IpAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    // Every connection task is tracked so the drain can wait for them; each
    // one also watches `shutdown` to finish its request and close.
    let tracker = TaskTracker::new();
    // Each connection costs a file descriptor and some memory; beyond the cap
    // new connections wait in the kernel's backlog.
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        // A client may shut down its write side once its request is sent:
        // hyper would take that EOF for an abort and drop the answer (and a
        // reservation could be queued that its buyer never hears of). Every
        // handler is bounded in time, so waiting for it costs little.
        .half_close(true)
        .max_buf_size(64 * 1024);
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = permits.clone().acquire_owned() => p.expect("semaphore never closed"),
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors and the like: back off, never die.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let h = handler.clone();
        let peer = peer.ip();
        let conn = builder
            .serve_connection(
                TokioIo::new(stream),
                service_fn(move |req| {
                    let fut = h(req, peer);
                    async move { Ok::<_, std::convert::Infallible>(fut.await) }
                }),
            )
            // The live feed upgrades its connection to a WebSocket.
            .with_upgrades();
        let stop = shutdown.clone();
        tracker.spawn(async move {
            let mut conn = std::pin::pin!(conn);
            let res = tokio::select! {
                res = conn.as_mut() => res,
                _ = stop.cancelled() => {
                    // Finish the request in flight, then close.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = res {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tracker.close();
    tracing::info!(
        connections = tracker.len(),
        "stopped accepting connections; draining in-flight requests"
    );
    tokio::select! {
        _ = tracker.wait() => tracing::info!("all connections drained"),
        _ = tokio::time::sleep(limits.drain_timeout) => {
            tracing::warn!(timeout = ?limits.drain_timeout, "drain timed out; closing the remaining connections");
        }
    }
}

/// How much of an oversized body is read and discarded before answering 413,
/// so that the client gets the answer instead of a connection reset.
const DISCARD_LIMIT: u64 = 8 * 1024 * 1024;

/// Reads a body of at most `limit` bytes within `timeout`.
pub async fn read_body(
    req: Request<Incoming>,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = req.into_body();
    if declared.is_some_and(|n| n > DISCARD_LIMIT) {
        return Err(ApiError::too_large(limit));
    }
    let read = async {
        let mut buf = bytes::BytesMut::new();
        let mut seen: u64 = 0;
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| ApiError::invalid(format!("could not read the body: {e}")))?;
            if let Ok(data) = frame.into_data() {
                seen += data.len() as u64;
                if seen > DISCARD_LIMIT {
                    return Err(ApiError::too_large(limit));
                }
                if seen <= limit as u64 {
                    buf.extend_from_slice(&data);
                }
            }
        }
        if seen > limit as u64 {
            Err(ApiError::too_large(limit))
        } else {
            Ok(buf.freeze())
        }
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(r) => r,
        Err(_) => Err(ApiError::timeout(format!(
            "the body was not received within {timeout:?}"
        ))),
    }
}

/// 415 unless the body is declared JSON (or not declared at all).
pub fn require_json(req: &Request<Incoming>) -> Result<(), ApiError> {
    match req.headers().get(header::CONTENT_TYPE) {
        None => Ok(()),
        Some(v) => {
            let v = v.to_str().unwrap_or("").to_ascii_lowercase();
            let essence = v.split(';').next().unwrap_or("").trim();
            if essence == "application/json" || essence.ends_with("+json") {
                Ok(())
            } else {
                Err(ApiError::unsupported_media_type())
            }
        }
    }
}
