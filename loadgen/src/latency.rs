//! Latency: an HDR histogram in microseconds, its percentiles, and the
//! logarithmic buckets the console draws (so one slow outlier does not flatten
//! every other bar).

use hdrhistogram::Histogram;
use serde::Serialize;
use std::time::Duration;

/// Highest latency tracked (anything slower is clamped to it).
const MAX_US: u64 = 120_000_000;

#[derive(Debug, Clone)]
pub struct Latency {
    hist: Histogram<u64>,
}

/// The percentiles every report shows, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

impl Default for Latency {
    fn default() -> Self {
        Self {
            hist: Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds"),
        }
    }
}

impl Latency {
    pub fn record(&mut self, d: Duration) {
        let us = (d.as_micros() as u64).clamp(1, MAX_US);
        // Within bounds by the clamp.
        let _ = self.hist.record(us);
    }

    pub fn merge(&mut self, other: &Latency) {
        let _ = self.hist.add(&other.hist);
    }

    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    pub fn percentiles(&self) -> Percentiles {
        if self.hist.is_empty() {
            return Percentiles::default();
        }
        let ms = |q: f64| self.hist.value_at_quantile(q) as f64 / 1000.0;
        Percentiles {
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            p99_9: ms(0.999),
            max: self.hist.max() as f64 / 1000.0,
        }
    }

    /// Counts per power-of-two bucket of milliseconds, from the fastest
    /// non-empty bucket to the slowest: `(upper bound in ms, count)`.
    pub fn log_buckets(&self) -> Vec<(f64, u64)> {
        if self.hist.is_empty() {
            return Vec::new();
        }
        let mut buckets = Vec::new();
        // Bucket k holds latencies in (2^(k-1), 2^k] × 0.125 ms.
        let mut upper_us = 125u64;
        let mut lower_us = 0u64;
        let max = self.hist.max();
        while lower_us <= max {
            let n = self.hist.count_between(lower_us + 1, upper_us);
            buckets.push((upper_us as f64 / 1000.0, n));
            lower_us = upper_us;
            upper_us = upper_us.saturating_mul(2);
        }
        let first = buckets.iter().position(|b| b.1 > 0).unwrap_or(0);
        buckets.drain(..first);
        buckets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_follow_the_samples() {
        let mut l = Latency::default();
        for ms in 1..=1000u64 {
            l.record(Duration::from_millis(ms));
        }
        let p = l.percentiles();
        assert!((p.p50 - 500.0).abs() < 2.0, "{p:?}");
        assert!((p.p99 - 990.0).abs() < 2.0, "{p:?}");
        assert!((p.max - 1000.0).abs() < 2.0, "{p:?}");
        assert_eq!(Latency::default().percentiles(), Percentiles::default());
    }

    #[test]
    fn log_buckets_keep_an_outlier_from_flattening_the_rest() {
        let mut l = Latency::default();
        for _ in 0..100 {
            l.record(Duration::from_millis(1));
        }
        l.record(Duration::from_secs(10));
        let b = l.log_buckets();
        assert_eq!(b.iter().map(|x| x.1).sum::<u64>(), 101);
        assert_eq!(b.first().unwrap().1, 100, "{b:?}");
        assert_eq!(b.last().unwrap().1, 1);
        // 1 ms .. 10 s spans ~14 doublings, not 10,000 linear slots.
        assert!(b.len() < 20, "{}", b.len());
    }
}
