//! PostgreSQL, Redis and RabbitMQ as the daemons reach them: connected once
//! at start ([`connect`], retried until the start-up deadline, with errors
//! that name the service, its address and how to start it), and probed while
//! running ([`answering`]).

mod probe;
mod startup;

pub use probe::{Reachable, answering};
pub use startup::{postgres, rabbitmq, redis, redis_manager_config, with_retry};

use crate::config::ServicesConfig;
use crate::names::Namespace;
use crate::store::Store;
use sqlx::PgPool;

/// Which service, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Postgres,
    Redis,
    RabbitMq,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Postgres => "PostgreSQL",
            Service::Redis => "Redis",
            Service::RabbitMq => "RabbitMQ",
        }
    }

    pub fn how_to_start(self) -> &'static str {
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

/// Everything a daemon needs from the outside, connected: the one value its
/// `serve` takes, so tests can hand it in.
#[derive(Debug)]
pub struct Connected {
    pub ns: Namespace,
    pub pool: PgPool,
    /// For pub/sub, which needs a connection of its own: the nodes it may
    /// listen on, tried in turn (one for a single server).
    pub redis_subscribe: Vec<redis::Client>,
    pub redis: Store,
    pub amqp: lapin::Connection,
}

/// Connects to the three services, each retried until the start-up deadline.
/// `name` shows in RabbitMQ's management UI; `pool_size` bounds PostgreSQL
/// connections.
pub async fn connect(
    cfg: &ServicesConfig,
    name: &str,
    pool_size: u32,
) -> anyhow::Result<Connected> {
    let pool = postgres(cfg, pool_size).await?;
    let (target, redis) = redis(cfg).await?;
    let redis_subscribe = target
        .subscribe_clients()
        .map_err(|e| anyhow::anyhow!("REDIS_URL: {e}"))?;
    // Fail fast at start on an unreachable broker; later losses reconnect.
    let amqp = rabbitmq(cfg, name).await?;
    // Daemons of one namespace that disagree on the partitions would queue
    // reservations where no worker looks: refuse to start.
    crate::queue::check_partitions(&amqp, &cfg.topology()).await?;
    Ok(Connected {
        ns: cfg.namespace.clone(),
        pool,
        redis_subscribe,
        redis,
        amqp,
    })
}
