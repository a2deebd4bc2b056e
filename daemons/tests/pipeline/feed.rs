//! The live feed and `/metrics`: snapshots whose numbers match a burst the
//! test sent; the read-only feed token opens them and nothing else, the
//! admin token only from the header; every daemon of the namespace listed.

use crate::helpers::{FEED_TOKEN, Proxy, TOKEN, TestStack, burst, metric};
use flashgrid_testkit::stack::Instance;
use flashgrid_wire::{DaemonKind, ServiceHealth, Snapshot};
use futures::StreamExt;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_snapshots_match_a_burst_and_need_the_token() {
    let stack = TestStack::spawn().await;
    stack.create_event("fed", 50).await;
    let ws_url = format!("{}/ws", stack.url.replace("http://", "ws://"));

    // No token, a wrong token: 401 before any upgrade.
    match tokio_tungstenite::connect_async(ws_url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
    match tokio_tungstenite::connect_async(format!("{ws_url}?token=nope")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
    // The admin token in a URL is refused: proxies and histories keep URLs.
    match tokio_tungstenite::connect_async(format!("{ws_url}?token={TOKEN}")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("expected 401 for the admin token in the URL, got {other:?}"),
    }
    // The feed token opens nothing that changes a sale.
    let r = stack
        .http
        .post(format!("{}/admin/events", stack.url))
        .bearer_auth(FEED_TOKEN)
        .json(&serde_json::json!({"event_id": "nope", "name": "nope", "capacity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "an admin route taking the feed token");
    let r = stack
        .http
        .post(format!("{}/admin/events/fed/reset", stack.url))
        .bearer_auth(FEED_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a reset taking the feed token");
    // `/metrics` is protected once a feed token is set: it or the admin token.
    let metrics = format!("{}/metrics", stack.url);
    assert_eq!(stack.http.get(&metrics).send().await.unwrap().status(), 401);
    for t in [FEED_TOKEN, TOKEN] {
        let r = stack
            .http
            .get(&metrics)
            .bearer_auth(t)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // The feed token as a query parameter works, and the admin token as a
    // bearer header.
    let (mut by_query, _) =
        tokio_tungstenite::connect_async(format!("{ws_url}?token={FEED_TOKEN}"))
            .await
            .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), by_query.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let _: Snapshot = serde_json::from_str(first.to_text().unwrap()).unwrap();
    drop(by_query);
    let mut req = ws_url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();

    let (accepted, others) = burst(&stack, "fed", 200).await;
    let sold_out = others.get(&409).copied().unwrap_or(0) as u64;
    futures::future::join_all(accepted.iter().map(|a| stack.decided(a))).await;

    // Snapshots come at least 4 times a second and converge on the burst.
    let start = Instant::now();
    let mut slowest = 0.0f64;
    let last = loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a snapshot")
            .unwrap()
            .unwrap();
        let snap: Snapshot = serde_json::from_str(msg.to_text().unwrap()).unwrap();
        slowest = slowest.max(snap.gateway.latency_ms.max);
        let event = snap
            .events
            .iter()
            .find(|e| e.event_id.as_str() == "fed")
            .cloned();
        let done = snap.gateway.requests_total == 200
            && snap.workers.confirmed_total == 50
            && event.as_ref().is_some_and(|e| e.confirmed == 50);
        if done {
            break (snap, event.unwrap());
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the feed never caught up: {snap:?}"
        );
    };
    let (snap, event) = last;
    assert_eq!(snap.gateway.accepted_total, accepted.len() as u64);
    assert_eq!(snap.gateway.rejected_total, sold_out);
    assert_eq!(snap.workers.rejected_total, accepted.len() as u64 - 50);
    assert_eq!(
        snap.workers.db_writes_total, 50,
        "the database saw the winners only"
    );
    assert_eq!(
        (event.capacity, event.remaining, event.sold_out),
        (50, 0, true)
    );
    assert!(
        snap.interval_ms >= 200 && snap.interval_ms <= 400,
        "{}",
        snap.interval_ms
    );
    assert!(slowest > 0.0, "no snapshot showed the burst's latency");
    assert_eq!(snap.queue.depth, Some(0));
    // And they keep coming, one every interval: six more, none a second
    // late (four times the interval).
    for n in 0..6 {
        tokio::time::timeout(Duration::from_secs(1), ws.next())
            .await
            .unwrap_or_else(|_| panic!("snapshot {n} came more than a second after the last"))
            .unwrap()
            .unwrap();
    }

    let metrics = stack.metrics().await;
    assert!(
        metrics.contains("flashgrid_reserve_requests_total 200"),
        "{metrics}"
    );
    assert!(
        metrics.contains("flashgrid_db_writes_total 50"),
        "{metrics}"
    );
    assert!(
        metrics.contains("flashgrid_reserve_duration_seconds_bucket"),
        "{metrics}"
    );
    // Every 202 went out in some message, and no message was empty.
    let accepted = metric(&metrics, "flashgrid_reserve_accepted_total");
    let messages = metric(&metrics, "flashgrid_publish_messages_total");
    assert!(
        (1.0..=accepted).contains(&messages),
        "{messages} messages for {accepted} accepted: {metrics}"
    );

    // Shutdown with a feed client connected: it is told to close, and the
    // gateway stops promptly (`stop` fails the test otherwise).
    stack.stop("gateway").await;
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(m)) if m.is_close() => return true,
                Some(Ok(_)) => continue,
                _ => return false,
            }
        }
    })
    .await
    .expect("the feed connection was left open");
    assert!(end, "no close frame");
}

/// The feed says which service the gateway cannot reach, and that nobody
/// consumes the queue, while it is so; and stops saying it once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_names_an_unreachable_service_and_a_missing_worker() {
    let stack = TestStack::empty().await;
    let redis = Proxy::start(6379).await;
    let mut cfg = stack.gateway_config();
    cfg.services.redis_url = format!("redis://127.0.0.1:{}", redis.port);
    stack.start_gateway_with(cfg).await;
    let ws_url = format!(
        "{}/ws?token={FEED_TOKEN}",
        stack.url.replace("http://", "ws://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    let mut next = async || next_snapshot(&mut ws).await;
    let up = ServiceHealth {
        postgres: true,
        redis: true,
        rabbitmq: true,
    };
    // Wait on conditions, each with a deadline (snapshots come every 250 ms).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut until = async |what: &str, f: &dyn Fn(&Snapshot) -> bool| {
        loop {
            let s = next().await;
            if f(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
        }
    };
    let s = until("every service up", &|s| s.services == Some(up)).await;
    assert_eq!(s.queue.consumers, Some(0), "no worker runs yet");

    redis.cut();
    until("Redis reported down", &|s| {
        s.services
            .is_some_and(|h| h.down().collect::<Vec<_>>() == ["Redis"])
    })
    .await;
    redis.restore();
    until("Redis reported up again", &|s| s.services == Some(up)).await;

    stack.start_worker().await;
    until("the worker consuming", &|s| s.queue.consumers == Some(1)).await;
}

/// Whichever gateway the console connects to, it shows the whole stack:
/// every gateway and worker of the namespace with the nodes each reaches,
/// and the `/reserve` figures summed over the gateways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_lists_every_daemon_and_sums_the_gateways() {
    let stack = TestStack::empty_with_gateways(2).await;
    stack.start_gateway().await;
    stack.start_process_with(
        Instance::gateway(1),
        env!("CARGO_BIN_EXE_flashgrid-gateway").as_ref(),
        &[],
        None,
    );
    stack.wait_gateway_ready(1).await;
    stack.start_process("worker");
    stack.create_event("everyone", 10).await;
    // Every request goes to gateway 1; the console watches gateway 0.
    let http = reqwest::Client::new();
    let mut accepted = 0;
    for i in 0..30 {
        let r = http
            .post(format!("{}/reserve", stack.gateway_url(1)))
            .json(&serde_json::json!({"event_id": "everyone", "user_id": format!("u{i}")}))
            .send()
            .await
            .unwrap();
        accepted += usize::from(r.status() == 202);
    }
    assert!(accepted >= 10, "{accepted} accepted");

    let ws_url = format!(
        "{}/ws?token={FEED_TOKEN}",
        stack.url.replace("http://", "ws://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = None;
    let s = loop {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for every daemon in the feed; last snapshot: {last:#?}"
        );
        let s = next_snapshot(&mut ws).await;
        let reaches_all = s.daemons.len() == 3
            && s.daemons
                .iter()
                .all(|d| d.nodes.len() == 3 && d.unreached().next().is_none());
        let worker_done = s
            .daemons
            .iter()
            .any(|d| d.worker.as_ref().is_some_and(|w| w.confirmed_total == 10));
        if reaches_all && worker_done && s.gateway.requests_total == 30 {
            break s;
        }
        last = Some(s);
    };
    // This gateway first, then gateway 1, then the worker.
    let kinds: Vec<(DaemonKind, &str)> =
        s.daemons.iter().map(|d| (d.kind, d.id.as_str())).collect();
    assert_eq!(
        kinds[1..],
        [
            (DaemonKind::Gateway, "gateway-1"),
            (DaemonKind::Worker, "worker-0")
        ]
    );
    assert_eq!(kinds[0].0, DaemonKind::Gateway);
    let own = &s.daemons[0];
    assert_eq!(own.silent_ms, 0);
    assert_eq!(own.gateway.as_ref().unwrap().requests_total, 0);
    assert_eq!(s.daemons[1].gateway.as_ref().unwrap().requests_total, 30);
    assert_eq!(
        s.daemons[1].listen.as_deref(),
        Some(stack.gateway_url(1).trim_start_matches("http://"))
    );
    // Each names the nodes it is configured with, as host:port only.
    for d in &s.daemons {
        let services: Vec<&str> = d.nodes.iter().map(|n| n.service.as_str()).collect();
        assert_eq!(services, ["postgres", "redis", "rabbitmq"], "{d:?}");
        assert_eq!(d.nodes[1].addr, "127.0.0.1:6379");
        assert_eq!(d.nodes[1].role.as_deref(), Some("master"));
        assert!(d.nodes[2].connected, "{d:?}: its AMQP node");
        assert!(d.nodes.iter().all(|n| !n.addr.contains('@')));
    }

    // A worker stopped on purpose says so: it leaves the list at once
    // (a silent one would stay, marked silent, for 30 s).
    assert!(stack.terminate_process("worker").await.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = next_snapshot(&mut ws).await;
        if s.daemons.iter().all(|d| d.kind != DaemonKind::Worker) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stopped worker is still listed: {:?}",
            s.daemons
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_counts_purchases_returns_and_expiries_of_holds() {
    let stack = TestStack::spawn().await;
    stack
        .create_event_json(serde_json::json!({
            "event_id": "held", "name": "held", "capacity": 4, "hold_seconds": 2
        }))
        .await;
    let ws_url = format!(
        "{}/ws?token={FEED_TOKEN}",
        stack.url.replace("http://", "ws://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    // The rates are the counts' change between snapshots: the feed must
    // know the event before its seats move.
    let start = Instant::now();
    while !next_snapshot(&mut ws)
        .await
        .events
        .iter()
        .any(|e| e.event_id.as_str() == "held")
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the feed never listed the event"
        );
    }
    // Four holds: one purchased, one cancelled, two left to expire.
    let mut holds = Vec::new();
    for user in ["a", "b", "c", "d"] {
        let a = stack.accepted("held", user, 1, None).await;
        assert_eq!(stack.decided(&a).await.status, flashgrid_wire::Status::Held);
        holds.push(a);
    }
    for (a, what) in [(&holds[0], "purchase"), (&holds[1], "cancel")] {
        let r = stack
            .http
            .post(format!("{}{}/{what}", stack.url, a.status_url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{what}");
    }
    let (mut bought, mut returned) = (false, false);
    let start = Instant::now();
    let last = loop {
        let snap = next_snapshot(&mut ws).await;
        bought |= snap.holds.purchased_per_s > 0.0;
        returned |= snap.holds.returned_per_s > 0.0;
        let e = snap.events.iter().find(|e| e.event_id.as_str() == "held");
        // The worker's own view is published beside its counts: it may
        // come one interval later.
        let worker_saw = snap.daemons.iter().any(|d| {
            d.kind == DaemonKind::Worker && d.worker.as_ref().is_some_and(|w| w.expired_total == 2)
        });
        if snap.workers.expired_total == 2
            && worker_saw
            && e.is_some_and(|e| e.released == 3)
            && bought
            && returned
        {
            break snap;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the feed never showed the holds end: {snap:?}"
        );
    };
    let e = last
        .events
        .iter()
        .find(|e| e.event_id.as_str() == "held")
        .unwrap();
    assert_eq!(
        (e.held, e.purchased, e.released, e.remaining),
        (0, 1, 3, 3),
        "{e:?}"
    );
    assert_eq!(e.invariant(), Ok(()));
    // The worker that expired them says so in its own view too.
    let w = last
        .daemons
        .iter()
        .find(|d| d.kind == DaemonKind::Worker)
        .and_then(|d| d.worker.clone())
        .expect("the worker's view");
    assert_eq!(w.expired_total, 2);
}

/// The feed's next snapshot, within 5 s.
async fn next_snapshot<S>(ws: &mut S) -> Snapshot
where
    S: futures::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("a snapshot within 5 s")
        .unwrap()
        .unwrap();
    serde_json::from_str(msg.to_text().unwrap()).unwrap()
}
