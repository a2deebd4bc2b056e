//! Where Redis forgot or is away, a buyer is told what PostgreSQL makes
//! certain, or `503` when nobody can tell yet — never a `404` for a
//! reservation that exists, a stale `pending` for a committed winner, or a
//! `sold_out` for a retry of a purchase that holds a seat.

use crate::helpers::{Proxy, TestStack, eventually};
use flashgrid_wire::{Accepted, EventId, Status};
use reqwest::StatusCode;
use std::time::Duration;

async fn outcomes_key(stack: &TestStack, event: &str) -> String {
    stack
        .namespace()
        .event_keys(&EventId::parse(event).unwrap())
        .outcomes
}

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

/// Redis's outcome of a committed winner reads `pending` (the outcomes
/// came back from an older copy, taken before the worker decided): the
/// status URL asks PostgreSQL before it answers pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_pending_marker_of_a_committed_winner_reads_confirmed() {
    let stack = TestStack::spawn().await;
    stack.create_event("stale", 10).await;
    let a = stack.accepted("stale", "winner", 1, None).await;
    assert_eq!(stack.decided(&a).await.status, Status::Confirmed);
    let _: () = redis::cmd("HSET")
        .arg(outcomes_key(&stack, "stale").await)
        .arg(a.reservation_id.0.to_string())
        .arg("p||1|winner")
        .query_async(&mut stack.redis().await)
        .await
        .unwrap();
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
    let gone: u32 = redis::cmd("DEL")
        .arg(outcomes_key(&stack, "kept").await)
        .query_async(&mut stack.redis().await)
        .await
        .unwrap();
    assert_eq!(gone, 1);

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
