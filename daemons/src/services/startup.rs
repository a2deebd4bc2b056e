//! Reaching each service at start: retried until the start-up deadline, each
//! failure logged with the fix, the final error saying the same.

use super::Service;
use crate::backoff::Backoff;
use crate::config::ServicesConfig;
use crate::redact::redact;
use crate::store::{RedisTarget, Store};
use anyhow::{Context, anyhow};
use redis::aio::ConnectionManagerConfig;
use sqlx::PgPool;
use std::future::Future;
use std::time::{Duration, Instant};

/// Runs `connect` until it succeeds or `timeout` passes, logging each failure
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
    // Slower than a reconnect: at start, a service may be starting too.
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(2));
    loop {
        let e = match connect().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let delay = backoff.next_delay();
        if started.elapsed() + delay >= timeout {
            return Err(e.context(format!(
                "cannot reach {} at {} (gave up after {:?}): {}",
                service.name(),
                redact(url),
                timeout,
                service.how_to_start()
            )));
        }
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

/// Redis: one server or a cluster (`REDIS_URL`), a multiplexed connection
/// that reconnects by itself, with bounded timeouts so a stalled server
/// surfaces as an error instead of a hang.
pub async fn redis(cfg: &ServicesConfig) -> anyhow::Result<(RedisTarget, Store)> {
    let url = &cfg.redis_url;
    let target = RedisTarget::parse(url).map_err(|e| anyhow!(e))?;
    let store = with_retry(Service::Redis, url, cfg.startup_timeout, || {
        let target = target.clone();
        async move {
            let mut conn = target
                .connect(&cfg.redis_node_map)
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
    if target.is_cluster() {
        tracing::info!(nodes = target.nodes().len(), "connected to a Redis Cluster");
    }
    Ok((target, store))
}

/// Timeouts sized for a flash crowd: long enough that a burst queued behind
/// one multiplexed connection does not time out, short enough that a cut
/// connection is noticed within seconds.
pub fn redis_manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(crate::store::RESPONSE_TIMEOUT))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500))
}

/// RabbitMQ: one connection (callers open their channels on it).
pub async fn rabbitmq(cfg: &ServicesConfig, name: &str) -> anyhow::Result<lapin::Connection> {
    let url = &cfg.amqp_url;
    with_retry(Service::RabbitMq, url, cfg.startup_timeout, || {
        crate::queue::connect(url, name)
    })
    .await
}
