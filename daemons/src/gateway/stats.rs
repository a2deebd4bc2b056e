//! The gateway's counters: lock-free atomics bumped on the `/reserve` path,
//! read by the feed every interval and by `/metrics` on each scrape.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Latency buckets: bucket `i` holds latencies up to `BASE_US << i`
/// microseconds (16 µs … ~67 s), the last one everything slower.
const BASE_US: u64 = 16;
const BUCKETS: usize = 24;

/// A lock-free latency histogram with power-of-two buckets.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    counts: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
}

impl LatencyHistogram {
    pub fn record(&self, d: Duration) {
        let us = d.as_micros() as u64;
        let i = (us
            .max(1)
            .div_ceil(BASE_US)
            .next_power_of_two()
            .trailing_zeros() as usize)
            .min(BUCKETS - 1);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Current counts, for differencing between two reads.
    pub fn counts(&self) -> [u64; BUCKETS] {
        std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed))
    }

    /// Upper bound of bucket `i`, in milliseconds.
    pub fn upper_ms(i: usize) -> f64 {
        (BASE_US << i) as f64 / 1000.0
    }

    /// The `q` quantile (0..=1) of bucket counts, as the bucket's upper bound in ms.
    pub fn quantile(counts: &[u64; BUCKETS], q: f64) -> f64 {
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::upper_ms(i);
            }
        }
        Self::upper_ms(BUCKETS - 1)
    }
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let counts = self.counts();
        let buckets: Vec<(f64, u64)> = counts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let upper = if i == BUCKETS - 1 {
                    f64::MAX
                } else {
                    Self::upper_ms(i) / 1000.0
                };
                (upper, *c)
            })
            .collect();
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            sum,
            counts.iter().sum(),
            &buckets,
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Every counter of one gateway.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: Counter,
    pub accepted: Counter,
    pub rejected: Counter,
    pub unavailable: Counter,
    /// Messages published to the reservation queues: each carries a group
    /// of reservations, so `accepted / published` is the mean group size.
    pub published: Counter,
    pub latency: LatencyHistogram,
    /// Sums of what workers reported.
    pub worker_confirmed: Counter,
    pub worker_rejected: Counter,
    pub worker_written: Counter,
    pub worker_revoked: Counter,
    pub worker_handed_back: Counter,
    pub worker_expired: Counter,
    pub queue_depth: Gauge,
    /// PostgreSQL lookups made by the read routes (status URLs, `/events`).
    pub read_lookups: Counter,
    /// Read requests answered 503 because their lookup budget was busy.
    pub read_shed: Counter,
    /// Reservations with a status long-poll open (set at each scrape).
    pub long_polls: Gauge,
}

impl Stats {
    /// Counts one answered `/reserve`.
    pub fn record_reserve(&self, status: u16, took: Duration) {
        self.requests.inc();
        match status {
            202 => self.accepted.inc(),
            503 => self.unavailable.inc(),
            _ => self.rejected.inc(),
        };
        self.latency.record(took);
    }

    /// One PostgreSQL lookup of a read route under way.
    pub fn read_lookup(&self) {
        self.read_lookups.inc();
    }

    /// One read request turned away for want of a lookup.
    pub fn read_shed(&self) {
        self.read_shed.inc();
    }

    /// The Prometheus registry over these counters (built per scrape: cheap,
    /// and it keeps `Stats` a plain struct of atomics).
    pub fn render(self: &std::sync::Arc<Self>) -> String {
        let mut r = Registry::with_prefix("flashgrid");
        r.register(
            "reserve_requests",
            "Reservation requests answered by this gateway",
            self.requests.clone(),
        );
        r.register(
            "reserve_accepted",
            "Reservations accepted (202) once durably queued",
            self.accepted.clone(),
        );
        r.register(
            "reserve_rejected",
            "Reservations refused at the gateway (4xx), never queued",
            self.rejected.clone(),
        );
        r.register(
            "reserve_unavailable",
            "Reservations answered 503: the broker could not take them durably",
            self.unavailable.clone(),
        );
        r.register(
            "publish_messages",
            "Messages this gateway published to the reservation queues, each a group of reservations (reserve_accepted / publish_messages is the mean group size: the broker's work is per message)",
            self.published.clone(),
        );
        r.register(
            "worker_confirmed",
            "Confirmations reported by workers",
            self.worker_confirmed.clone(),
        );
        r.register(
            "worker_rejected",
            "Rejections reported by workers",
            self.worker_rejected.clone(),
        );
        r.register(
            "db_writes",
            "Reservation rows written to PostgreSQL, as reported by workers",
            self.worker_written.clone(),
        );
        r.register(
            "worker_revoked",
            "Confirmations Redis made that PostgreSQL's capacity guard refused, as reported by workers (anything above 0 is a defect)",
            self.worker_revoked.clone(),
        );
        r.register(
            "worker_handed_back",
            "Messages workers handed back to the queue because a rejection in them still rested on a confirmation not committed (decided again until certain)",
            self.worker_handed_back.clone(),
        );
        r.register(
            "worker_expired",
            "Seats of holds the workers' sweepers expired (back on sale), as reported by workers",
            self.worker_expired.clone(),
        );
        r.register(
            "queue_depth",
            "Messages waiting in the reservation queue",
            self.queue_depth.clone(),
        );
        r.register(
            "read_lookups",
            "PostgreSQL lookups made by the read routes (status URLs, /events)",
            self.read_lookups.clone(),
        );
        r.register(
            "read_shed",
            "Read requests answered 503 because their PostgreSQL lookup budget was busy",
            self.read_shed.clone(),
        );
        r.register(
            "status_long_polls",
            "Reservations whose status URL is being long-polled right now",
            self.long_polls.clone(),
        );
        r.register(
            "reserve_duration_seconds",
            "Latency of /reserve",
            SharedHistogram(self.clone()),
        );
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        out
    }
}

/// Lets the registry borrow the histogram inside the shared `Stats`.
#[derive(Debug)]
struct SharedHistogram(std::sync::Arc<Stats>);

impl EncodeMetric for SharedHistogram {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.latency.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_land_in_power_of_two_buckets() {
        let h = LatencyHistogram::default();
        h.record(Duration::from_micros(10)); // ≤ 16 µs
        h.record(Duration::from_micros(17)); // ≤ 32 µs
        h.record(Duration::from_millis(1)); // ≤ 1.024 ms
        h.record(Duration::from_secs(3600)); // clamped to the last
        let c = h.counts();
        assert_eq!((c[0], c[1], c[6], c[BUCKETS - 1]), (1, 1, 1, 1));
        assert_eq!(LatencyHistogram::quantile(&c, 0.5), 0.032);
        assert_eq!(LatencyHistogram::quantile(&[0; BUCKETS], 0.5), 0.0);
    }

    #[test]
    fn metrics_render_in_prometheus_text() {
        let s = std::sync::Arc::new(Stats::default());
        s.record_reserve(202, Duration::from_millis(2));
        s.record_reserve(409, Duration::from_millis(1));
        let text = s.render();
        assert!(
            text.contains("flashgrid_reserve_requests_total 2"),
            "{text}"
        );
        assert!(
            text.contains("flashgrid_reserve_accepted_total 1"),
            "{text}"
        );
        assert!(
            text.contains("flashgrid_publish_messages_total 0"),
            "{text}"
        );
        assert!(
            text.contains("flashgrid_reserve_duration_seconds_count 2"),
            "{text}"
        );
        assert!(text.contains("# EOF"));
    }
}
