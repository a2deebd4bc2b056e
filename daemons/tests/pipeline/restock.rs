//! Redis can be rebuilt: stock (or all of an event's state) vanishing from
//! Redis mid-sale is rebuilt from PostgreSQL without overselling or leaking.

use crate::helpers::{TestStack, burst};
use flashgrid_wire::{EventId, Status};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Deletes `keys` every few milliseconds until `stop`.
async fn vandal(
    stack: &TestStack,
    keys: Vec<String>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<u32> {
    let mut conn = stack.redis().await;
    tokio::spawn(async move {
        let mut deletions = 0;
        while !stop.load(Ordering::Relaxed) {
            let n: u32 = redis::cmd("DEL")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .unwrap();
            deletions += n.min(1);
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        deletions
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_deleted_mid_sale_is_rebuilt_without_oversell() {
    let stack = TestStack::spawn().await;
    stack.create_event("rebuild", 50).await;
    let keys = stack
        .namespace()
        .event_keys(&EventId::parse("rebuild").unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let v = vandal(&stack, vec![keys.stock.clone()], stop.clone()).await;

    let (accepted, _) = burst(&stack, "rebuild", 600).await;
    let decisions = futures::future::join_all(accepted.iter().map(|a| stack.decided(a))).await;
    stop.store(true, Ordering::Relaxed);
    let deletions = v.await.unwrap();
    assert!(
        deletions > 0,
        "the stock was never deleted: the test proved nothing"
    );

    let confirmed = decisions
        .iter()
        .filter(|d| d.status == Status::Confirmed)
        .count();
    assert_eq!(
        confirmed, 50,
        "exactly the capacity confirmed ({deletions} deletions)"
    );
    assert_eq!(stack.db_counts("rebuild").await, (50, 50, 50));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_event_state_lost_mid_sale_never_oversells() {
    let stack = TestStack::spawn().await;
    stack.create_event("amnesia", 40).await;
    let k = stack
        .namespace()
        .event_keys(&EventId::parse("amnesia").unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let v = vandal(&stack, vec![k.stock, k.users, k.outcomes], stop.clone()).await;
    let (accepted, _) = burst(&stack, "amnesia", 500).await;
    stop.store(true, Ordering::Relaxed);
    assert!(v.await.unwrap() > 0);
    assert!(accepted.len() >= 40);
    // Outcomes of rejections may be gone with Redis; the database is the
    // judge: once the queue drained it holds exactly the capacity.
    crate::helpers::eventually(
        "the sale to settle at capacity",
        Duration::from_secs(60),
        || async {
            let c = stack.db_counts("amnesia").await;
            assert!(c.1 <= 40 && c.2 <= 40, "oversold: {c:?}");
            (c == (40, 40, 40) && stack.queue_depth().await == 0).then_some(())
        },
    )
    .await;
}

async fn stock(stack: &TestStack, event: &str) -> Option<i64> {
    use redis::AsyncCommands;
    let k = stack
        .namespace()
        .event_keys(&EventId::parse(event).unwrap());
    stack.redis().await.get(k.stock).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_lost_while_the_stock_survives_do_not_count_a_redelivery_twice() {
    let stack = TestStack::spawn().await;
    stack.create_event("halfloss", 10).await;
    let a: flashgrid_wire::Accepted = stack.accepted("halfloss", "x", 2, None).await;
    assert_eq!(stack.decided(&a).await.status, Status::Confirmed);
    assert_eq!(stock(&stack, "halfloss").await, Some(8));

    // Redis loses the outcomes (an eviction, say) but keeps the stock, and
    // the same reservation arrives again (a redelivery).
    let k = stack
        .namespace()
        .event_keys(&EventId::parse("halfloss").unwrap());
    let _: () = redis::cmd("DEL")
        .arg(&k.outcomes)
        .query_async(&mut stack.redis().await)
        .await
        .unwrap();
    let again = flashgrid::queue::Queued {
        id: a.reservation_id,
        event: EventId::parse("halfloss").unwrap(),
        user: flashgrid_wire::UserId::parse("x").unwrap(),
        qty: flashgrid_wire::Quantity::new(2).unwrap(),
        at: chrono::Utc::now(),
    };
    stack
        .publish_raw(&flashgrid::queue::Group::encode(&[again]))
        .await;
    // A later purchase proves the redelivery was processed first.
    let b: flashgrid_wire::Accepted = stack.accepted("halfloss", "y", 1, None).await;
    assert_eq!(stack.decided(&b).await.status, Status::Confirmed);
    assert_eq!(
        stock(&stack, "halfloss").await,
        Some(7),
        "the redelivered seats were taken twice"
    );
    assert_eq!(stack.db_counts("halfloss").await, (2, 3, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_users_hash_does_not_lift_the_per_user_limit() {
    let stack = TestStack::spawn().await;
    stack
        .create_event_json(serde_json::json!({"event_id": "limits", "name": "l", "capacity": 10, "per_user_limit": 2}))
        .await;
    let a: flashgrid_wire::Accepted = stack.accepted("limits", "greedy", 2, None).await;
    assert_eq!(stack.decided(&a).await.status, Status::Confirmed);
    let k = stack
        .namespace()
        .event_keys(&EventId::parse("limits").unwrap());
    let _: () = redis::cmd("DEL")
        .arg(&k.users)
        .query_async(&mut stack.redis().await)
        .await
        .unwrap();
    let b: flashgrid_wire::Accepted = stack.accepted("limits", "greedy", 1, None).await;
    let d = stack.decided(&b).await;
    assert_eq!(
        (d.status, d.reason),
        (Status::Rejected, Some(flashgrid_wire::Reason::UserLimit))
    );
}
