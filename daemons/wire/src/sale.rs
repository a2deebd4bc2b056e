//! The sale's rules, in one place for every part of FlashGrid: when an
//! event's window is open, how many seats are left, what a reservation's
//! outcome tells its buyer, and the invariant each screen and verdict checks
//! (confirmed ≤ capacity, confirmed + remaining = capacity).
//!
//! Pure: no I/O. The database code stores [`Event`]s, the Redis code records
//! [`Outcome`]s, the gateway answers from both, and the console, the load
//! generator and the fault verdicts judge [`SeatCounts`] with it.

use crate::{EventId, EventView, PerUserLimit, Quantity, Reason, Status, UserId};
use chrono::{DateTime, Utc};
use std::fmt;

/// An event as PostgreSQL holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: EventId,
    pub name: String,
    pub seats: SeatCounts,
    pub per_user_limit: PerUserLimit,
    pub opens_at: Option<DateTime<Utc>>,
    pub closes_at: Option<DateTime<Utc>>,
    /// The sale generation: 1 when created, moved on by every reset. A
    /// reservation accepted in one generation is never sold in another.
    pub sale: u32,
    /// How long a won seat is held for its buyer to purchase (docs/HOLDS.md);
    /// `None`: a decision is final.
    pub hold_seconds: Option<u32>,
    /// Of the seats taken (`seats.confirmed`), those purchased.
    pub purchased: u32,
    /// Seats held and given back (expired or cancelled) in this sale.
    pub released: u32,
}

/// Whether a sale window (either bound optional) is open at `at`.
pub fn window_open(
    opens_at: Option<DateTime<Utc>>,
    closes_at: Option<DateTime<Utc>>,
    at: DateTime<Utc>,
) -> bool {
    opens_at.is_none_or(|o| at >= o) && closes_at.is_none_or(|c| at < c)
}

impl Event {
    /// Whether the sale window is open at `at` (no bound means open on that side).
    pub fn is_open_at(&self, at: DateTime<Utc>) -> bool {
        window_open(self.opens_at, self.closes_at, at)
    }

    /// Why the window is closed at `now`, for the buyer.
    pub fn closed_message(&self, now: DateTime<Utc>) -> String {
        match (self.opens_at, self.closes_at) {
            (Some(o), _) if now < o => {
                format!("the sale of {} opens at {}", self.id, o.to_rfc3339())
            }
            (_, Some(c)) => format!("the sale of {} closed at {}", self.id, c.to_rfc3339()),
            _ => format!("the sale of {} is closed", self.id),
        }
    }

    pub fn capacity(&self) -> u32 {
        self.seats.capacity
    }

    pub fn remaining(&self) -> u32 {
        self.seats.remaining()
    }

    /// The API view; `sold_out` is also true while the last seats are decided
    /// in Redis but not yet committed.
    pub fn view(&self, known_sold_out: bool) -> EventView {
        EventView {
            event_id: self.id.clone(),
            name: self.name.clone(),
            capacity: self.seats.capacity,
            remaining: self.remaining(),
            confirmed: self.seats.confirmed,
            per_user_limit: self.per_user_limit,
            sold_out: known_sold_out || self.remaining() == 0,
            opens_at: self.opens_at,
            closes_at: self.closes_at,
            hold_seconds: self.hold_seconds,
            held: if self.hold_seconds.is_some() {
                self.seats.confirmed.saturating_sub(self.purchased)
            } else {
                0
            },
            purchased: self.purchased,
            released: self.released,
        }
    }
}

/// An event's seats: what it offers and what is confirmed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeatCounts {
    pub capacity: u32,
    pub confirmed: u32,
}

impl SeatCounts {
    pub fn remaining(&self) -> u32 {
        self.capacity.saturating_sub(self.confirmed)
    }

    /// Seats confirmed beyond the capacity (0 unless invariant 1 broke).
    pub fn oversold(&self) -> u32 {
        self.confirmed.saturating_sub(self.capacity)
    }

    /// Whether the `remaining` someone reported beside these counts adds up:
    /// confirmed + remaining = capacity.
    pub fn balances(&self, remaining: u32) -> bool {
        u64::from(self.confirmed) + u64::from(remaining) == u64::from(self.capacity)
    }

    /// Checks the invariant against the `remaining` someone reported beside
    /// these counts: confirmed ≤ capacity, confirmed + remaining = capacity.
    pub fn check(&self, remaining: u32) -> Result<(), Breach> {
        if self.confirmed > self.capacity {
            return Err(Breach::Oversold(*self));
        }
        if !self.balances(remaining) {
            return Err(Breach::Unbalanced {
                seats: *self,
                remaining,
            });
        }
        Ok(())
    }
}

/// How an event's counts broke the invariant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breach {
    /// More confirmed than the capacity.
    Oversold(SeatCounts),
    /// Confirmed and remaining do not add up to the capacity.
    Unbalanced { seats: SeatCounts, remaining: u32 },
    /// Held and purchased do not add up to the seats taken.
    Holds {
        held: u32,
        purchased: u32,
        taken: u32,
    },
}

impl fmt::Display for Breach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Breach::Oversold(s) => write!(
                f,
                "OVERSOLD: confirmed {} > capacity {}",
                s.confirmed, s.capacity
            ),
            Breach::Unbalanced { seats, remaining } => write!(
                f,
                "BROKEN: confirmed {} + remaining {remaining} ≠ capacity {}",
                seats.confirmed, seats.capacity
            ),
            Breach::Holds {
                held,
                purchased,
                taken,
            } => write!(
                f,
                "BROKEN: held {held} + purchased {purchased} ≠ seats taken {taken}"
            ),
        }
    }
}

impl EventView {
    pub fn seats(&self) -> SeatCounts {
        SeatCounts {
            capacity: self.capacity,
            confirmed: self.confirmed,
        }
    }

    /// The invariant of this view: confirmed ≤ capacity, confirmed +
    /// remaining = capacity, and with holds held + purchased = confirmed
    /// (so held + purchased + remaining = capacity).
    pub fn invariant(&self) -> Result<(), Breach> {
        self.seats().check(self.remaining)?;
        let (held, purchased) = (self.held, self.purchased);
        if self.hold_seconds.is_some()
            && u64::from(held) + u64::from(purchased) != u64::from(self.confirmed)
        {
            return Err(Breach::Holds {
                held,
                purchased,
                taken: self.confirmed,
            });
        }
        Ok(())
    }
}

/// A reservation's state as the sale records it.
///
/// A confirmation is first made in Redis and only then committed to
/// PostgreSQL; until it is committed its buyer is told `pending`:
/// "confirmed" is only ever said of a committed seat. Likewise a rejection
/// decided against confirmations not all committed yet (`sold_out` or
/// `user_limit` while the seats or the buyer's purchases it counted are
/// still on their way to PostgreSQL) is *tentative*: its buyer is told
/// `pending` until what it rests on is committed, since until then Redis
/// may lose those confirmations and the reservation may yet be sold a seat.
/// "rejected" is only ever said of a rejection PostgreSQL makes certain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    pub reason: Option<Reason>,
    pub quantity: Quantity,
    pub user: UserId,
    /// For a confirmation: whether PostgreSQL has committed it.
    pub committed: bool,
    /// For a tentative rejection: the committed count at which it is
    /// certain — the event's committed seats for `sold_out`, the buyer's
    /// committed quantity for `user_limit` (see `decide.lua`). `None` for
    /// a certain one.
    pub certain_at: Option<u32>,
}

impl Outcome {
    /// Accepted, not decided yet.
    pub fn pending(quantity: Quantity, user: UserId) -> Self {
        Self {
            status: Status::Pending,
            reason: None,
            quantity,
            user,
            committed: false,
            certain_at: None,
        }
    }

    /// A certain rejection.
    pub fn rejected(reason: Reason, quantity: Quantity, user: UserId) -> Self {
        Self {
            status: Status::Rejected,
            reason: Some(reason),
            quantity,
            user,
            committed: false,
            certain_at: None,
        }
    }

    /// A seat PostgreSQL holds.
    pub fn committed(quantity: Quantity, user: UserId) -> Self {
        Self {
            status: Status::Confirmed,
            reason: None,
            quantity,
            user,
            committed: true,
            certain_at: None,
        }
    }

    /// Confirmed in Redis, its commit not yet known: only PostgreSQL can
    /// tell whether the seat is held.
    pub fn awaits_commit(&self) -> bool {
        self.status == Status::Confirmed && !self.committed
    }

    /// A rejection that may not stand yet (see the type's doc).
    pub fn is_tentative(&self) -> bool {
        self.status == Status::Rejected && self.certain_at.is_some()
    }

    /// What a buyer is told: a confirmation not yet committed, or a
    /// tentative rejection, is still pending.
    pub fn public_status(&self) -> Status {
        if self.awaits_commit() || self.is_tentative() {
            Status::Pending
        } else {
            self.status
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seats(capacity: u32, confirmed: u32) -> SeatCounts {
        SeatCounts {
            capacity,
            confirmed,
        }
    }

    #[test]
    fn the_invariant_names_what_broke() {
        assert_eq!(seats(20, 20).check(0), Ok(()));
        assert_eq!(seats(20, 5).check(15), Ok(()));
        let over = seats(20, 21).check(0).unwrap_err();
        assert!(matches!(over, Breach::Oversold(_)));
        assert!(
            over.to_string()
                .contains("OVERSOLD: confirmed 21 > capacity 20")
        );
        let off = seats(20, 10).check(5).unwrap_err();
        assert!(matches!(off, Breach::Unbalanced { remaining: 5, .. }));
        assert!(off.to_string().contains("10 + remaining 5 ≠ capacity 20"));
        assert_eq!(seats(20, 23).oversold(), 3);
        assert_eq!(seats(20, 23).remaining(), 0);
    }

    #[test]
    fn with_holds_held_and_purchased_make_the_seats_taken() {
        let view = |held, purchased| EventView {
            event_id: EventId::parse("e").unwrap(),
            name: "e".into(),
            capacity: 20,
            remaining: 5,
            confirmed: 15,
            per_user_limit: PerUserLimit::DEFAULT,
            sold_out: false,
            opens_at: None,
            closes_at: None,
            hold_seconds: Some(60),
            held,
            purchased,
            released: 3,
        };
        assert_eq!(view(10, 5).invariant(), Ok(()));
        let off = view(10, 6).invariant().unwrap_err();
        assert!(
            off.to_string()
                .contains("held 10 + purchased 6 ≠ seats taken 15"),
            "{off}"
        );
    }

    #[test]
    fn the_window_is_half_open() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let e = Event {
            id: EventId::parse("e").unwrap(),
            name: "e".into(),
            seats: seats(1, 0),
            per_user_limit: PerUserLimit::DEFAULT,
            opens_at: Some(at("2026-01-01T10:00:00Z")),
            closes_at: Some(at("2026-01-01T11:00:00Z")),
            sale: 1,
            hold_seconds: None,
            purchased: 0,
            released: 0,
        };
        assert!(!e.is_open_at(at("2026-01-01T09:59:59Z")));
        assert!(e.is_open_at(at("2026-01-01T10:00:00Z")));
        assert!(!e.is_open_at(at("2026-01-01T11:00:00Z")));
        assert!(
            e.closed_message(at("2026-01-01T09:00:00Z"))
                .contains("opens at")
        );
        assert!(
            e.closed_message(at("2026-01-01T12:00:00Z"))
                .contains("closed at")
        );
    }

    #[test]
    fn a_confirmation_is_pending_until_committed() {
        let user = UserId::parse("u").unwrap();
        let made = Outcome {
            committed: false,
            ..Outcome::committed(Quantity::ONE, user.clone())
        };
        assert!(made.awaits_commit());
        assert_eq!(made.public_status(), Status::Pending);
        let held = Outcome::committed(Quantity::ONE, user.clone());
        assert!(!held.awaits_commit());
        assert_eq!(held.public_status(), Status::Confirmed);
        let marker = Outcome::pending(Quantity::ONE, user.clone());
        assert!(!marker.awaits_commit());
    }

    #[test]
    fn a_rejection_is_pending_until_certain() {
        let user = UserId::parse("u").unwrap();
        let certain = Outcome::rejected(Reason::SoldOut, Quantity::ONE, user);
        assert!(!certain.is_tentative());
        assert_eq!(certain.public_status(), Status::Rejected);
        let tentative = Outcome {
            certain_at: Some(20),
            ..certain
        };
        assert!(tentative.is_tentative());
        assert_eq!(tentative.public_status(), Status::Pending);
    }
}
