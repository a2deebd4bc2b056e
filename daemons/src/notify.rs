//! Pub/sub between workers and gateways over Redis: sold-out announcements,
//! event changes, decided reservations (to wake long-polls) and what
//! PostgreSQL held at each commit (every worker's floor). Workers send one
//! message per batch, never one per reservation.

use crate::backoff::Backoff;
use crate::inventory::Floor;
use crate::names::Namespace;
use crate::store::Store;
use flashgrid_wire::{DaemonKind, DaemonView, EventId, ReservationId};
use futures::StreamExt;
use redis::AsyncCommands;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// One pub/sub message.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// The event's stock reached zero (sent by decide.lua).
    SoldOut(EventId),
    /// The event was created or reset: reload it.
    EventChanged(EventId),
    /// These reservations of the event were decided and committed.
    Decided(EventId, Vec<ReservationId>),
    /// What PostgreSQL held of the event after a worker's commit: every
    /// worker raises its floor to it (see `Decider::follow_floors`).
    Floor(EventId, Floor),
    /// A worker's decisions since its last report (sent per interval).
    Stats(WorkerReport),
    /// A gateway's or worker's own figures and the nodes it reaches (sent
    /// per interval by every daemon), for every gateway's feed.
    Daemon(Box<DaemonView>),
    /// The daemon stopped on purpose (sent as it shuts down).
    Left(DaemonKind, String),
}

/// What one worker decided over one interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerReport {
    pub confirmed: u64,
    pub rejected: u64,
    pub written: u64,
    /// Confirmations PostgreSQL's capacity guard refused (Redis was wrong).
    pub revoked: u64,
    /// Messages handed back to the queue, their rejections not certain yet
    /// (see `Decider::make_certain`).
    pub handed_back: u64,
    /// Seats of holds the worker's sweeper expired.
    pub expired: u64,
}

impl Notice {
    pub fn encode(&self) -> String {
        match self {
            Notice::SoldOut(e) => format!("soldout {e}"),
            Notice::EventChanged(e) => format!("event {e}"),
            Notice::Floor(e, f) => format!("floor {e} {} {} {}", f.sale, f.max_stock, f.released),
            Notice::Stats(r) => format!(
                "stats {} {} {} {} {} {}",
                r.confirmed, r.rejected, r.written, r.revoked, r.handed_back, r.expired
            ),
            Notice::Daemon(view) => {
                // A wire type, in JSON: new fields stay readable by older gateways.
                let json = serde_json::to_string(view).unwrap_or_default();
                format!("daemon {json}")
            }
            Notice::Left(kind, id) => format!("left {} {id}", kind.as_str()),
            Notice::Decided(e, ids) => {
                let mut s = String::with_capacity(9 + e.as_str().len() + ids.len() * 37);
                s.push_str("decided ");
                s.push_str(e.as_str());
                for id in ids {
                    s.push(' ');
                    s.push_str(&id.to_string());
                }
                s
            }
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        if let Some(json) = raw.strip_prefix("daemon ") {
            return serde_json::from_str(json)
                .ok()
                .map(|v| Notice::Daemon(Box::new(v)));
        }
        if let Some(rest) = raw.strip_prefix("left ") {
            // The id is the rest: a name given in FLASHGRID_INSTANCE may
            // hold spaces.
            let (kind, id) = rest.split_once(' ')?;
            let kind = match kind {
                "gateway" => DaemonKind::Gateway,
                "worker" => DaemonKind::Worker,
                _ => return None,
            };
            return Some(Notice::Left(kind, id.to_owned()));
        }
        let mut words = raw.split(' ');
        let kind = words.next()?;
        if kind == "stats" {
            let mut n = || words.next()?.parse().ok();
            return Some(Notice::Stats(WorkerReport {
                confirmed: n()?,
                rejected: n()?,
                written: n()?,
                // Absent from an older worker's report: none counted.
                revoked: words.next().map_or(Some(0), |w| w.parse().ok())?,
                handed_back: words.next().map_or(Some(0), |w| w.parse().ok())?,
                expired: words.next().map_or(Some(0), |w| w.parse().ok())?,
            }));
        }
        let event = EventId::parse(words.next()?).ok()?;
        match kind {
            "soldout" => Some(Notice::SoldOut(event)),
            "floor" => {
                let floor = Floor {
                    sale: words.next()?.parse().ok()?,
                    max_stock: words.next()?.parse().ok()?,
                    released: words.next()?.parse().ok()?,
                };
                // Capacity less confirmed seats, each a u32: nothing else is
                // a floor PostgreSQL could have held.
                if floor.max_stock.unsigned_abs() > u64::from(u32::MAX) {
                    return None;
                }
                words
                    .next()
                    .is_none()
                    .then_some(Notice::Floor(event, floor))
            }
            "event" => Some(Notice::EventChanged(event)),
            "decided" => Some(Notice::Decided(
                event,
                words.map(|w| w.parse().ok()).collect::<Option<_>>()?,
            )),
            _ => None,
        }
    }
}

/// Publishes one notice; failures are logged, not returned: every receiver
/// also refreshes periodically, so a lost notice only delays.
pub async fn publish(conn: &Store, ns: &Namespace, notice: &Notice) {
    let mut conn = conn.clone();
    if let Err(e) = conn
        .publish::<_, _, ()>(ns.notify_channel(), notice.encode())
        .await
    {
        tracing::warn!(error = %e, "could not publish a notice to Redis; receivers will catch up on their next refresh");
    }
}

/// What a gateway publishes every [`HEARTBEAT_EVERY`], so that its own
/// subscription hears something even while no sale runs: one that stays
/// silent for [`SILENCE_LIMIT`] is taken for dead (a cluster node cut off
/// without a reset) and replaced by one on the next node.
const PING: &str = "ping";
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
const SILENCE_LIMIT: Duration = Duration::from_secs(7);

/// Publishes a heartbeat every [`HEARTBEAT_EVERY`] until `stop`.
pub async fn heartbeat(conn: Store, ns: Namespace, stop: CancellationToken) {
    let channel = ns.notify_channel();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(HEARTBEAT_EVERY) => {}
        }
        let mut conn = conn.clone();
        // A failure is the listener's to notice (by the silence).
        let _ =
            tokio::time::timeout(HEARTBEAT_EVERY, conn.publish::<_, _, ()>(&channel, PING)).await;
    }
}

/// What a subscriber receives.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    /// (Re)subscribed: notices sent meanwhile may have been missed, refresh.
    Subscribed,
    Notice(Notice),
}

/// Listens to the namespace's channel until `shutdown`, reconnecting with
/// backoff; `on` is called for each notice and after each (re)subscription.
/// `nodes` are where it may listen (a cluster forwards every PUBLISH to all
/// its nodes): it keeps to one, and moves to the next when it fails.
pub async fn listen(
    nodes: Vec<redis::Client>,
    ns: Namespace,
    shutdown: CancellationToken,
    mut on: impl FnMut(Received),
) {
    let channel = ns.notify_channel();
    let mut backoff = Backoff::reconnect(Duration::from_millis(100));
    if nodes.is_empty() {
        tracing::error!("no Redis node to subscribe to: notices are not followed");
        return;
    }
    // Each failure moves to the next node (a single server: the same one).
    for client in nodes.iter().cycle() {
        let attempt = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = tokio::time::timeout(Duration::from_secs(3), attempt) => r,
        };
        let delay = match pubsub {
            Ok(Ok(pubsub)) => {
                backoff.reset();
                on(Received::Subscribed);
                let mut stream = pubsub.into_on_message();
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        msg = stream.next() => match msg {
                            Some(msg) => {
                                let payload: String = msg.get_payload().unwrap_or_default();
                                match Notice::parse(&payload) {
                                    Some(n) => on(Received::Notice(n)),
                                    None if payload == PING => {}
                                    None => tracing::debug!(payload, "ignored an unknown notice"),
                                }
                            }
                            None => break,
                        },
                        _ = tokio::time::sleep(SILENCE_LIMIT) => {
                            tracing::warn!(node = %client.get_connection_info().addr(), "no notice, not even a heartbeat, for {SILENCE_LIMIT:?}: taking the subscription for dead");
                            break;
                        }
                    }
                }
                tracing::warn!(node = %client.get_connection_info().addr(), "lost the Redis pub/sub connection; resubscribing");
                backoff.next_delay()
            }
            Ok(Err(e)) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, "cannot subscribe to Redis pub/sub; retrying in {delay:?}");
                delay
            }
            Err(_) => {
                let delay = backoff.next_delay();
                tracing::warn!("subscribing to Redis pub/sub timed out; retrying in {delay:?}");
                delay
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip() {
        let e = EventId::parse("e-1").unwrap();
        for n in [
            Notice::SoldOut(e.clone()),
            Notice::EventChanged(e.clone()),
            Notice::Decided(
                e.clone(),
                vec![ReservationId::random(), ReservationId::random()],
            ),
            Notice::Decided(e.clone(), vec![]),
            Notice::Floor(
                e.clone(),
                Floor {
                    sale: 2,
                    max_stock: -3,
                    released: 7,
                },
            ),
            Notice::Stats(WorkerReport {
                confirmed: 3,
                rejected: 40,
                written: 3,
                revoked: 2,
                handed_back: 1,
                expired: 6,
            }),
            Notice::Daemon(Box::new(DaemonView {
                id: "gw 1".into(),
                kind: flashgrid_wire::DaemonKind::Gateway,
                listen: Some("127.0.0.1:8080".into()),
                silent_ms: 0,
                gateway: Some(Default::default()),
                latency_buckets: vec![0, 3, 1],
                worker: None,
                nodes: vec![flashgrid_wire::NodeView {
                    service: "redis".into(),
                    addr: "127.0.0.1:7000".into(),
                    up: true,
                    role: Some("master".into()),
                    connected: false,
                }],
            })),
            Notice::Left(DaemonKind::Worker, "w 1".into()),
            Notice::Left(DaemonKind::Gateway, "gateway-0".into()),
        ] {
            assert_eq!(Notice::parse(&n.encode()), Some(n));
        }
        assert_eq!(Notice::parse("soldout"), None);
        assert_eq!(Notice::parse("decided e x"), None);
        assert_eq!(Notice::parse("floor e 1 2"), None);
        assert_eq!(Notice::parse("floor e 1 x 3"), None);
        assert_eq!(Notice::parse("floor e 1 2 3 4"), None);
        assert_eq!(Notice::parse("floor e 1 -9223372036854775808 3"), None);
        assert_eq!(Notice::parse("what e"), None);
        assert_eq!(Notice::parse("daemon {not json"), None);
        assert_eq!(Notice::parse("left robot r-1"), None);
        assert_eq!(Notice::parse("left worker"), None);
        assert_eq!(Notice::parse("stats 1 2"), None);
        assert_eq!(Notice::parse("stats 1 2 3 x"), None);
        // An older worker's report, without the revoked count.
        assert_eq!(
            Notice::parse("stats 1 2 3"),
            Some(Notice::Stats(WorkerReport {
                confirmed: 1,
                rejected: 2,
                written: 3,
                revoked: 0,
                handed_back: 0,
                expired: 0,
            }))
        );
    }
}
