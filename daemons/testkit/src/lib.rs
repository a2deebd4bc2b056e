//! A whole FlashGrid stack for one test, on the real services: a fresh
//! database and namespace, the gateway and worker in-process (or as child
//! processes for tests that signal or kill them), and a TCP [`Proxy`] to cut
//! a service from the test's own space. Dropping the [`Stack`] stops the
//! daemons and removes the database, the Redis keys and the queues.
//!
//! A crate of its own, so the daemons carry no test harness: the daemons'
//! integration tests, the fault matrix and the console's end-to-end test
//! share it.
//!
//! - [`stack`]: the [`Stack`] itself.
//! - [`proxy`]: the [`Proxy`] faults are injected through.

pub mod proxy;
pub mod stack;

pub use proxy::Proxy;
pub use stack::{Instance, Role, Services, Stack};

use std::future::Future;
use std::time::{Duration, Instant};

pub const TOKEN: &str = "test-admin-token";
/// The feed token of every test stack's gateways (read-only: `/ws`, `/metrics`).
pub const FEED_TOKEN: &str = "test-feed-token";
pub(crate) const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const REDIS: &str = "redis://127.0.0.1:6379";
pub const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

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

/// Every key of one Redis server matching `pattern`, by SCAN: unlike KEYS,
/// it never blocks the server for its whole keyspace, which on the shared
/// server may hold millions of keys of other runs. Not for a cluster (SCAN
/// walks one node).
pub async fn scan_keys<C>(conn: &mut C, pattern: &str) -> redis::RedisResult<Vec<String>>
where
    C: redis::aio::ConnectionLike + Send + Sync,
{
    use futures::TryStreamExt;
    use redis::AsyncCommands;
    let scan = redis::ScanOptions::default()
        .with_pattern(pattern)
        .with_count(1000);
    let mut keys: Vec<String> = conn.scan_options(scan).await?.try_collect().await?;
    // SCAN may name a key twice (a rehash while it walks).
    keys.sort_unstable();
    keys.dedup();
    Ok(keys)
}
