//! Configuration of both daemons: clap flags with the environment variables
//! and local defaults of DESIGN.md, so nothing needs setting on a machine that
//! runs the services on their standard ports.

use clap::Args;
use std::net::SocketAddr;
use std::time::Duration;

/// Where the services are and which namespace this stack uses.
#[derive(Debug, Clone, Args)]
pub struct ServicesConfig {
    /// PostgreSQL; the database is created and migrated if missing.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres:postgres@127.0.0.1:5432/flashgrid"
    )]
    pub database_url: String,

    /// Redis.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,

    /// RabbitMQ.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,

    /// Prefix of every Redis key, exchange and queue name, so several stacks
    /// share one set of servers.
    #[arg(long, env = "FLASHGRID_NAMESPACE", default_value = "flashgrid")]
    pub namespace: String,

    /// How long to keep retrying a service that is unreachable at start before
    /// exiting with an error (seconds).
    #[arg(long, env = "FLASHGRID_STARTUP_TIMEOUT", default_value = "15", value_parser = parse_secs)]
    pub startup_timeout: Duration,
}

/// `flashgrid-gateway`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "flashgrid-gateway",
    version,
    about = "FlashGrid's HTTP gateway: takes reservations and queues them durably"
)]
pub struct GatewayConfig {
    #[command(flatten)]
    pub services: ServicesConfig,

    /// HTTP address to listen on.
    #[arg(long, env = "FLASHGRID_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Bearer token of the admin routes and the feed; unset, they answer 401.
    #[arg(long, env = "FLASHGRID_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Largest request body accepted (bytes); larger ones get 413.
    #[arg(long, env = "FLASHGRID_MAX_BODY_BYTES", default_value = "16384")]
    pub max_body_bytes: usize,

    /// A client must send its request headers within this many seconds.
    #[arg(long, env = "FLASHGRID_HEADER_TIMEOUT", default_value = "5", value_parser = parse_secs)]
    pub header_timeout: Duration,

    /// A client must send its whole body within this many seconds.
    #[arg(long, env = "FLASHGRID_BODY_TIMEOUT", default_value = "10", value_parser = parse_secs)]
    pub body_timeout: Duration,

    /// Most reservations gathered into one queue message.
    #[arg(long, env = "FLASHGRID_GROUP_MAX", default_value = "256")]
    pub group_max: usize,

    /// Most group messages awaiting their broker confirm at once; while all are
    /// in flight, new arrivals gather into bigger groups.
    #[arg(long, env = "FLASHGRID_PUBLISH_INFLIGHT", default_value = "16")]
    pub publish_inflight: usize,

    /// A reservation not confirmed by the broker within this many seconds is
    /// answered 503.
    #[arg(long, env = "FLASHGRID_CONFIRM_TIMEOUT", default_value = "5", value_parser = parse_secs)]
    pub confirm_timeout: Duration,

    /// Most client connections held at once (each costs a file descriptor).
    #[arg(long, env = "FLASHGRID_MAX_CONNECTIONS", default_value = "16384")]
    pub max_connections: usize,

    /// On shutdown, how long in-flight requests may take to finish (seconds).
    #[arg(long, env = "FLASHGRID_DRAIN_TIMEOUT", default_value = "10", value_parser = parse_secs)]
    pub drain_timeout: Duration,
}

/// `flashgrid-worker`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "flashgrid-worker",
    version,
    about = "FlashGrid's worker: decides reservations in Redis and commits the winners to PostgreSQL"
)]
pub struct WorkerConfig {
    #[command(flatten)]
    pub services: ServicesConfig,

    /// Unacked queue messages the broker may hand this worker at once.
    #[arg(long, env = "FLASHGRID_PREFETCH", default_value = "64")]
    pub prefetch: u16,

    /// Most queue messages (each a group of reservations) decided and
    /// committed in one batch.
    #[arg(long, env = "FLASHGRID_BATCH_MAX", default_value = "64")]
    pub batch_max: usize,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("expected a number of seconds, got {s:?}"))?;
    if !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("seconds must be within 0..=86400, got {secs}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

impl GatewayConfig {
    /// Checks the combinations clap cannot.
    pub fn validate(&self) -> Result<(), String> {
        crate::names::Namespace::new(&self.services.namespace)?;
        if self.group_max == 0 || self.publish_inflight == 0 || self.max_connections == 0 {
            return Err(
                "--group-max, --publish-inflight and --max-connections must be at least 1".into(),
            );
        }
        if matches!(&self.admin_token, Some(t) if t.len() < 8) {
            return Err("FLASHGRID_ADMIN_TOKEN must be at least 8 characters".into());
        }
        Ok(())
    }
}

impl WorkerConfig {
    pub fn validate(&self) -> Result<(), String> {
        crate::names::Namespace::new(&self.services.namespace)?;
        if self.prefetch == 0 || self.batch_max == 0 {
            return Err("--prefetch and --batch-max must be at least 1".into());
        }
        Ok(())
    }
}
