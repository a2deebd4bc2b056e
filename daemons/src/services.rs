//! Connecting to PostgreSQL, Redis and RabbitMQ at start, retrying until the
//! startup deadline, with errors that name the service, its address and how
//! to start it.

use crate::config::ServicesConfig;
use anyhow::{Context, anyhow};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sqlx::PgPool;
use std::future::Future;
use std::time::{Duration, Instant};

/// Which service, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Postgres,
    Redis,
    RabbitMq,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::Postgres => "PostgreSQL",
            Service::Redis => "Redis",
            Service::RabbitMq => "RabbitMQ",
        }
    }

    fn how_to_start(self) -> &'static str {
        match self {
            Service::Postgres => {
                "start it (`pg_ctlcluster --skip-systemctl-redirect 15 main start`, or `docker compose up -d postgres`) or set DATABASE_URL"
            }
            Service::Redis => {
                "start it (`redis-server --daemonize yes --save \"\" --appendonly no`, or `docker compose up -d redis`) or set REDIS_URL"
            }
            Service::RabbitMq => {
                "start it (`rabbitmq-server -detached`, or `docker compose up -d rabbitmq`) or set AMQP_URL"
            }
        }
    }
}

/// The longest wait between two attempts to reach a service that went away
/// while running. Short: during a flash sale every second away is a second of
/// 503s, and reconnecting to a local service is cheap.
pub const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(1);

/// Hides the password of a service URL before it is logged.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "<unparseable url>".into(),
    }
}

/// Runs `connect` until it succeeds or `deadline` passes, logging each failure
/// with the fix; the final error says the same.
pub async fn with_retry<T, F, Fut>(
    service: Service,
    url: &str,
    timeout: Duration,
    mut connect: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let started = Instant::now();
    let mut delay = Duration::from_millis(200);
    loop {
        match connect().await {
            Ok(v) => return Ok(v),
            Err(e) if started.elapsed() + delay < timeout => {
                tracing::warn!(
                    service = service.name(),
                    url = %redact(url),
                    error = format!("{e:#}"),
                    "cannot reach {} yet, retrying in {:?}; {}",
                    service.name(),
                    delay,
                    service.how_to_start()
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                return Err(e.context(format!(
                    "cannot reach {} at {} (gave up after {:?}): {}",
                    service.name(),
                    redact(url),
                    timeout,
                    service.how_to_start()
                )));
            }
        }
    }
}

/// PostgreSQL: creates the database if missing, connects a pool and applies
/// the embedded migrations.
pub async fn postgres(cfg: &ServicesConfig, max_connections: u32) -> anyhow::Result<PgPool> {
    let url = &cfg.database_url;
    with_retry(Service::Postgres, url, cfg.startup_timeout, || async {
        crate::db::connect(url, max_connections).await
    })
    .await
}

/// Redis: a multiplexed connection that reconnects by itself, with bounded
/// timeouts so a stalled server surfaces as an error instead of a hang.
pub async fn redis(cfg: &ServicesConfig) -> anyhow::Result<(redis::Client, ConnectionManager)> {
    let url = &cfg.redis_url;
    let client = redis::Client::open(url.as_str())
        .map_err(|e| anyhow!("REDIS_URL {} is not a valid Redis URL: {e}", redact(url)))?;
    let conn = with_retry(Service::Redis, url, cfg.startup_timeout, || {
        let client = client.clone();
        async move {
            let mut conn = ConnectionManager::new_with_config(client, redis_manager_config())
                .await
                .context("connect")?;
            redis::cmd("PING")
                .query_async::<()>(&mut conn)
                .await
                .context("PING")?;
            Ok(conn)
        }
    })
    .await?;
    Ok((client, conn))
}

/// Timeouts sized for a flash crowd: long enough that a burst queued behind
/// one multiplexed connection does not time out, short enough that a cut
/// connection is noticed within seconds.
pub fn redis_manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(3)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500))
}

/// Whether PostgreSQL and Redis answer (`SELECT 1`, `PING`), asked at once,
/// each within `limit`.
pub async fn answering(pool: &PgPool, redis: &ConnectionManager, limit: Duration) -> (bool, bool) {
    let mut conn = redis.clone();
    let ping = redis::cmd("PING");
    let (pg, rd) = tokio::join!(
        tokio::time::timeout(limit, sqlx::query("SELECT 1").execute(pool)),
        tokio::time::timeout(limit, ping.query_async::<()>(&mut conn)),
    );
    (matches!(pg, Ok(Ok(_))), matches!(rd, Ok(Ok(()))))
}

/// RabbitMQ: one connection (callers open their channels on it).
pub async fn rabbitmq(cfg: &ServicesConfig, name: &str) -> anyhow::Result<lapin::Connection> {
    let url = &cfg.amqp_url;
    with_retry(Service::RabbitMq, url, cfg.startup_timeout, || {
        crate::queue::connect(url, name)
    })
    .await
}
