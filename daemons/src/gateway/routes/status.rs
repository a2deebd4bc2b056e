//! `GET /events/{id}/reservations/{rid}`: one reservation's decision, read
//! from Redis, else from what PostgreSQL makes certain, and long-polled
//! (`?wait_ms=`) until decided.
//!
//! Where each answer comes from, in order:
//! 1. Redis's outcome, when it is a decision (`rejected`, or `confirmed`
//!    and committed).
//! 2. PostgreSQL's row: a committed winner is `confirmed`, whatever Redis
//!    says or lost (asked when Redis has no decision: pending only on the
//!    request's last read, since a pending marker can be stale).
//! 3. With a receipt (the signed status URL, see `receipt`): a rejection
//!    PostgreSQL makes certain — accepted outside the window (`sale_closed`),
//!    the buyer already holding their limit (`user_limit`), the seats left
//!    fewer than asked (`sold_out`). PostgreSQL's counts only grow until a
//!    reset, so what is certain stays so: the worker, deciding the same
//!    reservation, can only reach the same answer (its checks run in this
//!    order, and PostgreSQL's guards refuse anything else).
//! 4. Redis's `pending`, or with a receipt and Redis knowing nothing,
//!    `pending`: issued, not decided yet. Without a receipt and nothing
//!    known: `404`. Redis away and nothing certain: `503`.

use super::Gateway;
use super::events::parse_event;
use crate::db::{self, Certainty};
use crate::gateway::error::{ApiError, Body, json};
use crate::gateway::receipt::Receipt;
use flashgrid_wire::sale::Outcome;
use flashgrid_wire::{
    EventId, MAX_WAIT_MS, Quantity, Reason, ReservationId, ReservationView, Status, UserId,
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
        let (id, receipt) = self
            .receipts
            .open(&event, rid)
            .map_err(|_| ApiError::not_found(format!("no reservation {rid:?}")))?;
        let wait = wait_ms(query)?;
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // Register before reading so a decision between the two is not missed.
            let woken = (!left.is_zero()).then(|| self.waiters.register(id));
            let Some(o) = self
                .outcome(&event, &id, receipt.as_ref(), left.is_zero())
                .await?
            else {
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

    /// The answer, from the sources in the order the module describes;
    /// `last` is the request's last read.
    async fn outcome(
        &self,
        event: &EventId,
        id: &ReservationId,
        receipt: Option<&Receipt>,
        last: bool,
    ) -> Result<Option<Outcome>, ApiError> {
        // Outcomes are recorded per sale generation: the receipt's, else
        // the current one as this gateway knows it (an event it does not
        // know yet: the first).
        let sale = receipt
            .and_then(|r| r.sale)
            .unwrap_or_else(|| self.catalog.get(event).map_or(1, |e| e.event.sale));
        let cached = self
            .inventory
            .lookup(event, sale, id)
            .await
            .map(|l| l.outcome);
        match &cached {
            Ok(Some(o)) if o.status == Status::Pending && !last => {
                return Ok(cached.ok().flatten());
            }
            Ok(Some(o)) if o.public_status() != Status::Pending => {
                return Ok(cached.ok().flatten());
            }
            _ => {}
        }
        // Derived only where Redis holds nothing of it (or is away): while
        // Redis holds a pending marker or an uncommitted confirmation, the
        // worker is still to decide it, against counts PostgreSQL has not
        // seen yet, and a derived reason could differ from its decision.
        let certain = match (receipt, &cached) {
            (Some(r), Ok(None) | Err(_)) => self.certain(event, id, r).await?,
            _ => self.committed(event, id).await?,
        };
        if certain.is_some() {
            return Ok(certain);
        }
        match cached {
            Ok(Some(o)) => Ok(Some(o)),
            Ok(None) => Ok(receipt.map(|r| Outcome::pending(r.quantity, r.user.clone()))),
            Err(e) => Err(ApiError::dependency("Redis", &e)),
        }
    }

    /// A committed row or a certain rejection of a receipt's reservation.
    async fn certain(
        &self,
        event: &EventId,
        id: &ReservationId,
        r: &Receipt,
    ) -> Result<Option<Outcome>, ApiError> {
        let Some(c) = db::certainty(&self.pool, event, id, &r.user)
            .await
            .map_err(|e| ApiError::dependency("PostgreSQL", &e))?
        else {
            return Ok(None);
        };
        if let Some(row) = &c.row {
            return Ok(committed_outcome(row));
        }
        Ok(derived(&c, r).map(|reason| Outcome::rejected(reason, r.quantity, r.user.clone())))
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
        Ok(row.as_ref().and_then(committed_outcome))
    }
}

fn committed_outcome(r: &db::CommittedRow) -> Option<Outcome> {
    Some(Outcome::committed(
        Quantity::new(r.quantity.into()).ok()?,
        UserId::parse(&r.user).ok()?,
    ))
}

/// The rejection PostgreSQL makes certain for a reservation it has no row
/// of, checked in the order `decide.lua` checks (so a decision Redis made
/// and lost is derived again alike). A reservation of a sale reset since is
/// `sale_closed`, as the worker decides it.
fn derived(c: &Certainty, r: &Receipt) -> Option<Reason> {
    let open = flashgrid_wire::sale::window_open(c.opens_at, c.closes_at, r.accepted_at);
    let q = u32::from(r.quantity.get());
    let reset_since = r.sale.is_some_and(|s| s < c.sale);
    if !open || reset_since {
        Some(Reason::SaleClosed)
    } else if c.held + q > c.per_user_limit {
        Some(Reason::UserLimit)
    } else if c.seats.confirmed + q > c.seats.capacity {
        Some(Reason::SoldOut)
    } else {
        None
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
    use chrono::DateTime;
    use flashgrid_wire::sale::SeatCounts;

    #[test]
    fn only_what_postgresql_makes_certain_is_derived() {
        let at = DateTime::from_timestamp(1_000, 0).unwrap();
        let r = Receipt {
            user: UserId::parse("u").unwrap(),
            quantity: Quantity::new(2).unwrap(),
            accepted_at: at,
            sale: Some(2),
        };
        let c = Certainty {
            row: None,
            seats: SeatCounts {
                capacity: 10,
                confirmed: 8,
            },
            per_user_limit: 4,
            opens_at: None,
            closes_at: None,
            held: 2,
            sale: 2,
        };
        assert_eq!(derived(&c, &r), None, "2 seats left, 2 more allowed");
        let full = Certainty {
            seats: SeatCounts {
                capacity: 10,
                confirmed: 9,
            },
            ..c.clone()
        };
        assert_eq!(derived(&full, &r), Some(Reason::SoldOut));
        let at_limit = Certainty {
            held: 3,
            ..full.clone()
        };
        assert_eq!(
            derived(&at_limit, &r),
            Some(Reason::UserLimit),
            "the limit first, as decide.lua checks"
        );
        let closed = Certainty {
            closes_at: Some(at),
            ..at_limit.clone()
        };
        assert_eq!(derived(&closed, &r), Some(Reason::SaleClosed));
        let early = Certainty {
            opens_at: Some(at + chrono::Duration::milliseconds(1)),
            ..c.clone()
        };
        assert_eq!(derived(&early, &r), Some(Reason::SaleClosed));
        let open_at = Certainty {
            opens_at: Some(at),
            closes_at: Some(at + chrono::Duration::milliseconds(1)),
            ..c
        };
        assert_eq!(derived(&open_at, &r), None);
        let reset = Certainty {
            sale: 3,
            ..open_at.clone()
        };
        assert_eq!(
            derived(&reset, &r),
            Some(Reason::SaleClosed),
            "accepted in a sale reset since"
        );
        let unknown = Receipt { sale: None, ..r };
        assert_eq!(derived(&reset, &unknown), None, "a receipt of version 1");
    }

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
