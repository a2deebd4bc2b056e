//! `POST /admin/events` and `POST /admin/events/{id}/reset` (bearer token,
//! checked by the route table): PostgreSQL first, then the stock in Redis,
//! then a notice so every gateway reloads the event.

use super::Gateway;
use crate::db;
use crate::gateway::error::{ApiError, Body, json};
use crate::gateway::http::{json_object, optional_json_object, read_body, require_json};
use crate::notify::{self, Notice};
use flashgrid_wire::sale::Event;
use flashgrid_wire::{CreateEvent, EventId, ResetEvent};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

impl Gateway {
    pub(super) async fn create_event(
        &self,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, ApiError> {
        require_json(&req)?;
        let body = read_body(req, self.max_body_bytes, self.body_timeout).await?;
        let c: CreateEvent = json_object(&body, "event")?;
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
        if let Err(e) = self
            .inventory
            .reset(&id, event.capacity(), 0, event.sale)
            .await
        {
            tracing::warn!(error = %e, event_id = %id, "could not set the stock in Redis; it will be rebuilt");
        }
        self.changed(&event).await;
        tracing::info!(event_id = %id, capacity = event.capacity(), "event created");
        Ok(json(StatusCode::CREATED, &event.view(false)))
    }

    pub(super) async fn reset_event(
        &self,
        id: &EventId,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, ApiError> {
        require_json(&req)?;
        let body = read_body(req, self.max_body_bytes, self.body_timeout).await?;
        let r: ResetEvent = optional_json_object(&body, "reset")?;
        r.validate().map_err(ApiError::invalid)?;
        let (event, epoch, seats, reservations) = match db::reset_event(
            &self.pool,
            id,
            r.capacity,
            r.discard_confirmed,
            r.hold_seconds,
        )
        .await
        .map_err(|e| ApiError::dependency("PostgreSQL", &e))?
        {
            db::Reset::Unknown => return Err(ApiError::unknown_event(id.as_str())),
            db::Reset::HoldsConfirmed {
                seats,
                reservations,
            } => {
                return Err(ApiError::confirmation_required(format!(
                    "event {id} has {reservations} confirmed reservations ({seats} seats): a reset deletes them. \
                         Send {{\"discard_confirmed\": true}} to reset it anyway"
                )));
            }
            db::Reset::Done {
                event,
                epoch,
                seats,
                reservations,
            } => (event, epoch, seats, reservations),
        };
        self.inventory
            .reset(id, event.capacity(), epoch, event.sale)
            .await
            .map_err(|e| ApiError::dependency("Redis (the reset is incomplete: retry it)", &e))?;
        self.changed(&event).await;
        if reservations > 0 {
            tracing::warn!(
                event_id = %id,
                capacity = event.capacity(),
                removed_reservations = reservations,
                removed_seats = seats,
                "event reset: its confirmed reservations were deleted"
            );
        } else {
            tracing::info!(event_id = %id, capacity = event.capacity(), "event reset");
        }
        Ok(json(StatusCode::OK, &event.view(false)))
    }

    /// This gateway knows the event at once; the others reload it on the notice.
    async fn changed(&self, event: &Event) {
        self.catalog.upsert(event.clone(), false);
        notify::publish(
            &self.inventory.connection(),
            self.inventory.namespace(),
            &Notice::EventChanged(event.id.clone()),
        )
        .await;
    }
}
