//! `POST /events/{id}/reservations/{rid}/purchase` and `…/cancel`: a hold
//! bought or given back (docs/HOLDS.md), decided in PostgreSQL under the
//! hold's row lock, so that against an expiry at the same instant exactly
//! one wins and the answer says which.
//!
//! Who may call them: whoever holds the reservation's status URL (its last
//! segment, the reservation id with its signature, is unguessable: it is
//! the capability), or the admin token (with the bare reservation id too).
//! Both are idempotent: the same call again answers the same.

use super::Gateway;
use super::events::parse_event;
use crate::db::holds::{self, Checkout, Refusal, WonRow};
use crate::gateway::error::{ApiError, Body, json};
use crate::gateway::http::{optional_json_object, read_body, require_json};
use flashgrid_wire::{ErrorCode, EventId, Purchase, ReservationId, ReservationView, Status};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

/// Which of the two calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Call {
    Purchase,
    Cancel,
}

impl Gateway {
    pub(super) async fn checkout(
        &self,
        event: &str,
        rid: &str,
        call: Call,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, ApiError> {
        let event = parse_event(event)?;
        let (id, receipt) = self.receipts.open(&event, rid).map_err(|_| {
            ApiError::not_found(format!(
                "no reservation {}: use the status URL's last segment",
                crate::gateway::error::shown(rid)
            ))
        })?;
        // A status URL of a sale reset since names nothing of the new sale
        // (a retried idempotency key gives the same id there).
        if let (Some(r), Some(e)) = (&receipt, self.catalog.get(&event))
            && r.sale < e.event.sale
        {
            return Err(ApiError::sale_closed(format!(
                "reservation {id} was of a sale of {event} that was reset since"
            )));
        }
        if receipt.is_none() && self.authorize(&req).is_err() {
            return Err(ApiError::unauthorized(
                "name the reservation by its status URL's last segment (the id with its signature), or send the admin token as `Authorization: Bearer <token>`",
            ));
        }
        require_json(&req)?;
        let body = read_body(req, self.max_body_bytes, self.body_timeout).await?;
        let purchase: Purchase = match call {
            // Nothing, or `null` (as purchase and reset take it).
            Call::Cancel if !matches!(body.trim_ascii(), b"" | b"null") => {
                return Err(ApiError::invalid("cancel takes no body"));
            }
            Call::Cancel => Purchase::default(),
            Call::Purchase => optional_json_object(&body, "purchase")?,
        };
        purchase.validate().map_err(ApiError::invalid)?;
        let answer = match call {
            Call::Purchase => {
                holds::purchase(&self.pool, &event, &id, purchase.payment_ref.as_deref())
                    .await
                    .map_err(|e| ApiError::dependency("PostgreSQL", &e))?
            }
            Call::Cancel => {
                let (answer, released) = holds::cancel(&self.pool, &event, &id)
                    .await
                    .map_err(|e| ApiError::dependency("PostgreSQL", &e))?;
                if released {
                    // The seats are back in PostgreSQL; Redis and the
                    // gateways follow (a worker's sweep does, should this
                    // fail), this one before it answers: a buyer it tells
                    // "cancelled" next is not told "sold out".
                    self.inventory.follow_release(&event).await;
                    if let Ok(Some(e)) = crate::db::get_event(&self.pool, &event).await {
                        let sold_out = e.remaining() == 0;
                        self.catalog.upsert(e, sold_out);
                    }
                }
                answer
            }
        };
        answered(&event, id, receipt.is_some(), answer)
    }
}

/// The answer to a purchase or a cancel: the reservation as it stands, or
/// why nothing changed.
fn answered(
    event: &EventId,
    id: ReservationId,
    issued: bool,
    answer: Checkout,
) -> Result<Response<Body>, ApiError> {
    let row = match answer {
        Ok(row) => return Ok(json(StatusCode::OK, &view(event, id, row))),
        Err(Refusal::Unknown) if issued => {
            return Err(ApiError::conflict(
                ErrorCode::NotHeld,
                format!(
                    "reservation {id} holds no seat: it is still pending or was rejected (GET its status URL)"
                ),
            ));
        }
        Err(Refusal::Unknown) => {
            return Err(ApiError::not_found(format!(
                "no won reservation {id} in event {event}"
            )));
        }
        Err(Refusal::NotHeld(_)) => {
            return Err(ApiError::conflict(
                ErrorCode::FinalDecision,
                format!("event {event} holds no seats: its confirmations are final"),
            ));
        }
        Err(Refusal::OtherPayment(row)) => {
            return Err(ApiError::conflict(
                ErrorCode::PurchasedWithAnotherPayment,
                format!(
                    "reservation {id} was purchased already, with payment_ref {:?}",
                    row.payment_ref.unwrap_or_default()
                ),
            ));
        }
        Err(Refusal::Ended(row)) => row,
    };
    let when = row.expires_at.map(|t| t.to_rfc3339()).unwrap_or_default();
    Err(match row.status {
        Status::Purchased => ApiError::conflict(
            ErrorCode::AlreadyPurchased,
            format!("reservation {id} was purchased: it can no longer be cancelled"),
        ),
        Status::Cancelled => ApiError::conflict(
            ErrorCode::HoldCancelled,
            format!("the hold of reservation {id} was cancelled: its seats went back on sale"),
        ),
        _ => ApiError::conflict(
            ErrorCode::HoldExpired,
            format!("the hold of reservation {id} expired at {when}: its seats went back on sale"),
        ),
    })
}

fn view(event: &EventId, id: ReservationId, row: WonRow) -> ReservationView {
    ReservationView {
        reservation_id: id,
        event_id: event.clone(),
        user_id: row.user,
        quantity: row.quantity,
        status: row.status,
        reason: None,
        expires_at: row.expires_at,
        payment_ref: row.payment_ref,
    }
}
