//! The route table and who may call what: one match from method and path to
//! a handler, and the bearer-token checks. One file per group of routes:
//! [`reserve`] (the hot path), [`status`] (long-poll of one reservation),
//! [`events`] (the public catalogue), [`admin`] (create, reset) and
//! [`operations`] (feed, metrics, health, readiness).

mod admin;
mod events;
mod operations;
mod reserve;
mod status;

use super::catalog::Catalog;
use super::copies::CopyRoutes;
use super::error::{ApiError, Body};
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

/// Everything a handler needs.
#[derive(Debug)]
pub struct Gateway {
    pub pool: PgPool,
    pub inventory: Inventory,
    pub catalog: Arc<Catalog>,
    /// Events the catalog does not hold, looked up in PostgreSQL.
    pub unknown: super::unknown::UnknownEvents,
    pub publisher: Publisher,
    pub waiters: Arc<Waiters>,
    /// The route each keyed purchase took, so that its copies agree.
    pub copies: CopyRoutes,
    pub admin_token: Option<AdminToken>,
    /// Signs and reads the status URLs (the key every gateway shares).
    pub receipts: Receipts,
    /// Per-client rate limit of `/reserve`; `None` when off.
    pub limiter: Option<Arc<Limiter>>,
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
        let method = req.method().clone();
        match (segments.as_slice(), &method) {
            (["reserve"], &Method::POST) => self.reserve(req, peer).await,
            (["reserve"], _) => Err(ApiError::method_not_allowed("POST")),
            (["events"], &Method::GET) => self.list_events().await,
            (["events", id], &Method::GET) => self.get_event(id).await,
            (["events", id, "reservations", rid], &Method::GET) => {
                self.status(id, rid, req.uri().query()).await
            }
            (["events"] | ["events", _] | ["events", _, "reservations", _], _) => {
                Err(ApiError::method_not_allowed("GET"))
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
                self.authorize_feed(&req)?;
                self.feed(req)
            }
            (["metrics"], &Method::GET) => Ok(self.metrics()),
            (["healthz"], &Method::GET) => Ok(operations::alive()),
            (["readyz"], &Method::GET) => Ok(self.ready().await),
            _ => Err(ApiError::not_found(format!(
                "no route {method} {path}: see the API in the README"
            ))),
        }
    }

    fn authorize(&self, req: &Request<Incoming>) -> Result<(), ApiError> {
        self.check_token(bearer(req).unwrap_or(""))
    }

    /// The feed also takes the token as `?token=` (browsers cannot set headers
    /// on a WebSocket).
    fn authorize_feed(&self, req: &Request<Incoming>) -> Result<(), ApiError> {
        let query = req.uri().query().unwrap_or("");
        let from_query = query.split('&').find_map(|p| p.strip_prefix("token="));
        self.check_token(bearer(req).or(from_query).unwrap_or(""))
    }

    fn check_token(&self, given: &str) -> Result<(), ApiError> {
        let Some(token) = &self.admin_token else {
            return Err(ApiError::unauthorized(
                "admin routes and the feed are disabled: start the gateway with FLASHGRID_ADMIN_TOKEN set",
            ));
        };
        if constant_time_eq::constant_time_eq(given.as_bytes(), token.expose().as_bytes()) {
            Ok(())
        } else {
            Err(ApiError::unauthorized(
                "send the admin token as `Authorization: Bearer <token>`",
            ))
        }
    }
}

fn bearer(req: &Request<Incoming>) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}
