//! How an [`Outcome`] is written in Redis: `<s>|<reason>|<qty>|<user>`, the
//! format the Lua scripts read and write too.
//!
//! `s` is `p` (pending marker), `C` (confirmed in Redis, not yet committed
//! to PostgreSQL), `c` (confirmed and committed), `r` (rejected) or `R<n>`
//! (rejected tentatively: certain once the committed count its reason
//! counts reaches `n`, see `decide.lua`).

use flashgrid_wire::sale::Outcome;
use flashgrid_wire::{Quantity, Reason, Status, UserId};

pub fn encode(o: &Outcome) -> String {
    let s = match o.status {
        Status::Pending => 'p',
        Status::Confirmed if o.committed => 'c',
        Status::Confirmed => 'C',
        // Where a won seat's hold stands is PostgreSQL's to say: Redis
        // records it won and committed.
        Status::Held | Status::Purchased | Status::Expired | Status::Cancelled => 'c',
        Status::Rejected if o.certain_at.is_some() => 'R',
        Status::Rejected => 'r',
    };
    let at = o.certain_at.map(|n| n.to_string()).unwrap_or_default();
    let reason = o.reason.map(Reason::as_str).unwrap_or("");
    format!("{s}{at}|{reason}|{}|{}", o.quantity, o.user)
}

/// A committed confirmation as PostgreSQL's row holds it (a rebuild writes
/// these without checking the row's values again).
pub fn committed(quantity: i16, user: &str) -> String {
    format!("c||{quantity}|{user}")
}

/// `None` for anything FlashGrid did not write.
pub fn decode(raw: &str) -> Option<Outcome> {
    let mut parts = raw.splitn(4, '|');
    let (status, committed, certain_at) = match parts.next()? {
        "p" => (Status::Pending, false, None),
        "C" => (Status::Confirmed, false, None),
        "c" => (Status::Confirmed, true, None),
        "r" => (Status::Rejected, false, None),
        s => (
            Status::Rejected,
            false,
            Some(s.strip_prefix('R')?.parse().ok()?),
        ),
    };
    let reason = match parts.next()? {
        "" => None,
        r => Some(Reason::parse(r)?),
    };
    let quantity = Quantity::new(parts.next()?.parse().ok()?).ok()?;
    let user = UserId::parse(parts.next()?).ok()?;
    Some(Outcome {
        status,
        reason,
        quantity,
        user,
        committed,
        certain_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip() {
        let user = UserId::parse("a|b c").unwrap();
        for o in [
            Outcome::pending(Quantity::ONE, user.clone()),
            Outcome::committed(Quantity::new(3).unwrap(), user.clone()),
            Outcome {
                committed: false,
                ..Outcome::committed(Quantity::new(2).unwrap(), user.clone())
            },
            Outcome::rejected(Reason::UserLimit, Quantity::new(10).unwrap(), user.clone()),
            Outcome {
                certain_at: Some(0),
                ..Outcome::rejected(Reason::SoldOut, Quantity::ONE, user.clone())
            },
            Outcome {
                certain_at: Some(300),
                ..Outcome::rejected(Reason::UserLimit, Quantity::ONE, user.clone())
            },
        ] {
            assert_eq!(decode(&encode(&o)), Some(o));
        }
        let uncommitted = decode("C||1|u").unwrap();
        assert_eq!(uncommitted.status, Status::Confirmed);
        assert_eq!(
            uncommitted.public_status(),
            Status::Pending,
            "not committed yet"
        );
        assert_eq!(decode("c||1|u").unwrap().public_status(), Status::Confirmed);
        let o = Outcome::committed(Quantity::new(3).unwrap(), user.clone());
        assert_eq!(committed(3, "a|b c"), encode(&o));
        assert_eq!(decode("x||1|u"), None);
        assert_eq!(
            decode("R|sold_out|1|u"),
            None,
            "a tentative rejection says when"
        );
        assert_eq!(decode("R-1|sold_out|1|u"), None);
        assert_eq!(decode("R7|sold_out|1|u").unwrap().certain_at, Some(7));
        assert_eq!(decode("c||0|u"), None);
        assert_eq!(decode("r|bogus|1|u"), None);
    }
}
