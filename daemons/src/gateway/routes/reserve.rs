//! `POST /reserve`, the hot path. It reads top to bottom: parse the request,
//! answer from memory when the sale is decided (unknown event, window
//! closed, sold out), else publish the reservation and answer `202` once the
//! broker confirmed it. Nothing here waits on PostgreSQL (but for an event
//! this gateway has not heard of yet: `unknown`); copies of a keyed
//! purchase are all answered alike (`copies`).

use super::Gateway;
use crate::config::RateKey;
use crate::db;
use crate::gateway::catalog::Entry;
use crate::gateway::copies::Route;
use crate::gateway::error::{ApiError, Body, json, json_bytes};
use crate::gateway::http::{json_object, read_body, require_json};
use crate::gateway::limit;
use crate::gateway::publisher::Unavailable;
use crate::gateway::unknown::Ask;
use crate::queue::Queued;
use chrono::{DateTime, Utc};
use flashgrid_wire::{
    Accepted, EventId, IDEMPOTENCY_KEY_HEADER, IDEMPOTENCY_KEY_MAX, ReservationId, ReserveRequest,
    Status,
};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// A well-formed purchase, its reservation id derived.
struct Purchase {
    request: ReserveRequest,
    id: ReservationId,
    /// Sent with an `Idempotency-Key`: a retry is the same reservation.
    idempotent: bool,
    at: DateTime<Utc>,
}

impl Gateway {
    pub(super) async fn reserve(
        &self,
        req: Request<Incoming>,
        peer: IpAddr,
    ) -> Result<Response<Body>, ApiError> {
        let purchase = self.parse_purchase(req, peer).await?;
        let span = tracing::debug_span!(
            "reserve",
            event_id = %purchase.request.event_id,
            reservation_id = %purchase.id,
        );
        async move {
            let entry = self.open_event(&purchase).await?;
            if let Some(answer) = self.fast_path(&entry, &purchase).await? {
                return Ok(answer);
            }
            // A keyed purchase is queued only if its copies agree.
            if purchase.idempotent
                && let Some(refused) = self.route_of_copies(&purchase, Route::Queue, &entry)
            {
                return Ok(refused);
            }
            self.publish(purchase, entry.event.sale).await
        }
        .instrument(span)
        .await
    }

    /// Parse: JSON body, idempotency key, the client's rate.
    async fn parse_purchase(
        &self,
        req: Request<Incoming>,
        peer: IpAddr,
    ) -> Result<Purchase, ApiError> {
        require_json(&req)?;
        let key = idempotency_key(&req)?;
        let body = read_body(req, self.max_body_bytes, self.body_timeout).await?;
        let request: ReserveRequest = json_object(&body, "reservation")?;
        // Before anything can reach the queue: one client cannot starve it.
        if let Some(limiter) = &self.limiter {
            limiter
                .check(&request.user_id, peer)
                .map_err(|wait| rate_limited(limiter.key(), wait))?;
        }
        let id = match &key {
            Some(k) => ReservationId::idempotent(&request.event_id, &request.user_id, k),
            None => ReservationId::random(),
        };
        Ok(Purchase {
            request,
            id,
            idempotent: key.is_some(),
            at: Utc::now(),
        })
    }

    /// The event, if it exists and its window is open.
    async fn open_event(&self, p: &Purchase) -> Result<Arc<Entry>, ApiError> {
        let event = &p.request.event_id;
        let entry = match self.catalog.get(event) {
            Some(entry) => entry,
            None => self.created_elsewhere(event).await?,
        };
        if !entry.event.is_open_at(p.at) {
            return Err(ApiError::sale_closed(entry.event.closed_message(p.at)));
        }
        Ok(entry)
    }

    /// An event the catalog does not hold yet, from PostgreSQL (see
    /// `unknown`): created through another gateway a moment ago. `404` only
    /// when PostgreSQL does not know it either; `503` when it could not be
    /// asked (the event may exist: the client should retry).
    pub(super) async fn created_elsewhere(&self, event: &EventId) -> Result<Arc<Entry>, ApiError> {
        let _permit = match self.unknown.may_ask(event) {
            Ask::Go(permit) => permit,
            Ask::Missed => return Err(ApiError::unknown_event(event.as_str())),
            Ask::Busy => {
                return Err(ApiError::unavailable(
                    "too many lookups of events this gateway has not heard of yet: retry shortly",
                ));
            }
        };
        match db::get_event(&self.pool, event).await {
            Ok(Some(e)) => {
                // Not known sold out: the worker decides, and the next
                // reload or notice brings the stock.
                self.catalog.upsert(e, false);
                self.catalog
                    .get(event)
                    .ok_or_else(|| ApiError::unknown_event(event.as_str()))
            }
            Ok(None) => {
                self.unknown.missed(event);
                Err(ApiError::unknown_event(event.as_str()))
            }
            Err(e) => Err(ApiError::dependency("PostgreSQL", &e)),
        }
    }

    /// Fast path: a sold-out event is answered without touching the queue.
    /// A retry of a purchase the worker already decided gets its
    /// reservation back rather than a misleading sold_out. One that is only
    /// marked pending may never have reached the queue (its publish failed):
    /// it goes through the queue, where the worker decides the reservation
    /// once whichever copy arrives. Where Redis lost the event's outcomes,
    /// PostgreSQL is asked before anyone is told sold_out: a retried winner
    /// holds a seat. Whatever a keyed copy is told, its other copies are
    /// told the same (see `copies`).
    async fn fast_path(
        &self,
        entry: &Entry,
        p: &Purchase,
    ) -> Result<Option<Response<Body>>, ApiError> {
        if !entry.sold_out() {
            return Ok(None);
        }
        let event = &p.request.event_id;
        if !p.idempotent {
            return Ok(Some(json_bytes(
                StatusCode::CONFLICT,
                entry.sold_out_body.clone(),
            )));
        }
        let sale = entry.event.sale;
        let (known, whole) = match self.lookups.lookup(event, sale, &p.id).await {
            Ok(l) => (l.outcome, l.whole),
            // Redis away: a winner's retry is still told its seat
            // (PostgreSQL), anyone else sold_out, as the door always says.
            Err(_) => (self.committed(event, &p.id).await?, true),
        };
        let known = match known {
            None if !whole => self.committed(event, &p.id).await?,
            other => other,
        };
        Ok(match known {
            // Decided: a confirmation (committed or not) or a certain
            // rejection. A tentative rejection is no decision yet: the copy
            // is queued like a pending one (decided again, it may be sold
            // a seat whose confirmation Redis lost since).
            Some(o) if o.status != Status::Pending && !o.is_tentative() => {
                // A won seat of an event with holds is held, purchased or
                // given back since: PostgreSQL says which (Redis knows only
                // that it was won), read under the read routes' budget as
                // the status route reads it — a retrying winner is no
                // buyer the door may answer from memory.
                let status = match o.public_status() {
                    Status::Confirmed if entry.event.hold_seconds.is_some() => {
                        let _permit = self.read_permit().await?;
                        db::holds::won(&self.pool, event, &p.id)
                            .await
                            .map_err(|e| ApiError::dependency("PostgreSQL", &e))?
                            .map_or(Status::Pending, |r| r.status)
                    }
                    s => s,
                };
                let url = self.receipts.status_url(
                    event,
                    &p.id,
                    &p.request.user_id,
                    o.quantity,
                    p.at,
                    sale,
                );
                Some(accepted(p.id, status, url))
            }
            Some(_) => self.route_of_copies(p, Route::Queue, entry),
            // Redis lost the outcomes and PostgreSQL has no row: this may be
            // a copy of a purchase decided but not yet committed; the
            // worker, which rebuilds the state first, decides it.
            None if !whole => self.route_of_copies(p, Route::Queue, entry),
            None => self.route_of_copies(p, Route::SoldOut, entry),
        })
    }

    /// The answer the copies of a keyed purchase agree on: `None` to queue
    /// it, else the `409`.
    fn route_of_copies(
        &self,
        p: &Purchase,
        chosen: Route,
        entry: &Entry,
    ) -> Option<Response<Body>> {
        match self.copies.settle(p.id, chosen) {
            Route::Queue => None,
            Route::SoldOut => Some(json_bytes(
                StatusCode::CONFLICT,
                entry.sold_out_body.clone(),
            )),
        }
    }

    /// Publish, then answer: `202` once the broker confirmed the message
    /// that holds the reservation, `503` when it could not.
    async fn publish(&self, p: Purchase, sale: u32) -> Result<Response<Body>, ApiError> {
        let Purchase {
            request, id, at, ..
        } = p;
        // Signed before the purchase moves into the queue item: no copy.
        let status_url = self.receipts.status_url(
            &request.event_id,
            &id,
            &request.user_id,
            request.quantity,
            at,
            sale,
        );
        let item = Queued {
            id,
            event: request.event_id,
            user: request.user_id,
            qty: request.quantity,
            at,
            sale,
        };
        match self.publisher.submit(item).await {
            Ok(()) => {
                tracing::debug!("queued");
                Ok(accepted(id, Status::Pending, status_url))
            }
            Err(e @ Unavailable::Overloaded) => Err(ApiError::unavailable(format!(
                "{e}: retry shortly with the same Idempotency-Key"
            ))),
            // A nack after a queue's crash may follow a message it kept.
            Err(e @ Unavailable::Refused) => Err(ApiError::unavailable(format!(
                "{e}: the reservation was most likely not taken. Retry shortly with the same \
                 Idempotency-Key (without one, a retry may be a second purchase)"
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
}

fn accepted(id: ReservationId, status: Status, status_url: String) -> Response<Body> {
    json(
        StatusCode::ACCEPTED,
        &Accepted {
            reservation_id: id,
            status,
            status_url,
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
