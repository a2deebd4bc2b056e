//! Route table and handlers. `/reserve` reads top to bottom: parse → rate
//! limit → fast path (unknown, closed, sold out) → group publish → 202.

use super::catalog::Catalog;
use super::error::{ApiError, Body, json, json_bytes};
use super::feed;
use super::http::{read_body, require_json};
use super::limit::{self, Limiter};
use super::publisher::{Publisher, Unavailable};
use super::stats::Stats;
use super::waiters::Waiters;
use crate::config::{AdminToken, RateKey};
use crate::db;
use crate::inventory::{Inventory, Outcome};
use crate::notify::{self, Notice};
use crate::queue::Queued;
use chrono::Utc;
use flashgrid_wire::{
    Accepted, CreateEvent, EventId, IDEMPOTENCY_KEY_HEADER, IDEMPOTENCY_KEY_MAX, MAX_WAIT_MS,
    ReservationId, ReservationView, ReserveRequest, ResetEvent, Status, status_path,
    validate_capacity,
};
use http::{Method, Request, Response, StatusCode, header};
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
    pub publisher: Publisher,
    pub waiters: Arc<Waiters>,
    pub admin_token: Option<AdminToken>,
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
                let id = parse_event(id)?;
                self.reset_event(&id, req).await
            }
            (["admin", "events"] | ["admin", "events", _, "reset"], _) => {
                Err(ApiError::method_not_allowed("POST"))
            }
            (["ws"], &Method::GET) => {
                self.authorize_feed(&req)?;
                feed::upgrade(req, self.feed.clone(), self.shutdown.clone())
            }
            (["metrics"], &Method::GET) => {
                let mut resp = Response::new(http_body_util::Full::new(bytes::Bytes::from(
                    self.stats.render(),
                )));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    http::HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                Ok(resp)
            }
            (["healthz"], &Method::GET) => Ok(json(
                StatusCode::OK,
                &serde_json::json!({"status": "alive"}),
            )),
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

    async fn reserve(
        &self,
        req: Request<Incoming>,
        peer: IpAddr,
    ) -> Result<Response<Body>, ApiError> {
        require_json(&req)?;
        let key = idempotency_key(&req)?;
        let body = read_body(req, self.max_body_bytes, self.body_timeout).await?;
        let r: ReserveRequest = serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid(format!("invalid reservation: {e}")))?;
        // Before anything can reach the queue: one client cannot starve it.
        if let Some(limiter) = &self.limiter {
            limiter
                .check(&r.user_id, peer)
                .map_err(|wait| rate_limited(limiter.key(), wait))?;
        }

        let entry = self
            .catalog
            .get(&r.event_id)
            .ok_or_else(|| ApiError::unknown_event(r.event_id.as_str()))?;
        let now = Utc::now();
        if !entry.event.is_open_at(now) {
            return Err(ApiError::sale_closed(window_message(&entry.event, now)));
        }
        let id = match &key {
            Some(k) => ReservationId::idempotent(&r.event_id, &r.user_id, k),
            None => ReservationId::random(),
        };
        if entry.sold_out() {
            // A retry of a purchase the worker already decided gets its
            // reservation back rather than a misleading sold_out. One that is
            // only marked pending may never have reached the queue (its
            // publish failed): it goes through the queue again, where the
            // worker decides it once whichever copy arrives.
            let known = match key {
                Some(_) => self
                    .inventory
                    .outcome(&r.event_id, &id)
                    .await
                    .ok()
                    .flatten(),
                None => None,
            };
            match known {
                Some(o) if o.status != Status::Pending => {
                    return Ok(accepted(&r.event_id, id, o.public_status()));
                }
                Some(_) => {}
                None => {
                    return Ok(json_bytes(
                        StatusCode::CONFLICT,
                        entry.sold_out_body.clone(),
                    ));
                }
            }
        }

        let item = Queued {
            id,
            event: r.event_id,
            user: r.user_id,
            qty: r.quantity,
            at: now,
        };
        let event = item.event.clone();
        match self.publisher.submit(item).await {
            Ok(()) => Ok(accepted(&event, id, Status::Pending)),
            Err(e @ Unavailable::Overloaded) => Err(ApiError::unavailable(format!(
                "{e}: retry shortly with the same Idempotency-Key"
            ))),
            Err(e @ Unavailable::NotConfirmed) => Err(ApiError::unavailable(format!(
                "{e} in time: it may still be decided. Retry shortly with the same Idempotency-Key \
                 (without one, a retry may be a second purchase)"
            ))),
            Err(e) => Err(ApiError::unavailable(format!(
                "{e}: the reservation was not taken; retry shortly with the same Idempotency-Key"
            ))),
        }
    }

    async fn status(
        &self,
        event: &str,
        rid: &str,
        query: Option<&str>,
    ) -> Result<Response<Body>, ApiError> {
        let event = parse_event(event)?;
        let id: ReservationId = rid
            .parse()
            .map_err(|_| ApiError::not_found(format!("no reservation {rid:?}")))?;
        let wait = wait_ms(query)?;
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // Register before reading so a decision between the two is not missed.
            let woken = (!left.is_zero()).then(|| self.waiters.register(id));
            let outcome = match self.inventory.outcome(&event, &id).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::debug!(error = %e, "status from Redis failed; asking PostgreSQL");
                    None
                }
            };
            // Redis lost it (or is away), or the worker has not settled a
            // confirmation yet: PostgreSQL knows the committed winners.
            let outcome = match outcome {
                Some(o) if o.public_status() != Status::Pending || o.status == Status::Pending => {
                    Some(o)
                }
                other => match self.committed(&event, &id).await? {
                    Some(o) => Some(o),
                    None => other,
                },
            };
            let Some(o) = outcome else {
                return Err(ApiError::not_found(format!(
                    "no reservation {id} for event {event}"
                )));
            };
            let status = o.public_status();
            if status != Status::Pending || left.is_zero() {
                return Ok(json(
                    StatusCode::OK,
                    &ReservationView {
                        reservation_id: id,
                        event_id: event,
                        user_id: o.user,
                        quantity: o.quantity,
                        status,
                        reason: o.reason,
                    },
                ));
            }
            // Woken by the decision notice; re-read at least every second in
            // case a notice was lost.
            let nap = left.min(Duration::from_secs(1));
            if let Some(w) = woken {
                let _ = tokio::time::timeout(nap, w).await;
            }
        }
    }

    /// The reservation as PostgreSQL holds it, if it was committed.
    async fn committed(
        &self,
        event: &EventId,
        id: &ReservationId,
    ) -> Result<Option<Outcome>, ApiError> {
        let row = db::find_reservation(&self.pool, event, id)
            .await
            .map_err(|e| ApiError::dependency("PostgreSQL", &e))?;
        Ok(row.and_then(|(user, qty)| {
            Some(Outcome::committed(
                flashgrid_wire::Quantity::new(qty.into()).ok()?,
                flashgrid_wire::UserId::parse(&user).ok()?,
            ))
        }))
    }

    async fn list_events(&self) -> Result<Response<Body>, ApiError> {
        let events = db::list_events(&self.pool)
            .await
            .map_err(|e| ApiError::dependency("PostgreSQL", &e))?;
        let views: Vec<_> = events
            .iter()
            .map(|e| e.view(self.catalog.is_sold_out(&e.id)))
            .collect();
        Ok(json(StatusCode::OK, &views))
    }

    async fn get_event(&self, id: &str) -> Result<Response<Body>, ApiError> {
        let id = EventId::parse(id).map_err(|_| ApiError::unknown_event(id))?;
        let e = db::get_event(&self.pool, &id)
            .await
            .map_err(|e| ApiError::dependency("PostgreSQL", &e))?
            .ok_or_else(|| ApiError::unknown_event(id.as_str()))?;
        Ok(json(
            StatusCode::OK,
            &e.view(self.catalog.is_sold_out(&e.id)),
        ))
    }

    async fn create_event(&self, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
        require_json(&req)?;
        let body = read_body(req, self.max_body_bytes, self.body_timeout).await?;
        let c: CreateEvent = serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid(format!("invalid event: {e}")))?;
        c.validate().map_err(ApiError::invalid)?;
        let id = match &c.event_id {
            Some(id) => id.clone(),
            None => {
                let suffix = uuid::Uuid::new_v4().simple().to_string();
                EventId::from_name(&c.name, &suffix[..6])
            }
        };
        let event = db::insert_event(&self.pool, &id, &c)
            .await
            .map_err(|e| ApiError::dependency("PostgreSQL", &e))?
            .ok_or_else(|| ApiError::exists(format!("event {id:?} already exists")))?;
        // Best effort: if Redis is away the worker rebuilds the stock from
        // PostgreSQL on the first decision.
        if let Err(e) = self.inventory.reset(&id, event.capacity).await {
            tracing::warn!(error = %e, event_id = %id, "could not set the stock in Redis; it will be rebuilt");
        }
        self.catalog.upsert(event.clone(), false);
        notify::publish(
            &self.inventory.connection(),
            self.inventory.namespace(),
            &Notice::EventChanged(id.clone()),
        )
        .await;
        tracing::info!(event_id = %id, capacity = event.capacity, "event created");
        Ok(json(StatusCode::CREATED, &event.view(false)))
    }

    async fn reset_event(
        &self,
        id: &EventId,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, ApiError> {
        require_json(&req)?;
        let body = read_body(req, self.max_body_bytes, self.body_timeout).await?;
        let r: ResetEvent = if body.iter().all(u8::is_ascii_whitespace) {
            ResetEvent::default()
        } else {
            serde_json::from_slice(&body)
                .map_err(|e| ApiError::invalid(format!("invalid reset: {e}")))?
        };
        if let Some(c) = r.capacity {
            validate_capacity(c).map_err(ApiError::invalid)?;
        }
        let event = db::reset_event(&self.pool, id, r.capacity)
            .await
            .map_err(|e| ApiError::dependency("PostgreSQL", &e))?
            .ok_or_else(|| ApiError::unknown_event(id.as_str()))?;
        self.inventory
            .reset(id, event.capacity)
            .await
            .map_err(|e| ApiError::dependency("Redis (the reset is incomplete: retry it)", &e))?;
        self.catalog.upsert(event.clone(), false);
        notify::publish(
            &self.inventory.connection(),
            self.inventory.namespace(),
            &Notice::EventChanged(id.clone()),
        )
        .await;
        tracing::info!(event_id = %id, capacity = event.capacity, "event reset");
        Ok(json(StatusCode::OK, &event.view(false)))
    }

    async fn ready(&self) -> Response<Body> {
        let (pg, rd) = crate::services::answering(
            &self.pool,
            &self.inventory.connection(),
            Duration::from_secs(1),
        )
        .await;
        let checks = serde_json::json!({
            "postgres": pg,
            "redis": rd,
            "rabbitmq": self.publisher.is_up(),
        });
        let ready = checks
            .as_object()
            .is_some_and(|m| m.values().all(|v| v == true));
        let body = serde_json::json!({"ready": ready, "checks": checks});
        let mut resp = json(
            if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            },
            &body,
        );
        if !ready {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, http::HeaderValue::from(1));
        }
        resp
    }
}

fn bearer(req: &Request<Incoming>) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

fn accepted(event: &EventId, id: ReservationId, status: Status) -> Response<Body> {
    json(
        StatusCode::ACCEPTED,
        &Accepted {
            reservation_id: id,
            status,
            status_url: status_path(event, &id),
        },
    )
}

fn rate_limited(key: RateKey, wait: Duration) -> ApiError {
    let secs = limit::retry_after_secs(wait);
    let who = match key {
        RateKey::User => "this user_id",
        RateKey::Addr => "this address",
    };
    ApiError::rate_limited(
        format!("too many reservations from {who}: retry in {secs} s"),
        secs,
    )
}

fn parse_event(raw: &str) -> Result<EventId, ApiError> {
    EventId::parse(raw).map_err(|_| ApiError::unknown_event(raw))
}

fn idempotency_key(req: &Request<Incoming>) -> Result<Option<String>, ApiError> {
    let Some(v) = req.headers().get(IDEMPOTENCY_KEY_HEADER) else {
        return Ok(None);
    };
    let key = v.to_str().unwrap_or("");
    let ok = !key.is_empty()
        && key.len() <= IDEMPOTENCY_KEY_MAX
        && key.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(Some(key.to_owned()))
    } else {
        Err(ApiError::invalid(format!(
            "Idempotency-Key must be 1-{IDEMPOTENCY_KEY_MAX} visible ASCII characters"
        )))
    }
}

fn wait_ms(query: Option<&str>) -> Result<Duration, ApiError> {
    let Some(q) = query else {
        return Ok(Duration::ZERO);
    };
    for pair in q.split('&') {
        if let Some(v) = pair.strip_prefix("wait_ms=") {
            let ms: u64 = v.parse().map_err(|_| {
                ApiError::invalid(format!("wait_ms must be 0..={MAX_WAIT_MS}, got {v:?}"))
            })?;
            if ms > MAX_WAIT_MS {
                return Err(ApiError::invalid(format!(
                    "wait_ms must be 0..={MAX_WAIT_MS}, got {ms}"
                )));
            }
            return Ok(Duration::from_millis(ms));
        }
    }
    Ok(Duration::ZERO)
}

fn window_message(event: &db::Event, now: chrono::DateTime<Utc>) -> String {
    match (event.opens_at, event.closes_at) {
        (Some(o), _) if now < o => format!("the sale of {} opens at {}", event.id, o.to_rfc3339()),
        (_, Some(c)) => format!("the sale of {} closed at {}", event.id, c.to_rfc3339()),
        _ => format!("the sale of {} is closed", event.id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_ms_is_bounded() {
        assert_eq!(wait_ms(None).unwrap(), Duration::ZERO);
        assert_eq!(
            wait_ms(Some("x=1&wait_ms=250")).unwrap(),
            Duration::from_millis(250)
        );
        assert!(wait_ms(Some("wait_ms=30001")).is_err());
        assert!(wait_ms(Some("wait_ms=-1")).is_err());
        assert!(wait_ms(Some("wait_ms=abc")).is_err());
    }
}
