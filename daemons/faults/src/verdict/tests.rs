//! One test per verdict rule: each feeds the rule a broken end state.

use super::*;
use crate::buyers::Attempts;
use flashgrid_wire::{PerUserLimit, Quantity, ReservationView, UserId};

/// What the status URL gives at the end when it answers what the buyer heard.
fn heard(j: &Journey) -> FinalRead {
    j.decided
        .as_ref()
        .map(|d| d.status)
        .ok_or_else(|| "pending after an 8 s long-poll".into())
}

fn event() -> EventId {
    EventId::parse("fx").unwrap()
}

/// `n` buyers; the first `confirmed` got a confirmed seat, the rest were
/// rejected sold out.
fn sale(n: usize, confirmed: usize) -> (Vec<Journey>, Vec<(ReservationId, String, i32)>) {
    let mut journeys = Vec::new();
    let mut rows = Vec::new();
    for i in 0..n {
        let user = UserId::parse(&format!("b{i}")).unwrap();
        let key = format!("k{i}");
        let id = ReservationId::idempotent(&event(), &user, &key);
        let status = if i < confirmed {
            rows.push((id, user.as_str().to_owned(), 1));
            Status::Confirmed
        } else {
            Status::Rejected
        };
        journeys.push(Journey {
            decided: Some(ReservationView {
                reservation_id: id,
                event_id: event(),
                user_id: user.clone(),
                quantity: Quantity::new(1).unwrap(),
                status,
                reason: None,
                expires_at: None,
                payment_ref: None,
            }),
            user,
            key,
            answer: Answer::Accepted,
            answers: vec![Answer::Accepted],
            ids: [id].into(),
            status_urls: Default::default(),
            tally: Attempts::default(),
        });
    }
    (journeys, rows)
}

fn view(confirmed: u32, capacity: u32) -> EventView {
    EventView {
        event_id: event(),
        name: "fx".into(),
        capacity,
        remaining: capacity - confirmed.min(capacity),
        confirmed,
        per_user_limit: PerUserLimit::new(4).unwrap(),
        sold_out: confirmed >= capacity,
        opens_at: None,
        closes_at: None,
        hold_seconds: None,
        held: 0,
        purchased: 0,
        released: 0,
    }
}

/// What a Redis that agrees with PostgreSQL holds after the sale.
fn cache_of(rows: &[(ReservationId, String, i32)], capacity: u32) -> Cache {
    let sold: i64 = rows.iter().map(|r| i64::from(r.2)).sum();
    Cache {
        stock: Some(i64::from(capacity) - sold),
        outcomes: rows
            .iter()
            .map(|r| (r.0, Some((Status::Confirmed, true))))
            .collect(),
        users: rows.iter().map(|r| (r.1.clone(), i64::from(r.2))).collect(),
        committed: rows
            .iter()
            .map(|r| (r.1.clone(), i64::from(r.2)))
            .chain([(String::new(), sold)])
            .collect(),
    }
}

fn judge_sale(
    journeys: &[Journey],
    rows: &[(ReservationId, String, i32)],
    counter: i64,
    view: &EventView,
) -> Verdicts {
    judge_with_cache(journeys, rows, counter, view, Some(&cache_of(rows, 3)))
}

fn judge_with_cache(
    journeys: &[Journey],
    rows: &[(ReservationId, String, i32)],
    counter: i64,
    view: &EventView,
    cache: Option<&Cache>,
) -> Verdicts {
    let statuses = journeys
        .iter()
        .filter_map(|j| Some((*j.ids.first()?, heard(j))))
        .collect();
    judge(&Facts {
        event: &event(),
        capacity: 3,
        per_user_limit: 1,
        journeys,
        rows,
        counter,
        revoked: 0,
        view: Some(view),
        statuses: &statuses,
        dead: &[],
        cache,
    })
    .0
}

#[test]
fn an_exact_sale_passes() {
    let (j, rows) = sale(10, 3);
    let v = judge_sale(&j, &rows, 3, &view(3, 3));
    assert!(v.passed(), "{v:?}");
    let statuses = j
        .iter()
        .map(|j| (*j.ids.first().unwrap(), heard(j)))
        .collect();
    let (v, why) = judge(&Facts {
        event: &event(),
        capacity: 3,
        per_user_limit: 1,
        journeys: &j,
        rows: &rows,
        counter: 3,
        revoked: 0,
        view: Some(&view(3, 3)),
        statuses: &statuses,
        dead: &[],
        cache: Some(&cache_of(&rows, 3)),
    });
    assert!(v.passed() && why.is_empty(), "{v:?} {why:?}");
}

#[test]
fn a_problem_is_explained_a_few_times_and_counted_every_time() {
    // Ten buyers never decided: all counted, three explained.
    let (mut j, rows) = sale(10, 3);
    for journey in &mut j {
        journey.decided = None;
    }
    let statuses = HashMap::new();
    let facts = |j: &[Journey], rows: &[(ReservationId, String, i32)], cache: &Cache| {
        let (v, why) = judge(&Facts {
            event: &event(),
            capacity: 3,
            per_user_limit: 1,
            journeys: j,
            rows,
            counter: rows.len() as i64,
            revoked: 0,
            view: Some(&view(rows.len() as u32, 3)),
            statuses: &statuses,
            dead: &[],
            cache: Some(cache),
        });
        let lines = |k: &str| why.iter().filter(|w| w.starts_with(k)).count();
        (
            v,
            lines("lost"),
            lines("drift"),
            lines("over_limit"),
            lines("cache"),
        )
    };
    let (v, lost, _, _, _) = facts(&j, &rows, &cache_of(&rows, 3));
    assert_eq!((v.lost, lost), (10, 3));

    // Ten buyers told rejected but holding a seat: drift explained five times.
    let (mut j, _) = sale(10, 0);
    let mut rows = Vec::new();
    for journey in &mut j {
        rows.push((
            journey.expected_id(&event()),
            journey.user.as_str().to_owned(),
            1,
        ));
    }
    let (v, _, drift, _, _) = facts(&j, &rows, &cache_of(&rows, 3));
    assert!(v.drift >= 10 && drift == 5, "{v:?} {drift}");
    // The first ones are explained, not the last.
    let (_, why) = judge(&Facts {
        event: &event(),
        capacity: 3,
        per_user_limit: 1,
        journeys: &j,
        rows: &rows,
        counter: 10,
        revoked: 0,
        view: Some(&view(10, 3)),
        statuses: &statuses,
        dead: &[],
        cache: Some(&cache_of(&rows, 3)),
    });
    assert!(
        why.iter().any(|w| w.starts_with("drift: b0 was told")),
        "{why:?}"
    );

    // Four buyers over the limit: explained three times.
    let (mut j, mut rows) = sale(4, 0);
    for i in 0..4 {
        again(&mut j, &mut rows, i, Status::Confirmed);
        again(&mut j, &mut rows, i, Status::Confirmed);
    }
    let (v, _, _, limit, _) = facts(&j, &rows, &cache_of(&rows, 3));
    assert_eq!((v.over_limit, limit), (4, 3));

    // Seven seats Redis does not know of: explained five times.
    let (j, rows) = sale(7, 7);
    let (v, _, _, _, cache) = facts(&j, &rows, &Cache::default());
    assert!(v.cache >= 7 && cache == 5, "{v:?} {cache}");
}

#[test]
fn verdicts_add_up_field_by_field() {
    let one = Verdicts {
        oversold: 1,
        revoked: 2,
        over_limit: 3,
        leaked: 4,
        lost: 5,
        unanswered: 6,
        flipped: 7,
        double: 8,
        drift: 9,
        cache: 10,
        dead: 11,
        errors: 12,
    };
    let mut sum = one;
    sum.add(&one);
    sum.add(&Verdicts::default());
    let doubled: Vec<u64> = one.pairs().iter().map(|(_, n)| 2 * n).collect();
    let got: Vec<u64> = sum.pairs().iter().map(|(_, n)| *n).collect();
    assert_eq!(got, doubled);
    let names: Vec<&str> = one.pairs().iter().map(|(k, _)| *k).collect();
    assert_eq!(
        names,
        [
            "oversold",
            "revoked",
            "over_limit",
            "leaked",
            "lost",
            "unanswered",
            "flipped",
            "double",
            "drift",
            "cache",
            "dead",
            "errors"
        ]
    );
    assert_eq!(
        one.pairs().map(|(_, n)| n),
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    );
}

#[test]
fn an_event_view_that_does_not_answer_is_drift() {
    let (j, rows) = sale(10, 3);
    let statuses = j
        .iter()
        .map(|j| (*j.ids.first().unwrap(), heard(j)))
        .collect();
    let (v, why) = judge(&Facts {
        event: &event(),
        capacity: 3,
        per_user_limit: 1,
        journeys: &j,
        rows: &rows,
        counter: 3,
        revoked: 0,
        view: None,
        statuses: &statuses,
        dead: &[],
        cache: Some(&cache_of(&rows, 3)),
    });
    assert_eq!(v.drift, 1);
    assert!(why.iter().any(|w| w.contains("did not answer")), "{why:?}");
}

#[test]
fn buyers_without_a_reservation_or_a_decision_are_not_drift() {
    // Told sold out and holding nothing: fine.
    let (mut j, rows) = sale(10, 3);
    j[9].ids.clear();
    j[9].decided = None;
    j[9].answer = Answer::SoldOut;
    assert!(judge_sale(&j, &rows, 3, &view(3, 3)).passed());
    // A 202 never decided but holding its seat: lost (counted there), not
    // drift.
    let (mut j, rows) = sale(10, 3);
    j[0].decided = None;
    let v = judge_sale(&j, &rows, 3, &view(3, 3));
    assert_eq!((v.lost, v.drift), (1, 0), "{v:?}");
}

#[test]
fn a_decision_for_another_event_is_lost() {
    let (mut j, rows) = sale(10, 3);
    j[4].decided.as_mut().unwrap().event_id = EventId::parse("elsewhere").unwrap();
    assert_eq!(judge_sale(&j, &rows, 3, &view(3, 3)).lost, 1);
}

#[test]
fn each_fault_is_its_own_verdict() {
    // Oversold: a fourth seat.
    let (j, rows) = sale(10, 4);
    let v = judge_sale(&j, &rows, 4, &view(4, 3));
    assert_eq!(v.oversold, 1);

    // Leaked: two seats never sold to ten buyers.
    let (j, rows) = sale(10, 1);
    assert_eq!(judge_sale(&j, &rows, 1, &view(1, 3)).leaked, 2);

    // Lost: a 202 never decided.
    let (mut j, rows) = sale(10, 3);
    j[7].decided = None;
    assert_eq!(judge_sale(&j, &rows, 3, &view(3, 3)).lost, 1);

    // Double: one key, two ids.
    let (mut j, rows) = sale(10, 3);
    j[8].ids.insert(ReservationId::random());
    assert_eq!(judge_sale(&j, &rows, 3, &view(3, 3)).double, 1);

    // Double: a row under an id no purchase was given.
    let (j, mut rows) = sale(10, 2);
    rows.push((ReservationId::random(), "b0".into(), 1));
    let v = judge_sale(&j, &rows, 3, &view(3, 3));
    assert_eq!(v.double, 1, "a stranger id");
    assert_eq!(v.over_limit, 1, "b0 holding two seats, the limit one");

    // Drift: the counter disagrees with the rows.
    let (j, rows) = sale(10, 3);
    assert_eq!(judge_sale(&j, &rows, 2, &view(3, 3)).drift, 1);

    // Drift: /events disagrees.
    assert_eq!(judge_sale(&j, &rows, 3, &view(2, 3)).drift, 1);

    // Drift: a buyer told rejected holds a seat (and its status URL, read
    // at the end, says rejected too).
    let (mut j, rows) = sale(10, 3);
    j[0].decided.as_mut().unwrap().status = Status::Rejected;
    assert_eq!(judge_sale(&j, &rows, 3, &view(3, 3)).drift, 2);

    // Drift: a buyer told confirmed has no row (the seat went to nobody:
    // two seats sold of three, so it leaked too).
    let (mut j, mut rows) = sale(10, 3);
    rows.remove(2);
    j[2].decided.as_mut().unwrap().status = Status::Confirmed;
    let v = judge_sale(&j, &rows, 2, &view(2, 3));
    assert_eq!(
        v.drift, 2,
        "told confirmed, and the status URL says so at the end"
    );

    // Unanswered: a decision the buyer heard is forgotten at the end.
    let (j, rows) = sale(10, 3);
    let mut statuses: HashMap<ReservationId, FinalRead> = j
        .iter()
        .map(|j| (*j.ids.first().unwrap(), heard(j)))
        .collect();
    statuses.insert(
        *j[5].ids.first().unwrap(),
        Err("still 503 Service Unavailable at the end of the reads' 30s".into()),
    );
    let facts = Facts {
        event: &event(),
        capacity: 3,
        per_user_limit: 1,
        journeys: &j,
        rows: &rows,
        counter: 3,
        revoked: 0,
        view: Some(&view(3, 3)),
        statuses: &statuses,
        dead: &[],
        cache: Some(&cache_of(&rows, 3)),
    };
    let (v, why) = judge(&facts);
    assert_eq!((v.unanswered, v.drift, v.flipped), (1, 0, 0));
    assert!(
        why.iter()
            .any(|w| w.contains("gives no decision but still 503")),
        "the report says what the URL gave: {why:?}"
    );

    // Drift: told sold out (never a 202) but holding a seat.
    let (mut j, rows) = sale(10, 3);
    j[1].ids.clear();
    j[1].decided = None;
    j[1].answer = Answer::SoldOut;
    assert_eq!(judge_sale(&j, &rows, 3, &view(3, 3)).drift, 1);
}

#[test]
fn a_refused_purchase_and_a_seat_nobody_was_told_of_fail() {
    let (mut j, rows) = sale(10, 3);
    j[9].ids.clear();
    j[9].decided = None;
    j[9].answer = Answer::Refused(400);
    assert_eq!(judge_sale(&j, &rows, 3, &view(3, 3)).errors, 1);

    // It gave up without an answer, yet its first attempt won a seat.
    let (mut j, rows) = sale(10, 3);
    j[2].ids.clear();
    j[2].decided = None;
    j[2].answer = Answer::GaveUp;
    assert_eq!(judge_sale(&j, &rows, 3, &view(3, 3)).drift, 1);
}

#[test]
fn dead_daemons_and_500s_fail() {
    let (j, rows) = sale(10, 3);
    let statuses = HashMap::new();
    let dead = vec!["worker exited".to_owned()];
    let mut j2 = j.clone();
    j2[0].tally.server_errors = 2;
    let (v, why) = judge(&Facts {
        event: &event(),
        capacity: 3,
        per_user_limit: 1,
        journeys: &j2,
        rows: &rows,
        counter: 3,
        revoked: 0,
        view: Some(&view(3, 3)),
        statuses: &statuses,
        dead: &dead,
        cache: Some(&cache_of(&rows, 3)),
    });
    assert_eq!((v.dead, v.errors), (1, 2));
    assert!(why.iter().any(|w| w.contains("worker exited")));
    assert!(why.iter().any(|w| w.starts_with("5xx: 2")), "{why:?}");
}

#[test]
fn copies_of_one_purchase_told_differently_are_double() {
    let (mut j, rows) = sale(10, 3);
    j[0].answers = vec![Answer::Accepted, Answer::SoldOut, Answer::Accepted];
    assert_eq!(judge_sale(&j, &rows, 3, &view(3, 3)).double, 1);
    j[0].answers = vec![Answer::Accepted, Answer::GaveUp];
    assert_eq!(
        judge_sale(&j, &rows, 3, &view(3, 3)).double,
        0,
        "no answer is no contradiction"
    );
}

#[test]
fn a_decision_of_another_reservation_or_buyer_is_lost() {
    let (mut j, rows) = sale(10, 3);
    j[4].decided.as_mut().unwrap().reservation_id = ReservationId::random();
    assert_eq!(judge_sale(&j, &rows, 3, &view(3, 3)).lost, 1);
    let (mut j, rows) = sale(10, 3);
    j[5].decided.as_mut().unwrap().user_id = UserId::parse("someone-else").unwrap();
    assert_eq!(judge_sale(&j, &rows, 3, &view(3, 3)).lost, 1);
    let (mut j, rows) = sale(10, 3);
    j[6].decided.as_mut().unwrap().quantity = Quantity::new(2).unwrap();
    assert_eq!(judge_sale(&j, &rows, 3, &view(3, 3)).lost, 1);
}

#[test]
fn a_row_of_the_wrong_size_or_owner_is_double() {
    let (j, mut rows) = sale(10, 3);
    rows[0].2 = 2;
    let v = judge_sale(&j, &rows, 4, &view(4, 3));
    assert!(v.double >= 1, "{v:?}");
    let (j, mut rows) = sale(10, 3);
    rows[1].1 = "b9".into();
    assert_eq!(judge_sale(&j, &rows, 3, &view(3, 3)).double, 1);
}

#[test]
fn a_sold_out_flag_that_disagrees_with_the_seats_is_drift() {
    let (j, rows) = sale(10, 3);
    let mut open = view(3, 3);
    open.sold_out = false;
    assert_eq!(judge_sale(&j, &rows, 3, &open).drift, 1);
    let (j, rows) = sale(2, 2);
    let mut closed = view(2, 3);
    closed.sold_out = true;
    assert_eq!(judge_sale(&j, &rows, 2, &closed).drift, 1);
}

#[test]
fn redis_that_disagrees_with_postgresql_is_cache() {
    let (j, rows) = sale(10, 3);
    let good = cache_of(&rows, 3);
    let cache = |f: &dyn Fn(&mut Cache)| {
        let mut c = good.clone();
        f(&mut c);
        judge_with_cache(&j, &rows, 3, &view(3, 3), Some(&c)).cache
    };
    assert_eq!(cache(&|_| {}), 0);
    assert_eq!(cache(&|c| c.stock = None), 0, "a missing stock is rebuilt");
    assert_eq!(
        cache(&|c| c.stock = Some(1)),
        1,
        "a seat left after sell-out"
    );
    let first = rows[0].0;
    assert_eq!(
        cache(&|c| {
            c.outcomes.remove(&first);
        }),
        1
    );
    assert_eq!(
        cache(&|c| {
            c.outcomes.insert(first, Some((Status::Confirmed, false)));
        }),
        1,
        "never settled"
    );
    assert_eq!(
        cache(&|c| {
            c.outcomes.insert(first, Some((Status::Rejected, false)));
        }),
        1
    );
    assert_eq!(
        cache(&|c| {
            c.users.insert("b0".into(), 2);
        }),
        1,
        "over-counted"
    );
    assert_eq!(
        cache(&|c| {
            c.users.insert("b7".into(), 1);
        }),
        1,
        "a seat nobody holds"
    );
    assert_eq!(
        cache(&|c| {
            c.users.remove("b1");
        }),
        1,
        "a limit lifted"
    );
    assert_eq!(
        cache(&|c| {
            c.committed.insert("b1".into(), 2);
        }),
        1,
        "a buyer's committed count above their rows: their next rejection would be certain too early"
    );
    assert_eq!(
        cache(&|c| {
            c.committed.insert(String::new(), 4);
        }),
        1,
        "more seats counted committed than sold"
    );
    assert_eq!(
        cache(&|c| {
            c.committed.remove("");
        }),
        1,
        "settled seats never counted"
    );
    assert_eq!(judge_with_cache(&j, &rows, 3, &view(3, 3), None).cache, 1);
}

#[test]
fn the_status_url_at_the_end_must_match_the_database() {
    let (j, rows) = sale(10, 3);
    let judge_end = |id: ReservationId, status: FinalRead| {
        let mut statuses: HashMap<ReservationId, FinalRead> = j
            .iter()
            .map(|j| (*j.ids.first().unwrap(), heard(j)))
            .collect();
        statuses.insert(id, status);
        judge(&Facts {
            event: &event(),
            capacity: 3,
            per_user_limit: 1,
            journeys: &j,
            rows: &rows,
            counter: 3,
            revoked: 0,
            view: Some(&view(3, 3)),
            statuses: &statuses,
            dead: &[],
            cache: Some(&cache_of(&rows, 3)),
        })
        .0
    };
    let end = |id, status| {
        let v = judge_end(id, status);
        (v.drift, v.flipped, v.unanswered)
    };
    let winner = *j[0].ids.first().unwrap();
    let loser = *j[9].ids.first().unwrap();
    assert_eq!(end(winner, Ok(Status::Confirmed)), (0, 0, 0));
    assert_eq!(
        end(winner, Ok(Status::Rejected)),
        (1, 1, 0),
        "a seat held, told confirmed, rejected at the end"
    );
    assert_eq!(end(loser, Ok(Status::Rejected)), (0, 0, 0));
    assert_eq!(
        end(loser, Ok(Status::Confirmed)),
        (1, 1, 0),
        "told rejected, confirmed at the end, no row"
    );
    assert_eq!(
        end(loser, Err("pending after an 8 s long-poll".into())),
        (0, 0, 1),
        "a heard rejection forgotten"
    );
}

#[test]
fn an_end_status_that_disagrees_is_explained() {
    let (j, rows) = sale(10, 3);
    let mut statuses: HashMap<ReservationId, FinalRead> = j
        .iter()
        .map(|j| (*j.ids.first().unwrap(), heard(j)))
        .collect();
    statuses.insert(*j[9].ids.first().unwrap(), Ok(Status::Confirmed));
    let (v, why) = judge(&Facts {
        event: &event(),
        capacity: 3,
        per_user_limit: 1,
        journeys: &j,
        rows: &rows,
        counter: 3,
        revoked: 0,
        view: Some(&view(3, 3)),
        statuses: &statuses,
        dead: &[],
        cache: Some(&cache_of(&rows, 3)),
    });
    assert_eq!(v.drift, 1);
    assert!(
        why.iter()
            .any(|w| w.starts_with("drift: at the end the status URL")),
        "{why:?}"
    );
}

#[test]
fn a_seat_the_guard_had_to_revoke_fails_the_sale() {
    let (j, rows) = sale(10, 3);
    let statuses = HashMap::new();
    let (v, why) = judge(&Facts {
        event: &event(),
        capacity: 3,
        per_user_limit: 1,
        journeys: &j,
        rows: &rows,
        counter: 3,
        revoked: 4,
        view: Some(&view(3, 3)),
        statuses: &statuses,
        dead: &[],
        cache: Some(&cache_of(&rows, 3)),
    });
    assert_eq!(v.revoked, 4);
    assert_eq!(v.oversold, 0, "PostgreSQL held");
    assert!(why.iter().any(|w| w.starts_with("revoked")));
}

/// Adds a second purchase (a new key) by the buyer of journey `of`, told
/// `status`, holding a row when confirmed.
fn again(
    j: &mut Vec<Journey>,
    rows: &mut Vec<(ReservationId, String, i32)>,
    of: usize,
    status: Status,
) {
    let mut second = j[of].clone();
    second.key = format!("{}-again", second.key);
    let id = ReservationId::idempotent(&event(), &second.user, &second.key);
    second.ids = [id].into();
    let d = second.decided.as_mut().unwrap();
    d.reservation_id = id;
    d.status = status;
    if status == Status::Confirmed {
        rows.push((id, second.user.as_str().to_owned(), 1));
    }
    j.push(second);
}

#[test]
fn a_buyer_over_the_limit_fails_and_one_held_to_it_passes() {
    // b0 bought again and was refused: the limit held.
    let (mut j, mut rows) = sale(10, 3);
    again(&mut j, &mut rows, 0, Status::Rejected);
    let v = judge_sale(&j, &rows, 3, &view(3, 3));
    assert!(v.passed(), "{v:?}");

    // b0 bought again and got a second seat of a one-seat limit.
    let (mut j, mut rows) = sale(10, 2);
    again(&mut j, &mut rows, 0, Status::Confirmed);
    let v = judge_sale(&j, &rows, 3, &view(3, 3));
    assert_eq!((v.over_limit, v.double), (1, 0), "{v:?}");
}

#[test]
fn demand_counts_buyers_only_up_to_their_limit() {
    // Two buyers, each trying twice, for three seats with a limit of one:
    // two seats sold is all they may buy, no leak.
    let (mut j, mut rows) = sale(2, 2);
    again(&mut j, &mut rows, 0, Status::Rejected);
    again(&mut j, &mut rows, 1, Status::Rejected);
    assert_eq!(judge_sale(&j, &rows, 2, &view(2, 3)).leaked, 0);
    // Three buyers may buy three: two sold leaks one.
    let (mut j, mut rows) = sale(3, 2);
    again(&mut j, &mut rows, 0, Status::Rejected);
    assert_eq!(judge_sale(&j, &rows, 2, &view(2, 3)).leaked, 1);
}

#[test]
fn a_status_url_refusing_a_buyer_is_an_error() {
    let (mut j, rows) = sale(10, 3);
    j[3].tally.status_refused = 2;
    assert_eq!(judge_sale(&j, &rows, 3, &view(3, 3)).errors, 2);
    // A 404 alone is counted, not judged: the end says whether it was lost.
    let (mut j, rows) = sale(10, 3);
    j[3].tally.status_not_found = 5;
    assert!(judge_sale(&j, &rows, 3, &view(3, 3)).passed());
}
