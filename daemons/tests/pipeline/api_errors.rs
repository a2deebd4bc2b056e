//! Every error row of the HTTP API: each answers its status and a JSON body
//! `{"error","message"}`; nothing a client sends gives a 500 or a hang.

use crate::helpers::{Proxy, TOKEN, TestStack, eventually};
use flashgrid_wire::ErrorBody;
use reqwest::StatusCode;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn expect_error(r: reqwest::Response, status: u16, code: &str) -> ErrorBody {
    assert_eq!(r.status().as_u16(), status, "expected {status} {code}");
    let e: ErrorBody = r.json().await.expect("a JSON error body");
    assert_eq!(e.error, code, "message: {}", e.message);
    assert!(!e.message.is_empty());
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserve_rejects_bad_requests_with_their_reason() {
    let stack = TestStack::spawn().await;
    stack.create_event("errs", 1).await;
    let post = |body: &'static str| {
        stack
            .http
            .post(format!("{}/reserve", stack.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for (body, needle) in [
        ("not json", "invalid reservation"),
        (r#"{"user_id":"u"}"#, "event_id"),
        (r#"{"event_id":"errs"}"#, "user_id"),
        (r#"{"event_id":"BAD ID","user_id":"u"}"#, "slug"),
        (r#"{"event_id":"errs","user_id":""}"#, "user_id"),
        (
            r#"{"event_id":"errs","user_id":"u","quantity":11}"#,
            "quantity",
        ),
        (
            r#"{"event_id":"errs","user_id":"u","quantity":0}"#,
            "quantity",
        ),
        (
            r#"{"event_id":"errs","user_id":"u","quantity":"2"}"#,
            "invalid",
        ),
        (r#"[1,2]"#, "invalid"),
    ] {
        let e = expect_error(post(body).await.unwrap(), 400, "invalid_request").await;
        assert!(e.message.contains(needle), "{body}: {}", e.message);
    }
    let r = stack
        .http
        .post(format!("{}/reserve", stack.url))
        .header("Idempotency-Key", "has space")
        .json(&serde_json::json!({"event_id": "errs", "user_id": "u"}))
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "invalid_request").await;
    expect_error(
        post(r#"{"event_id":"nope","user_id":"u"}"#).await.unwrap(),
        404,
        "unknown_event",
    )
    .await;
    let r = stack
        .http
        .post(format!("{}/reserve", stack.url))
        .header("content-type", "text/plain")
        .body(r#"{"event_id":"errs","user_id":"u"}"#)
        .send()
        .await
        .unwrap();
    expect_error(r, 415, "unsupported_media_type").await;
    let big = vec![b'x'; 2 * 1024 * 1024];
    let r = stack
        .http
        .post(format!("{}/reserve", stack.url))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    expect_error(r, 413, "payload_too_large").await;

    let r = stack
        .http
        .get(format!("{}/reserve", stack.url))
        .send()
        .await
        .unwrap();
    expect_error(r, 405, "method_not_allowed").await;
    let r = stack
        .http
        .get(format!("{}/nowhere", stack.url))
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "not_found").await;

    // Sold out: answered at the gateway once it learnt it.
    let a = stack.reserve("errs", "first", 1, None).await.unwrap();
    assert_eq!(a.status(), 202);
    eventually(
        "sold_out at the gateway",
        Duration::from_secs(10),
        || async {
            let r = stack.reserve("errs", "late", 1, None).await.ok()?;
            (r.status() == 409).then_some(r)
        },
    )
    .await;
    expect_error(
        stack.reserve("errs", "later", 1, None).await.unwrap(),
        409,
        "sold_out",
    )
    .await;

    // The gateway still serves after all that.
    assert_eq!(
        stack
            .http
            .get(format!("{}/healthz", stack.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_event_lookups() {
    let stack = TestStack::spawn().await;
    stack.create_event("look", 5).await;
    let get = |path: String| stack.http.get(format!("{}{path}", stack.url)).send();
    expect_error(
        get("/events/missing".into()).await.unwrap(),
        404,
        "unknown_event",
    )
    .await;
    expect_error(
        get("/events/look/reservations/not-a-uuid".into())
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
    let id = uuid::Uuid::new_v4();
    expect_error(
        get(format!("/events/look/reservations/{id}"))
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
    let a: flashgrid_wire::Accepted = stack.accepted("look", "u", 1, None).await;
    expect_error(
        get(format!("{}?wait_ms=30001", a.status_url))
            .await
            .unwrap(),
        400,
        "invalid_request",
    )
    .await;
    let list: Vec<flashgrid_wire::EventView> =
        get("/events".into()).await.unwrap().json().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(stack.decided(&a).await.user_id.as_str(), "u");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_need_the_token_and_valid_bodies() {
    let stack = TestStack::spawn().await;
    let url = format!("{}/admin/events", stack.url);
    let body = serde_json::json!({"event_id": "adm", "name": "Admin", "capacity": 3});
    let r = stack.http.post(&url).json(&body).send().await.unwrap();
    expect_error(r, 401, "unauthorized").await;
    let r = stack
        .http
        .post(&url)
        .bearer_auth("wrong-token")
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_error(r, 401, "unauthorized").await;
    for bad in [
        serde_json::json!({"name": "x", "capacity": 0}),
        serde_json::json!({"name": "", "capacity": 3}),
        serde_json::json!({"name": "x", "capacity": -1}),
        serde_json::json!({"name": "x", "capacity": 3, "per_user_limit": 11}),
        serde_json::json!({"name": "x", "capacity": 3, "opens_at": "tomorrow"}),
        serde_json::json!({"name": "x", "capacity": 3, "opens_at": "2030-01-02T00:00:00Z", "closes_at": "2030-01-01T00:00:00Z"}),
        serde_json::json!({"event_id": "Bad Id", "name": "x", "capacity": 3}),
        serde_json::json!({"name": "x", "capacity": 3, "surprise": true}),
    ] {
        let r = stack
            .http
            .post(&url)
            .bearer_auth(TOKEN)
            .json(&bad)
            .send()
            .await
            .unwrap();
        expect_error(r, 400, "invalid_request").await;
    }
    let created = stack.create_event_json(body.clone()).await;
    assert_eq!(
        (
            created.capacity,
            created.remaining,
            created.per_user_limit.get()
        ),
        (3, 3, 4)
    );
    let r = stack
        .http
        .post(&url)
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_error(r, 409, "exists").await;
    // Without an id, one is derived from the name.
    let named = stack
        .create_event_json(serde_json::json!({"name": "Big Show!", "capacity": 2}))
        .await;
    assert!(
        named.event_id.as_str().starts_with("big-show-"),
        "{}",
        named.event_id
    );

    let reset = |id: &str| format!("{}/admin/events/{id}/reset", stack.url);
    let r = stack.http.post(reset("adm")).send().await.unwrap();
    expect_error(r, 401, "unauthorized").await;
    let r = stack
        .http
        .post(reset("ghost"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "unknown_event").await;
    let r = stack
        .http
        .post(reset("adm"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"capacity": 0}))
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "invalid_request").await;

    // Sell one: a reset that does not say to discard it is refused, and
    // changes nothing.
    let a = stack.accepted("adm", "u", 1, None).await;
    stack.decided(&a).await;
    assert_eq!(stack.db_counts("adm").await, (1, 1, 1));
    let r = stack
        .http
        .post(reset("adm"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"capacity": 7}))
        .send()
        .await
        .unwrap();
    let e = expect_error(r, 409, "confirmation_required").await;
    assert!(
        e.message.contains("1 confirmed reservations") && e.message.contains("discard_confirmed"),
        "{}",
        e.message
    );
    assert_eq!(stack.db_counts("adm").await, (1, 1, 1), "nothing removed");
    // Then with the confirmation, to a new capacity: stock restored, rows removed.
    let r = stack
        .http
        .post(reset("adm"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"capacity": 7, "discard_confirmed": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: flashgrid_wire::EventView = r.json().await.unwrap();
    assert_eq!((v.capacity, v.remaining, v.confirmed), (7, 7, 0));
    assert_eq!(stack.db_counts("adm").await, (0, 0, 0));
    // A body-less reset works too.
    let r = stack
        .http
        .post(reset("adm"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let stack = TestStack::spawn().await;
    let mut sock = tokio::net::TcpStream::connect(stack.url.trim_start_matches("http://"))
        .await
        .unwrap();
    sock.write_all(b"POST /reserve HTTP/1.1\r\nHost: x\r\nContent-Type: applic")
        .await
        .unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    // The gateway's header deadline is 2 s in tests: it must close, not hang.
    let n = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut buf))
        .await
        .expect("the gateway kept a slow-loris connection open")
        .unwrap_or(0);
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(
        n == 0 || answer.starts_with("HTTP/1.1 408"),
        "unexpected answer {answer:?}"
    );
    assert!(
        start.elapsed() >= Duration::from_millis(1500),
        "closed before the deadline"
    );

    // A body that never arrives in full: 408 after the body deadline.
    let mut sock = tokio::net::TcpStream::connect(stack.url.trim_start_matches("http://"))
        .await
        .unwrap();
    sock.write_all(b"POST /reserve HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"event_id\"").await.unwrap();
    let mut answer = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), sock.read_to_string(&mut answer))
        .await
        .expect("the gateway kept a trickled body open");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("request_timeout"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_away_means_503_with_retry_after_then_recovery() {
    let stack = TestStack::empty().await;
    let proxy = Proxy::start(5672).await;
    let mut cfg = stack.gateway_config();
    cfg.services.amqp_url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port);
    stack.start_gateway_with(cfg).await;
    stack.start_worker().await;
    stack.create_event("flaky", 100).await;
    let before: flashgrid_wire::Accepted = stack.accepted("flaky", "before", 1, None).await;

    proxy.cut();
    // Purchases the gateway took before it noticed the cut were promised:
    // each is followed to its decision below.
    let promised = std::sync::Mutex::new(vec![before]);
    let tries = std::sync::atomic::AtomicUsize::new(0);
    let r = eventually(
        "503 while the broker is away",
        Duration::from_secs(10),
        || async {
            let n = tries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let r = stack
                .reserve("flaky", &format!("during-{n}"), 1, None)
                .await
                .ok()?;
            if r.status() == 202 {
                let a: flashgrid_wire::Accepted = r.json().await.ok()?;
                promised.lock().unwrap().push(a);
                return None;
            }
            (r.status() == 503).then_some(r)
        },
    )
    .await;
    assert_eq!(
        r.headers().get("retry-after").map(|v| v.to_str().unwrap()),
        Some("1")
    );
    expect_error(r, 503, "unavailable").await;
    let ready = stack
        .http
        .get(format!("{}/readyz", stack.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);

    proxy.restore();
    let a: flashgrid_wire::Accepted = eventually(
        "202 once the broker is back",
        Duration::from_secs(20),
        || async {
            let r = stack.reserve("flaky", "after", 1, None).await.ok()?;
            if r.status() == 202 {
                r.json().await.ok()
            } else {
                None
            }
        },
    )
    .await;
    assert_eq!(
        stack.decided(&a).await.status,
        flashgrid_wire::Status::Confirmed
    );
    for p in promised.into_inner().unwrap() {
        assert_eq!(
            stack.decided(&p).await.status,
            flashgrid_wire::Status::Confirmed,
            "a 202 given around the cut was lost"
        );
    }
}

/// An event created through another gateway (here: written to PostgreSQL
/// behind this gateway's back, so no notice reaches it) is sold at once,
/// not told `404 unknown_event` until the next reload; an id nobody
/// created is still `404`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_created_elsewhere_is_sold_before_its_notice_arrives() {
    let stack = TestStack::spawn().await;
    sqlx::query(
        "INSERT INTO events (event_id, name, capacity, per_user_limit) VALUES ('elsewhere', 'e', 5, 4)",
    )
    .execute(&stack.pool)
    .await
    .unwrap();
    let a = stack.accepted("elsewhere", "first", 1, None).await;
    assert_eq!(
        stack.decided(&a).await.status,
        flashgrid_wire::Status::Confirmed
    );
    for _ in 0..2 {
        let r = stack.reserve("nowhere", "x", 1, None).await.unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::NOT_FOUND);
    }
}
