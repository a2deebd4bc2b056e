//! The gateway daemon: HTTP in, confirmed group publishes out.
//!
//! `/reserve` never waits on Redis or PostgreSQL: the event, its window and
//! its sold-out flag come from the in-memory [`catalog`], which [`refresh`]
//! keeps fresh from pub/sub notices and a periodic reload. A `202` is sent
//! only once RabbitMQ confirmed the persistent message that holds the
//! reservation ([`publisher`]); while the broker is away the answer is `503`
//! with `Retry-After`.
//!
//! - [`http`]: accept, per-connection limits, body reading, bounded drain.
//! - [`routes`]: the route table and auth, one file per group of routes.
//! - [`error`]: every error answer, in one place.
//! - [`catalog`], [`refresh`]: the events as `/reserve` sees them.
//! - [`publisher`]: group publish with confirms, and the broker link.
//! - [`waiters`]: long-polls woken by decision notices.
//! - [`copies`]: the copies of one keyed purchase all get the same answer.
//! - [`lookups`]: Redis lookups of one moment in one round trip.
//! - [`receipt`]: signed status URLs, readable by every gateway.
//! - [`limit`]: the optional per-client rate limit.
//! - [`stats`], [`feed`]: counters, `/metrics` and the live feed.
//! - [`peers`]: the other daemons as last heard, for the feed.

pub mod catalog;
pub mod copies;
pub mod error;
pub mod feed;
pub mod http;
pub mod limit;
pub mod lookups;
pub mod openapi;
pub mod peers;
pub mod publisher;
pub mod receipt;
pub mod refresh;
pub mod routes;
pub mod stats;
pub mod unknown;
pub mod waiters;

use crate::config::{self, GatewayConfig};
use crate::inventory::Inventory;
use crate::services::{self, Connected};
use anyhow::Context;
use catalog::Catalog;
use publisher::{Publisher, PublisherConfig};
use refresh::Refresh;
use routes::Gateway;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use waiters::Waiters;

/// PostgreSQL connections of one gateway: status lookups, `/events`, the
/// feed and the reloads; the hot path uses none.
const POOL_SIZE: u32 = 8;

/// PostgreSQL lookups the read routes (status URLs, `/events`) may have
/// under way at once: the rest of the pool stays for the feed, readiness,
/// reloads and admin calls whatever a flood of reads does.
const READ_LOOKUPS: usize = 4;

/// How long the background tasks and the pool get to stop at the end.
const STOP_GRACE: Duration = Duration::from_millis(500);

/// Binds `cfg.listen`, connects to the services and serves until `shutdown`.
pub async fn run(cfg: GatewayConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    cfg.validate().map_err(anyhow::Error::msg)?;
    let listener = http::bind(cfg.listen).with_context(|| {
        format!(
            "cannot listen on {}: is another gateway running there? Set FLASHGRID_LISTEN to another address",
            cfg.listen
        )
    })?;
    let connected = services::connect(&cfg.services, publisher::CONNECTION_NAME, POOL_SIZE).await?;
    serve(&cfg, listener, connected, shutdown).await
}

/// Serves on a bound listener (tests bind port 0) and connected services
/// until `shutdown`, then drains: requests in flight finish, what is queued
/// for the broker is published and confirmed, the background tasks stop.
pub async fn serve(
    cfg: &GatewayConfig,
    listener: TcpListener,
    connected: Connected,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Connected {
        ns,
        pool,
        redis_subscribe,
        redis,
        amqp,
    } = connected;
    let inventory = Inventory::new(redis, ns.clone()).with_outcome_ttl(cfg.services.outcome_ttl);
    let refresh = Refresh {
        pool: pool.clone(),
        inventory: inventory.clone(),
        catalog: Arc::new(Catalog::default()),
        waiters: Arc::new(Waiters::default()),
        stats: Arc::new(stats::Stats::default()),
        peers: Arc::new(peers::Peers::new(cfg.services.instance_id())),
    };
    refresh
        .reload()
        .await
        .context("load the events from PostgreSQL")?;
    let receipts = receipt::Receipts::new(
        &crate::db::status_url_key(&pool)
            .await
            .context("read the status URL key from PostgreSQL")?,
    );
    let background = CancellationToken::new();
    let mut tasks = vec![
        tokio::spawn(
            refresh
                .clone()
                .follow_notices(redis_subscribe, background.clone()),
        ),
        tokio::spawn(refresh.clone().periodically(background.clone())),
        tokio::spawn(crate::notify::heartbeat(
            inventory.connection(),
            ns.clone(),
            background.clone(),
        )),
    ];

    let (publisher, publisher_tasks) = Publisher::start(
        PublisherConfig {
            amqp_url: cfg.services.amqp_url.clone(),
            topology: cfg.services.topology(),
            group_max: cfg.group_max,
            inflight: cfg.publish_inflight,
            confirm_timeout: cfg.confirm_timeout,
        },
        amqp,
        inventory.clone(),
        refresh.stats.clone(),
    );
    let (feed_tx, feed_rx) = tokio::sync::watch::channel(None);
    let (nodes, prober) = crate::reach::spawn(
        &cfg.services,
        publisher::CONNECTION_NAME,
        background.clone(),
    );
    tasks.push(prober);
    tasks.push(tokio::spawn(feed::run(
        refresh.stats.clone(),
        pool.clone(),
        inventory.connection(),
        refresh.catalog.clone(),
        publisher.probe(),
        feed::Me {
            peers: refresh.peers.clone(),
            listen: listener.local_addr()?.to_string(),
            nodes,
            ns: ns.clone(),
        },
        feed_tx,
        background.clone(),
    )));
    let limiter = cfg.rate().map(|(rate, burst)| {
        let l = Arc::new(limit::Limiter::new(cfg.rate_key, rate, burst));
        tasks.push(tokio::spawn(l.clone().sweep_until(background.clone())));
        l
    });
    let read_limiter = cfg.read_rate().map(|(rate, burst)| {
        let l = Arc::new(limit::Limiter::new(config::RateKey::Addr, rate, burst));
        tasks.push(tokio::spawn(l.clone().sweep_until(background.clone())));
        l
    });
    let (lookups, gatherer) = lookups::Lookups::start(inventory.clone(), background.clone());
    tasks.push(gatherer);
    let gateway = Arc::new(Gateway {
        pool: pool.clone(),
        inventory,
        lookups,
        catalog: refresh.catalog.clone(),
        unknown: Default::default(),
        publisher: publisher.clone(),
        waiters: refresh.waiters.clone(),
        copies: copies::CopyRoutes::default(),
        admin_token: cfg.admin_token.clone(),
        feed_token: cfg.feed_token.clone(),
        receipts,
        limiter: limiter.clone(),
        read_limiter,
        reads: tokio::sync::Semaphore::new(READ_LOOKUPS),
        max_body_bytes: cfg.max_body_bytes,
        body_timeout: cfg.body_timeout,
        stats: refresh.stats.clone(),
        feed: feed_rx,
        shutdown: shutdown.clone(),
    });
    drop(refresh);
    raise_fd_limit();
    tracing::info!(
        listen = %listener.local_addr()?,
        namespace = ns.as_str(),
        admin = cfg.admin_token.is_some(),
        feed_token = cfg.feed_token.is_some(),
        rate_limit = ?limiter,
        "gateway ready"
    );
    let handler = {
        let g = gateway.clone();
        move |req, peer| g.clone().handle(req, peer)
    };
    let drained = http::serve(
        listener,
        http::Limits {
            header_timeout: cfg.header_timeout,
            write_timeout: cfg.write_timeout,
            max_connections: cfg.max_connections,
            per_addr: cfg.per_addr_connections(),
            drain_timeout: cfg.drain_timeout,
        },
        shutdown,
        handler,
    )
    .await;
    // Every connection is closed: publish what is still queued, wait for its
    // confirms, then stop the rest. After a forced drain nobody waits for
    // those answers: about a second more at most.
    drop(gateway);
    let forced = drained == http::Drained::Forced;
    publisher_tasks.close(publisher, forced).await;
    background.cancel();
    let rest = async {
        for t in tasks {
            let _ = t.await;
        }
        pool.close().await;
    };
    if tokio::time::timeout(STOP_GRACE, rest).await.is_err() {
        tracing::warn!("background tasks did not stop within {STOP_GRACE:?}; exiting anyway");
    }
    tracing::info!("gateway stopped");
    Ok(())
}

/// A flash crowd needs one descriptor per buyer: raise the soft limit to the
/// hard one, and say so when that is still low.
fn raise_fd_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) if n < 16_384 => tracing::warn!(
            limit = n,
            "the open-files limit is low for a flash crowd; raise it (ulimit -n) to hold more connections"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not raise the open-files limit"),
    }
}
