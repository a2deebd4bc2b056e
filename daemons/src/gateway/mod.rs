//! The gateway daemon: HTTP in, confirmed group publishes out.
//!
//! `/reserve` never waits on Redis or PostgreSQL: the event, its window and
//! its sold-out flag come from the in-memory [`catalog`], which pub/sub
//! notices and a periodic reload keep fresh. A `202` is sent only once
//! RabbitMQ confirmed the persistent message that holds the reservation
//! ([`publisher`]); while the broker is away the answer is `503` with
//! `Retry-After`.

pub mod catalog;
pub mod error;
pub mod feed;
pub mod http;
pub mod limit;
pub mod publisher;
pub mod routes;
pub mod stats;
pub mod waiters;

use crate::config::GatewayConfig;
use crate::inventory::Inventory;
use crate::names::Namespace;
use crate::notify::{self, Heard, Notice};
use crate::services;
use anyhow::Context;
use catalog::Catalog;
use publisher::{Publisher, PublisherConfig};
use routes::Gateway;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use waiters::Waiters;

/// How often the catalog is reloaded whatever the notices said.
const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// Binds `cfg.listen` and serves until `shutdown`.
pub async fn run(cfg: GatewayConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    cfg.validate().map_err(anyhow::Error::msg)?;
    let listener = http::bind(cfg.listen).with_context(|| {
        format!(
            "cannot listen on {}: is another gateway running there? Set FLASHGRID_LISTEN to another address",
            cfg.listen
        )
    })?;
    serve(cfg, listener, shutdown).await
}

/// Serves on an already bound listener (tests bind port 0).
pub async fn serve(
    cfg: GatewayConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    cfg.validate().map_err(anyhow::Error::msg)?;
    let ns = Namespace::new(&cfg.services.namespace).map_err(anyhow::Error::msg)?;
    let pool = services::postgres(&cfg.services, 8).await?;
    let (client, redis) = services::redis(&cfg.services).await?;
    let amqp = services::rabbitmq(&cfg.services, "flashgrid-gateway").await?;
    let inventory = Inventory::new(redis, ns.clone());

    let catalog = Arc::new(Catalog::default());
    catalog
        .reload(&pool, &inventory)
        .await
        .context("load the events from PostgreSQL")?;
    let waiters = Arc::new(Waiters::default());
    let stats = Arc::new(stats::Stats::default());
    let background = CancellationToken::new();
    let mut tasks = vec![
        tokio::spawn(listen_notices(
            client,
            ns.clone(),
            Listeners {
                pool: pool.clone(),
                inventory: inventory.clone(),
                catalog: catalog.clone(),
                waiters: waiters.clone(),
                stats: stats.clone(),
            },
            background.clone(),
        )),
        tokio::spawn(housekeeping(
            pool.clone(),
            inventory.clone(),
            catalog.clone(),
            waiters.clone(),
            background.clone(),
        )),
    ];

    let (publisher, publisher_tasks) = Publisher::start(
        PublisherConfig {
            amqp_url: cfg.services.amqp_url.clone(),
            ns: ns.clone(),
            group_max: cfg.group_max,
            inflight: cfg.publish_inflight,
            confirm_timeout: cfg.confirm_timeout,
        },
        amqp,
        inventory.clone(),
    );
    let (feed_tx, feed_rx) = tokio::sync::watch::channel(None);
    tasks.push(tokio::spawn(feed::run(
        stats.clone(),
        pool.clone(),
        inventory.connection(),
        catalog.clone(),
        publisher.probe(),
        feed_tx,
        background.clone(),
    )));
    let limiter = cfg.rate().map(|(rate, burst)| {
        let l = Arc::new(limit::Limiter::new(cfg.rate_key, rate, burst));
        tasks.push(tokio::spawn(l.clone().sweep_until(background.clone())));
        l
    });
    let gateway = Arc::new(Gateway {
        pool: pool.clone(),
        inventory,
        catalog,
        publisher: publisher.clone(),
        waiters,
        admin_token: cfg.admin_token.clone(),
        limiter: limiter.clone(),
        max_body_bytes: cfg.max_body_bytes,
        body_timeout: cfg.body_timeout,
        stats,
        feed: feed_rx,
        shutdown: shutdown.clone(),
    });
    raise_fd_limit();
    tracing::info!(
        listen = %listener.local_addr()?,
        namespace = ns.as_str(),
        admin = cfg.admin_token.is_some(),
        rate_limit = ?limiter,
        "gateway ready"
    );
    let handler = {
        let g = gateway.clone();
        move |req, peer| g.clone().handle(req, peer)
    };
    http::serve(
        listener,
        http::Limits {
            header_timeout: cfg.header_timeout,
            max_connections: cfg.max_connections,
            drain_timeout: cfg.drain_timeout,
        },
        shutdown,
        handler,
    )
    .await;
    // Every connection is closed: publish what is still queued, wait for its
    // confirms, then stop the rest.
    drop(gateway);
    publisher_tasks.close(publisher).await;
    background.cancel();
    for t in tasks {
        let _ = t.await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), pool.close()).await;
    tracing::info!("gateway stopped");
    Ok(())
}

/// What the notices update.
struct Listeners {
    pool: sqlx::PgPool,
    inventory: Inventory,
    catalog: Arc<Catalog>,
    waiters: Arc<Waiters>,
    stats: Arc<stats::Stats>,
}

async fn listen_notices(
    client: redis::Client,
    ns: Namespace,
    to: Listeners,
    stop: CancellationToken,
) {
    let Listeners {
        pool,
        inventory,
        catalog,
        waiters,
        stats,
    } = to;
    // Reloads run in their own tasks so the subscription never stalls.
    notify::listen(client, ns, stop, move |heard| match heard {
        Heard::Notice(Notice::SoldOut(e)) => catalog.mark_sold_out(&e),
        Heard::Notice(Notice::Decided(_, ids)) => waiters.wake(&ids),
        Heard::Notice(Notice::Stats(r)) => {
            stats.worker_confirmed.inc_by(r.confirmed);
            stats.worker_rejected.inc_by(r.rejected);
            stats.worker_written.inc_by(r.written);
        }
        Heard::Notice(Notice::EventChanged(e)) => {
            let (pool, inv, cat) = (pool.clone(), inventory.clone(), catalog.clone());
            tokio::spawn(async move {
                if let Err(err) = cat.reload_one(&pool, &inv, &e).await {
                    tracing::warn!(error = %err, event_id = %e, "could not reload an event");
                }
            });
        }
        Heard::Subscribed => {
            waiters.wake_all();
            let (pool, inv, cat) = (pool.clone(), inventory.clone(), catalog.clone());
            tokio::spawn(async move {
                let _ = cat.reload(&pool, &inv).await;
            });
        }
    })
    .await;
}

/// The safety net under the notices: reload the catalog every few seconds,
/// and forget long-polls whose clients left.
async fn housekeeping(
    pool: sqlx::PgPool,
    inventory: Inventory,
    catalog: Arc<Catalog>,
    waiters: Arc<Waiters>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(RELOAD_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = catalog.reload(&pool, &inventory).await {
            tracing::warn!(error = %e, "could not reload the events from PostgreSQL; serving the last known ones");
        }
        waiters.sweep();
    }
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
