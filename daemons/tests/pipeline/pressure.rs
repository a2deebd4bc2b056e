//! Under pressure: services that stay connected but stop moving, clients
//! that hold sockets without reading, floods that are not purchases. Each
//! fault is the test's own (a proxy it controls, a gateway it spawned).

use crate::helpers::{FEED_TOKEN, Proxy, TestStack, eventually};
use flashgrid_testkit::Role;
use flashgrid_wire::{Accepted, ReservationView, Status};
use futures::StreamExt;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A counter or gauge of the gateway's `/metrics` (0 when absent).
async fn metric(stack: &TestStack, name: &str) -> f64 {
    crate::helpers::metric(&stack.metrics().await, name)
}

/// A client that starts a purchase and never finishes its body: its request
/// holds the connection until the body deadline.
async fn half_a_body(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        b"POST /reserve HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"event_id\"",
    )
    .await
    .expect("send half a purchase");
    s
}

/// A client that sends many requests for a sizeable answer and reads none:
/// once the socket buffers are full the gateway's writes to it block.
async fn never_reads(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let one =
        format!("GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {FEED_TOKEN}\r\n\r\n");
    let many = one.repeat(20_000);
    // The gateway stops reading once its writes block: do not wait for that.
    let _ = tokio::time::timeout(Duration::from_secs(2), s.write_all(many.as_bytes())).await;
    s
}

/// RabbitMQ keeps the connection but stops moving (what a memory or disk
/// alarm does to publishers, stood for by a stalled proxy): purchases get
/// `503` within the publish deadline, `/readyz` says RabbitMQ and why, and
/// the gateway recovers by itself once the broker moves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_stops_moving_gets_503_within_the_deadline_then_recovers() {
    let stack = TestStack::empty().await;
    let amqp = Proxy::start(5672).await;
    let mut cfg = stack.gateway_config();
    cfg.services.amqp_url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", amqp.port);
    let deadline = Duration::from_secs(1);
    cfg.confirm_timeout = deadline;
    stack.start_gateway_with(cfg).await;
    stack.start_worker().await;
    stack.create_event("stall", 1_000).await;
    stack.accepted("stall", "before", 1, None).await;

    amqp.stall();
    let answers = futures::future::join_all((0..20).map(|i| {
        let stack = &stack;
        async move {
            let t = Instant::now();
            let r = stack
                .reserve("stall", &format!("s{i}"), 1, None)
                .await
                .expect("an answer, not a hang");
            (
                r.status().as_u16(),
                r.headers().contains_key("retry-after"),
                t.elapsed(),
            )
        }
    }))
    .await;
    for (status, retry_after, took) in &answers {
        assert_eq!(*status, 503, "{answers:?}");
        assert!(retry_after, "503 without Retry-After");
        // The bound the gateway promises (the deadline), plus room for a
        // loaded machine: without a deadline these would wait for good.
        assert!(*took < deadline + Duration::from_secs(2), "{answers:?}");
    }
    let slowest = answers.iter().map(|a| a.2).max().unwrap();
    eprintln!(
        "stalled broker: 20 purchases answered 503, the slowest after {slowest:?} (deadline {deadline:?})"
    );
    let why = eventually(
        "/readyz 503 naming RabbitMQ",
        Duration::from_secs(10),
        || async {
            let r = stack.get("/readyz").await;
            if r.status() != 503 {
                return None;
            }
            let body: serde_json::Value = r.json().await.unwrap();
            (body["checks"]["rabbitmq"] == false).then(|| body["why"]["rabbitmq"].to_string())
        },
    )
    .await;
    assert!(why.contains("RabbitMQ"), "{why}");

    eprintln!("stalled broker: /readyz why.rabbitmq = {why}");
    amqp.restore();
    let restored = Instant::now();
    eventually(
        "purchases accepted again",
        Duration::from_secs(30),
        || async {
            let r = stack
                .reserve("stall", "after", 1, Some("after"))
                .await
                .ok()?;
            (r.status() == 202).then_some(())
        },
    )
    .await;
    assert_eq!(stack.get("/readyz").await.status(), 200);
    eprintln!(
        "stalled broker: accepting again {:?} after the broker moved",
        restored.elapsed()
    );
}

/// SIGTERM while 50 long-polls wait, 10 clients never read their answers
/// and 10 never finish their purchase's body: the gateway exits within its
/// drain timeout and about a second, the long-polls answered with what is
/// known.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_within_the_drain_bound_whatever_the_clients_do() {
    let stack = TestStack::empty().await;
    let drain = Duration::from_secs(2);
    stack.start_process_with(
        Role::Gateway,
        env!("CARGO_BIN_EXE_flashgrid-gateway").as_ref(),
        &[("FLASHGRID_DRAIN_TIMEOUT", drain.as_secs().to_string())],
        None,
    );
    stack.wait_ready().await;
    // No worker: every reservation stays pending, so its long-poll waits.
    stack.create_event("term", 100).await;
    let mut accepted = Vec::<Accepted>::new();
    for i in 0..50 {
        accepted.push(stack.accepted("term", &format!("u{i}"), 1, None).await);
    }
    let polls: Vec<_> = accepted
        .iter()
        .map(|a| {
            let url = format!("{}{}?wait_ms=30000", stack.url, a.status_url);
            let http = stack.http.clone();
            tokio::spawn(async move {
                let r = http.get(url).send().await.ok()?;
                (r.status() == 200).then_some(())?;
                r.json::<ReservationView>().await.ok()
            })
        })
        .collect();
    let addr = stack.url.trim_start_matches("http://").to_owned();
    // Ten that never read, ten that never finish their body (each request
    // would hold its connection for the 10 s body deadline).
    let mut stuck = futures::future::join_all((0..10).map(|_| never_reads(&addr))).await;
    stuck.extend(futures::future::join_all((0..10).map(|_| half_a_body(&addr))).await);
    eventually("50 long-polls open", Duration::from_secs(10), || async {
        (metric(&stack, "flashgrid_status_long_polls").await >= 50.0).then_some(())
    })
    .await;

    let signalled = Instant::now();
    let exit = stack.terminate_process("gateway").await;
    let took = signalled.elapsed();
    assert!(exit.success(), "exit status {exit}");
    assert!(
        took < drain + Duration::from_secs(2),
        "exited {took:?} after SIGTERM; the bound is the drain timeout ({drain:?}) and about a second"
    );
    eprintln!(
        "SIGTERM with 50 long-polls, 10 clients that never read and 10 that never finish a body: exited after {took:?} (drain timeout {drain:?})"
    );
    let mut answered = 0;
    for p in polls {
        if let Some(view) = p.await.unwrap() {
            assert_eq!(view.status, Status::Pending);
            answered += 1;
        }
    }
    assert_eq!(answered, 50, "every long-poll answered at shutdown");
    drop(stuck);
}

/// 200 clients from one address that never read cannot take every
/// connection: a purchase from another address is still answered, and the
/// address over its cap is told why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_readers_from_one_address_leave_room_for_others() {
    let stack = TestStack::empty().await;
    let mut cfg = stack.gateway_config();
    cfg.max_connections = 200;
    cfg.max_connections_per_addr = Some(100);
    stack.start_gateway_with(cfg).await;
    stack.start_worker().await;
    stack.create_event("room", 10).await;

    let addr = stack.url.trim_start_matches("http://").to_owned();
    let stuck = futures::stream::iter(0..200)
        .map(|_| never_reads(&addr))
        .buffer_unordered(50)
        .collect::<Vec<_>>()
        .await;

    // One more from the crowded address (a new connection, not the pooled
    // one the stack's client holds): 503 naming the cap. (Refusals are
    // answered a few dozen at a time, the rest just closed: ask again.)
    let body = eventually("a 503 naming the cap", Duration::from_secs(10), || async {
        let r = reqwest::get(format!("{}/healthz", stack.url)).await.ok()?;
        (r.status() == 503).then_some(())?;
        r.text().await.ok()
    })
    .await;
    assert!(
        body.contains("too many connections from your address"),
        "{body}"
    );

    // A buyer elsewhere (127.0.0.2 is loopback too) is answered.
    let other = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let t = Instant::now();
    let r = other
        .post(format!("{}/reserve", stack.url))
        .json(&serde_json::json!({"event_id": "room", "user_id": "elsewhere", "quantity": 1}))
        .send()
        .await
        .expect("a buyer from another address gets a connection");
    assert_eq!(r.status(), 202);
    eprintln!(
        "200 slow readers from 127.0.0.1: a purchase from 127.0.0.2 answered 202 in {:?}",
        t.elapsed()
    );
    drop(stuck);
}

/// 5,000 status lookups of made-up reservations beside a sale: each is
/// answered `404` without a PostgreSQL query (or, for an event the gateway
/// has not heard of while its few lookups of such events are busy, `503`:
/// that event may have been created a moment ago), the sale's purchases
/// are all answered as without the flood (no `503`), and `/readyz` stays
/// `200`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_made_up_status_lookups_costs_postgresql_nothing() {
    let stack = TestStack::spawn().await;
    stack.create_event("flood", 200).await;
    let lookups_before = metric(&stack, "flashgrid_read_lookups_total").await;

    let flooding = std::sync::atomic::AtomicBool::new(true);
    let flood = async {
        let answers = futures::stream::iter(0..5_000)
            .map(|i| {
                let stack = &stack;
                async move {
                    let rid = uuid::Uuid::new_v4();
                    // Most name the sale's event, some an event nobody made.
                    let event = if i % 10 == 0 {
                        format!("nope-{i}")
                    } else {
                        "flood".into()
                    };
                    let r = stack
                        .get(&format!("/events/{event}/reservations/{rid}"))
                        .await;
                    (i % 10 == 0, r.status().as_u16())
                }
            })
            .buffer_unordered(200)
            .collect::<Vec<(bool, u16)>>()
            .await;
        flooding.store(false, std::sync::atomic::Ordering::SeqCst);
        answers
    };
    let sale = async {
        futures::stream::iter(0..400)
            .map(|i| {
                let stack = &stack;
                async move {
                    stack
                        .reserve("flood", &format!("b{i}"), 1, None)
                        .await
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0)
                }
            })
            .buffer_unordered(50)
            .collect::<Vec<u16>>()
            .await
    };
    let readiness = async {
        let mut seen = Vec::new();
        while flooding.load(std::sync::atomic::Ordering::SeqCst) {
            seen.push(stack.get("/readyz").await.status().as_u16());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        seen
    };
    let started = Instant::now();
    let (flood, sale, ready) = tokio::join!(flood, sale, readiness);
    let statuses: Vec<u16> = flood.iter().map(|(_, s)| *s).collect();
    eprintln!(
        "flood: 5,000 made-up lookups beside 400 purchases in {:?}: lookups {:?}, purchases {:?}, /readyz {:?}",
        started.elapsed(),
        counts(&statuses),
        counts(&sale),
        counts(&ready)
    );

    assert!(
        flood
            .iter()
            .all(|(made_up_event, s)| *s == 404 || (*made_up_event && *s == 503)),
        "{:?}",
        counts(&statuses)
    );
    assert!(
        sale.iter().all(|s| *s == 202 || *s == 409),
        "{:?}",
        counts(&sale)
    );
    assert!(
        !ready.is_empty() && ready.iter().all(|s| *s == 200),
        "{:?}",
        counts(&ready)
    );
    let lookups = metric(&stack, "flashgrid_read_lookups_total").await - lookups_before;
    assert_eq!(lookups, 0.0, "PostgreSQL lookups made for made-up ids");
}

/// Redis stalls: a purchase still gets its `202` at the broker's pace, the
/// pending marker abandoned after a short wait (status lookups fall back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_delays_a_purchase_only_briefly() {
    let stack = TestStack::empty().await;
    let redis = Proxy::start(6379).await;
    let mut cfg = stack.gateway_config();
    cfg.services.redis_url = format!("redis://127.0.0.1:{}", redis.port);
    // One group at a time: a group's wait for its marker is every buyer's.
    cfg.publish_inflight = 1;
    stack.start_gateway_with(cfg).await;
    stack.start_worker().await;
    stack.create_event("slow", 100).await;

    redis.stall();
    let mut took = Vec::new();
    for i in 0..20 {
        let t = Instant::now();
        let r = stack
            .reserve("slow", &format!("u{i}"), 1, None)
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        took.push(t.elapsed());
    }
    took.sort();
    let median = took[took.len() / 2];
    eprintln!(
        "stalled Redis: 20 purchases one by one, 202 in median {median:?}, slowest {:?}",
        took[took.len() - 1]
    );
    // The marker's wait is bounded at a few tens of milliseconds; before,
    // each 202 waited 250 ms for a Redis that did not answer.
    assert!(median < Duration::from_millis(200), "{took:?}");
    redis.restore();
}

fn counts(statuses: &[u16]) -> std::collections::BTreeMap<u16, usize> {
    let mut m = std::collections::BTreeMap::new();
    for s in statuses {
        *m.entry(*s).or_default() += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_with_retry_after_and_takes_purchases_again_once_drained() {
    let stack = TestStack::empty().await;
    // A queue of three messages, one purchase a message, no worker yet.
    let mut gateway = stack.gateway_config();
    gateway.services.queue_max_length = 3;
    gateway.group_max = 1;
    stack.start_gateway_with(gateway).await;
    stack.wait_ready().await;
    stack.create_event("crowded", 10).await;
    let mut accepted = Vec::new();
    for n in 0..3 {
        accepted.push(stack.accepted("crowded", &format!("u{n}"), 1, None).await);
    }
    let refused = stack
        .reserve("crowded", "u3", 1, Some("full-1"))
        .await
        .unwrap();
    assert_eq!(
        refused.status(),
        503,
        "the fourth purchase finds the queue full"
    );
    assert_eq!(
        refused
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "unavailable");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("not taken"), "{message}");
    assert_eq!(
        stack.queue_depth().await,
        3,
        "nothing beyond the limit was kept"
    );

    // A worker (declaring the same limit) drains the queue: the same
    // purchase, retried with its key, is taken, and every one is decided.
    let mut worker = stack.worker_config();
    worker.services.queue_max_length = 3;
    stack.start_worker_with(worker).await;
    let retried = eventually("the retry to be taken", Duration::from_secs(30), || async {
        let r = stack
            .reserve("crowded", "u3", 1, Some("full-1"))
            .await
            .ok()?;
        (r.status() == 202).then_some(r)
    })
    .await;
    accepted.push(retried.json().await.unwrap());
    for a in &accepted {
        assert_eq!(stack.decided(a).await.status, Status::Confirmed);
    }
    assert_eq!(stack.db_counts("crowded").await.0, 4);
}
