//! Counted once: the same Idempotency-Key, or the same queue message twice.

use crate::helpers::TestStack;
use flashgrid::queue::{Group, Queued};
use flashgrid_wire::{Accepted, EventId, Quantity, ReservationId, Status, UserId};
use redis::AsyncCommands;

/// Seats left according to Redis.
async fn redis_stock(stack: &TestStack, event: &str) -> i64 {
    let key = stack
        .namespace()
        .event_keys(&EventId::parse(event).unwrap())
        .stock;
    stack.redis().await.get(key).await.unwrap()
}

/// Reserves one seat for `user` and waits for its decision: the worker takes
/// messages in order, so everything queued before it has been processed.
async fn sentinel(stack: &TestStack, event: &str, user: &str) -> Status {
    let a: Accepted = stack.accepted(event, user, 1, None).await;
    stack.decided(&a).await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_key_sent_concurrently_is_one_reservation() {
    let stack = TestStack::spawn().await;
    stack.create_event("idem", 10).await;
    let futs = (0..8).map(|_| stack.reserve("idem", "alice", 2, Some("order-42")));
    let mut accepted = Vec::new();
    for r in futures::future::join_all(futs).await {
        let r = r.unwrap();
        assert_eq!(r.status(), 202);
        accepted.push(r.json::<Accepted>().await.unwrap());
    }
    let first = accepted[0].clone();
    assert!(
        accepted
            .iter()
            .all(|a| a.reservation_id == first.reservation_id),
        "one id"
    );
    assert_eq!(stack.decided(&first).await.status, Status::Confirmed);
    assert_eq!(
        sentinel(&stack, "idem", "sentinel").await,
        Status::Confirmed
    );
    // Eight copies processed: one row of two seats, plus the sentinel's.
    assert_eq!(stack.db_counts("idem").await, (2, 3, 3));
    assert_eq!(redis_stock(&stack, "idem").await, 7);

    // Another key of the same user is another purchase.
    let other: Accepted = stack.accepted("idem", "alice", 1, Some("order-43")).await;
    assert_ne!(other.reservation_id, first.reservation_id);
    assert_eq!(stack.decided(&other).await.status, Status::Confirmed);

    // Sell the rest, then retry the first purchase: its reservation comes
    // back (confirmed), not a misleading sold_out.
    let bob: Accepted = stack.accepted("idem", "bob", 4, None).await;
    assert_eq!(stack.decided(&bob).await.status, Status::Confirmed);
    let carol: Accepted = stack.accepted("idem", "carol", 2, None).await;
    assert_eq!(stack.decided(&carol).await.status, Status::Confirmed);
    crate::helpers::eventually(
        "the gateway to learn sold-out",
        std::time::Duration::from_secs(10),
        || async {
            let r = stack.reserve("idem", "dave", 1, None).await.ok()?;
            (r.status() == 409).then_some(())
        },
    )
    .await;
    let again = stack
        .reserve("idem", "alice", 2, Some("order-42"))
        .await
        .unwrap();
    assert_eq!(again.status(), 202);
    let again: Accepted = again.json().await.unwrap();
    assert_eq!(
        (again.reservation_id, again.status),
        (first.reservation_id, Status::Confirmed)
    );
    assert_eq!(stack.db_counts("idem").await, (5, 10, 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_message_delivered_twice_is_counted_once() {
    let stack = TestStack::spawn().await;
    stack.create_event("dup", 5).await;
    let items: Vec<Queued> = (0..3)
        .map(|i| Queued {
            id: ReservationId::random(),
            event: EventId::parse("dup").unwrap(),
            user: UserId::parse(&format!("u{i}")).unwrap(),
            qty: Quantity::ONE,
            at: chrono::Utc::now(),
            sale: 1,
        })
        .collect();
    let body = Group::encode(&items);
    stack.publish_raw(&body).await;
    stack.publish_raw(&body).await;
    assert_eq!(sentinel(&stack, "dup", "sentinel").await, Status::Confirmed);
    assert_eq!(stack.db_counts("dup").await, (4, 4, 4));
    assert_eq!(
        redis_stock(&stack, "dup").await,
        1,
        "the copy did not take seats again"
    );
    assert_eq!(stack.event("dup").await.remaining, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_message_is_dead_lettered_not_looped() {
    let stack = TestStack::spawn().await;
    stack.create_event("poison", 5).await;
    stack.publish_raw(b"not json").await;
    stack.publish_raw(br#"{"v":99,"items":[]}"#).await;
    // The worker goes on deciding what follows.
    assert_eq!(sentinel(&stack, "poison", "after").await, Status::Confirmed);
    let conn = flashgrid::queue::connect(crate::helpers::AMQP, "test")
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let dlq = stack.namespace().dead_letter_queue();
    crate::helpers::eventually(
        "both unreadable messages dead-lettered",
        std::time::Duration::from_secs(10),
        || async {
            let dead = ch
                .queue_declare(
                    dlq.as_str().into(),
                    lapin::options::QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    Default::default(),
                )
                .await
                .ok()?;
            (dead.message_count() == 2).then_some(())
        },
    )
    .await;
    assert_eq!(stack.queue_depth().await, 0, "nothing requeued in a loop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_sell_out_of_a_purchase_that_never_reached_the_queue_is_still_decided() {
    let stack = TestStack::spawn().await;
    stack.create_event("lostpub", 1).await;
    // The first attempt's publish failed after its pending marker was
    // written (what a 503 after a broker failure leaves behind).
    let (_, redis) = flashgrid::services::redis(&stack.services()).await.unwrap();
    let inv = flashgrid::inventory::Inventory::new(redis, stack.namespace());
    let event = EventId::parse("lostpub").unwrap();
    let user = UserId::parse("late").unwrap();
    let id = ReservationId::idempotent(&event, &user, "k-1");
    let pending = flashgrid_wire::sale::Outcome::pending(Quantity::ONE, user.clone());
    inv.mark_pending(std::iter::once((&event, 1, id, &pending)))
        .await
        .unwrap();
    // Someone else buys the only seat; the gateway learns sold-out.
    assert_eq!(
        sentinel(&stack, "lostpub", "winner").await,
        Status::Confirmed
    );
    crate::helpers::eventually(
        "sold out at the gateway",
        std::time::Duration::from_secs(10),
        || async {
            (stack
                .reserve("lostpub", "probe", 1, None)
                .await
                .ok()?
                .status()
                == 409)
                .then_some(())
        },
    )
    .await;
    // The retry is queued and decided, not left pending forever.
    let r = stack
        .reserve("lostpub", "late", 1, Some("k-1"))
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let a: Accepted = r.json().await.unwrap();
    assert_eq!(a.reservation_id, id);
    let v = stack.status(&a, 5000).await;
    assert_eq!(
        (v.status, v.reason),
        (Status::Rejected, Some(flashgrid_wire::Reason::SoldOut))
    );
}
