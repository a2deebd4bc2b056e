//! The live feed: a task builds one snapshot per interval (rates from the
//! counters' deltas, queue depth, per-event counts) and publishes it through a
//! `watch` channel; each WebSocket client sends the latest one it has not
//! sent. A slow client skips snapshots and a stuck one is dropped: neither
//! ever slows the gateway.
//!
//! Each interval the gateway also publishes its own view (its figures and
//! the nodes it reaches) to the other daemons through Redis, and its
//! snapshot lists every daemon heard from ([`Peers`]), with the `/reserve`
//! figures summed over the live gateways: whichever gateway the console
//! connects to, it shows the whole stack.

use super::catalog::Catalog;
use super::error::{ApiError, Body};
use super::peers::{self, Peers};
use super::publisher::QueueProbe;
use super::stats::{LatencyHistogram, Stats};
use crate::db;
use crate::names::Namespace;
use crate::notify::{self, Notice};
use bytes::Bytes;
use chrono::Utc;
use flashgrid_wire::{
    DaemonKind, DaemonView, GatewayStats, HoldStats, LatencyMs, QueueStats, ServiceHealth,
    Snapshot, WorkerStats,
};
use futures::{SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_util::sync::CancellationToken;

/// How often a snapshot is built (the design asks for at least 4 a second).
pub const INTERVAL: Duration = Duration::from_millis(250);
/// A client that cannot take one snapshot within this long is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// How long each service probe of a snapshot may take: a service that has
/// gone silent shows as down instead of stalling the feed.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// This gateway as the other daemons see it.
#[derive(Debug)]
pub struct Me {
    pub peers: Arc<Peers>,
    pub listen: String,
    pub nodes: crate::reach::Nodes,
    pub ns: Namespace,
}

/// Builds snapshots until `stop`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    stats: Arc<Stats>,
    pool: PgPool,
    redis: crate::store::Store,
    catalog: Arc<Catalog>,
    queue: QueueProbe,
    me: Me,
    out: watch::Sender<Option<Arc<Bytes>>>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut prev = Reading::take(&stats);
    let mut events = Vec::new();
    // The events PostgreSQL last listed, and when: the purchases and
    // returns since are divided by the time since (not by one interval,
    // after an outage).
    let mut listed_before: (Vec<flashgrid_wire::EventView>, Instant) = (Vec::new(), Instant::now());
    loop {
        tokio::select! {
            _ = stop.cancelled() => {
                // Gone on purpose: the other gateways drop it at once.
                let left = Notice::Left(DaemonKind::Gateway, me.peers.me().to_owned());
                let _ = tokio::time::timeout(INTERVAL * 2, notify::publish(&redis, &me.ns, &left)).await;
                return;
            }
            _ = tick.tick() => {}
        }
        let now = Reading::take(&stats);
        // The three services are asked at once, each within PROBE_TIMEOUT.
        let mut conn = redis.clone();
        let ping = redis::cmd("PING");
        let (listed, queued, pong) = tokio::join!(
            tokio::time::timeout(PROBE_TIMEOUT, db::list_events(&pool)),
            tokio::time::timeout(PROBE_TIMEOUT, queue.depth()),
            tokio::time::timeout(PROBE_TIMEOUT, ping.query_async::<()>(&mut conn)),
        );
        // The events come from PostgreSQL; if it is away the last known
        // counts are shown (and the services say so).
        let fresh = matches!(listed, Ok(Ok(_)));
        let postgres = match listed {
            Ok(Ok(list)) => {
                events = list
                    .iter()
                    .map(|e| e.view(catalog.is_sold_out(&e.id)))
                    .collect();
                true
            }
            _ => false,
        };
        let (depth, consumers) = match queued.ok().flatten() {
            Some(d) => (Some(u64::from(d.messages)), Some(u64::from(d.consumers))),
            None => (None, None),
        };
        stats.queue_depth.set(depth.map_or(-1, |d| d as i64));
        let (mut snap, window) = now.snapshot(&prev, depth, consumers, events.clone());
        if fresh {
            let since = listed_before.1.elapsed().as_millis() as u64;
            snap.holds = hold_rates(&listed_before.0, &snap.events, since);
            listed_before = (snap.events.clone(), Instant::now());
        }
        snap.services = Some(ServiceHealth {
            postgres,
            redis: matches!(pong, Ok(Ok(()))),
            rabbitmq: depth.is_some(),
        });
        let own = DaemonView {
            id: me.peers.me().to_owned(),
            kind: DaemonKind::Gateway,
            listen: Some(me.listen.clone()),
            silent_ms: 0,
            gateway: Some(snap.gateway.clone()),
            latency_buckets: window.to_vec(),
            worker: None,
            nodes: me.nodes.borrow().as_ref().clone(),
        };
        // Fire and forget, bounded: a Redis that is away must not hold up
        // the feed (the snapshot says Redis is down anyway).
        let notice = Notice::Daemon(Box::new(own.clone()));
        let (conn, ns) = (redis.clone(), me.ns.clone());
        tokio::spawn(async move {
            let _ = tokio::time::timeout(INTERVAL * 2, notify::publish(&conn, &ns, &notice)).await;
        });
        let others = me.peers.listed(Instant::now());
        snap.gateway = sum_gateways(&snap.gateway, &window, &others);
        snap.daemons = std::iter::once(own).chain(others).collect();
        if let Ok(json) = serde_json::to_vec(&snap) {
            out.send_replace(Some(Arc::new(Bytes::from(json))));
        }
        prev = now;
    }
}

/// The counters at one instant.
struct Reading {
    at: Instant,
    requests: u64,
    accepted: u64,
    rejected: u64,
    unavailable: u64,
    latency: [u64; 24],
    confirmed: u64,
    worker_rejected: u64,
    written: u64,
    expired: u64,
}

impl Reading {
    fn take(s: &Stats) -> Self {
        Self {
            at: Instant::now(),
            requests: s.requests.get(),
            accepted: s.accepted.get(),
            rejected: s.rejected.get(),
            unavailable: s.unavailable.get(),
            latency: s.latency.counts(),
            confirmed: s.worker_confirmed.get(),
            worker_rejected: s.worker_rejected.get(),
            written: s.worker_written.get(),
            expired: s.worker_expired.get(),
        }
    }

    fn snapshot(
        &self,
        prev: &Reading,
        depth: Option<u64>,
        consumers: Option<u64>,
        events: Vec<flashgrid_wire::EventView>,
    ) -> (Snapshot, [u64; 24]) {
        let secs = self.at.duration_since(prev.at).as_secs_f64().max(1e-3);
        let rate = |now: u64, before: u64| now.saturating_sub(before) as f64 / secs;
        let window: [u64; 24] =
            std::array::from_fn(|i| self.latency[i].saturating_sub(prev.latency[i]));
        let snap = Snapshot {
            at: Utc::now(),
            interval_ms: (secs * 1000.0) as u64,
            gateway: GatewayStats {
                requests_per_s: rate(self.requests, prev.requests),
                accepted_per_s: rate(self.accepted, prev.accepted),
                rejected_per_s: rate(self.rejected, prev.rejected),
                unavailable_per_s: rate(self.unavailable, prev.unavailable),
                latency_ms: latency_of(&window),
                requests_total: self.requests,
                accepted_total: self.accepted,
                rejected_total: self.rejected,
                unavailable_total: self.unavailable,
            },
            queue: QueueStats { depth, consumers },
            workers: WorkerStats {
                confirmed_per_s: rate(self.confirmed, prev.confirmed),
                rejected_per_s: rate(self.worker_rejected, prev.worker_rejected),
                db_writes_per_s: rate(self.written, prev.written),
                confirmed_total: self.confirmed,
                rejected_total: self.worker_rejected,
                db_writes_total: self.written,
                expired_per_s: rate(self.expired, prev.expired),
                expired_total: self.expired,
            },
            events,
            services: None,
            daemons: Vec::new(),
            holds: Default::default(),
        };
        (snap, window)
    }
}

/// Seats purchased and returned per second between two lists of events
/// (matched by id; a reset, which zeroes the counts, counts nothing).
fn hold_rates(
    before: &[flashgrid_wire::EventView],
    now: &[flashgrid_wire::EventView],
    interval_ms: u64,
) -> HoldStats {
    let secs = (interval_ms as f64 / 1000.0).max(1e-3);
    let (mut purchased, mut returned) = (0u64, 0u64);
    for e in now.iter().filter(|e| e.hold_seconds.is_some()) {
        if let Some(b) = before.iter().find(|b| b.event_id == e.event_id) {
            purchased += u64::from(e.purchased.saturating_sub(b.purchased));
            returned += u64::from(e.released.saturating_sub(b.released));
        }
    }
    HoldStats {
        purchased_per_s: purchased as f64 / secs,
        returned_per_s: returned as f64 / secs,
    }
}

/// The percentiles of a window of latency buckets.
fn latency_of(window: &[u64; 24]) -> LatencyMs {
    let q = |q: f64| LatencyHistogram::quantile(window, q);
    LatencyMs {
        p50: q(0.5),
        p90: q(0.9),
        p99: q(0.99),
        p99_9: q(0.999),
        max: q(1.0),
    }
}

/// `/reserve` over every live gateway: this one's figures plus those the
/// others last reported, rates and totals summed, percentiles of the merged
/// buckets (a view with buckets of another shape adds its rates only).
fn sum_gateways(own: &GatewayStats, window: &[u64; 24], others: &[DaemonView]) -> GatewayStats {
    let mut sum = own.clone();
    let mut merged = *window;
    let mut merged_any = false;
    for v in others.iter().filter(|v| peers::is_live(v)) {
        let Some(g) = &v.gateway else { continue };
        sum.requests_per_s += g.requests_per_s;
        sum.accepted_per_s += g.accepted_per_s;
        sum.rejected_per_s += g.rejected_per_s;
        sum.unavailable_per_s += g.unavailable_per_s;
        sum.requests_total += g.requests_total;
        sum.accepted_total += g.accepted_total;
        sum.rejected_total += g.rejected_total;
        sum.unavailable_total += g.unavailable_total;
        if v.latency_buckets.len() == merged.len() {
            for (m, b) in merged.iter_mut().zip(&v.latency_buckets) {
                *m += b;
            }
            merged_any = true;
        }
    }
    if merged_any {
        sum.latency_ms = latency_of(&merged);
    }
    sum
}

/// Answers the WebSocket handshake and serves the feed on the upgraded
/// connection until the client leaves or the gateway stops.
pub fn upgrade(
    req: Request<Incoming>,
    feed: watch::Receiver<Option<Arc<Bytes>>>,
    stop: CancellationToken,
) -> Result<Response<Body>, ApiError> {
    let key = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or_else(|| ApiError::invalid("GET /ws is a WebSocket: send the upgrade headers"))?;
    let is_upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !is_upgrade {
        return Err(ApiError::invalid(
            "GET /ws is a WebSocket: send `Upgrade: websocket`",
        ));
    }
    let accept = derive_accept_key(key.as_bytes());
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                serve(ws, feed, stop).await;
            }
            Err(e) => tracing::debug!(error = %e, "feed upgrade failed"),
        }
    });
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    Ok(resp)
}

async fn serve<S>(
    ws: WebSocketStream<S>,
    mut feed: watch::Receiver<Option<Arc<Bytes>>>,
    stop: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut tx, mut rx) = ws.split();
    // Send the current snapshot at once, then each new one.
    feed.mark_changed();
    loop {
        tokio::select! {
            _ = stop.cancelled() => {
                let _ = tx.send(Message::Close(None)).await;
                return;
            }
            changed = feed.changed() => {
                if changed.is_err() {
                    return;
                }
                let Some(snap) = feed.borrow_and_update().clone() else { continue };
                let msg = Message::Text(String::from_utf8_lossy(&snap).into_owned().into());
                match tokio::time::timeout(SEND_TIMEOUT, tx.send(msg)).await {
                    Ok(Ok(())) => {}
                    _ => return, // gone, or too slow to keep
                }
            }
            incoming = rx.next() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {} // pings are answered by tungstenite
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sale(
        id: &str,
        hold: Option<u32>,
        purchased: u32,
        released: u32,
    ) -> flashgrid_wire::EventView {
        flashgrid_wire::EventView {
            event_id: flashgrid_wire::EventId::parse(id).unwrap(),
            name: id.into(),
            capacity: 100,
            remaining: 0,
            confirmed: 100,
            per_user_limit: flashgrid_wire::PerUserLimit::DEFAULT,
            sold_out: true,
            opens_at: None,
            closes_at: None,
            hold_seconds: hold,
            held: 100 - purchased,
            purchased,
            released,
        }
    }

    #[test]
    fn purchases_and_returns_are_rates_of_the_events_counts() {
        let before = [sale("a", Some(5), 10, 4), sale("b", Some(5), 50, 0)];
        let now = [
            sale("a", Some(5), 15, 6),
            // Reset since: its counts start again, nothing is counted.
            sale("b", Some(5), 0, 0),
            // New: counted from its next snapshot.
            sale("c", Some(5), 9, 9),
        ];
        let r = hold_rates(&before, &now, 250);
        assert_eq!((r.purchased_per_s, r.returned_per_s), (20.0, 8.0));
        // An event without holds counts nothing.
        let plain = [sale("a", None, 0, 0)];
        assert_eq!(hold_rates(&plain, &plain, 250), HoldStats::default());
    }

    fn gateway(id: &str, silent_ms: u64, requests_per_s: f64, buckets: Vec<u64>) -> DaemonView {
        DaemonView {
            id: id.into(),
            kind: DaemonKind::Gateway,
            listen: None,
            silent_ms,
            gateway: Some(GatewayStats {
                requests_per_s,
                requests_total: 100,
                ..Default::default()
            }),
            latency_buckets: buckets,
            worker: None,
            nodes: vec![],
        }
    }

    #[test]
    fn sums_the_live_gateways_and_merges_their_latencies() {
        // This gateway answered 90 requests within 16 µs.
        let mut window = [0u64; 24];
        window[0] = 90;
        let own = GatewayStats {
            requests_per_s: 10.0,
            requests_total: 5,
            latency_ms: latency_of(&window),
            ..Default::default()
        };
        // Another answered 10 in its slowest bucket; a third is silent.
        let mut slow = vec![0u64; 24];
        slow[10] = 10;
        let others = [
            gateway("b", 300, 20.0, slow),
            gateway("c", peers::LIVE.as_millis() as u64 + 1, 1000.0, vec![0; 24]),
            DaemonView {
                kind: DaemonKind::Worker,
                gateway: None,
                ..gateway("w", 0, 0.0, vec![])
            },
        ];
        let sum = sum_gateways(&own, &window, &others);
        assert_eq!(sum.requests_per_s, 30.0);
        assert_eq!(sum.requests_total, 105);
        // 10 % of the merged requests are slow: p50 fast, p99 slow.
        assert_eq!(sum.latency_ms.p50, LatencyHistogram::upper_ms(0));
        assert_eq!(sum.latency_ms.p99, LatencyHistogram::upper_ms(10));
        // Alone, this gateway's p99 is fast.
        assert_eq!(
            sum_gateways(&own, &window, &[]).latency_ms.p99,
            LatencyHistogram::upper_ms(0)
        );
    }
}
