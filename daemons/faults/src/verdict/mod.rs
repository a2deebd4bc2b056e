//! The verdicts of one scenario, judged from what the buyers saw, what the
//! API answers at the end, what PostgreSQL holds and what Redis caches of
//! it — all read once the queue drained. Pure logic, so every rule has a
//! unit test.

use super::buyers::{Answer, Journey};
use flashgrid_wire::sale::SeatCounts;
use flashgrid_wire::{EventId, EventView, ReservationId, Status};
use std::collections::{HashMap, HashSet};

/// Everything the verdicts are judged on.
#[derive(Debug)]
pub struct Facts<'a> {
    pub event: &'a EventId,
    pub capacity: u32,
    /// The event's per-user limit, in seats.
    pub per_user_limit: u32,
    pub journeys: &'a [Journey],
    /// PostgreSQL's rows for the event: id, user, quantity.
    pub rows: &'a [(ReservationId, String, i32)],
    /// PostgreSQL's `events.confirmed` counter.
    pub counter: i64,
    /// PostgreSQL's `events.revoked`: confirmations Redis made that the
    /// capacity guard refused.
    pub revoked: i64,
    /// `GET /events/{id}` at the end (`None`: it did not answer 200).
    pub view: Option<&'a EventView>,
    /// The status URL of every accepted id, read again at the end.
    pub statuses: &'a HashMap<ReservationId, FinalRead>,
    /// Daemons the fault killed or broke that were not serving at the end.
    pub dead: &'a [String],
    /// Redis's state of the event at the end (`None`: it could not be read,
    /// which is itself a verdict).
    pub cache: Option<&'a Cache>,
}

/// A status URL read at the end: its decision, or what it gave instead
/// (pending, an error, no answer).
pub type FinalRead = Result<Status, String>;

/// What Redis holds of one event, read at the end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cache {
    /// Seats left; `None` when the key is missing (it is rebuilt on the next
    /// decision, so a missing stock is no disagreement).
    pub stock: Option<i64>,
    /// Each reservation's recorded status, and whether its confirmation is
    /// known committed (`None`: the record is unreadable).
    pub outcomes: HashMap<ReservationId, Option<(Status, bool)>>,
    /// Each user's confirmed quantity.
    pub users: HashMap<String, i64>,
    /// The committed counts tentative rejections are made certain by: the
    /// event's committed seats under `""`, each buyer's under its id.
    pub committed: HashMap<String, i64>,
}

/// Counts per verdict: 0 everywhere is a pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verdicts {
    /// Seats confirmed beyond the capacity.
    pub oversold: u64,
    /// Confirmations Redis made beyond the capacity, refused by PostgreSQL's
    /// guard: the sale held, but only because the guard rescued it.
    pub revoked: u64,
    /// Buyers holding more seats than the per-user limit.
    pub over_limit: u64,
    /// Seats never sold although buyers kept coming.
    pub leaked: u64,
    /// `202`s never decided.
    pub lost: u64,
    /// `202`s whose status URL, read again at the end (long-polled), gives
    /// no decision.
    pub unanswered: u64,
    /// Status URLs that give at the end another decision than the one
    /// their buyer first read.
    pub flipped: u64,
    /// Purchases with two reservation ids, or two rows.
    pub double: u64,
    /// Places where the API and the database disagree.
    pub drift: u64,
    /// Places where Redis disagrees with PostgreSQL once the sale is over.
    pub cache: u64,
    /// Daemons that did not recover by themselves.
    pub dead: u64,
    /// 5xx answers other than 503, and purchases refused with a 4xx other
    /// than 409 sold out and 429 (never allowed here).
    pub errors: u64,
}

impl Verdicts {
    pub fn passed(&self) -> bool {
        *self == Verdicts::default()
    }

    /// `("oversold", n)` pairs, in the order the issue lists them.
    pub fn pairs(&self) -> [(&'static str, u64); 12] {
        [
            ("oversold", self.oversold),
            ("revoked", self.revoked),
            ("over_limit", self.over_limit),
            ("leaked", self.leaked),
            ("lost", self.lost),
            ("unanswered", self.unanswered),
            ("flipped", self.flipped),
            ("double", self.double),
            ("drift", self.drift),
            ("cache", self.cache),
            ("dead", self.dead),
            ("errors", self.errors),
        ]
    }

    pub fn add(&mut self, o: &Verdicts) {
        self.oversold += o.oversold;
        self.revoked += o.revoked;
        self.over_limit += o.over_limit;
        self.leaked += o.leaked;
        self.lost += o.lost;
        self.unanswered += o.unanswered;
        self.flipped += o.flipped;
        self.double += o.double;
        self.drift += o.drift;
        self.cache += o.cache;
        self.dead += o.dead;
        self.errors += o.errors;
    }
}

/// The verdicts, and a line for each problem found (for the failure message).
pub fn judge(f: &Facts<'_>) -> (Verdicts, Vec<String>) {
    let mut v = Verdicts::default();
    let mut why = Vec::new();
    let sold: i64 = f.rows.iter().map(|r| i64::from(r.2)).sum();
    let capacity = i64::from(f.capacity);

    // Invariant 1, by the rows and by the counter, whichever says more.
    let seats = SeatCounts {
        capacity: f.capacity,
        confirmed: u32::try_from(sold.max(f.counter).max(0)).unwrap_or(u32::MAX),
    };
    if seats.oversold() > 0 {
        v.oversold = u64::from(seats.oversold());
        why.push(format!(
            "oversold: {sold} seats in rows, counter {}, capacity {capacity}",
            f.counter
        ));
    }

    if f.revoked > 0 {
        v.revoked = f.revoked as u64;
        why.push(format!(
            "revoked: PostgreSQL's guard refused {} confirmations Redis had made",
            f.revoked
        ));
    }

    // Each purchase wants one seat: the sale must sell out when the buyers
    // allowed to buy outnumber the seats.
    let mut tries: HashMap<&str, i64> = HashMap::new();
    for j in f.journeys {
        *tries.entry(j.user.as_str()).or_default() += 1;
    }
    let demand: i64 = tries
        .values()
        .map(|&n| n.min(i64::from(f.per_user_limit)))
        .sum();
    if demand >= capacity && sold < capacity {
        v.leaked = (capacity - sold) as u64;
        why.push(format!(
            "leaked: {sold} of {capacity} seats sold to {} buyers allowed {demand}",
            tries.len()
        ));
    }

    for j in f.journeys {
        // A decision counts only if it is this purchase's: its id, its
        // buyer, its one seat.
        let decided = j.decided.as_ref().filter(|d| {
            j.ids.contains(&d.reservation_id)
                && d.event_id == *f.event
                && d.user_id == j.user
                && d.quantity.get() == 1
        });
        if !j.ids.is_empty() && decided.is_none() {
            v.lost += 1;
            if v.lost <= 3 {
                match &j.decided {
                    None => why.push(format!("lost: {} ({:?}) never decided", j.user, j.ids)),
                    Some(d) => why.push(format!(
                        "lost: {} ({:?}) was answered with another reservation's decision: {d:?}",
                        j.user, j.ids
                    )),
                }
            }
        }
        if j.ids.len() > 1 {
            v.double += 1;
            why.push(format!("double: key {} got ids {:?}", j.key, j.ids));
        }
        // Copies of one purchase (same key) must be told the same: a 202 to
        // one and a 409 to another is a broken idempotency.
        let accepted = j.answers.contains(&Answer::Accepted);
        if accepted
            && j.answers
                .iter()
                .any(|a| matches!(a, Answer::SoldOut | Answer::Closed))
        {
            v.double += 1;
            why.push(format!(
                "double: the copies of key {} were told {:?}",
                j.key, j.answers
            ));
        }
    }

    let expected: HashMap<ReservationId, &Journey> = f
        .journeys
        .iter()
        .map(|j| (j.expected_id(f.event), j))
        .collect();
    let mut held: HashMap<&str, i64> = HashMap::new();
    for (id, user, quantity) in f.rows {
        match expected.get(id) {
            None => {
                v.double += 1;
                why.push(format!("double: row {id} is no purchase's id"));
            }
            Some(j) if j.user.as_str() != user => {
                v.double += 1;
                why.push(format!(
                    "double: row {id} is {}'s purchase but held by {user}",
                    j.user
                ));
            }
            Some(_) => {}
        }
        if *quantity != 1 {
            v.double += 1;
            why.push(format!(
                "double: row {id} holds {quantity} seats of a one-seat purchase"
            ));
        }
        *held.entry(user.as_str()).or_default() += i64::from(*quantity);
    }
    for (user, seats) in held {
        if seats > i64::from(f.per_user_limit) {
            v.over_limit += 1;
            if v.over_limit <= 3 {
                why.push(format!(
                    "over_limit: {user} holds {seats} seats, the limit is {}",
                    f.per_user_limit
                ));
            }
        }
    }

    // The database's counter, its rows and the API must tell one story.
    if f.counter != sold {
        v.drift += 1;
        why.push(format!(
            "drift: events.confirmed {} but rows hold {sold}",
            f.counter
        ));
    }
    match f.view {
        Some(view)
            if i64::from(view.confirmed) == sold
                && i64::from(view.remaining) == capacity - sold.min(capacity)
                && view.sold_out == (view.remaining == 0) => {}
        Some(view) => {
            v.drift += 1;
            why.push(format!(
                "drift: /events says confirmed {} remaining {} sold_out {}, the database {sold}",
                view.confirmed, view.remaining, view.sold_out
            ));
        }
        None => {
            v.drift += 1;
            why.push("drift: /events/{id} did not answer".into());
        }
    }
    let in_db: HashSet<ReservationId> = f.rows.iter().map(|r| r.0).collect();
    for j in f.journeys {
        let holds = in_db.contains(&j.expected_id(f.event));
        let told = j.decided.as_ref().map(|d| d.status);
        let disagree = match told {
            Some(s) => (s == Status::Confirmed) != holds,
            // Never given a reservation (told sold out, or no answer at
            // all) but holding a seat.
            None => j.ids.is_empty() && holds,
        };
        if disagree {
            v.drift += 1;
            if v.drift <= 5 {
                why.push(format!(
                    "drift: {} was told {told:?} / {:?}, the database {}",
                    j.user,
                    j.answer,
                    if holds {
                        "holds its seat"
                    } else {
                        "has no seat"
                    }
                ));
            }
        }
    }
    // Read again at the end, a status URL must give a decision (invariant
    // 3), the one its buyer first read (invariant 4), and agree with the
    // database.
    let heard: HashMap<ReservationId, Status> = f
        .journeys
        .iter()
        .filter_map(|j| j.decided.as_ref().map(|d| (d.reservation_id, d.status)))
        .collect();
    for (id, status) in f.statuses {
        let s = match status {
            Ok(s) => s,
            Err(gave) => {
                v.unanswered += 1;
                if v.unanswered <= 5 {
                    why.push(format!(
                        "unanswered: at the end the status URL of {id} gives no decision but {gave} (its buyer heard {:?})",
                        heard.get(id)
                    ));
                }
                continue;
            }
        };
        if let Some(h) = heard.get(id)
            && h != s
        {
            v.flipped += 1;
            if v.flipped <= 5 {
                why.push(format!(
                    "flipped: the status URL of {id} said {h:?} to its buyer, {s:?} at the end"
                ));
            }
        }
        if (*s == Status::Confirmed) != in_db.contains(id) {
            v.drift += 1;
            if v.drift <= 5 {
                why.push(format!(
                    "drift: at the end the status URL of {id} says {s:?}, the database {}",
                    if in_db.contains(id) {
                        "holds it"
                    } else {
                        "has no row"
                    }
                ));
            }
        }
    }

    judge_cache(f, sold, &mut v, &mut why);

    v.dead = f.dead.len() as u64;
    for d in f.dead {
        why.push(format!("dead: {d}"));
    }
    v.errors = f.journeys.iter().map(|j| j.tally.server_errors).sum();
    if v.errors > 0 {
        why.push(format!("5xx: {} answers other than 503", v.errors));
    }
    let refused_reads: u64 = f.journeys.iter().map(|j| j.tally.status_refused).sum();
    if refused_reads > 0 {
        v.errors += refused_reads;
        why.push(format!(
            "4xx: {refused_reads} status reads answered a 4xx other than 404, or an unreadable 200"
        ));
    }
    // A well-formed purchase of an open sale has no business being refused.
    let refused: Vec<Answer> = f
        .journeys
        .iter()
        .map(|j| j.answer)
        .filter(|a| matches!(a, Answer::Refused(_) | Answer::Closed))
        .collect();
    if !refused.is_empty() {
        v.errors += refused.len() as u64;
        why.push(format!(
            "4xx: {} purchases refused ({:?}…)",
            refused.len(),
            refused[0]
        ));
    }
    (v, why)
}

/// Redis is a cache of PostgreSQL: once the sale is over its stock, its
/// outcomes of the seats sold and its per-user counts must say what the rows
/// say.
fn judge_cache(f: &Facts<'_>, sold: i64, v: &mut Verdicts, why: &mut Vec<String>) {
    let Some(cache) = f.cache else {
        v.cache += 1;
        why.push("cache: Redis could not be read at the end".into());
        return;
    };
    let left = (i64::from(f.capacity) - sold).max(0);
    if let Some(stock) = cache.stock
        && stock != left
    {
        v.cache += 1;
        why.push(format!(
            "cache: Redis says {stock} seats left, PostgreSQL {left}"
        ));
    }
    let mut held: HashMap<&str, i64> = HashMap::new();
    for (id, user, quantity) in f.rows {
        *held.entry(user.as_str()).or_default() += i64::from(*quantity);
        match cache.outcomes.get(id) {
            Some(Some((Status::Confirmed, true))) => {}
            other => {
                v.cache += 1;
                if v.cache <= 5 {
                    why.push(format!(
                        "cache: seat {id} is in PostgreSQL but Redis records {other:?}"
                    ));
                }
            }
        }
    }
    let mut users: HashSet<&str> = held.keys().copied().collect();
    users.extend(cache.users.keys().map(String::as_str));
    users.extend(
        cache
            .committed
            .keys()
            .map(String::as_str)
            .filter(|u| !u.is_empty()),
    );
    for user in users {
        let rows = held.get(user).copied().unwrap_or(0);
        let counted = cache.users.get(user).copied().unwrap_or(0);
        let committed = cache.committed.get(user).copied().unwrap_or(0);
        if rows != counted || rows != committed {
            v.cache += 1;
            if v.cache <= 5 {
                why.push(format!(
                    "cache: Redis counts {counted} seats for {user} ({committed} committed), PostgreSQL {rows}"
                ));
            }
        }
    }
    let committed = cache.committed.get("").copied().unwrap_or(0);
    if committed != sold {
        v.cache += 1;
        if v.cache <= 5 {
            why.push(format!(
                "cache: Redis counts {committed} seats committed, PostgreSQL {sold}"
            ));
        }
    }
}

#[cfg(test)]
mod tests;
