//! The live feed (`GET /ws`): one JSON snapshot several times a second.

use crate::api::EventView;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Everything the console shows, as of `at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub at: DateTime<Utc>,
    /// The interval the rates are measured over.
    pub interval_ms: u64,
    pub gateway: GatewayStats,
    pub queue: QueueStats,
    pub workers: WorkerStats,
    /// Per event, from PostgreSQL (committed seats).
    pub events: Vec<EventView>,
    /// Which services the gateway reached while building this snapshot
    /// (absent from gateways that do not probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<ServiceHealth>,
    /// Every gateway and worker of the namespace heard from lately, this
    /// gateway first: each one's own figures and the nodes it reaches.
    /// `gateway` above sums the gateways listed here that are live.
    #[serde(default)]
    pub daemons: Vec<DaemonView>,
    /// Purchases and seats returned per second (0 without holds).
    #[serde(default)]
    pub holds: HoldStats,
}

/// What a daemon is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DaemonKind {
    Gateway,
    Worker,
}

impl DaemonKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DaemonKind::Gateway => "gateway",
            DaemonKind::Worker => "worker",
        }
    }
}

/// One daemon's report, published by the daemon several times a second
/// (through Redis pub/sub) and relayed in every gateway's snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonView {
    /// Unique in the namespace: `FLASHGRID_INSTANCE`, or host and process.
    pub id: String,
    pub kind: DaemonKind,
    /// Where a gateway listens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// How long ago the gateway building the snapshot last heard from it
    /// (0 for itself); one that stays silent is dropped after a while.
    #[serde(default)]
    pub silent_ms: u64,
    /// A gateway's `/reserve` figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayStats>,
    /// The latency buckets of `gateway` (the counts of its interval), so
    /// that the percentiles of several gateways can be merged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency_buckets: Vec<u64>,
    /// A worker's decisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerStats>,
    /// Each node of each service this daemon is configured with, and
    /// whether it answered the daemon's last probe.
    #[serde(default)]
    pub nodes: Vec<NodeView>,
}

impl DaemonView {
    /// The nodes it could not reach.
    pub fn unreached(&self) -> impl Iterator<Item = &NodeView> {
        self.nodes.iter().filter(|n| !n.up)
    }
}

/// A node of a service as one daemon sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    /// `postgres`, `redis` or `rabbitmq`.
    pub service: String,
    /// `host:port`, as configured (never with credentials).
    pub addr: String,
    /// It answered the last probe.
    pub up: bool,
    /// The node's role where the service has roles (a Redis node's
    /// `master` or `replica`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The daemon's connection to the service goes to this node (a
    /// RabbitMQ cluster: the node it is connected to).
    #[serde(default)]
    pub connected: bool,
}

/// Whether the gateway reaches each service it depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceHealth {
    pub postgres: bool,
    pub redis: bool,
    pub rabbitmq: bool,
}

impl ServiceHealth {
    /// The names of the services that did not answer.
    pub fn down(&self) -> impl Iterator<Item = &'static str> {
        [
            ("PostgreSQL", self.postgres),
            ("Redis", self.redis),
            ("RabbitMQ", self.rabbitmq),
        ]
        .into_iter()
        .filter(|(_, up)| !up)
        .map(|(name, _)| name)
    }
}

/// `/reserve` at this gateway.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GatewayStats {
    pub requests_per_s: f64,
    /// `202`s.
    pub accepted_per_s: f64,
    /// Refused at the gateway without touching the queue (`4xx`: sold out,
    /// closed, invalid, unknown).
    pub rejected_per_s: f64,
    /// `503`s: the broker could not take the reservation durably.
    pub unavailable_per_s: f64,
    /// Latency of `/reserve` over the interval.
    pub latency_ms: LatencyMs,
    pub requests_total: u64,
    pub accepted_total: u64,
    pub rejected_total: u64,
    pub unavailable_total: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyMs {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueStats {
    /// Messages (groups of reservations) waiting; `None` while the broker is away.
    pub depth: Option<u64>,
    pub consumers: Option<u64>,
}

/// Decisions reported by every worker (through Redis pub/sub, per interval).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerStats {
    pub confirmed_per_s: f64,
    pub rejected_per_s: f64,
    /// Rows written to PostgreSQL per second.
    pub db_writes_per_s: f64,
    pub confirmed_total: u64,
    pub rejected_total: u64,
    pub db_writes_total: u64,
    /// Holds the sweepers expired per second, in seats (absent from older
    /// daemons).
    #[serde(default)]
    pub expired_per_s: f64,
    #[serde(default)]
    pub expired_total: u64,
}

/// What holds do, over every event, from PostgreSQL's counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HoldStats {
    /// Seats purchased per second.
    pub purchased_per_s: f64,
    /// Seats given back (expired or cancelled) and on sale again, per second.
    pub returned_per_s: f64,
}
