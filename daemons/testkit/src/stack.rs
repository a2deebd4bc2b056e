//! One test's stack: its own database and namespace, the daemons it runs
//! (in-process, or as child processes to signal and kill), and the cleanup
//! when it is dropped.

use crate::{AMQP, PG_ADMIN, REDIS, TOKEN, eventually, require_services};
use flashgrid::config::{GatewayConfig, ServicesConfig, WorkerConfig};
use flashgrid::names::Namespace;
use sqlx::PgPool;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A daemon the stack started, and how to stop it.
#[derive(Debug)]
enum Running {
    InProcess {
        stop: CancellationToken,
        task: JoinHandle<anyhow::Result<()>>,
    },
    Process(Child),
}

impl Running {
    async fn stop(self) {
        match self {
            Running::InProcess { stop, task } => {
                stop.cancel();
                let res = tokio::time::timeout(Duration::from_secs(20), task)
                    .await
                    .expect("the daemon did not stop within 20 s of its shutdown signal");
                res.expect("daemon task")
                    .expect("the daemon returned an error");
            }
            Running::Process(mut child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// One test's stack.
#[derive(Debug)]
pub struct Stack {
    pub ns: String,
    pub db_name: String,
    pub db_url: String,
    pub pool: PgPool,
    pub url: String,
    gateway: Mutex<Option<Running>>,
    worker: Mutex<Option<Running>>,
    gateway_port: u16,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A free port for a stack's gateway, below the kernel's ephemeral range.
/// A port from that range (what binding port 0 gives) can be taken, between
/// this check and the gateway's own bind, by any outgoing connection of a
/// test running beside it — seen here as a gateway that could not listen.
fn gateway_port() -> u16 {
    const LOWEST: u16 = 10_000;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768)
        .max(LOWEST + 1_000);
    for _ in 0..1_000 {
        let span = u128::from(ephemeral_low - LOWEST);
        let port = LOWEST + (uuid::Uuid::new_v4().as_u128() % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOWEST}..{ephemeral_low} for a test gateway");
}

/// Which of the two daemons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Gateway,
    Worker,
}

impl Stack {
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
        let pool = flashgrid::db::connect(&db_url, 4)
            .await
            .expect("create the test database");
        // One port for the stack's life, so a restarted gateway is found again.
        let gateway_port = gateway_port();
        Self {
            ns,
            db_name,
            db_url,
            pool,
            url: format!("http://127.0.0.1:{gateway_port}"),
            gateway: Mutex::new(None),
            worker: Mutex::new(None),
            gateway_port,
        }
    }

    /// A stack with both daemons running in-process.
    pub async fn spawn() -> Self {
        let s = Self::empty().await;
        s.start_gateway().await;
        s.start_worker().await;
        s
    }

    pub fn namespace(&self) -> Namespace {
        Namespace::new(&self.ns).expect("a valid namespace")
    }

    pub fn services(&self) -> ServicesConfig {
        ServicesConfig {
            database_url: self.db_url.clone(),
            redis_url: REDIS.into(),
            amqp_url: AMQP.into(),
            namespace: self.namespace(),
            startup_timeout: Duration::from_secs(10),
            outcome_ttl: flashgrid::inventory::DEFAULT_OUTCOME_TTL,
        }
    }

    pub fn gateway_config(&self) -> GatewayConfig {
        GatewayConfig {
            services: self.services(),
            listen: ([127, 0, 0, 1], self.gateway_port).into(),
            admin_token: Some(TOKEN.into()),
            max_body_bytes: 16 * 1024,
            header_timeout: Duration::from_secs(2),
            body_timeout: Duration::from_secs(2),
            group_max: 256,
            publish_inflight: 16,
            confirm_timeout: Duration::from_secs(5),
            max_connections: 16_384,
            drain_timeout: Duration::from_secs(10),
            rate_limit: 0.0,
            rate_burst: None,
            rate_key: flashgrid::config::RateKey::User,
        }
    }

    pub fn worker_config(&self) -> WorkerConfig {
        WorkerConfig {
            services: self.services(),
            prefetch: 64,
            batch_max: 64,
            replay_dead_letters: false,
        }
    }

    pub async fn start_gateway(&self) {
        self.start_gateway_with(self.gateway_config()).await;
    }

    pub async fn start_gateway_with(&self, cfg: GatewayConfig) {
        let listener = flashgrid::gateway::http::bind(([127, 0, 0, 1], self.gateway_port).into())
            .expect("bind the test gateway");
        let stop = CancellationToken::new();
        let shutdown = stop.clone();
        let task = tokio::spawn(async move {
            let connected =
                flashgrid::services::connect(&cfg.services, "flashgrid-gateway", 8).await?;
            flashgrid::gateway::serve(&cfg, listener, connected, shutdown).await
        });
        *self.slot(Role::Gateway).lock().expect("slot") = Some(Running::InProcess { stop, task });
        self.wait_ready().await;
    }

    pub async fn start_worker(&self) {
        self.start_worker_with(self.worker_config()).await;
    }

    pub async fn start_worker_with(&self, cfg: WorkerConfig) {
        let stop = CancellationToken::new();
        let task = tokio::spawn(flashgrid::worker::run(cfg, stop.clone()));
        *self.slot(Role::Worker).lock().expect("slot") = Some(Running::InProcess { stop, task });
    }

    /// Starts a daemon's real binary (its path: `env!("CARGO_BIN_EXE_…")`).
    pub fn start_process(&self, which: Role, binary: &str) {
        self.start_process_with(which, binary.as_ref(), &[], None);
    }

    /// Starts a daemon's real binary with extra environment (which overrides
    /// the stack's own, e.g. to route a service through a [`Proxy`]) and its
    /// log appended to `log` instead of the test's stderr.
    pub fn start_process_with(
        &self,
        which: Role,
        binary: &std::path::Path,
        env: &[(&str, String)],
        log: Option<&std::path::Path>,
    ) {
        let stderr = match log {
            Some(path) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .unwrap_or_else(|e| panic!("open the log {}: {e}", path.display())),
            ),
            None => Stdio::inherit(),
        };
        let child = Command::new(binary)
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
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
        *self.slot(which).lock().expect("slot") = Some(Running::Process(child));
    }

    fn slot(&self, which: Role) -> &Mutex<Option<Running>> {
        match which {
            Role::Gateway => &self.gateway,
            Role::Worker => &self.worker,
        }
    }

    /// Whether a daemon process is still running (`None` if it is not a
    /// process, or was stopped).
    pub fn process_alive(&self, which: Role) -> Option<bool> {
        match &mut *self.slot(which).lock().expect("slot") {
            Some(Running::Process(c)) => Some(matches!(c.try_wait(), Ok(None))),
            _ => None,
        }
    }

    /// Hands over a daemon process (to signal it); `None` if it is not one.
    pub fn take_process(&self, which: Role) -> Option<Child> {
        let mut slot = self.slot(which).lock().expect("slot");
        match slot.take() {
            Some(Running::Process(c)) => Some(c),
            other => {
                *slot = other;
                None
            }
        }
    }

    /// Stops a daemon: in-process ones gracefully (failing if that takes
    /// more than 20 s), processes with SIGKILL.
    pub async fn stop(&self, which: Role) {
        let d = self.slot(which).lock().expect("slot").take();
        if let Some(d) = d {
            d.stop().await;
        }
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        let addr = format!("127.0.0.1:{}", self.gateway_port);
        eventually(
            "the gateway to be ready",
            Duration::from_secs(30),
            || async {
                let mut s = tokio::net::TcpStream::connect(&addr).await.ok()?;
                s.write_all(b"GET /readyz HTTP/1.0\r\nHost: x\r\n\r\n")
                    .await
                    .ok()?;
                let mut buf = [0u8; 12];
                s.read_exact(&mut buf).await.ok()?;
                (&buf == b"HTTP/1.0 200" || &buf == b"HTTP/1.1 200").then_some(())
            },
        )
        .await;
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let daemons: Vec<Running> = [
            self.gateway.lock().unwrap().take(),
            self.worker.lock().unwrap().take(),
        ]
        .into_iter()
        .flatten()
        .collect();
        // Stop in-process daemons first, so none re-declares what is removed below.
        for d in &daemons {
            if let Running::InProcess { stop, .. } = d {
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
                        Running::Process(mut c) => {
                            let _ = c.kill();
                            let _ = c.wait();
                        }
                        Running::InProcess { task, .. } => {
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
