//! Configuration of both daemons: clap flags with the environment variables
//! and local defaults of DESIGN.md, so nothing needs setting on a machine that
//! runs the services on their standard ports.

use crate::names::Namespace;
use crate::queue::{QueueType, Topology};
use crate::store::NodeMap;
use clap::Args;
pub use flashgrid_wire::AdminToken;
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

    /// Redis: one server, or a Redis Cluster as `redis+cluster://h1:p1,h2:p2`
    /// (or several comma-separated URLs) naming some of its nodes.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,

    /// Redis Cluster only: where to reach the nodes whose announced
    /// addresses this host cannot reach (NAT, container port mappings), as
    /// `announced=reached` pairs, comma-separated (`10.0.0.5:6379=127.0.0.1:7000`).
    #[arg(long, env = "FLASHGRID_REDIS_NODE_MAP", default_value = "")]
    pub redis_node_map: NodeMap,

    /// RabbitMQ.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,

    /// Reservation queues an event's id is hashed over: every gateway and
    /// worker of a namespace must use the same number (a daemon refuses to
    /// start beside daemons of another count). 3: one leader per node of a
    /// 3-node cluster; measured here, partitions add 4–7 % on a cluster
    /// and cost nothing on one node (docs/BENCHMARKS.md).
    #[arg(long, env = "FLASHGRID_QUEUE_PARTITIONS", default_value = "3", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub queue_partitions: u16,

    /// Type of the reservation queues: `quorum` (replicated; survives a
    /// node's loss on a cluster) or `classic` (one node).
    #[arg(long, env = "FLASHGRID_QUEUE_TYPE", value_enum, default_value_t = QueueType::Quorum)]
    pub queue_type: QueueType,

    /// Most messages a reservation queue holds (each a group of up to
    /// FLASHGRID_GROUP_MAX reservations); beyond it the broker refuses new
    /// ones and buyers are answered 503 with Retry-After. 0: no limit.
    #[arg(long, env = "FLASHGRID_QUEUE_MAX_LENGTH", default_value = "50000")]
    pub queue_max_length: u32,

    /// Quorum queues: how many times one message may be delivered (each
    /// time a worker died holding it) before it is dead-lettered as
    /// poison. 0: the broker's default (none before RabbitMQ 4).
    #[arg(long, env = "FLASHGRID_DELIVERY_LIMIT", default_value = "20")]
    pub delivery_limit: u32,

    /// Prefix of every Redis key, exchange and queue name, so several stacks
    /// share one set of servers.
    #[arg(long, env = "FLASHGRID_NAMESPACE", default_value = "flashgrid")]
    pub namespace: Namespace,

    /// How long to keep retrying a service that is unreachable at start before
    /// exiting with an error (seconds).
    #[arg(long, env = "FLASHGRID_STARTUP_TIMEOUT", default_value = "15", value_parser = parse_secs)]
    pub startup_timeout: Duration,

    /// How long Redis keeps a reservation's pending marker or rejection
    /// (seconds; confirmations stay with their seats). After it, a status
    /// URL is answered from PostgreSQL: this bounds Redis's memory.
    #[arg(long, env = "FLASHGRID_OUTCOME_TTL", default_value = "86400", value_parser = parse_ttl)]
    pub outcome_ttl: Duration,

    /// This daemon's name in the console and the feed, unique in the
    /// namespace. Unset: `<host>-<pid>-<4 random hex digits>`.
    #[arg(long, env = "FLASHGRID_INSTANCE")]
    pub instance: Option<String>,
}

impl ServicesConfig {
    /// The name this daemon reports itself under: `FLASHGRID_INSTANCE`,
    /// else host, process id and 4 random hex digits (two containers of one
    /// host network can both run as process 1).
    pub fn instance_id(&self) -> String {
        if let Some(name) = self
            .instance
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            return name.to_owned();
        }
        let host = whoami::hostname().unwrap_or_else(|_| "localhost".to_owned());
        let salt = &uuid::Uuid::new_v4().simple().to_string()[..4];
        format!("{host}-{}-{salt}", std::process::id())
    }

    /// The reservation queues these settings describe.
    pub fn topology(&self) -> Topology {
        Topology {
            ns: self.namespace.clone(),
            partitions: self.queue_partitions,
            kind: self.queue_type,
            max_length: self.queue_max_length,
            delivery_limit: self.delivery_limit,
        }
    }
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

    /// Print the OpenAPI document of the HTTP API (what `GET /openapi.json`
    /// answers) and exit.
    #[arg(long)]
    pub openapi: bool,

    /// Bearer token of the admin routes (create, reset); also opens the
    /// feed. Accepted only in the `Authorization` header. Unset, the admin
    /// routes answer 401.
    #[arg(long, env = "FLASHGRID_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<AdminToken>,

    /// Read-only token of the live feed (`/ws`) and, once set, of
    /// `/metrics`: what a console or a scraper needs, and nothing that can
    /// change a sale. Header, or `?token=` on `/ws` for browsers.
    #[arg(long, env = "FLASHGRID_FEED_TOKEN", hide_env_values = true)]
    pub feed_token: Option<AdminToken>,

    /// Largest request body accepted (bytes); larger ones get 413.
    #[arg(long, env = "FLASHGRID_MAX_BODY_BYTES", default_value = "16384")]
    pub max_body_bytes: usize,

    /// A client must send its request headers within this many seconds; a
    /// keep-alive connection idle this long is closed (hyper times the wait
    /// for the next request's headers from the end of the last answer).
    #[arg(long, env = "FLASHGRID_HEADER_TIMEOUT", default_value = "5", value_parser = parse_secs)]
    pub header_timeout: Duration,

    /// A client must send its whole body within this many seconds.
    #[arg(long, env = "FLASHGRID_BODY_TIMEOUT", default_value = "10", value_parser = parse_secs)]
    pub body_timeout: Duration,

    /// Most reservations gathered into one queue message.
    #[arg(long, env = "FLASHGRID_GROUP_MAX", default_value = "256")]
    pub group_max: usize,

    /// Most group messages awaiting their broker confirm at once; while all are
    /// in flight, new arrivals gather into bigger groups. Few is faster: the
    /// broker's work is per message, and on two shared cores 4 against 16
    /// took the accept path (wrk, distinct buyers) from 16k to 18-20k `202`s
    /// a second and the p99 at 5,000 a second from 12-24 to 6.5-9 ms.
    #[arg(long, env = "FLASHGRID_PUBLISH_INFLIGHT", default_value = "4")]
    pub publish_inflight: usize,

    /// The publish deadline: a purchase the broker has not confirmed within
    /// this many seconds is answered 503 (a blocked or stalled broker), and
    /// the gateway answers 503 at once until the broker confirms again.
    #[arg(long, env = "FLASHGRID_CONFIRM_TIMEOUT", default_value = "5", value_parser = parse_secs)]
    pub confirm_timeout: Duration,

    /// Most client connections held at once (each costs a file descriptor).
    #[arg(long, env = "FLASHGRID_MAX_CONNECTIONS", default_value = "16384")]
    pub max_connections: usize,

    /// Most connections from one client address; beyond it a new one is
    /// answered 503 and closed, so one host cannot take every connection.
    /// Unset: three quarters of FLASHGRID_MAX_CONNECTIONS.
    #[arg(long, env = "FLASHGRID_MAX_CONNECTIONS_PER_ADDR")]
    pub max_connections_per_addr: Option<usize>,

    /// A client that reads nothing of an answer for this many seconds is
    /// disconnected (the write deadline; reads have the header and body
    /// deadlines).
    #[arg(long, env = "FLASHGRID_WRITE_TIMEOUT", default_value = "10", value_parser = parse_secs)]
    pub write_timeout: Duration,

    /// On shutdown, how long in-flight requests may take to finish (seconds).
    #[arg(long, env = "FLASHGRID_DRAIN_TIMEOUT", default_value = "10", value_parser = parse_secs)]
    pub drain_timeout: Duration,

    /// POST /reserve requests per second allowed per client (see
    /// --rate-key), fractions allowed; beyond it the answer is 429. 0 turns
    /// rate limiting off, so a load test from one host is never throttled.
    #[arg(long, env = "FLASHGRID_RATE_LIMIT", default_value = "0")]
    pub rate_limit: f64,

    /// Requests one client may send at once before the rate applies (the
    /// bucket size); unset, twice the rate (rounded up, at least 1).
    #[arg(long, env = "FLASHGRID_RATE_BURST")]
    pub rate_burst: Option<u32>,

    /// What identifies a client for rate limiting: `user` (the body's
    /// user_id) or `addr` (the client's IP address).
    #[arg(long, env = "FLASHGRID_RATE_KEY", value_enum, default_value_t = RateKey::User)]
    pub rate_key: RateKey,

    /// Read requests (`/events`, status URLs) per second allowed per client
    /// address, fractions allowed; beyond it the answer is 429. 0 (the
    /// default) turns it off.
    #[arg(long, env = "FLASHGRID_READ_RATE_LIMIT", default_value = "0")]
    pub read_rate_limit: f64,

    /// Read requests one address may send at once before the read rate
    /// applies; unset, twice the rate.
    #[arg(long, env = "FLASHGRID_READ_RATE_BURST")]
    pub read_rate_burst: Option<u32>,
}

/// What the rate limit of `/reserve` is counted per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RateKey {
    /// The body's `user_id`: one buyer cannot flood the queue, whatever
    /// addresses it comes from.
    User,
    /// The client's IP address: also throttles a bot that rotates user ids,
    /// but every buyer behind one NAT or proxy shares the limit.
    Addr,
}

/// Highest `FLASHGRID_RATE_LIMIT`: beyond it a client's interval between two
/// requests would round to nothing.
pub const MAX_RATE_LIMIT: f64 = 1_000_000.0;

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

    /// Unacked queue messages the broker may hand this worker at once, on
    /// each partition: at least `--batch-max` × `--pipeline` keeps every
    /// batch in flight full.
    #[arg(long, env = "FLASHGRID_PREFETCH", default_value = "512")]
    pub prefetch: u16,

    /// Most queue messages (each a group of reservations) decided and
    /// committed in one batch.
    #[arg(long, env = "FLASHGRID_BATCH_MAX", default_value = "128")]
    pub batch_max: usize,

    /// Batches in flight on each partition: the next one decides in Redis
    /// while the one before it commits to PostgreSQL. 1 processes one batch
    /// at a time.
    #[arg(long, env = "FLASHGRID_PIPELINE", default_value = "3", value_parser = clap::value_parser!(u8).range(1..=8))]
    pub pipeline: u8,

    /// Seconds a batch smaller than `--batch-max` may wait for more messages
    /// while the batches before it are in flight, and the least time between
    /// two batches (a batch after a quiet spell goes at once): at a low or
    /// moderate rate it makes one PostgreSQL commit of what would be many
    /// (each a commit of its own, queued behind the one before it on the
    /// event's row lock). 0 takes each batch at once.
    #[arg(long, env = "FLASHGRID_LINGER", default_value = "0.005", value_parser = parse_linger)]
    pub linger: Duration,

    /// Move every message of the dead-letter queue (reservations set aside,
    /// unreadable messages excepted) back to the reservation queue, then exit.
    /// Run it once the cause in the worker's ERROR log is fixed.
    #[arg(long)]
    pub replay_dead_letters: bool,
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

/// A batch's linger: a wait on the decision path, so at most a second.
fn parse_linger(s: &str) -> Result<Duration, String> {
    let d = parse_secs(s)?;
    if d > Duration::from_secs(1) {
        return Err(format!(
            "a batch waits at most 1 second for more messages, got {s}"
        ));
    }
    Ok(d)
}

/// A time to live of outcomes: whole seconds, from one to 30 days.
fn parse_ttl(s: &str) -> Result<Duration, String> {
    const MAX: u64 = 30 * 86_400;
    let secs: u64 = s
        .parse()
        .map_err(|_| format!("expected a whole number of seconds, got {s:?}"))?;
    if !(1..=MAX).contains(&secs) {
        return Err(format!(
            "seconds must be within 1..={MAX} (30 days), got {secs}"
        ));
    }
    Ok(Duration::from_secs(secs))
}

impl GatewayConfig {
    /// Checks the combinations clap cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.group_max == 0 || self.publish_inflight == 0 || self.max_connections == 0 {
            return Err(
                "--group-max, --publish-inflight and --max-connections must be at least 1".into(),
            );
        }
        for (name, token) in [
            ("FLASHGRID_ADMIN_TOKEN", &self.admin_token),
            ("FLASHGRID_FEED_TOKEN", &self.feed_token),
        ] {
            if matches!(token, Some(t) if t.expose().len() < 8) {
                return Err(format!("{name} must be at least 8 characters"));
            }
        }
        if let (Some(a), Some(f)) = (&self.admin_token, &self.feed_token)
            && a.expose() == f.expose()
        {
            return Err(
                "FLASHGRID_FEED_TOKEN must differ from FLASHGRID_ADMIN_TOKEN: the feed token is the one handed out read-only"
                    .into(),
            );
        }
        match self.max_connections_per_addr {
            Some(0) => {
                return Err("FLASHGRID_MAX_CONNECTIONS_PER_ADDR must be at least 1".into());
            }
            Some(n) if n > self.max_connections => {
                return Err(format!(
                    "FLASHGRID_MAX_CONNECTIONS_PER_ADDR ({n}) is above FLASHGRID_MAX_CONNECTIONS ({}): lower it, or raise the total",
                    self.max_connections
                ));
            }
            _ => {}
        }
        check_rate(
            "FLASHGRID_RATE_LIMIT (--rate-limit)",
            "FLASHGRID_RATE_BURST (--rate-burst)",
            self.rate_limit,
            self.rate_burst,
        )?;
        check_rate(
            "FLASHGRID_READ_RATE_LIMIT (--read-rate-limit)",
            "FLASHGRID_READ_RATE_BURST (--read-rate-burst)",
            self.read_rate_limit,
            self.read_rate_burst,
        )
    }

    /// The rate limit of `/reserve` when it is on: requests per second and
    /// burst, the default burst applied.
    pub fn rate(&self) -> Option<(f64, std::num::NonZeroU32)> {
        rate(self.rate_limit, self.rate_burst)
    }

    /// The per-address rate limit of the read routes, when it is on.
    pub fn read_rate(&self) -> Option<(f64, std::num::NonZeroU32)> {
        rate(self.read_rate_limit, self.read_rate_burst)
    }

    /// Connections one client address may hold.
    pub fn per_addr_connections(&self) -> usize {
        self.max_connections_per_addr
            .unwrap_or((self.max_connections / 4 * 3).max(1))
    }
}

fn check_rate(
    limit_name: &str,
    burst_name: &str,
    limit: f64,
    burst: Option<u32>,
) -> Result<(), String> {
    if !limit.is_finite() || !(0.0..=MAX_RATE_LIMIT).contains(&limit) {
        return Err(format!(
            "{limit_name} must be a number of requests per second within 0..={MAX_RATE_LIMIT} (0 = off), got {limit}"
        ));
    }
    match burst {
        Some(0) => Err(format!(
            "{burst_name} must be at least 1, or unset for twice the rate"
        )),
        Some(_) if limit == 0.0 => Err(format!(
            "{burst_name} is set but its rate limit is off: set {limit_name} to the requests per second allowed, or unset the burst"
        )),
        _ => Ok(()),
    }
}

fn rate(limit: f64, burst: Option<u32>) -> Option<(f64, std::num::NonZeroU32)> {
    if limit <= 0.0 || !limit.is_finite() {
        return None;
    }
    let burst = burst.unwrap_or_else(|| (limit * 2.0).ceil().min(f64::from(u32::MAX)) as u32);
    Some((limit, std::num::NonZeroU32::new(burst.max(1))?))
}

impl WorkerConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.prefetch == 0 || self.batch_max == 0 {
            return Err("--prefetch and --batch-max must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn gateway(args: &[&str]) -> Result<GatewayConfig, String> {
        let argv = std::iter::once("flashgrid-gateway").chain(args.iter().copied());
        let cfg = GatewayConfig::try_parse_from(argv).map_err(|e| e.to_string())?;
        cfg.validate()?;
        Ok(cfg)
    }

    #[test]
    fn linger_is_seconds_up_to_one() {
        let worker = |args: &[&str]| {
            let argv = std::iter::once("flashgrid-worker").chain(args.iter().copied());
            WorkerConfig::try_parse_from(argv).map_err(|e| e.to_string())
        };
        assert_eq!(worker(&[]).unwrap().linger, Duration::from_millis(5));
        assert_eq!(worker(&["--linger", "0"]).unwrap().linger, Duration::ZERO);
        let e = worker(&["--linger", "5"]).unwrap_err();
        assert!(e.contains("at most 1 second"), "{e}");
        let e = worker(&["--linger", "2ms"]).unwrap_err();
        assert!(e.contains("number of seconds"), "{e}");
    }

    #[test]
    fn rate_limit_is_off_by_default() {
        let cfg = gateway(&[]).unwrap();
        assert_eq!(cfg.rate_limit, 0.0);
        assert_eq!(cfg.rate_key, RateKey::User);
        assert!(cfg.rate().is_none());
    }

    #[test]
    fn rate_key_parses_user_and_addr_only() {
        let key = |k: &str| gateway(&["--rate-limit", "5", "--rate-key", k]).map(|c| c.rate_key);
        assert_eq!(key("user").unwrap(), RateKey::User);
        assert_eq!(key("addr").unwrap(), RateKey::Addr);
        let e = key("ip").unwrap_err();
        assert!(e.contains("user") && e.contains("addr"), "{e}");
    }

    #[test]
    fn burst_defaults_to_twice_the_rate_rounded_up() {
        let rate = |args: &[&str]| gateway(args).unwrap().rate().map(|(r, b)| (r, b.get()));
        assert_eq!(rate(&["--rate-limit", "5"]), Some((5.0, 10)));
        assert_eq!(rate(&["--rate-limit", "0.2"]), Some((0.2, 1)));
        assert_eq!(rate(&["--rate-limit", "1.3"]), Some((1.3, 3)));
        assert_eq!(
            rate(&["--rate-limit", "5", "--rate-burst", "1"]),
            Some((5.0, 1))
        );
    }

    #[test]
    fn bad_rate_combinations_name_what_to_fix() {
        for (args, needle) in [
            (&["--rate-burst", "3"][..], "FLASHGRID_RATE_LIMIT"),
            (
                &["--rate-limit", "5", "--rate-burst", "0"][..],
                "FLASHGRID_RATE_BURST",
            ),
            (&["--rate-limit=-1"][..], "FLASHGRID_RATE_LIMIT"),
            (&["--rate-limit", "NaN"][..], "FLASHGRID_RATE_LIMIT"),
            (&["--rate-limit", "inf"][..], "FLASHGRID_RATE_LIMIT"),
            (&["--rate-limit", "2000000"][..], "FLASHGRID_RATE_LIMIT"),
            (&["--read-rate-burst", "3"][..], "FLASHGRID_READ_RATE_LIMIT"),
            (&["--read-rate-limit=-2"][..], "FLASHGRID_READ_RATE_LIMIT"),
            (
                &[
                    "--max-connections",
                    "10",
                    "--max-connections-per-addr",
                    "11",
                ][..],
                "FLASHGRID_MAX_CONNECTIONS_PER_ADDR",
            ),
            (
                &["--admin-token", "same-token", "--feed-token", "same-token"][..],
                "FLASHGRID_FEED_TOKEN",
            ),
            (&["--feed-token", "short"][..], "FLASHGRID_FEED_TOKEN"),
        ] {
            let e = gateway(args).unwrap_err();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
    }

    #[test]
    fn one_address_gets_three_quarters_of_the_connections_unless_told() {
        assert_eq!(gateway(&[]).unwrap().per_addr_connections(), 12_288);
        let small = gateway(&["--max-connections", "3"]).unwrap();
        assert_eq!(small.per_addr_connections(), 1);
        let set = gateway(&["--max-connections-per-addr", "7"]).unwrap();
        assert_eq!(set.per_addr_connections(), 7);
    }

    #[test]
    fn the_admin_token_never_shows_in_debug() {
        let cfg = gateway(&[
            "--admin-token",
            "s3cret-value",
            "--feed-token",
            "fe3d-s3cret",
        ])
        .unwrap();
        assert_eq!(cfg.admin_token.as_ref().unwrap().expose(), "s3cret-value");
        assert_eq!(cfg.feed_token.as_ref().unwrap().expose(), "fe3d-s3cret");
        let printed = format!("{cfg:?} {cfg:#?}");
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(printed.contains("<redacted>"));
        assert!(gateway(&["--admin-token", "short"]).is_err());
    }

    #[test]
    fn a_bad_namespace_is_refused_at_parse_naming_the_variable() {
        let e = gateway(&["--namespace", "a b"]).unwrap_err();
        assert!(e.contains("FLASHGRID_NAMESPACE"), "{e}");
        let ok = gateway(&["--namespace", "t-1.x_y"]).unwrap();
        assert_eq!(ok.services.namespace.as_str(), "t-1.x_y");
    }
}
