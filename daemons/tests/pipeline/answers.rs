//! Where Redis forgot or is away, a buyer is told what PostgreSQL makes
//! certain, or `503` when nobody can tell yet — never a `404` for a
//! reservation that exists, a stale `pending` for a committed winner, or a
//! `sold_out` for a retry of a purchase that holds a seat.

use crate::helpers::{Proxy, TestStack, eventually};
use flashgrid_wire::{Accepted, EventId, Status};
use reqwest::StatusCode;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_read_while_redis_is_away_is_503_not_404() {
    let stack = TestStack::empty().await;
    let redis = Proxy::start(6379).await;
    let mut cfg = stack.gateway_config();
    cfg.services.redis_url = format!("redis://127.0.0.1:{}", redis.port);
    stack.start_gateway_with(cfg).await;
    stack.start_worker().await;
    stack.create_event("away", 10).await;
    let sold = stack.accepted("away", "winner", 1, None).await;
    assert_eq!(stack.decided(&sold).await.status, Status::Confirmed);
    let queued = Accepted {
        reservation_id: flashgrid_wire::ReservationId::random(),
        status: Status::Pending,
        status_url: flashgrid_wire::status_path(
            &EventId::parse("away").unwrap(),
            &flashgrid_wire::ReservationId::random(),
        ),
    };

    redis.cut();
    // The winner is answered from PostgreSQL; a reservation Redis alone
    // could know of is "cannot tell yet", with a hint when to come back.
    assert_eq!(stack.status(&sold, 0).await.status, Status::Confirmed);
    let r = stack.get(&queued.status_url).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key("retry-after"));
    redis.restore();
    eventually("Redis back", Duration::from_secs(20), || async {
        (stack.get(&queued.status_url).await.status() == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
}

/// Redis's outcome of a committed winner reads `pending` (its state came
/// back from an older copy, taken before the worker decided: no
/// confirmation, the gateway's pending marker): the status URL asks
/// PostgreSQL before it answers pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_pending_marker_of_a_committed_winner_reads_confirmed() {
    let stack = TestStack::spawn().await;
    stack.create_event("stale", 10).await;
    let a = stack.accepted("stale", "winner", 1, None).await;
    assert_eq!(stack.decided(&a).await.status, Status::Confirmed);
    let k = stack.keys("stale");
    let mut older = redis::pipe();
    older
        .hdel(&k.won, a.reservation_id.0.to_string())
        .set(k.outcome(1, &a.reservation_id), "p||1|winner");
    let (dropped, ()): (u32, ()) = older.query_async(&mut stack.redis().await).await.unwrap();
    assert_eq!(dropped, 1, "the confirmation was in the won hash");
    assert_eq!(stack.status(&a, 0).await.status, Status::Confirmed);
    // Read as a long-poll: pending while it waits, confirmed at its end.
    let view = stack.status(&a, 300).await;
    assert_eq!(view.status, Status::Confirmed);
    let view = stack.status(&a, 0).await;
    assert_eq!(view.status, Status::Confirmed);
    assert_eq!(view.user_id.as_str(), "winner");
}

/// Sold out, then Redis loses the event's outcomes: the winner retrying
/// with its key is told its seat, not `409 sold_out`; a new buyer is
/// still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_winner_after_sell_out_and_redis_loss_keeps_its_seat() {
    let stack = TestStack::spawn().await;
    stack.create_event("kept", 1).await;
    let won = stack.accepted("kept", "winner", 1, Some("k-1")).await;
    assert_eq!(stack.decided(&won).await.status, Status::Confirmed);
    eventually(
        "sold out at the gateway",
        Duration::from_secs(10),
        || async {
            let r = stack.reserve("kept", "late", 1, None).await.ok()?;
            (r.status() == StatusCode::CONFLICT).then_some(())
        },
    )
    .await;
    assert!(stack.forget_outcomes("kept").await >= 1);

    let r = stack
        .reserve("kept", "winner", 1, Some("k-1"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let again: Accepted = r.json().await.unwrap();
    assert_eq!(again.reservation_id, won.reservation_id);
    assert_eq!(again.status, Status::Confirmed);

    let r = stack.reserve("kept", "late", 1, None).await.unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(stack.db_counts("kept").await, (1, 1, 1));
}

/// A status URL is a signed receipt: changed, moved to another event or
/// id, or made up, it is `404`; a bare reservation id still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_url_changed_by_hand_is_404_and_a_bare_id_still_answers() {
    let stack = TestStack::spawn().await;
    stack.create_event("signed", 10).await;
    stack.create_event("other", 10).await;
    let a = stack.accepted("signed", "buyer", 1, None).await;
    assert_eq!(stack.decided(&a).await.status, Status::Confirmed);
    let (id, token) = a
        .status_url
        .rsplit('/')
        .next()
        .unwrap()
        .split_once('.')
        .unwrap();
    assert_eq!(id, a.reservation_id.to_string());

    let mut tampered = token.as_bytes().to_vec();
    tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for url in [
        format!("/events/signed/reservations/{id}.{tampered}"),
        format!("/events/other/reservations/{id}.{token}"),
        format!(
            "/events/signed/reservations/{}.{token}",
            flashgrid_wire::ReservationId::random()
        ),
        format!("/events/signed/reservations/{id}."),
    ] {
        let r = stack.get(&url).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{url}");
    }
    let bare = stack
        .get(&format!("/events/signed/reservations/{id}"))
        .await;
    assert_eq!(bare.status(), StatusCode::OK);
}

/// Redis loses everything while a purchase waits in the queue (no worker
/// runs): its receipt reads `pending`, not `404`; once a worker runs, it is
/// decided.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_purchase_whose_marker_redis_lost_reads_pending_then_decided() {
    let stack = TestStack::empty().await;
    stack.start_gateway().await;
    stack.create_event("queued", 10).await;
    let a = stack.accepted("queued", "buyer", 2, None).await;
    let gone: u32 = redis::cmd("DEL")
        .arg(stack.keys("queued").outcome(1, &a.reservation_id))
        .query_async(&mut stack.redis().await)
        .await
        .unwrap();
    assert_eq!(gone, 1, "the pending marker was there");
    let view = stack.status(&a, 0).await;
    assert_eq!(
        (view.status, view.user_id.as_str(), view.quantity.get()),
        (Status::Pending, "buyer", 2)
    );
    stack.start_worker().await;
    assert_eq!(stack.decided(&a).await.status, Status::Confirmed);
}

/// After sell-out, Redis loses the event's outcomes: a rejected buyer
/// reads the same rejection again, derived from PostgreSQL (the event is
/// full; the buyer at their limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_redis_lost_is_read_again_from_postgresql() {
    let stack = TestStack::spawn().await;
    stack
        .create_event_json(serde_json::json!({
            "event_id": "full", "name": "full", "capacity": 2, "per_user_limit": 1
        }))
        .await;
    let first = stack.accepted("full", "one", 1, None).await;
    assert_eq!(stack.decided(&first).await.status, Status::Confirmed);
    let again = stack.accepted("full", "one", 1, None).await;
    let again_before = stack.decided(&again).await;
    assert_eq!(again_before.reason, Some(flashgrid_wire::Reason::UserLimit));
    // Three buyers for the last seat, queued while no worker runs (the
    // gateway has not heard of a sell-out): the worker decides them.
    stack.stop("worker").await;
    let stack = &stack;
    let rest = futures::future::join_all(
        ["two", "three", "four"].map(|u| async move { stack.reserve("full", u, 1, None).await }),
    )
    .await;
    stack.start_worker().await;
    let mut decided = Vec::new();
    for r in rest {
        let r = r.unwrap();
        if r.status() == StatusCode::ACCEPTED {
            let a: Accepted = r.json().await.unwrap();
            let v = stack.decided(&a).await;
            decided.push((a, v));
        }
    }
    let rejected: Vec<_> = decided
        .iter()
        .filter(|(_, v)| v.reason == Some(flashgrid_wire::Reason::SoldOut))
        .collect();
    assert!(
        !rejected.is_empty(),
        "no sold_out decided by the worker: {decided:?}"
    );

    // The won hash, the user_limit rejection's key and the sold_outs'.
    let gone = stack.forget_outcomes("full").await;
    assert!(gone >= 2 + rejected.len(), "{gone} keys");
    let mut reads = vec![(&again, &again_before)];
    reads.extend(rejected.iter().map(|(a, v)| (a, v)));
    for (a, was) in reads {
        let now = stack.status(a, 0).await;
        assert_eq!((now.status, now.reason), (was.status, was.reason));
    }
    assert_eq!(stack.status(&first, 0).await.status, Status::Confirmed);
}

/// A restored older copy brings back the pending marker of a reservation
/// whose rejection was decided (and acked) since: nothing will decide it
/// again, so the status URL's last read derives the rejection from
/// PostgreSQL and records it, rather than reading pending for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_pending_marker_of_a_decided_rejection_is_derived_and_recorded() {
    let stack = TestStack::spawn().await;
    stack
        .create_event_json(serde_json::json!({
            "event_id": "restored", "name": "r", "capacity": 5, "per_user_limit": 1
        }))
        .await;
    let won = stack.accepted("restored", "buyer", 1, None).await;
    assert_eq!(stack.decided(&won).await.status, Status::Confirmed);
    let lost = stack.accepted("restored", "buyer", 1, None).await;
    let was = stack.decided(&lost).await;
    assert_eq!(was.reason, Some(flashgrid_wire::Reason::UserLimit));

    let key = stack.keys("restored").outcome(1, &lost.reservation_id);
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("p||1|buyer")
        .query_async(&mut stack.redis().await)
        .await
        .unwrap();
    let now = stack.status(&lost, 0).await;
    assert_eq!((now.status, now.reason), (was.status, was.reason));
    let recorded: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut stack.redis().await)
        .await
        .unwrap();
    assert_eq!(recorded, "r|user_limit|1|buyer");
}
