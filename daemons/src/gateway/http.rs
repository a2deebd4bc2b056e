//! The HTTP server: accept with a deep backlog, a connection cap and a cap
//! per client address, hyper HTTP/1.1 per connection with a header deadline
//! and a write deadline, body reading with a size limit and a deadline, and
//! a bounded drain on shutdown: what is still open when it ends is dropped.

use super::error::{ApiError, Body};
use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
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
    /// A write that makes no progress for this long ends the connection.
    pub write_timeout: Duration,
    pub max_connections: usize,
    /// Connections one client address may hold at once.
    pub per_addr: usize,
    pub drain_timeout: Duration,
}

/// How the drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every connection finished within the drain timeout.
    Clean,
    /// The drain timed out and the connections left were dropped, their
    /// requests unanswered.
    Forced,
}

/// Refusals (over an address's cap) answered at once; beyond, the
/// connection is just closed.
const REFUSALS_AT_ONCE: usize = 64;

/// Serves until `shutdown`, then stops accepting, lets in-flight requests
/// finish (up to the drain timeout), drops the connections left and returns.
/// The handler gets each request with its client's IP address.
pub async fn serve<H, F>(
    listener: TcpListener,
    limits: Limits,
    shutdown: CancellationToken,
    handler: H,
) -> Drained
where
    H: Fn(Request<Incoming>, IpAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    // Every connection task is tracked so the drain can wait for them; each
    // one also watches `shutdown` to finish its request and close, and
    // `force` to give up on it when the drain times out.
    let tracker = TaskTracker::new();
    let force = CancellationToken::new();
    // Each connection costs a file descriptor and some memory; beyond the cap
    // new connections wait in the kernel's backlog.
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let per_addr = Arc::new(PerAddr::new(limits.per_addr));
    let refusals = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
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
        let peer = peer.ip();
        let Some(slot) = per_addr.take(peer) else {
            drop(permit);
            if let Ok(r) = refusals.clone().try_acquire_owned() {
                tokio::spawn(refuse(stream, limits.header_timeout, limits.per_addr, r));
            }
            continue;
        };
        let h = handler.clone();
        let conn = builder
            .serve_connection(
                TokioIo::new(write_deadline(stream, limits.write_timeout)),
                service_fn(move |req| {
                    // Boxed: a connection keeps room for its request's
                    // future whether a request is in flight or not, and a
                    // handler's (every route inlined) runs to kilobytes;
                    // boxed, an idle connection costs a pointer for it.
                    let fut = Box::pin(h(req, peer));
                    async move { Ok::<_, std::convert::Infallible>(fut.await) }
                }),
            )
            // The live feed upgrades its connection to a WebSocket.
            .with_upgrades();
        let (stop, force) = (shutdown.clone(), force.clone());
        tracker.spawn(async move {
            let mut conn = std::pin::pin!(conn);
            let res = tokio::select! {
                res = conn.as_mut() => Some(res),
                _ = stop.cancelled() => {
                    // Finish the request in flight, then close; unless the
                    // drain runs out first (a stuck client, a long request).
                    conn.as_mut().graceful_shutdown();
                    tokio::select! {
                        res = conn.as_mut() => Some(res),
                        _ = force.cancelled() => None,
                    }
                }
            };
            if let Some(Err(e)) = res {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop((permit, slot));
        });
    }
    drop(listener);
    tracker.close();
    tracing::info!(
        connections = tracker.len(),
        "stopped accepting connections; draining in-flight requests"
    );
    tokio::select! {
        _ = tracker.wait() => {
            tracing::info!("all connections drained");
            Drained::Clean
        }
        _ = tokio::time::sleep(limits.drain_timeout) => {
            tracing::warn!(
                timeout = ?limits.drain_timeout,
                connections = tracker.len(),
                "drain timed out; dropping the remaining connections"
            );
            force.cancel();
            // Each task ends at its next poll, dropping its request.
            let _ = tokio::time::timeout(Duration::from_millis(200), tracker.wait()).await;
            Drained::Forced
        }
    }
}

/// The connection's stream with a write deadline: hyper has none, and a
/// client that stops reading would otherwise hold its connection (and a
/// permit) for as long as it likes.
fn write_deadline(
    stream: TcpStream,
    timeout: Duration,
) -> std::pin::Pin<Box<tokio_io_timeout::TimeoutStream<TcpStream>>> {
    let mut io = tokio_io_timeout::TimeoutStream::new(stream);
    io.set_write_timeout(Some(timeout));
    Box::pin(io)
}

/// Connections held per client address, each counted while its slot lives.
#[derive(Debug)]
struct PerAddr {
    cap: usize,
    held: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in its address's count.
#[derive(Debug)]
struct AddrSlot {
    table: Arc<PerAddr>,
    addr: IpAddr,
}

impl PerAddr {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            held: Mutex::default(),
        }
    }

    fn take(self: &Arc<Self>, addr: IpAddr) -> Option<AddrSlot> {
        let mut held = self.held.lock().expect("per-address connections");
        let n = held.entry(addr).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(AddrSlot {
            table: self.clone(),
            addr,
        })
    }
}

impl Drop for AddrSlot {
    fn drop(&mut self) {
        let mut held = self.table.held.lock().expect("per-address connections");
        if let Some(n) = held.get_mut(&self.addr) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.addr);
            }
        }
    }
}

/// Answers one request on a connection over its address's cap with `503`
/// and closes it: the client learns why, and holds nothing.
async fn refuse(
    stream: TcpStream,
    timeout: Duration,
    cap: usize,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .keep_alive(false);
    let conn = builder.serve_connection(
        TokioIo::new(stream),
        service_fn(move |_req| async move {
            let e = ApiError::unavailable(format!(
                "too many connections from your address (at most {cap}): close idle ones and retry"
            ));
            Ok::<_, std::convert::Infallible>(e.into_response())
        }),
    );
    let _ = tokio::time::timeout(timeout, conn).await;
    drop(permit);
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

/// A JSON object body as `T`, or a 400 saying what is wrong with it.
/// serde's derive also reads a struct from an array (`["e","u",1]` would
/// be a reservation): the contract says object, so nothing else is read.
pub fn json_object<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => serde_json::from_slice(body)
            .map_err(|e| ApiError::invalid(format!("invalid {what}: {e}"))),
        Some(0xEF) if body.trim_ascii_start().starts_with(b"\xEF\xBB\xBF") => {
            Err(ApiError::invalid(format!(
                "invalid {what}: send the JSON without a byte order mark"
            )))
        }
        _ => Err(ApiError::invalid(format!(
            "invalid {what}: the body must be a JSON object"
        ))),
    }
}

/// An optional JSON object body: none, or `null` (what a client library
/// writes for none), is `T::default()`.
pub fn optional_json_object<T>(body: &[u8], what: &str) -> Result<T, ApiError>
where
    T: serde::de::DeserializeOwned + Default,
{
    match body.trim_ascii() {
        b"" | b"null" => Ok(T::default()),
        _ => json_object(body, what),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_at_most_its_cap_and_gets_slots_back() {
        let table = Arc::new(PerAddr::new(2));
        let (a, b): (IpAddr, IpAddr) = ([127, 0, 0, 1].into(), [127, 0, 0, 2].into());
        let first = table.take(a).expect("first");
        let second = table.take(a).expect("second");
        assert!(table.take(a).is_none(), "a third from the same address");
        let other = table.take(b).expect("another address is not affected");
        drop(first);
        let again = table.take(a).expect("a slot back once one closed");
        drop((second, other, again));
        assert!(
            table.held.lock().unwrap().is_empty(),
            "addresses with no connection are forgotten"
        );
    }
}
