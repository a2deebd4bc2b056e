//! Per-client rate limit of `/reserve`: over it, `429 rate_limited` with
//! `Retry-After`, and nothing reaches the queue; other clients go on; off by
//! default, so a burst from one host is never throttled.

use crate::helpers::{TestStack, metric};
use flashgrid::config::RateKey;
use flashgrid_wire::{ErrorBody, Status};
use std::collections::BTreeMap;
use std::time::Instant;

/// A stack whose gateway allows `rate` reservations a second per `key`,
/// `burst` at once.
async fn limited_stack(key: RateKey, rate: f64, burst: u32) -> TestStack {
    let stack = TestStack::empty().await;
    let mut cfg = stack.gateway_config();
    cfg.rate_limit = rate;
    cfg.rate_burst = Some(burst);
    cfg.rate_key = key;
    stack.start_gateway_with(cfg).await;
    stack.start_worker().await;
    stack
}

/// Sends `n` reservations one after the other; returns the statuses counted,
/// the 202 bodies and the first 429 (its Retry-After and error code).
async fn send(
    stack: &TestStack,
    event: &str,
    users: impl Fn(usize) -> String,
    n: usize,
) -> (
    BTreeMap<u16, usize>,
    Vec<flashgrid_wire::Accepted>,
    Option<(u64, String)>,
) {
    let mut counts = BTreeMap::new();
    let mut accepted = Vec::new();
    let mut first_429 = None;
    for i in 0..n {
        let r = stack
            .reserve(event, &users(i), 1, Some(&format!("key-{i}")))
            .await
            .expect("transport");
        let status = r.status().as_u16();
        *counts.entry(status).or_default() += 1;
        match status {
            202 => accepted.push(r.json().await.unwrap()),
            429 if first_429.is_none() => {
                let retry_after = r
                    .headers()
                    .get("retry-after")
                    .expect("a Retry-After header on 429")
                    .to_str()
                    .unwrap()
                    .parse::<u64>()
                    .expect("Retry-After in whole seconds");
                let e: ErrorBody = r.json().await.expect("a JSON error body");
                assert!(!e.message.is_empty());
                first_429 = Some((retry_after, e.error));
            }
            _ => {}
        }
    }
    (counts, accepted, first_429)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_over_the_rate_gets_429_and_others_still_buy() {
    // One request every 2 s, 3 at once: of 20 quick requests, the burst and
    // at most one refill per 2 s elapsed get through.
    let stack = limited_stack(RateKey::User, 0.5, 3).await;
    stack.create_event("rl-user", 1000).await;
    let start = Instant::now();
    let (counts, accepted, first_429) = send(&stack, "rl-user", |_| "bot".into(), 20).await;
    let refills = (start.elapsed().as_secs_f64() * 0.5).ceil() as usize;
    let ok = counts.get(&202).copied().unwrap_or(0);
    let limited = counts.get(&429).copied().unwrap_or(0);
    assert!(
        (3..=3 + refills).contains(&ok),
        "202s {ok} (burst 3, {refills} refills): {counts:?}"
    );
    assert_eq!(ok + limited, 20, "only 202 and 429: {counts:?}");
    let (retry_after, code) = first_429.expect("a 429");
    assert_eq!(code, "rate_limited");
    assert!(
        (1..=2).contains(&retry_after),
        "Retry-After {retry_after} for a 2 s interval"
    );

    // A limited user's invalid body is still a 400, not a 429.
    let r = stack
        .http
        .post(format!("{}/reserve", stack.url))
        .json(&serde_json::json!({"event_id": "rl-user", "user_id": "bot", "quantity": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Another user is not affected.
    let other = stack.accepted("rl-user", "human", 1, None).await;
    assert_eq!(stack.decided(&other).await.status, Status::Confirmed);

    // Throttled requests never reached the queue: the event sold exactly
    // what was answered 202.
    for a in &accepted {
        stack.decided(a).await;
    }
    let (rows, _, confirmed) = stack.db_counts("rl-user").await;
    assert_eq!(rows as usize, ok + 1);
    assert_eq!(confirmed as usize, ok + 1);

    // The gateway counted every answer, 429s among the rejected.
    let metrics = stack.metrics().await;
    let count = |name: &str| metric(&metrics, name) as usize;
    assert_eq!(count("flashgrid_reserve_requests_total"), 22, "{metrics}");
    assert_eq!(count("flashgrid_reserve_accepted_total"), ok + 1);
    assert_eq!(count("flashgrid_reserve_rejected_total"), limited + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addr_keying_limits_every_user_from_one_address() {
    let stack = limited_stack(RateKey::Addr, 0.5, 2).await;
    stack.create_event("rl-addr", 1000).await;
    let start = Instant::now();
    // Distinct users, all from 127.0.0.1.
    let (counts, _, first_429) = send(&stack, "rl-addr", |i| format!("user-{i}"), 10).await;
    let refills = (start.elapsed().as_secs_f64() * 0.5).ceil() as usize;
    let ok = counts.get(&202).copied().unwrap_or(0);
    assert!(
        (2..=2 + refills).contains(&ok),
        "202s {ok} (burst 2, {refills} refills): {counts:?}"
    );
    assert_eq!(
        ok + counts.get(&429).copied().unwrap_or(0),
        10,
        "{counts:?}"
    );
    assert_eq!(first_429.expect("a 429").1, "rate_limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_by_default_a_burst_from_one_user_is_never_throttled() {
    let stack = TestStack::spawn().await;
    stack
        .create_event_json(serde_json::json!({
            "event_id": "rl-off", "name": "rl-off", "capacity": 100_000, "per_user_limit": 10
        }))
        .await;
    let n = 300;
    let futs = (0..n).map(|i| {
        let stack = &stack;
        async move {
            stack
                .reserve("rl-off", "loadtest", 1, Some(&format!("k-{i}")))
                .await
                .expect("transport")
                .status()
                .as_u16()
        }
    });
    let mut counts = BTreeMap::<u16, usize>::new();
    for s in futures::future::join_all(futs).await {
        *counts.entry(s).or_default() += 1;
    }
    assert_eq!(counts.get(&429), None, "{counts:?}");
    assert_eq!(counts.get(&202), Some(&n), "{counts:?}");
}
