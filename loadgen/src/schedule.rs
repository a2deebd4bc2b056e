//! The open model's clock: request `i` is due at `start + i / rate`, and its
//! latency is measured from that intended time, not from when it was actually
//! sent — so a stalled server is charged for the requests it delayed
//! (coordinated omission, corrected as wrk2 does). A request whose
//! connection was idle before its time is not late through the server's
//! fault: it is measured from when it left, so that the client's timer
//! (tokio's ticks are a millisecond apart) is not counted either.

use std::time::Duration;

/// Offset from the start at which request `i` should be sent.
pub fn due(i: u64, rate: f64) -> Duration {
    Duration::from_secs_f64(i as f64 / rate)
}

/// What a request's latency is measured from: its scheduled time `due` when
/// the answers before it held its connection up past it (`free_at`, when
/// the connection was free to send it); else `left_at`, when the timer let
/// it go — a tick late at most, and that lateness is the client's.
pub fn measured_from(due: Duration, free_at: Duration, left_at: Duration) -> Duration {
    if free_at < due { left_at } else { due }
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
    fn a_request_held_up_by_the_answers_before_it_counts_from_its_time() {
        let ms = Duration::from_millis;
        // Free 3 ms after its time: the server delayed it.
        assert_eq!(measured_from(ms(10), ms(13), ms(13)), ms(10));
        // Free at its time exactly: nothing to wait for, no timer involved.
        assert_eq!(measured_from(ms(10), ms(10), ms(10)), ms(10));
    }

    #[test]
    fn a_request_waiting_for_its_time_counts_from_when_it_left() {
        let ms = Duration::from_millis;
        // Free at 4 ms, due at 10, the timer fired at 11: the tick is not
        // the server's.
        assert_eq!(measured_from(ms(10), ms(4), ms(11)), ms(11));
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
