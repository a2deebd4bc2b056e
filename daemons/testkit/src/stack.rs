//! One test's stack: its own database and namespace, the daemons it runs
//! (in-process, or as child processes to signal and kill; one gateway and
//! one worker, or several of each as [`Instance`]s), and the cleanup when it
//! is dropped.

use crate::{AMQP, FEED_TOKEN, PG_ADMIN, REDIS, TOKEN, eventually, require_services};
use flashgrid::config::{GatewayConfig, ServicesConfig, WorkerConfig};
use flashgrid::names::Namespace;
use sqlx::PgPool;
use std::collections::BTreeMap;
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

/// Where a stack's Redis and RabbitMQ are: this machine's own, or the
/// local clusters the cluster suite runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Services {
    pub redis_url: String,
    pub amqp_url: String,
}

impl Services {
    /// This machine's Redis (6379) and RabbitMQ (5672).
    pub fn local() -> Self {
        Self {
            redis_url: REDIS.into(),
            amqp_url: AMQP.into(),
        }
    }

    /// The clusters `just test-cluster` starts: their URLs are read from
    /// the file `FLASHGRID_TEST_CLUSTER_ENV` names (lines `REDIS_URL=…`,
    /// `AMQP_URL=…`, as `scripts/cluster.sh` writes them).
    pub fn clusters() -> Self {
        let path = std::env::var("FLASHGRID_TEST_CLUSTER_ENV").unwrap_or_else(|_| {
            panic!("FLASHGRID_TEST_CLUSTER_ENV is not set: run the cluster suite with `just test-cluster`")
        });
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {path} (FLASHGRID_TEST_CLUSTER_ENV): {e}"));
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
                .unwrap_or_else(|| panic!("{path} has no {name}= line"))
                .trim()
                .to_owned()
        };
        Self {
            redis_url: value("REDIS_URL"),
            amqp_url: value("AMQP_URL"),
        }
    }

    pub fn is_local(&self) -> bool {
        *self == Self::local()
    }
}

/// One test's stack.
#[derive(Debug)]
pub struct Stack {
    /// Where its Redis and RabbitMQ are.
    pub services: Services,
    pub ns: String,
    pub db_name: String,
    pub db_url: String,
    pub pool: PgPool,
    /// The first gateway's URL (`http://127.0.0.1:port`).
    pub url: String,
    daemons: Mutex<BTreeMap<Instance, Running>>,
    /// Each gateway's port, by instance number, fixed for the stack's life
    /// so that a restarted gateway is found again.
    gateway_ports: Vec<u16>,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Gateway,
    Worker,
}

/// One daemon of the stack: its role and which instance of it (0, 1, …).
/// A bare [`Role`] is instance 0, so that a one-gateway, one-worker test
/// never names instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instance {
    pub role: Role,
    pub n: usize,
}

impl Instance {
    pub fn gateway(n: usize) -> Self {
        Self {
            role: Role::Gateway,
            n,
        }
    }

    pub fn worker(n: usize) -> Self {
        Self {
            role: Role::Worker,
            n,
        }
    }
}

impl From<Role> for Instance {
    fn from(role: Role) -> Self {
        Self { role, n: 0 }
    }
}

impl std::fmt::Display for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let role = match self.role {
            Role::Gateway => "gateway",
            Role::Worker => "worker",
        };
        write!(f, "{role} {}", self.n)
    }
}

impl Stack {
    /// A database and namespace, no daemons yet, room for one gateway.
    pub async fn empty() -> Self {
        Self::empty_with_gateways(1).await
    }

    /// A database and namespace, no daemons yet, a port for each of
    /// `gateways` gateway instances (any number of workers may run).
    pub async fn empty_with_gateways(gateways: usize) -> Self {
        Self::on(Services::local(), gateways).await
    }

    /// A database (on this machine's PostgreSQL) and a namespace on
    /// `services`, no daemons yet, a port for each of `gateways` gateways.
    pub async fn on(services: Services, gateways: usize) -> Self {
        assert!(gateways >= 1, "a stack has at least one gateway");
        if services.is_local() {
            require_services();
        }
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
        // One port per gateway for the stack's life, so a restarted gateway
        // is found again.
        let mut gateway_ports = Vec::with_capacity(gateways);
        while gateway_ports.len() < gateways {
            let port = gateway_port();
            if !gateway_ports.contains(&port) {
                gateway_ports.push(port);
            }
        }
        Self {
            services,
            ns,
            db_name,
            db_url,
            pool,
            url: format!("http://127.0.0.1:{}", gateway_ports[0]),
            daemons: Mutex::new(BTreeMap::new()),
            gateway_ports,
        }
    }

    /// How many gateways the stack has room for.
    pub fn gateways(&self) -> usize {
        self.gateway_ports.len()
    }

    /// Gateway `n`'s URL (`http://127.0.0.1:port`); gateway 0's is [`Stack::url`].
    pub fn gateway_url(&self, n: usize) -> String {
        format!("http://127.0.0.1:{}", self.gateway_port(n))
    }

    fn gateway_port(&self, n: usize) -> u16 {
        *self.gateway_ports.get(n).unwrap_or_else(|| {
            panic!(
                "gateway {n}: the stack has room for {} (Stack::empty_with_gateways)",
                self.gateways()
            )
        })
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

    /// PostgreSQL's rows, confirmed seats and `events.confirmed` counter
    /// of an event.
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

    /// The reservation queues of the stack's daemons.
    pub fn topology(&self) -> flashgrid::queue::Topology {
        self.services().topology()
    }

    pub fn services(&self) -> ServicesConfig {
        ServicesConfig {
            database_url: self.db_url.clone(),
            amqp_url: self.services.amqp_url.clone(),
            redis_url: self.services.redis_url.clone(),
            redis_node_map: Default::default(),
            // One queue on this machine's RabbitMQ (the tests count its
            // messages); the default on the clusters.
            queue_partitions: if self.services.is_local() { 1 } else { 3 },
            // Classic on this machine's RabbitMQ: the tests read queue
            // counts with `rabbitmqctl`, whose figures of a quorum queue
            // are statistics seconds old. Quorum on the clusters.
            queue_type: if self.services.is_local() {
                flashgrid::queue::QueueType::Classic
            } else {
                flashgrid::queue::QueueType::Quorum
            },
            queue_max_length: 50_000,
            delivery_limit: 20,
            namespace: self.namespace(),
            startup_timeout: Duration::from_secs(10),
            outcome_ttl: flashgrid::inventory::DEFAULT_OUTCOME_TTL,
            instance: None,
        }
    }

    pub fn gateway_config(&self) -> GatewayConfig {
        GatewayConfig {
            services: self.services(),
            listen: ([127, 0, 0, 1], self.gateway_port(0)).into(),
            openapi: false,
            admin_token: Some(TOKEN.into()),
            feed_token: Some(FEED_TOKEN.into()),
            max_body_bytes: 16 * 1024,
            header_timeout: Duration::from_secs(2),
            body_timeout: Duration::from_secs(2),
            group_max: 256,
            publish_inflight: 4,
            confirm_timeout: Duration::from_secs(5),
            max_connections: 16_384,
            max_connections_per_addr: None,
            write_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
            rate_limit: 0.0,
            rate_burst: None,
            rate_key: flashgrid::config::RateKey::User,
            read_rate_limit: 0.0,
            read_rate_burst: None,
        }
    }

    pub fn worker_config(&self) -> WorkerConfig {
        WorkerConfig {
            services: self.services(),
            prefetch: 128,
            batch_max: 64,
            pipeline: 2,
            // The default.
            linger: std::time::Duration::from_millis(5),
            replay_dead_letters: false,
        }
    }

    pub async fn start_gateway(&self) {
        self.start_gateway_with(self.gateway_config()).await;
    }

    pub async fn start_gateway_with(&self, cfg: GatewayConfig) {
        let listener = flashgrid::gateway::http::bind(cfg.listen).expect("bind the test gateway");
        let stop = CancellationToken::new();
        let shutdown = stop.clone();
        let task = tokio::spawn(async move {
            let connected =
                flashgrid::services::connect(&cfg.services, "flashgrid-gateway", 8).await?;
            flashgrid::gateway::serve(&cfg, listener, connected, shutdown).await
        });
        self.put(Role::Gateway.into(), Running::InProcess { stop, task });
        self.wait_ready().await;
    }

    pub async fn start_worker(&self) {
        self.start_worker_with(self.worker_config()).await;
    }

    pub async fn start_worker_with(&self, cfg: WorkerConfig) {
        let stop = CancellationToken::new();
        let task = tokio::spawn(flashgrid::worker::run(cfg, stop.clone()));
        self.put(Role::Worker.into(), Running::InProcess { stop, task });
    }

    /// Starts a daemon's real binary (its path: `env!("CARGO_BIN_EXE_…")`).
    pub fn start_process(&self, which: impl Into<Instance>, binary: &str) {
        self.start_process_with(which, binary.as_ref(), &[], None);
    }

    /// Starts a daemon's real binary with extra environment (which overrides
    /// the stack's own, e.g. to route a service through a [`Proxy`]) and its
    /// log appended to `log` instead of the test's stderr. A gateway listens
    /// on its instance's port.
    pub fn start_process_with(
        &self,
        which: impl Into<Instance>,
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
        let which = which.into();
        // A worker listens nowhere; it is given gateway 0's port, unused.
        let port = match which.role {
            Role::Gateway => self.gateway_port(which.n),
            Role::Worker => self.gateway_port(0),
        };
        let queues = self.topology();
        let child = Command::new(binary)
            .env("DATABASE_URL", &self.db_url)
            .env("REDIS_URL", &self.services.redis_url)
            .env("AMQP_URL", &self.services.amqp_url)
            .env("FLASHGRID_NAMESPACE", &self.ns)
            .env("FLASHGRID_QUEUE_TYPE", queues.kind.as_str())
            .env("FLASHGRID_QUEUE_PARTITIONS", queues.partitions.to_string())
            .env("FLASHGRID_LISTEN", format!("127.0.0.1:{port}"))
            .env("FLASHGRID_ADMIN_TOKEN", TOKEN)
            .env("FLASHGRID_FEED_TOKEN", FEED_TOKEN)
            // The name the feed lists it under: `gateway-1`, `worker-0`.
            .env("FLASHGRID_INSTANCE", which.to_string().replace(' ', "-"))
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
        self.put(which, Running::Process(child));
    }

    /// Puts a started daemon in its instance's slot (replacing what was
    /// there, as a one-slot stack always did).
    fn put(&self, which: Instance, daemon: Running) {
        self.daemons.lock().expect("daemons").insert(which, daemon);
    }

    /// Whether a daemon process is still running (`None` if it is not a
    /// process, or was stopped).
    pub fn process_alive(&self, which: impl Into<Instance>) -> Option<bool> {
        match self.daemons.lock().expect("daemons").get_mut(&which.into()) {
            Some(Running::Process(c)) => Some(matches!(c.try_wait(), Ok(None))),
            _ => None,
        }
    }

    /// Hands over a daemon process (to signal it); `None` if it is not one.
    pub fn take_process(&self, which: impl Into<Instance>) -> Option<Child> {
        let which = which.into();
        let mut daemons = self.daemons.lock().expect("daemons");
        match daemons.remove(&which) {
            Some(Running::Process(c)) => Some(c),
            other => {
                if let Some(d) = other {
                    daemons.insert(which, d);
                }
                None
            }
        }
    }

    /// Stops a daemon: in-process ones gracefully (failing if that takes
    /// more than 20 s), processes with SIGKILL.
    pub async fn stop(&self, which: impl Into<Instance>) {
        let d = self.daemons.lock().expect("daemons").remove(&which.into());
        if let Some(d) = d {
            d.stop().await;
        }
    }

    /// Waits until gateway 0's `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        self.wait_gateway_ready(0).await;
    }

    /// Waits until gateway `n`'s `/readyz` answers 200.
    pub async fn wait_gateway_ready(&self, n: usize) {
        let addr = format!("127.0.0.1:{}", self.gateway_port(n));
        eventually(
            &format!("gateway {n} to be ready"),
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
        let daemons: Vec<Running> = std::mem::take(&mut *self.daemons.lock().unwrap())
            .into_values()
            .collect();
        // Stop in-process daemons first, so none re-declares what is removed below.
        for d in &daemons {
            if let Running::InProcess { stop, .. } = d {
                stop.cancel();
            }
        }
        let ns = self.namespace();
        let topology = self.topology();
        let services = self.services.clone();
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
                if let Ok(target) = flashgrid::store::RedisTarget::parse(&services.redis_url)
                    && let Ok(mut c) = target.connect(&Default::default()).await
                {
                    // On a cluster KEYS asks every master (a test's own
                    // cluster); one server is walked with SCAN, never
                    // blocked. The keys are deleted one by one (on a
                    // cluster they are in many slots).
                    let keys: Vec<String> = if matches!(c, flashgrid::store::Store::Single(_)) {
                        crate::scan_keys(&mut c, &ns.key_pattern()).await
                    } else {
                        redis::cmd("KEYS")
                            .arg(ns.key_pattern())
                            .query_async(&mut c)
                            .await
                    }
                    .unwrap_or_default();
                    let dels = keys.iter().map(|k| {
                        let mut c = c.clone();
                        async move { redis::cmd("DEL").arg(k).query_async::<()>(&mut c).await }
                    });
                    let _ = futures::future::join_all(dels).await;
                }
                if let Ok(conn) =
                    flashgrid::queue::connect(&services.amqp_url, "test-cleanup").await
                    && let Ok(ch) = conn.create_channel().await
                {
                    // A test may have declared more partitions than the
                    // stack's own: up to 8 are removed.
                    let partitions = (0..topology.partitions.max(8)).map(|p| topology.queue(p));
                    let others = [ns.dead_letter_queue(), topology.partitions_marker()];
                    for q in partitions.chain(others) {
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
