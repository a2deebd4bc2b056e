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
}
