//! The open model's clock: request `i` is due at `start + i / rate`, and its
//! latency is measured from that intended time, not from when it was actually
//! sent — so a stalled server is charged for the requests it delayed
//! (coordinated omission, corrected as wrk2 does).

use std::time::Duration;

/// Offset from the start at which request `i` should be sent.
pub fn due(i: u64, rate: f64) -> Duration {
    Duration::from_secs_f64(i as f64 / rate)
}

/// Whether request `i` falls inside the run (`-n` and/or `-z`).
pub fn in_run(
    i: u64,
    rate: Option<f64>,
    requests: Option<u64>,
    duration: Option<Duration>,
) -> bool {
    if requests.is_some_and(|n| i >= n) {
        return false;
    }
    match (rate, duration) {
        (Some(r), Some(z)) => due(i, r) < z,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_spread_evenly() {
        assert_eq!(due(0, 100.0), Duration::ZERO);
        assert_eq!(due(100, 100.0), Duration::from_secs(1));
        assert_eq!(due(1, 4.0), Duration::from_millis(250));
    }

    #[test]
    fn a_duration_bounds_an_open_run() {
        let z = Some(Duration::from_secs(2));
        assert!(in_run(199, Some(100.0), None, z));
        assert!(!in_run(200, Some(100.0), None, z));
        assert!(!in_run(10, Some(100.0), Some(10), z));
        assert!(
            in_run(1_000_000, None, None, z),
            "closed model: the clock decides"
        );
    }
}
