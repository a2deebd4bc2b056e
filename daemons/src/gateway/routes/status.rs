//! `GET /events/{id}/reservations/{rid}`: one reservation's decision, read
//! from Redis, else from what PostgreSQL makes certain, and long-polled
//! (`?wait_ms=`) until decided.
//!
//! Where each answer comes from, in order:
//! 1. Redis's outcome, when it is a decision (`rejected` and certain, or
//!    `confirmed` and committed; see `Outcome` for tentative rejections).
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
//! 4. Redis's `pending` (a marker, a confirmation not committed, a
//!    tentative rejection), or with a receipt and Redis knowing nothing,
//!    `pending`: issued, not decided yet. Without a receipt and nothing
//!    known: `404`. Redis away and nothing certain: `503`.

use super::Gateway;
use super::events::parse_event;
use crate::db::{self, Certainty};
use crate::gateway::error::{ApiError, Body, json, shown};
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
        // An event this gateway does not know is asked of PostgreSQL only
        // within the budget of unknown events (made-up ids cannot flood it).
        if self.catalog.get(&event).is_none() {
            self.created_elsewhere(&event).await?;
        }
        let (id, receipt) = self
            .receipts
            .open(&event, rid)
            .map_err(|_| ApiError::not_found(format!("no reservation {}", shown(rid))))?;
        let wait = wait_ms(query)?;
        let mut deadline = Instant::now() + wait;
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
                let mut view = ReservationView {
                    reservation_id: id,
                    event_id: event,
                    user_id: o.user,
                    quantity: o.quantity,
                    status,
                    // A tentative rejection's reason is not told: it
                    // reads pending, and may yet be decided otherwise.
                    reason: o.reason.filter(|_| status == Status::Rejected),
                    expires_at: None,
                    payment_ref: None,
                };
                if status == Status::Confirmed && self.holds(&view.event_id) {
                    self.hold_state(&mut view).await?;
                }
                return Ok(json(StatusCode::OK, &view));
            }
            // Woken by the decision notice; re-read at least every second in
            // case a notice was lost. At shutdown, answer what is known now:
            // a long-poll must not hold the drain.
            if self.shutdown.is_cancelled() {
                deadline = Instant::now();
                continue;
            }
            let nap = left.min(Duration::from_secs(1));
            if let Some(w) = woken {
                tokio::select! {
                    _ = tokio::time::timeout(nap, w) => {}
                    _ = self.shutdown.cancelled() => deadline = Instant::now(),
                }
            }
        }
    }

    /// Whether the event holds its seats (as this gateway knows it).
    pub(super) fn holds(&self, event: &EventId) -> bool {
        self.catalog
            .get(event)
            .is_some_and(|e| e.event.hold_seconds.is_some())
    }

    /// A won seat of an event with holds: where its hold stands, from
    /// PostgreSQL (Redis knows only that it was won).
    async fn hold_state(&self, view: &mut ReservationView) -> Result<(), ApiError> {
        let permit = self.read_permit().await?;
        let row = db::holds::won(&self.pool, &view.event_id, &view.reservation_id)
            .await
            .map_err(|e| ApiError::dependency("PostgreSQL", &e))?;
        drop(permit);
        match row {
            Some(r) => {
                view.status = r.status;
                view.expires_at = r.expires_at;
                view.payment_ref = r.payment_ref;
            }
            // Won in Redis, not in PostgreSQL (a rebuild dropped it): it
            // is decided again.
            None => view.status = Status::Pending,
        }
        Ok(())
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
        let current = self.catalog.get(event).map(|e| e.event.sale);
        // A receipt of a sale reset since: that sale is over, whatever its
        // id holds now (a retried idempotency key gives the same id in the
        // new sale, and its row or confirmation is the new sale's).
        if let (Some(r), Some(now)) = (receipt, current)
            && r.sale < now
        {
            return Ok(Some(Outcome::rejected(
                Reason::SaleClosed,
                r.quantity,
                r.user.clone(),
            )));
        }
        // Outcomes are recorded per sale generation: the receipt's, else
        // the current one as this gateway knows it (an event it does not
        // know yet: the first).
        let sale = receipt.map(|r| r.sale).or(current).unwrap_or(1);
        let looked = self.lookups.lookup(event, sale, id).await;
        // An id without a receipt that a whole state does not hold was
        // never confirmed in this sale (every confirmation stays in Redis
        // with its seat): a made-up id costs no PostgreSQL query.
        if receipt.is_none() && matches!(&looked, Ok(l) if l.whole && l.outcome.is_none()) {
            return Ok(None);
        }
        let cached = looked.map(|l| l.outcome);
        match &cached {
            // Not decided yet as far as Redis knows (a tentative rejection is
            // no decision until certain): PostgreSQL is asked on the
            // request's last read only.
            Ok(Some(o)) if (o.status == Status::Pending || o.is_tentative()) && !last => {
                return Ok(cached.ok().flatten());
            }
            Ok(Some(o)) if o.public_status() != Status::Pending => {
                return Ok(cached.ok().flatten());
            }
            _ => {}
        }
        // Derived where Redis holds nothing of it, only a pending marker
        // (this request's last read: a marker may be stale, e.g. restored
        // from an older copy after its rejection was decided), or is away;
        // not while it holds an uncommitted confirmation. A derived
        // rejection is recorded in Redis, so that the worker, should it
        // still be to decide the reservation, decides it alike.
        let confirming = matches!(&cached, Ok(Some(o)) if o.status == Status::Confirmed);
        let certain = match receipt {
            Some(r) if !confirming => {
                let record = cached.is_ok().then_some(sale);
                self.certain(event, id, r, record).await?
            }
            _ => self.committed_read(event, id).await?,
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

    /// A committed row or a certain rejection of a receipt's reservation;
    /// the rejection is recorded in Redis under `record` (its sale), where
    /// the decision recorded first is kept and answered.
    async fn certain(
        &self,
        event: &EventId,
        id: &ReservationId,
        r: &Receipt,
        record: Option<u32>,
    ) -> Result<Option<Outcome>, ApiError> {
        let permit = self.read_permit().await?;
        let c = db::certainty(&self.pool, event, id, &r.user)
            .await
            .map_err(|e| ApiError::dependency("PostgreSQL", &e))?;
        drop(permit);
        let Some(c) = c else {
            return Ok(None);
        };
        if let Some(row) = &c.row {
            return Ok(committed_outcome(row));
        }
        let Some(reason) = derived(&c, r) else {
            return Ok(None);
        };
        let rejection = Outcome::rejected(reason, r.quantity, r.user.clone());
        let Some(sale) = record else {
            return Ok(Some(rejection));
        };
        match self
            .inventory
            .record_derived(event, sale, id, &rejection)
            .await
        {
            Ok(recorded) => Ok(Some(recorded)),
            // Redis went away meanwhile: still certain.
            Err(e) => {
                tracing::debug!(error = %e, "could not record a derived rejection");
                Ok(Some(rejection))
            }
        }
    }

    /// The reservation as PostgreSQL holds it, if it was committed (a
    /// read route's lookup: within the read budget).
    async fn committed_read(
        &self,
        event: &EventId,
        id: &ReservationId,
    ) -> Result<Option<Outcome>, ApiError> {
        let _permit = self.read_permit().await?;
        self.committed(event, id).await
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
    let reset_since = r.sale < c.sale;
    if !open || reset_since {
        Some(Reason::SaleClosed)
    } else if c.holds {
        // Seats and limits come back as holds end: what the counts reject
        // now they may not later, so only the worker decides these.
        None
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
            sale: 2,
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
            holds: false,
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
        // With holds, seats come back: sold out now is no certainty.
        let holding = Certainty {
            holds: true,
            held: 4,
            ..full.clone()
        };
        assert_eq!(derived(&holding, &r), None);
        let holding_closed = Certainty {
            closes_at: Some(at),
            ..holding
        };
        assert_eq!(derived(&holding_closed, &r), Some(Reason::SaleClosed));
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
