//! The counts a sale keeps in Redis (`decide.lua`, `settle.lua`): each
//! user's seats, the seats left and the committed seats move by what was
//! sold and by nothing else — not by a purchase refused for its user's
//! limit (its seats are taken first and given back; none are taken when
//! the quantity alone is over it), not by an id settled twice in one
//! call. Driven with the worker's own `Decider`.

use crate::helpers::{TestStack, purchase};
use flashgrid::queue::Queued;
use flashgrid_wire::{Quantity, Reason, Status};
use redis::AsyncCommands;

fn of(event: &str, user: &str, qty: i64) -> Queued {
    Queued {
        qty: Quantity::new(qty).unwrap(),
        ..purchase(event, user)
    }
}

/// A user's seats in the users hash (a user never seen holds none).
async fn users_seats(stack: &TestStack, event: &str, user: &str) -> i64 {
    let mut redis = stack.redis().await;
    let held: Option<i64> = redis.hget(stack.keys(event).users, user).await.unwrap();
    held.unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_over_its_users_limit_changes_no_count() {
    let stack = TestStack::empty().await;
    stack.start_gateway().await;
    stack
        .create_event_json(serde_json::json!({
            "event_id": "limits", "name": "limits", "capacity": 10, "per_user_limit": 2
        }))
        .await;
    let a = stack.decider().await;
    let batch = [
        of("limits", "x", 2),
        // Over x's limit with seats left: taken, then given back.
        of("limits", "x", 1),
        // Over the limit alone, a user never seen.
        of("limits", "z", 3),
        of("limits", "y", 1),
    ];
    let (outcomes, _) = a.decide(&batch).await.unwrap();
    let seen: Vec<_> = outcomes.iter().map(|o| (o.status, o.reason)).collect();
    assert_eq!(
        seen,
        [
            (Status::Confirmed, None),
            (Status::Rejected, Some(Reason::UserLimit)),
            (Status::Rejected, Some(Reason::UserLimit)),
            (Status::Confirmed, None),
        ]
    );
    assert_eq!(users_seats(&stack, "limits", "x").await, 2);
    let mut redis = stack.redis().await;
    let z_entry: bool = redis
        .hexists(stack.keys("limits").users, "z")
        .await
        .unwrap();
    assert!(!z_entry, "no users entry for a buyer who never held a seat");
    assert_eq!(users_seats(&stack, "limits", "y").await, 1);
    let left: i64 = redis.get(stack.keys("limits").stock).await.unwrap();
    assert_eq!(left, 7, "10 seats, 3 sold");

    // x's limit still holds: one more is refused, y's second is sold.
    let (outcomes, _) = a
        .decide(&[of("limits", "x", 1), of("limits", "y", 1)])
        .await
        .unwrap();
    assert_eq!(outcomes[0].reason, Some(Reason::UserLimit));
    assert_eq!(outcomes[1].status, Status::Confirmed);
    assert_eq!(users_seats(&stack, "limits", "x").await, 2);
    assert_eq!(users_seats(&stack, "limits", "y").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_settled_twice_in_one_call_is_counted_once() {
    let stack = TestStack::empty().await;
    stack.start_gateway().await;
    stack.create_event("twice-settled", 5).await;
    let a = stack.decider().await;
    let sold = [of("twice-settled", "x", 2)];
    let (mut outcomes, epochs) = a.decide(&sold).await.unwrap();
    a.commit(&sold, &mut outcomes, &epochs).await.unwrap();
    let twice = [sold[0].clone(), sold[0].clone()];
    a.settle(&twice, &[outcomes[0].clone(), outcomes[0].clone()])
        .await
        .unwrap();
    let k = stack.keys("twice-settled");
    let mut redis = stack.redis().await;
    let entry: String = redis.hget(&k.won, sold[0].id.0.to_string()).await.unwrap();
    assert!(entry.starts_with('c'), "settled: {entry}");
    let committed: Option<i64> = redis.hget(&k.won, "\u{2}").await.unwrap();
    let of_x: Option<i64> = redis.hget(&k.won, "\u{2}x").await.unwrap();
    assert_eq!((committed, of_x), (Some(2), Some(2)), "counted once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_decided_twice_in_one_call_is_sold_once() {
    let stack = TestStack::empty().await;
    stack.start_gateway().await;
    stack
        .create_event_json(serde_json::json!({
            "event_id": "twice-decided", "name": "twice", "capacity": 3, "per_user_limit": 4
        }))
        .await;
    let a = stack.decider().await;
    let x = of("twice-decided", "x", 2);
    let y = of("twice-decided", "x", 1);
    // x twice (a redelivery in the same batch), and a second purchase of
    // the same user: one call reads every entry before it writes any, and
    // must still see what it wrote for x's first meeting.
    let batch = [x.clone(), x.clone(), y.clone()];
    let (mut outcomes, epochs) = a.decide(&batch).await.unwrap();
    let seen: Vec<_> = outcomes.iter().map(|o| o.status).collect();
    assert_eq!(
        seen,
        [Status::Confirmed, Status::Confirmed, Status::Confirmed],
        "x once, the same decision twice; then y: {outcomes:?}"
    );
    let mut redis = stack.redis().await;
    let k = stack.keys("twice-decided");
    let left: i64 = redis.get(&k.stock).await.unwrap();
    assert_eq!(left, 0, "3 seats, x's 2 sold once and y's 1");
    assert_eq!(users_seats(&stack, "twice-decided", "x").await, 3);

    // Both of x's purchases settled in one call: the user's count is their sum.
    a.commit(&batch, &mut outcomes, &epochs).await.unwrap();
    a.settle(&batch, &outcomes).await.unwrap();
    let committed: Option<i64> = redis.hget(&k.won, "\u{2}").await.unwrap();
    let of_x: Option<i64> = redis.hget(&k.won, "\u{2}x").await.unwrap();
    assert_eq!((committed, of_x), (Some(3), Some(3)));
    for r in [&x, &y] {
        let entry: String = redis.hget(&k.won, r.id.0.to_string()).await.unwrap();
        assert!(entry.starts_with('c'), "settled: {entry}");
    }
}
