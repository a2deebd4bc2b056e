//! The core promise: a flash crowd against a small stock sells exactly the
//! stock, decides every accepted request, and writes only the winners.

use crate::helpers::{TestStack, burst};
use flashgrid_wire::{Reason, Status};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_buyers_for_twenty_seats_sell_exactly_twenty() {
    let stack = TestStack::spawn().await;
    stack.create_event("drop", 20).await;

    let (accepted, others) = burst(&stack, "drop", 5_000).await;
    // Everything not accepted was refused because the sale was over.
    assert!(
        others.keys().all(|s| *s == 409),
        "unexpected statuses besides 202/409: {others:?}"
    );
    assert!(accepted.len() >= 20, "only {} accepted", accepted.len());

    let decisions = futures::future::join_all(accepted.iter().map(|a| stack.decided(a))).await;
    let confirmed = decisions
        .iter()
        .filter(|d| d.status == Status::Confirmed)
        .count();
    let rejected_sold_out = decisions
        .iter()
        .filter(|d| d.status == Status::Rejected && d.reason == Some(Reason::SoldOut))
        .count();
    assert_eq!(confirmed, 20, "confirmed");
    assert_eq!(
        confirmed + rejected_sold_out,
        accepted.len(),
        "every 202 decided, the losers sold_out"
    );

    assert_eq!(
        stack.db_counts("drop").await,
        (20, 20, 20),
        "rows, quantity, counter"
    );
    let view = stack.event("drop").await;
    assert_eq!(
        (view.remaining, view.confirmed, view.sold_out),
        (0, 20, true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_limit_holds_under_concurrency() {
    let stack = TestStack::spawn().await;
    stack
        .create_event_json(serde_json::json!({"event_id": "lim", "name": "lim", "capacity": 100, "per_user_limit": 3}))
        .await;
    let futs = (0..30).map(|_| stack.reserve("lim", "greedy", 1, None));
    let mut accepted = Vec::new();
    for r in futures::future::join_all(futs).await {
        let r = r.unwrap();
        assert_eq!(r.status(), 202);
        accepted.push(r.json().await.unwrap());
    }
    let decisions = futures::future::join_all(accepted.iter().map(|a| stack.decided(a))).await;
    let confirmed = decisions
        .iter()
        .filter(|d| d.status == Status::Confirmed)
        .count();
    let limited = decisions
        .iter()
        .filter(|d| d.reason == Some(Reason::UserLimit))
        .count();
    assert_eq!((confirmed, limited), (3, 27));
    assert_eq!(stack.db_counts("lim").await, (3, 3, 3));
    // Quantity counts, not requests: 2 more seats would exceed 3 for another user too.
    let a = stack.accepted("lim", "pair", 2, None).await;
    let b = stack.accepted("lim", "pair", 2, None).await;
    let (a, b) = (stack.decided(&a).await, stack.decided(&b).await);
    let mut statuses = [a.status, b.status].map(|s| s == Status::Confirmed);
    statuses.sort();
    assert_eq!(
        statuses,
        [false, true],
        "one of the two pairs fits under the limit of 3"
    );
}
