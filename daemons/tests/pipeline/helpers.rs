//! `TestStack`: the testkit's [`Stack`] (own database, own namespace, the
//! daemons in-process or as processes, cleaned up on drop) plus an HTTP
//! client and one helper per route.

#![allow(dead_code)]

use flashgrid_testkit::{Role, Stack};
use flashgrid_wire::{Accepted, EventView, ReservationView, Status};
use reqwest::StatusCode;
use std::time::{Duration, Instant};

pub use flashgrid_testkit::{AMQP, FEED_TOKEN, Proxy, TOKEN, eventually};

pub struct TestStack {
    stack: Stack,
    pub http: reqwest::Client,
}

impl std::ops::Deref for TestStack {
    type Target = Stack;
    fn deref(&self) -> &Stack {
        &self.stack
    }
}

fn role(bin: &str) -> Role {
    match bin {
        "gateway" => Role::Gateway,
        "worker" => Role::Worker,
        _ => unreachable!("no daemon {bin}"),
    }
}

impl TestStack {
    fn wrap(stack: Stack) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("an HTTP client");
        Self { stack, http }
    }

    /// A stack with both daemons running in-process.
    pub async fn spawn() -> Self {
        Self::wrap(Stack::spawn().await)
    }

    /// A database and namespace, no daemons yet.
    pub async fn empty() -> Self {
        Self::wrap(Stack::empty().await)
    }

    /// A worker's own `Decider` on this stack, for tests that drive a
    /// batch step by step (the moment between two steps is theirs).
    pub async fn decider(&self) -> flashgrid::worker::Decider {
        let (_, redis) = flashgrid::services::redis(&self.services()).await.unwrap();
        flashgrid::worker::Decider::new(
            self.pool.clone(),
            flashgrid::inventory::Inventory::new(redis, self.namespace()),
        )
    }

    /// A database and namespace, no daemons yet, room for `n` gateways.
    pub async fn empty_with_gateways(n: usize) -> Self {
        Self::wrap(Stack::empty_with_gateways(n).await)
    }

    /// Starts the real binary (for tests that signal or kill it).
    pub fn start_process(&self, bin: &str) {
        let path = match bin {
            "gateway" => env!("CARGO_BIN_EXE_flashgrid-gateway"),
            _ => env!("CARGO_BIN_EXE_flashgrid-worker"),
        };
        self.stack.start_process(role(bin), path);
    }

    /// Stops a daemon: in-process ones gracefully, processes with SIGKILL.
    pub async fn stop(&self, bin: &str) {
        self.stack.stop(role(bin)).await;
    }

    /// Sends SIGTERM to a daemon process and waits for it to exit by itself.
    pub async fn terminate_process(&self, bin: &str) -> std::process::ExitStatus {
        let Some(mut child) = self.stack.take_process(role(bin)) else {
            panic!("{bin} is not a process")
        };
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                panic!("{bin} did not exit within 30 s of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn create_event(&self, id: &str, capacity: u32) -> EventView {
        self.create_event_json(
            serde_json::json!({"event_id": id, "name": id, "capacity": capacity}),
        )
        .await
    }

    pub async fn create_event_json(&self, body: serde_json::Value) -> EventView {
        let r = self
            .http
            .post(format!("{}/admin/events", self.url))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            r.text().await.unwrap()
        );
        r.json().await.unwrap()
    }

    /// `GET` a path of the gateway; panics on a transport error.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    pub async fn event(&self, id: &str) -> EventView {
        self.get(&format!("/events/{id}"))
            .await
            .json()
            .await
            .unwrap()
    }

    pub async fn reserve(
        &self,
        event: &str,
        user: &str,
        quantity: u8,
        key: Option<&str>,
    ) -> reqwest::Result<reqwest::Response> {
        let mut req = self
            .http
            .post(format!("{}/reserve", self.url))
            .json(&serde_json::json!({"event_id": event, "user_id": user, "quantity": quantity}));
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        req.send().await
    }

    /// Reserves and expects a `202`.
    pub async fn accepted(
        &self,
        event: &str,
        user: &str,
        quantity: u8,
        key: Option<&str>,
    ) -> Accepted {
        let r = self
            .reserve(event, user, quantity, key)
            .await
            .expect("transport");
        assert_eq!(
            r.status(),
            StatusCode::ACCEPTED,
            "reserve {event} for {user}"
        );
        r.json().await.expect("a 202 body")
    }

    /// Publishes one persistent message straight to the reservation queue,
    /// as a gateway would, and waits for the broker's confirm.
    pub async fn publish_raw(&self, body: &[u8]) {
        self.publish_to(&self.namespace().queue(), body).await;
    }

    /// Publishes one persistent message to one of this stack's queues and
    /// waits until the broker has kept it.
    pub async fn publish_to(&self, queue: &str, body: &[u8]) {
        let conn = flashgrid::queue::connect(AMQP, "test").await.unwrap();
        let ch = flashgrid::queue::confirm_channel(&conn, &self.topology())
            .await
            .unwrap();
        flashgrid::queue::publish_kept(&ch, queue, body, Duration::from_secs(10))
            .await
            .unwrap();
        let _ = conn.close(200, "".into()).await;
    }

    /// One read of a status URL, long-polling up to `wait_ms`.
    pub async fn status(&self, accepted: &Accepted, wait_ms: u64) -> ReservationView {
        let url = format!("{}{}?wait_ms={wait_ms}", self.url, accepted.status_url);
        self.http
            .get(&url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Follows a status URL until it is decided (long-polls), or panics:
    /// on a deadline, and at once on an answer no status URL may give (a
    /// `200` that is no reservation, a 4xx other than `404`, a 5xx other
    /// than `503`). A `404` or `503` is tried again: a service may be away.
    pub async fn decided(&self, accepted: &Accepted) -> ReservationView {
        let url = format!("{}{}?wait_ms=5000", self.url, accepted.status_url);
        eventually(
            "a reservation to be decided",
            Duration::from_secs(60),
            || async {
                let r = self.http.get(&url).send().await.ok()?;
                let status = r.status();
                if status == StatusCode::NOT_FOUND || status == StatusCode::SERVICE_UNAVAILABLE {
                    return None;
                }
                let body = r.bytes().await.ok()?;
                assert_eq!(
                    status,
                    StatusCode::OK,
                    "{url} answered {status}: {}",
                    String::from_utf8_lossy(&body)
                );
                let v: ReservationView = serde_json::from_slice(&body).unwrap_or_else(|e| {
                    panic!(
                        "{url} answered 200 with no reservation ({e}): {}",
                        String::from_utf8_lossy(&body)
                    )
                });
                (v.status != Status::Pending).then_some(v)
            },
        )
        .await
    }

    /// Confirmations PostgreSQL's capacity guard revoked for the event.
    pub async fn db_revoked(&self, event: &str) -> i32 {
        sqlx::query_scalar("SELECT revoked FROM events WHERE event_id = $1")
            .bind(event)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// The gateway's `/metrics` text (the feed token opens it).
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.url))
            .bearer_auth(FEED_TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(flashgrid_testkit::REDIS)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// Resets an event through the admin route (a drill: a new sale,
    /// its confirmed reservations discarded).
    pub async fn reset_event(&self, event: &str) {
        let r = self
            .http
            .post(format!("{}/admin/events/{event}/reset", self.url))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"discard_confirmed": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "reset {event}");
    }

    /// The Redis keys of one of this stack's events.
    pub fn keys(&self, event: &str) -> flashgrid::names::EventKeys {
        self.namespace()
            .event_keys(&flashgrid_wire::EventId::parse(event).unwrap())
    }

    /// Deletes what Redis records of the event's reservations — the won
    /// hash and every outcome key (pending markers, rejections) — as a
    /// partial loss would, keeping the stock and the users hash; returns
    /// how many keys went.
    pub async fn forget_outcomes(&self, event: &str) -> usize {
        let k = self.keys(event);
        let mut conn = self.redis().await;
        let mut keys = flashgrid_testkit::scan_keys(&mut conn, &k.outcome_pattern())
            .await
            .unwrap();
        keys.push(k.won);
        let gone: usize = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .unwrap();
        gone
    }

    /// Messages waiting in (and unacked from) the reservation queue.
    pub async fn queue_depth(&self) -> u32 {
        self.messages_in(&self.namespace().queue()).await
    }

    /// Messages waiting in (and unacked from) one of this stack's queues:
    /// the broker's own count (AMQP's answers leave the unacked out).
    pub async fn messages_in(&self, queue: &str) -> u32 {
        let q = flashgrid_faults::endstate::queue_named(queue)
            .await
            .unwrap();
        u32::try_from(q.ready + q.unacked).unwrap_or(u32::MAX)
    }
}

/// Sends `n` reservations at once from distinct users; returns the 202s and
/// the count of each other status.
pub async fn burst(
    stack: &TestStack,
    event: &str,
    n: usize,
) -> (Vec<Accepted>, std::collections::BTreeMap<u16, usize>) {
    let futs = (0..n).map(|i| {
        let user = format!("buyer-{i}");
        async move { stack.reserve(event, &user, 1, None).await }
    });
    let mut accepted = Vec::new();
    let mut others = std::collections::BTreeMap::new();
    for r in futures::future::join_all(futs).await {
        let r = r.expect("transport error");
        if r.status() == StatusCode::ACCEPTED {
            accepted.push(r.json::<Accepted>().await.unwrap());
        } else {
            *others.entry(r.status().as_u16()).or_default() += 1;
        }
    }
    (accepted, others)
}

/// The queue item of `user`'s purchase of one seat of `event` (sale 1), as
/// a gateway would publish it.
pub fn purchase(event: &str, user: &str) -> flashgrid::queue::Queued {
    flashgrid::queue::Queued {
        id: flashgrid_wire::ReservationId::random(),
        event: flashgrid_wire::EventId::parse(event).unwrap(),
        user: flashgrid_wire::UserId::parse(user).unwrap(),
        qty: flashgrid_wire::Quantity::ONE,
        at: chrono::Utc::now(),
        sale: 1,
    }
}

/// The value of an unlabelled counter or gauge in Prometheus text.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}
