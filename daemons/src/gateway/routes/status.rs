//! `GET /events/{id}/reservations/{rid}`: one reservation's decision, read
//! from Redis, confirmed by PostgreSQL when Redis lost it or has not heard
//! of the commit yet, and long-polled (`?wait_ms=`) until decided.

use super::Gateway;
use super::events::parse_event;
use crate::db;
use crate::gateway::error::{ApiError, Body, json};
use flashgrid_wire::sale::Outcome;
use flashgrid_wire::{
    EventId, MAX_WAIT_MS, Quantity, ReservationId, ReservationView, Status, UserId,
};
use http::{Response, StatusCode};
use std::time::{Duration, Instant};

impl Gateway {
    pub(super) async fn status(
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
            let Some(o) = self.outcome(&event, &id, left.is_zero()).await? else {
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

    /// The outcome as Redis records it; PostgreSQL is asked when Redis lost
    /// it (or is away), holds a confirmation whose commit it has not heard
    /// of, or (on the last read of a request, `last`) says pending: the
    /// database knows every committed winner, and a pending marker can be
    /// stale (a Redis restored from an older copy). Redis away and no row:
    /// nobody can tell yet, `503`.
    async fn outcome(
        &self,
        event: &EventId,
        id: &ReservationId,
        last: bool,
    ) -> Result<Option<Outcome>, ApiError> {
        let cached = match self.inventory.lookup(event, id).await {
            Ok(l) => l.outcome,
            Err(e) => {
                return match self.committed(event, id).await? {
                    Some(o) => Ok(Some(o)),
                    None => Err(ApiError::dependency("Redis", &e)),
                };
            }
        };
        match cached {
            Some(o) if o.status == Status::Pending && !last => Ok(Some(o)),
            Some(o) if o.public_status() != Status::Pending => Ok(Some(o)),
            other => Ok(self.committed(event, id).await?.or(other)),
        }
    }

    /// The reservation as PostgreSQL holds it, if it was committed.
    pub(super) async fn committed(
        &self,
        event: &EventId,
        id: &ReservationId,
    ) -> Result<Option<Outcome>, ApiError> {
        let row = db::find_reservation(&self.pool, event, id)
            .await
            .map_err(|e| ApiError::dependency("PostgreSQL", &e))?;
        Ok(row.and_then(|r| {
            Some(Outcome::committed(
                Quantity::new(r.quantity.into()).ok()?,
                UserId::parse(&r.user).ok()?,
            ))
        }))
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
