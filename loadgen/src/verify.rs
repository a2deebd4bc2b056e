//! After the attack: follow every `202` to its decision, read the event, and
//! judge the sale — oversold, lost, and whether the event's own counts agree
//! with what the buyers saw.

use crate::client::{self, Connection};
use crate::spec::Target;
use flashgrid_wire::sale::Breach;
use flashgrid_wire::{Accepted, EventId, EventView, Reason, ReservationView, Status};
use http::Method;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// What the buyers were told in the end.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Decisions {
    /// Won and holding their seats: confirmed, or (an event with holds)
    /// held or purchased.
    pub confirmed: u64,
    /// Seats the confirmed reservations hold.
    pub confirmed_quantity: u64,
    /// Won, then given back: the hold expired or was cancelled.
    pub released: u64,
    pub rejected: BTreeMap<String, u64>,
    /// Still pending at the deadline (or unknown to the gateway).
    pub pending: u64,
}

impl Decisions {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Adds what another follower was told.
    pub(crate) fn merge(&mut self, o: Decisions) {
        self.confirmed += o.confirmed;
        self.confirmed_quantity += o.confirmed_quantity;
        self.released += o.released;
        self.pending += o.pending;
        for (k, v) in o.rejected {
            *self.rejected.entry(k).or_default() += v;
        }
    }

    pub(crate) fn record(&mut self, v: Option<&ReservationView>) {
        let Some(v) = v else {
            self.pending += 1;
            return;
        };
        match v.status {
            Status::Confirmed | Status::Held | Status::Purchased => {
                self.confirmed += 1;
                self.confirmed_quantity += u64::from(v.quantity.get());
            }
            Status::Expired | Status::Cancelled => self.released += 1,
            Status::Rejected => {
                let reason = v.reason.map(Reason::as_str).unwrap_or("unknown");
                *self.rejected.entry(reason.to_owned()).or_default() += 1;
            }
            Status::Pending => self.pending += 1,
        }
    }
}

/// Follows every accepted reservation until decided or `deadline`, over
/// `connections` connections, long-polling.
pub async fn follow(
    target: &Target,
    accepted: &[Accepted],
    connections: usize,
    deadline: Duration,
) -> Decisions {
    let end = Instant::now() + deadline;
    let next = Arc::new(AtomicUsize::new(0));
    let result = Arc::new(Mutex::new(Decisions::default()));
    let accepted: Arc<[Accepted]> = accepted.into();
    let workers: Vec<_> = (0..connections.max(1).min(accepted.len().max(1)))
        .map(|_| {
            let (target, next, result, accepted) = (
                target.clone(),
                next.clone(),
                result.clone(),
                accepted.clone(),
            );
            tokio::spawn(async move {
                let mut conn: Option<Connection> = None;
                let mut local = Decisions::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(a) = accepted.get(i) else { break };
                    let view = decide(&target, &mut conn, a, end).await;
                    local.record(view.as_ref());
                }
                result.lock().await.merge(local);
            })
        })
        .collect();
    for w in workers {
        let _ = w.await;
    }
    Arc::try_unwrap(result)
        .map(Mutex::into_inner)
        .unwrap_or_default()
}

/// Long-polls one reservation until it is decided (anything but `pending`)
/// or `end`; `None` when the gateway never answered.
pub(crate) async fn decide(
    target: &Target,
    conn: &mut Option<Connection>,
    a: &Accepted,
    end: Instant,
) -> Option<ReservationView> {
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let wait = left.min(Duration::from_secs(10)).as_millis();
        if let Ok(c) = Connection::reuse(target, conn).await {
            let path = format!("{}?wait_ms={wait}", a.status_url);
            let req = client::request(target, Method::GET, &path, &[], None);
            match c
                .send(
                    req,
                    Duration::from_millis(wait as u64) + Duration::from_secs(5),
                )
                .await
            {
                Ok(resp) if resp.status() == 200 => {
                    if let Ok(v) = serde_json::from_slice::<ReservationView>(resp.body())
                        && (v.status != Status::Pending || left.is_zero())
                    {
                        return Some(v);
                    }
                }
                Ok(_) => {}
                Err(_) => *conn = None,
            }
        }
        if left.is_zero() {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads the event's own view of the sale.
pub async fn event(target: &Target, id: &EventId) -> Result<EventView, String> {
    let mut c = Connection::open(target)
        .await
        .map_err(|e| format!("cannot reach the gateway at {}: {e}", target.base))?;
    let req = client::request(target, Method::GET, &format!("/events/{id}"), &[], None);
    let resp = c
        .send(req, Duration::from_secs(10))
        .await
        .map_err(|e| format!("GET /events/{id}: {e}"))?;
    if resp.status() != 200 {
        return Err(format!(
            "GET /events/{id} answered {}: {}",
            resp.status(),
            String::from_utf8_lossy(resp.body())
        ));
    }
    serde_json::from_slice(resp.body()).map_err(|e| format!("GET /events/{id}: {e}"))
}

/// The judgement of a sale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// More seats confirmed than the capacity, by the event or by the buyers.
    pub oversold: bool,
    /// Accepted (`202`) but never decided.
    pub lost: u64,
    /// The event's counts agree with themselves and with what the buyers saw.
    pub counts_agree: bool,
    pub pass: bool,
    /// Why it failed, for people.
    pub problems: Vec<String>,
}

/// Judges a sale. `exclusive` says the attack was the event's only traffic
/// since its stock was set (it was created or reset just before): then the
/// event's confirmed seats must equal the buyers' exactly.
pub fn judge(decisions: &Decisions, event: &EventView, exclusive: bool) -> Verdict {
    let mut problems = Vec::new();
    let cap = u64::from(event.capacity);
    let confirmed = u64::from(event.confirmed);
    let oversold = event.seats().oversold() > 0 || decisions.confirmed_quantity > cap;
    if oversold {
        problems.push(format!(
            "OVERSOLD: capacity {cap}, the event confirms {confirmed}, the buyers hold {}",
            decisions.confirmed_quantity
        ));
    }
    if decisions.pending > 0 {
        problems.push(format!(
            "LOST: {} accepted reservations were never decided",
            decisions.pending
        ));
    }
    let mut agree = true;
    let holds = event.hold_seconds.is_some();
    let seats = event.seats();
    if holds && u64::from(event.held) + u64::from(event.purchased) != confirmed {
        agree = false;
        problems.push(format!(
            "the event's held {} + purchased {} ≠ the seats it says are taken, {confirmed}",
            event.held, event.purchased
        ));
    }
    if !seats.balances(event.remaining) {
        agree = false;
        let breach = Breach::Unbalanced {
            seats,
            remaining: event.remaining,
        };
        problems.push(format!("the event's counts disagree: {breach}"));
    }
    // Holds give seats back after the buyers were followed (never take
    // any): the event may then count fewer than the buyers were told.
    let buyers_ok = if exclusive && !holds {
        confirmed == decisions.confirmed_quantity
    } else if exclusive {
        confirmed <= decisions.confirmed_quantity
    } else {
        confirmed >= decisions.confirmed_quantity
    };
    if !buyers_ok {
        agree = false;
        problems.push(format!(
            "the event confirms {confirmed} seats but the buyers hold {}",
            decisions.confirmed_quantity
        ));
    }
    // The event's own `remaining` and `sold_out`, judged against the buyers
    // rather than against its `confirmed` (from which the gateway computes
    // them): with the attack its only traffic, every seat a buyer does not
    // hold is left, and the sale is sold out exactly when none is.
    if exclusive && holds {
        let left = cap.saturating_sub(decisions.confirmed_quantity);
        if u64::from(event.remaining) < left {
            agree = false;
            problems.push(format!(
                "the event says remaining {} but the buyers leave at least {left}",
                event.remaining
            ));
        }
    } else if exclusive {
        let left = cap.saturating_sub(decisions.confirmed_quantity);
        if u64::from(event.remaining) != left || event.sold_out != (left == 0) {
            agree = false;
            problems.push(format!(
                "the event says remaining {} (sold_out {}) but the buyers leave {left}",
                event.remaining, event.sold_out
            ));
        }
    }
    Verdict {
        oversold,
        lost: decisions.pending,
        counts_agree: agree,
        pass: !oversold && decisions.pending == 0 && agree,
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flashgrid_wire::PerUserLimit;

    fn view(status: Status, reason: Option<Reason>, quantity: u8) -> ReservationView {
        let e = EventId::parse("e").unwrap();
        let u = flashgrid_wire::UserId::parse("u").unwrap();
        ReservationView {
            reservation_id: flashgrid_wire::ReservationId::idempotent(&e, &u, "k"),
            event_id: e,
            user_id: u,
            quantity: flashgrid_wire::Quantity::new(i64::from(quantity)).unwrap(),
            status,
            reason,
            expires_at: None,
            payment_ref: None,
        }
    }

    #[test]
    fn each_decision_is_counted_where_it_belongs() {
        let mut d = Decisions::default();
        d.record(Some(&view(Status::Confirmed, None, 3)));
        d.record(Some(&view(Status::Confirmed, None, 2)));
        d.record(Some(&view(Status::Rejected, Some(Reason::SoldOut), 1)));
        d.record(Some(&view(Status::Rejected, Some(Reason::SoldOut), 1)));
        d.record(Some(&view(Status::Rejected, Some(Reason::UserLimit), 1)));
        d.record(Some(&view(Status::Rejected, None, 1)));
        d.record(Some(&view(Status::Pending, None, 1)));
        d.record(None);
        d.record(Some(&view(Status::Held, None, 1)));
        d.record(Some(&view(Status::Purchased, None, 2)));
        d.record(Some(&view(Status::Expired, None, 1)));
        d.record(Some(&view(Status::Cancelled, None, 1)));
        assert_eq!(
            d,
            Decisions {
                confirmed: 4,
                confirmed_quantity: 8,
                released: 2,
                rejected: [
                    ("sold_out".to_owned(), 2),
                    ("user_limit".to_owned(), 1),
                    ("unknown".to_owned(), 1)
                ]
                .into(),
                pending: 2,
            }
        );
        assert_eq!(d.rejected_total(), 4);
    }

    #[test]
    fn followers_tallies_add_up() {
        let a = Decisions {
            confirmed: 2,
            confirmed_quantity: 3,
            released: 0,
            rejected: [("sold_out".to_owned(), 4)].into(),
            pending: 1,
        };
        let b = Decisions {
            confirmed: 5,
            confirmed_quantity: 7,
            released: 0,
            rejected: [("sold_out".to_owned(), 1), ("user_limit".to_owned(), 2)].into(),
            pending: 3,
        };
        let mut sum = a.clone();
        sum.merge(b);
        sum.merge(Decisions::default());
        assert_eq!(
            sum,
            Decisions {
                confirmed: 7,
                confirmed_quantity: 10,
                released: 0,
                rejected: [("sold_out".to_owned(), 5), ("user_limit".to_owned(), 2)].into(),
                pending: 4,
            }
        );
        assert_eq!(sum.rejected_total(), 7);
    }

    fn event(capacity: u32, confirmed: u32) -> EventView {
        EventView {
            event_id: EventId::parse("e").unwrap(),
            name: "e".into(),
            capacity,
            remaining: capacity.saturating_sub(confirmed),
            confirmed,
            per_user_limit: PerUserLimit::DEFAULT,
            sold_out: confirmed >= capacity,
            opens_at: None,
            closes_at: None,
            hold_seconds: None,
            held: 0,
            purchased: 0,
            released: 0,
        }
    }

    fn decided(confirmed: u64, pending: u64) -> Decisions {
        Decisions {
            confirmed,
            confirmed_quantity: confirmed,
            released: 0,
            rejected: BTreeMap::from([("sold_out".into(), 100)]),
            pending,
        }
    }

    #[test]
    fn a_clean_sale_passes() {
        let v = judge(&decided(20, 0), &event(20, 20), true);
        assert!(v.pass && v.problems.is_empty(), "{v:?}");
    }

    #[test]
    fn an_oversold_sale_fails() {
        // The buyers hold more than the capacity, whatever the event says.
        let v = judge(&decided(21, 0), &event(20, 20), false);
        assert!(v.oversold && !v.pass, "{v:?}");
        // The event itself confirms more than its capacity.
        let mut e = event(20, 21);
        e.remaining = 0;
        let v = judge(&decided(20, 0), &e, false);
        assert!(v.oversold && !v.pass, "{v:?}");
    }

    #[test]
    fn a_hold_sale_is_judged_by_the_seats_still_taken() {
        let mut e = event(20, 20);
        e.hold_seconds = Some(5);
        e.held = 12;
        e.purchased = 8;
        assert!(judge(&decided(20, 0), &e, true).pass);
        // Holds expired after the buyers were followed: fewer taken.
        let mut later = event(20, 15);
        later.hold_seconds = Some(5);
        later.held = 7;
        later.purchased = 8;
        assert!(
            judge(&decided(20, 0), &later, true).pass,
            "seats given back"
        );
        // More taken than the buyers were told is never right.
        assert!(!judge(&decided(14, 0), &later, true).counts_agree);
        // Held and purchased must add up to the seats taken.
        later.held = 6;
        let v = judge(&decided(20, 0), &later, true);
        assert!(!v.counts_agree && v.problems[0].contains("held 6"), "{v:?}");
    }

    #[test]
    fn a_lost_reservation_fails() {
        let v = judge(&decided(20, 1), &event(20, 20), true);
        assert_eq!(v.lost, 1);
        assert!(!v.pass);
        assert_eq!(
            v.problems,
            ["LOST: 1 accepted reservations were never decided"]
        );
    }

    #[test]
    fn disagreeing_counts_fail() {
        let v = judge(&decided(19, 0), &event(20, 20), true);
        assert!(!v.counts_agree && !v.pass);
        // Not exclusive: others may have bought too.
        let v = judge(&decided(19, 0), &event(20, 20), false);
        assert!(v.pass, "{v:?}");
        let mut e = event(20, 10);
        e.remaining = 5;
        assert!(!judge(&decided(10, 0), &e, true).counts_agree);
    }

    #[test]
    fn remaining_and_sold_out_are_judged_against_the_buyers() {
        // The counts add up, but a seat the buyers do not hold is not left.
        let mut e = event(20, 19);
        e.remaining = 1;
        e.confirmed = 19;
        assert!(judge(&decided(19, 0), &e, true).pass);
        let mut shut = e.clone();
        shut.sold_out = true;
        assert!(
            !judge(&decided(19, 0), &shut, true).counts_agree,
            "sold out with a seat left"
        );
        let mut open = event(20, 20);
        open.sold_out = false;
        assert!(
            !judge(&decided(20, 0), &open, true).counts_agree,
            "open with none left"
        );
        // Not exclusive: others may still be deciding.
        assert!(judge(&decided(19, 0), &shut, false).pass);
    }
}
