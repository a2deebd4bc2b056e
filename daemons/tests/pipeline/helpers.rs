//! `TestStack`: a whole FlashGrid stack for one test — a fresh database and
//! namespace, the gateway and worker in-process (or as child processes for
//! the tests that kill them) — with one helper per route. Dropping it stops
//! the daemons and removes the database, the Redis keys and the queues.

#![allow(dead_code)]

use flashgrid::config::{GatewayConfig, ServicesConfig, WorkerConfig};
use flashgrid_wire::{Accepted, EventView, ReservationView, Status};
use reqwest::StatusCode;
use sqlx::PgPool;
use std::future::Future;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const TOKEN: &str = "test-admin-token";
const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const REDIS: &str = "redis://127.0.0.1:6379";
const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Fails at once, naming the service and how to start it, when one is down.
pub fn require_services() {
    for (name, port, how) in [
        (
            "PostgreSQL",
            5432,
            "pg_ctlcluster --skip-systemctl-redirect 15 main start",
        ),
        (
            "Redis",
            6379,
            "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save \"\" --appendonly no",
        ),
        ("RabbitMQ", 5672, "rabbitmq-server -detached"),
    ] {
        if std::net::TcpStream::connect_timeout(
            &([127, 0, 0, 1], port).into(),
            Duration::from_secs(2),
        )
        .is_err()
        {
            panic!(
                "{name} is not answering on 127.0.0.1:{port}; the tests need it: start it with `{how}`"
            );
        }
    }
}

/// Polls `f` until it returns `Some`, or panics with `what` at the deadline.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

enum Daemon {
    InProcess {
        stop: CancellationToken,
        task: JoinHandle<anyhow::Result<()>>,
    },
    Process(Child),
}

impl Daemon {
    async fn stop(self) {
        match self {
            Daemon::InProcess { stop, task } => {
                stop.cancel();
                let res = tokio::time::timeout(Duration::from_secs(20), task)
                    .await
                    .expect("the daemon did not stop within 20 s of its shutdown signal");
                res.expect("daemon task")
                    .expect("the daemon returned an error");
            }
            Daemon::Process(mut child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

pub struct TestStack {
    pub ns: String,
    pub db_name: String,
    pub db_url: String,
    pub pool: PgPool,
    pub http: reqwest::Client,
    pub url: String,
    gateway: Mutex<Option<Daemon>>,
    worker: Mutex<Option<Daemon>>,
    gateway_port: u16,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl TestStack {
    /// A stack with both daemons running in-process.
    pub async fn spawn() -> Self {
        let s = Self::empty().await;
        s.start_gateway().await;
        s.start_worker().await;
        s
    }

    /// A database and namespace, no daemons yet.
    pub async fn empty() -> Self {
        require_services();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(std::env::var("TEST_LOG").unwrap_or_else(|_| "off".into()))
            .with_test_writer()
            .try_init();
        let ns = format!(
            "t{}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed),
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        );
        let db_name = format!("fg_{}", ns.replace('-', "_"));
        let db_url = format!("postgres://postgres@127.0.0.1:5432/{db_name}");
        // The daemons create and migrate it; tests use their own pool on it.
        let pool = flashgrid::db::connect(&db_url, 4)
            .await
            .expect("create the test database");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        // One port for the stack's life, so a restarted gateway is found again.
        let gateway_port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self {
            ns,
            db_name,
            db_url,
            pool,
            http,
            url: format!("http://127.0.0.1:{gateway_port}"),
            gateway: Mutex::new(None),
            worker: Mutex::new(None),
            gateway_port,
        }
    }

    pub fn services(&self) -> ServicesConfig {
        ServicesConfig {
            database_url: self.db_url.clone(),
            redis_url: REDIS.into(),
            amqp_url: AMQP.into(),
            namespace: self.ns.clone(),
            startup_timeout: Duration::from_secs(10),
        }
    }

    pub fn gateway_config(&self) -> GatewayConfig {
        GatewayConfig {
            services: self.services(),
            listen: "127.0.0.1:0".parse().unwrap(),
            admin_token: Some(TOKEN.into()),
            max_body_bytes: 16 * 1024,
            header_timeout: Duration::from_secs(2),
            body_timeout: Duration::from_secs(2),
            group_max: 256,
            publish_inflight: 16,
            confirm_timeout: Duration::from_secs(5),
            max_connections: 16_384,
            drain_timeout: Duration::from_secs(10),
        }
    }

    pub fn worker_config(&self) -> WorkerConfig {
        WorkerConfig {
            services: self.services(),
            prefetch: 64,
            batch_max: 64,
        }
    }

    pub async fn start_gateway(&self) {
        self.start_gateway_with(self.gateway_config()).await;
    }

    pub async fn start_gateway_with(&self, cfg: GatewayConfig) {
        let addr = format!("127.0.0.1:{}", self.gateway_port).parse().unwrap();
        let listener = flashgrid::gateway::http::bind(addr).unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(flashgrid::gateway::serve(cfg, listener, stop.clone()));
        *self.gateway.lock().unwrap() = Some(Daemon::InProcess { stop, task });
        self.wait_ready().await;
    }

    pub async fn start_worker(&self) {
        self.start_worker_with(self.worker_config()).await;
    }

    pub async fn start_worker_with(&self, cfg: WorkerConfig) {
        let stop = CancellationToken::new();
        let task = tokio::spawn(flashgrid::worker::run(cfg, stop.clone()));
        *self.worker.lock().unwrap() = Some(Daemon::InProcess { stop, task });
    }

    /// Starts the real binary (for tests that signal or kill it).
    pub fn start_process(&self, bin: &str) {
        let path = match bin {
            "gateway" => env!("CARGO_BIN_EXE_flashgrid-gateway"),
            "worker" => env!("CARGO_BIN_EXE_flashgrid-worker"),
            _ => unreachable!(),
        };
        let child = Command::new(path)
            .env("DATABASE_URL", &self.db_url)
            .env("REDIS_URL", REDIS)
            .env("AMQP_URL", AMQP)
            .env("FLASHGRID_NAMESPACE", &self.ns)
            .env(
                "FLASHGRID_LISTEN",
                format!("127.0.0.1:{}", self.gateway_port),
            )
            .env("FLASHGRID_ADMIN_TOKEN", TOKEN)
            .env(
                "RUST_LOG",
                std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn daemon");
        *self.slot(bin).lock().unwrap() = Some(Daemon::Process(child));
    }

    fn slot(&self, bin: &str) -> &Mutex<Option<Daemon>> {
        match bin {
            "gateway" => &self.gateway,
            "worker" => &self.worker,
            _ => unreachable!(),
        }
    }

    /// Sends SIGTERM to a daemon process and waits for it to exit by itself.
    pub async fn terminate_process(&self, bin: &str) -> std::process::ExitStatus {
        let d = self.slot(bin).lock().unwrap().take();
        let Some(Daemon::Process(mut child)) = d else {
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

    /// Stops a daemon: in-process ones gracefully, processes with SIGKILL.
    pub async fn stop(&self, bin: &str) {
        let d = self.slot(bin).lock().unwrap().take();
        if let Some(d) = d {
            d.stop().await;
        }
    }

    pub async fn wait_ready(&self) {
        let url = format!("{}/readyz", self.url);
        eventually(
            "the gateway to be ready",
            Duration::from_secs(30),
            || async {
                match self.http.get(&url).send().await {
                    Ok(r) if r.status() == StatusCode::OK => Some(()),
                    _ => None,
                }
            },
        )
        .await;
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

    pub async fn event(&self, id: &str) -> EventView {
        self.http
            .get(format!("{}/events/{id}", self.url))
            .send()
            .await
            .unwrap()
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

    /// Follows a status URL until it is decided (long-polls), or panics.
    pub async fn decided(&self, accepted: &Accepted) -> ReservationView {
        let url = format!("{}{}?wait_ms=5000", self.url, accepted.status_url);
        eventually(
            "a reservation to be decided",
            Duration::from_secs(60),
            || async {
                let r = self.http.get(&url).send().await.ok()?;
                if r.status() != StatusCode::OK {
                    return None;
                }
                let v: ReservationView = r.json().await.ok()?;
                (v.status != Status::Pending).then_some(v)
            },
        )
        .await
    }

    /// Rows and confirmed quantity PostgreSQL holds for an event.
    pub async fn db_counts(&self, event: &str) -> (i64, i64, i32) {
        let (rows, qty): (i64, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(*), SUM(quantity)::bigint FROM reservations WHERE event_id = $1",
        )
        .bind(event)
        .fetch_one(&self.pool)
        .await
        .unwrap();
        let counter: i32 = sqlx::query_scalar("SELECT confirmed FROM events WHERE event_id = $1")
            .bind(event)
            .fetch_one(&self.pool)
            .await
            .unwrap();
        (rows, qty.unwrap_or(0), counter)
    }

    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(REDIS)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    pub fn namespace(&self) -> flashgrid::names::Namespace {
        flashgrid::names::Namespace::new(&self.ns).unwrap()
    }

    /// Messages waiting in (and unacked from) the reservation queue.
    pub async fn queue_depth(&self) -> u32 {
        let conn = flashgrid::queue::connect(AMQP, "test").await.unwrap();
        let ch = conn.create_channel().await.unwrap();
        let q = ch
            .queue_declare(
                self.namespace().queue().as_str().into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await
            .unwrap();
        let _ = conn.close(200, "".into()).await;
        q.message_count()
    }
}

impl Drop for TestStack {
    fn drop(&mut self) {
        let daemons: Vec<Daemon> = [
            self.gateway.lock().unwrap().take(),
            self.worker.lock().unwrap().take(),
        ]
        .into_iter()
        .flatten()
        .collect();
        // Stop in-process daemons first, so none re-declares what is removed below.
        for d in &daemons {
            if let Daemon::InProcess { stop, .. } = d {
                stop.cancel();
            }
        }
        let ns = self.namespace();
        let db = self.db_name.clone();
        let pool = self.pool.clone();
        // Cleanup needs async I/O but Drop is sync (and may run while a test
        // panics): do it on a runtime of its own. The in-process daemons'
        // tasks keep running on the test's other worker thread meanwhile.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                for d in daemons {
                    match d {
                        Daemon::Process(mut c) => {
                            let _ = c.kill();
                            let _ = c.wait();
                        }
                        Daemon::InProcess { task, .. } => {
                            let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
                        }
                    }
                }
                pool.close().await;
                if let Ok(admin) = PgPool::connect(PG_ADMIN).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"
                    )))
                    .execute(&admin)
                    .await;
                }
                if let Ok(client) = redis::Client::open(REDIS)
                    && let Ok(mut c) = client.get_multiplexed_async_connection().await
                {
                    let keys: Vec<String> = redis::cmd("KEYS")
                        .arg(ns.key_pattern())
                        .query_async(&mut c)
                        .await
                        .unwrap_or_default();
                    if !keys.is_empty() {
                        let _: Result<(), _> =
                            redis::cmd("DEL").arg(keys).query_async(&mut c).await;
                    }
                }
                if let Ok(conn) = flashgrid::queue::connect(AMQP, "test-cleanup").await
                    && let Ok(ch) = conn.create_channel().await
                {
                    for q in [ns.queue(), ns.dead_letter_queue()] {
                        let _ = ch.queue_delete(q.as_str().into(), Default::default()).await;
                    }
                    let _ = ch
                        .exchange_delete(
                            ns.dead_letter_exchange().as_str().into(),
                            Default::default(),
                        )
                        .await;
                    let _ = conn.close(200, "".into()).await;
                }
            });
        })
        .join()
        .ok();
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

/// A TCP proxy in front of a service, under the test's control: `cut` drops
/// every connection and refuses new ones until `restore`. Faults are injected
/// here, never on the shared servers.
pub struct Proxy {
    pub port: u16,
    state: std::sync::Arc<Mutex<(bool, CancellationToken)>>,
    task: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target_port: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = std::sync::Arc::new(Mutex::new((false, CancellationToken::new())));
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                let (refusing, token) = {
                    let g = st.lock().unwrap();
                    (g.0, g.1.clone())
                };
                if refusing {
                    drop(client);
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut server) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target_port)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    }
                });
            }
        });
        Self { port, state, task }
    }

    pub fn cut(&self) {
        let mut g = self.state.lock().unwrap();
        g.0 = true;
        g.1.cancel();
    }

    pub fn restore(&self) {
        let mut g = self.state.lock().unwrap();
        *g = (false, CancellationToken::new());
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}
