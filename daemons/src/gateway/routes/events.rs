//! `GET /events` and `GET /events/{id}`: the public catalogue, read from
//! PostgreSQL within the read routes' budget, with the sold-out flag the
//! gateway already knows.

use super::Gateway;
use crate::db;
use crate::gateway::error::{ApiError, Body, json};
use flashgrid_wire::EventId;
use http::{Response, StatusCode};

impl Gateway {
    pub(super) async fn list_events(&self) -> Result<Response<Body>, ApiError> {
        let _permit = self.read_permit().await?;
        let events = db::list_events(&self.pool)
            .await
            .map_err(|e| ApiError::dependency("PostgreSQL", &e))?;
        let views: Vec<_> = events
            .iter()
            .map(|e| e.view(self.catalog.is_sold_out(&e.id)))
            .collect();
        Ok(json(StatusCode::OK, &views))
    }

    pub(super) async fn get_event(&self, id: &str) -> Result<Response<Body>, ApiError> {
        let id = parse_event(id)?;
        // A made-up id is answered from the catalog and the budget of
        // unknown events, not by a query each.
        if self.catalog.get(&id).is_none() {
            self.created_elsewhere(&id).await?;
        }
        let _permit = self.read_permit().await?;
        let e = db::get_event(&self.pool, &id)
            .await
            .map_err(|e| ApiError::dependency("PostgreSQL", &e))?
            .ok_or_else(|| ApiError::unknown_event(id.as_str()))?;
        Ok(json(
            StatusCode::OK,
            &e.view(self.catalog.is_sold_out(&e.id)),
        ))
    }
}

/// An event id from a path; a malformed one names no event.
pub(super) fn parse_event(raw: &str) -> Result<EventId, ApiError> {
    EventId::parse(raw).map_err(|_| ApiError::unknown_event(raw))
}
