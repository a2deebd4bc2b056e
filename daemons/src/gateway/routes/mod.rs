//! The route table and who may call what: one match from method and path to
//! a handler, and the bearer-token checks. One file per group of routes:
//! [`reserve`] (the hot path), [`status`] (long-poll of one reservation),
//! [`events`] (the public catalogue), [`checkout`] (a hold purchased or
//! given back), [`admin`] (create, reset) and
//! [`operations`] (feed, metrics, health, readiness, the API's document).
//! What each route answers is declared in `openapi`.

mod admin;
mod checkout;
mod events;
mod operations;
mod reserve;
mod status;

use super::catalog::Catalog;
use super::copies::CopyRoutes;
use super::error::{ApiError, Body, shown};
use super::limit::Limiter;
use super::publisher::Publisher;
use super::receipt::Receipts;
use super::stats::Stats;
use super::waiters::Waiters;
use crate::config::AdminToken;
use crate::inventory::Inventory;
use http::{Method, Request, Response, header};
use hyper::body::Incoming;
use sqlx::PgPool;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a read route waits for a PostgreSQL lookup of its budget.
const READ_PERMIT_WAIT: Duration = Duration::from_millis(500);

/// Everything a handler needs.
#[derive(Debug)]
pub struct Gateway {
    pub pool: PgPool,
    pub inventory: Inventory,
    /// Redis lookups of keyed purchases and status reads, gathered.
    pub lookups: crate::gateway::lookups::Lookups,
    pub catalog: Arc<Catalog>,
    /// Events the catalog does not hold, looked up in PostgreSQL.
    pub unknown: super::unknown::UnknownEvents,
    pub publisher: Publisher,
    pub waiters: Arc<Waiters>,
    /// The route each keyed purchase took, so that its copies agree.
    pub copies: CopyRoutes,
    pub admin_token: Option<AdminToken>,
    /// Read-only: the feed and `/metrics`.
    pub feed_token: Option<AdminToken>,
    /// Signs and reads the status URLs (the key every gateway shares).
    pub receipts: Receipts,
    /// Per-client rate limit of `/reserve`; `None` when off.
    pub limiter: Option<Arc<Limiter>>,
    /// Per-address rate limit of the read routes; `None` when off.
    pub read_limiter: Option<Arc<Limiter>>,
    /// PostgreSQL lookups the read routes may have under way at once.
    pub reads: tokio::sync::Semaphore,
    pub max_body_bytes: usize,
    pub body_timeout: Duration,
    pub stats: Arc<Stats>,
    pub feed: tokio::sync::watch::Receiver<Option<Arc<bytes::Bytes>>>,
    /// Tells feed connections to close on shutdown.
    pub shutdown: tokio_util::sync::CancellationToken,
}

impl Gateway {
    /// Answers one request from the client at `peer`.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>, peer: IpAddr) -> Response<Body> {
        let started = Instant::now();
        let is_reserve = req.uri().path() == "/reserve";
        let resp = match self.route(req, peer).await {
            Ok(resp) => resp,
            Err(e) => e.into_response(),
        };
        if is_reserve {
            self.stats
                .record_reserve(resp.status().as_u16(), started.elapsed());
        }
        resp
    }

    async fn route(
        &self,
        req: Request<Incoming>,
        peer: IpAddr,
    ) -> Result<Response<Body>, ApiError> {
        // The hot route first, before any allocation.
        if req.method() == Method::POST && req.uri().path() == "/reserve" {
            return self.reserve(req, peer).await;
        }
        let path = req.uri().path().to_owned();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        // HEAD is GET without the body (hyper leaves it out).
        let method = match req.method() {
            &Method::HEAD => Method::GET,
            m => m.clone(),
        };
        match (segments.as_slice(), &method) {
            (["reserve"], &Method::POST) => self.reserve(req, peer).await,
            (["reserve"], _) => Err(ApiError::method_not_allowed("POST")),
            (["events"], &Method::GET) => {
                self.read_allowed(peer)?;
                self.list_events().await
            }
            (["events", id], &Method::GET) => {
                self.read_allowed(peer)?;
                self.get_event(id).await
            }
            (["events", id, "reservations", rid], &Method::GET) => {
                self.read_allowed(peer)?;
                self.status(id, rid, req.uri().query()).await
            }
            (["events"] | ["events", _] | ["events", _, "reservations", _], _) => {
                Err(ApiError::method_not_allowed("GET, HEAD"))
            }
            (["events", id, "reservations", rid, "purchase"], &Method::POST) => {
                self.checkout(id, rid, checkout::Call::Purchase, req).await
            }
            (["events", id, "reservations", rid, "cancel"], &Method::POST) => {
                self.checkout(id, rid, checkout::Call::Cancel, req).await
            }
            (["events", _, "reservations", _, "purchase" | "cancel"], _) => {
                Err(ApiError::method_not_allowed("POST"))
            }
            (["admin", "events"], &Method::POST) => {
                self.authorize(&req)?;
                self.create_event(req).await
            }
            (["admin", "events", id, "reset"], &Method::POST) => {
                self.authorize(&req)?;
                let id = events::parse_event(id)?;
                self.reset_event(&id, req).await
            }
            (["admin", "events"] | ["admin", "events", _, "reset"], _) => {
                Err(ApiError::method_not_allowed("POST"))
            }
            (["ws"], &Method::GET) => {
                self.authorize_feed(&req, true)?;
                self.feed(req)
            }
            (["metrics"], &Method::GET) => {
                // Open, as scrapers expect, until a feed token is set.
                if self.feed_token.is_some() {
                    self.authorize_feed(&req, false)?;
                }
                Ok(self.metrics())
            }
            (["healthz"], &Method::GET) => Ok(operations::alive()),
            (["readyz"], &Method::GET) => Ok(self.ready().await),
            (["openapi.json"], &Method::GET) => Ok(operations::openapi()),
            (["ws" | "metrics" | "healthz" | "readyz" | "openapi.json"], _) => {
                Err(ApiError::method_not_allowed("GET, HEAD"))
            }
            _ => Err(ApiError::not_found(format!(
                "no route {method} {}: see the API in the README",
                shown(&path)
            ))),
        }
    }

    /// Leave for a read route to ask PostgreSQL: waits a moment for one of
    /// the read budget's lookups, then answers 503 (the pool's other
    /// connections stay for purchases' needs, the feed and readiness).
    async fn read_permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
        match tokio::time::timeout(READ_PERMIT_WAIT, self.reads.acquire()).await {
            Ok(Ok(p)) => {
                self.stats.read_lookup();
                Ok(p)
            }
            _ => {
                self.stats.read_shed();
                Err(ApiError::unavailable(
                    "too many status and event lookups at once: retry shortly",
                ))
            }
        }
    }

    /// The read routes' per-address rate limit, when it is on.
    fn read_allowed(&self, peer: IpAddr) -> Result<(), ApiError> {
        let Some(limiter) = &self.read_limiter else {
            return Ok(());
        };
        limiter.check_addr(peer).map_err(|wait| {
            let secs = super::limit::retry_after_secs(wait);
            ApiError::rate_limited(
                format!("too many reads from this address: retry in {secs} s"),
                secs,
            )
        })
    }

    /// The admin routes: the admin token, in the `Authorization` header only
    /// (a URL is kept by proxies and shell histories).
    fn authorize(&self, req: &Request<Incoming>) -> Result<(), ApiError> {
        let Some(token) = &self.admin_token else {
            return Err(ApiError::unauthorized(
                "admin routes are disabled: start the gateway with FLASHGRID_ADMIN_TOKEN set",
            ));
        };
        if bearer(req).is_some_and(|given| token_is(given, token)) {
            Ok(())
        } else {
            Err(ApiError::unauthorized(
                "send the admin token as `Authorization: Bearer <token>`",
            ))
        }
    }

    /// The feed and (once a feed token is set) `/metrics`: the feed token or
    /// the admin token in the header; the feed token also as `?token=` where
    /// `in_query` (browsers cannot set headers on a WebSocket).
    fn authorize_feed(&self, req: &Request<Incoming>, in_query: bool) -> Result<(), ApiError> {
        if self.admin_token.is_none() && self.feed_token.is_none() {
            return Err(ApiError::unauthorized(
                "the feed is disabled: start the gateway with FLASHGRID_FEED_TOKEN (read-only) or FLASHGRID_ADMIN_TOKEN set",
            ));
        }
        let is_feed = |given: &str| self.feed_token.as_ref().is_some_and(|t| token_is(given, t));
        let is_admin = |given: &str| {
            self.admin_token
                .as_ref()
                .is_some_and(|t| token_is(given, t))
        };
        if let Some(given) = bearer(req) {
            if is_feed(given) || is_admin(given) {
                return Ok(());
            }
        } else if in_query {
            let query = req.uri().query().unwrap_or("");
            if let Some(given) = query.split('&').find_map(|p| p.strip_prefix("token=")) {
                if is_feed(given) {
                    return Ok(());
                }
                if is_admin(given) {
                    return Err(ApiError::unauthorized(
                        "the admin token is accepted only in the Authorization header: use the feed token (FLASHGRID_FEED_TOKEN) in a URL",
                    ));
                }
            }
        }
        Err(ApiError::unauthorized(
            "send the feed token (FLASHGRID_FEED_TOKEN) as `Authorization: Bearer <token>`",
        ))
    }
}

fn token_is(given: &str, token: &AdminToken) -> bool {
    constant_time_eq::constant_time_eq(given.as_bytes(), token.expose().as_bytes())
}

fn bearer(req: &Request<Incoming>) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}
