//! Redis can be rebuilt: stock (or all of an event's state) vanishing from
//! Redis mid-sale is rebuilt from PostgreSQL without overselling or leaking.

use crate::helpers::{TestStack, burst, eventually};
use flashgrid_wire::{EventId, Status};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Deletes `keys` every few milliseconds until `stop`; returns how many
/// deletions removed something.
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

/// Sells `n` seats to `n` buyers and waits until PostgreSQL holds them:
/// the first part of a sale, before its Redis state is lost.
async fn sell_first(stack: &TestStack, event: &str, n: usize) {
    let (accepted, _) = burst(stack, event, n).await;
    assert_eq!(accepted.len(), n);
    for a in &accepted {
        assert_eq!(stack.decided(a).await.status, Status::Confirmed);
    }
    let n = n as i64;
    assert_eq!(stack.db_counts(event).await, (n, n, n as i32));
}

/// Deletes `keys` now; panics unless the first of them existed.
async fn delete(stack: &TestStack, keys: &[String]) {
    let gone: u32 = redis::cmd("DEL")
        .arg(keys)
        .query_async(&mut stack.redis().await)
        .await
        .unwrap();
    assert!(gone >= 1, "nothing to delete: the test proved nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_deleted_mid_sale_is_rebuilt_without_oversell() {
    let stack = TestStack::spawn().await;
    stack.create_event("rebuild", 50).await;
    let keys = stack
        .namespace()
        .event_keys(&EventId::parse("rebuild").unwrap());
    // Mid-sale by construction: 20 seats committed, 30 left, then the
    // stock vanishes; a rebuild that forgot the 20 would sell 50 more.
    sell_first(&stack, "rebuild", 20).await;
    delete(&stack, std::slice::from_ref(&keys.stock)).await;
    // And it keeps vanishing during the rest of the sale.
    let stop = Arc::new(AtomicBool::new(false));
    let v = vandal(&stack, vec![keys.stock.clone()], stop.clone()).await;

    let (accepted, _) = burst(&stack, "rebuild", 600).await;
    let decisions = futures::future::join_all(accepted.iter().map(|a| stack.decided(a))).await;
    stop.store(true, Ordering::Relaxed);
    let deletions = v.await.unwrap();

    let confirmed = decisions
        .iter()
        .filter(|d| d.status == Status::Confirmed)
        .count();
    assert_eq!(
        confirmed, 30,
        "exactly the seats left confirmed ({deletions} more deletions)"
    );
    assert_eq!(stack.db_counts("rebuild").await, (50, 50, 50));
    // Right because the rebuild was right, not because PostgreSQL's guard
    // rescued a wrong one.
    assert_eq!(
        stack.db_revoked("rebuild").await,
        0,
        "the guard had to revoke"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_event_state_lost_mid_sale_never_oversells() {
    let stack = TestStack::spawn().await;
    stack.create_event("amnesia", 40).await;
    let k = stack
        .namespace()
        .event_keys(&EventId::parse("amnesia").unwrap());
    let keys = vec![k.stock, k.users, k.won];
    sell_first(&stack, "amnesia", 15).await;
    delete(&stack, &keys).await;
    let stop = Arc::new(AtomicBool::new(false));
    let v = vandal(&stack, keys, stop.clone()).await;
    let (accepted, _) = burst(&stack, "amnesia", 500).await;
    crate::helpers::eventually(
        "the sale to be decided",
        Duration::from_secs(60),
        || async { (stack.db_counts("amnesia").await.2 == 40).then_some(()) },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    v.await.unwrap();
    assert!(accepted.len() >= 25);
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
    assert_eq!(
        stack.db_revoked("amnesia").await,
        0,
        "the guard had to revoke"
    );
}

/// Redis confirming more than the capacity (a wrong rebuild, a restored old
/// copy) is caught by PostgreSQL's guard: the extras are turned into
/// `sold_out` rejections, their buyers told so, and the revocations counted
/// where the fault matrix and an operator can see them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_confirmations_are_revoked_and_counted() {
    let stack = TestStack::spawn().await;
    stack.create_event("overconfirm", 5).await;
    // One sale first, so that the stock exists. Then, while no worker
    // runs, Redis is told there are 100 seats left and nine buyers queue;
    // a worker that has neither committed nor heard of a commit of the
    // event yet (so it knows no floor to catch it: see
    // `a_stock_above_what_postgresql_holds_is_rebuilt_before_it_decides`)
    // decides them in one batch and confirms all nine in Redis.
    let first: flashgrid_wire::Accepted = stack.accepted("overconfirm", "first", 1, None).await;
    assert_eq!(stack.decided(&first).await.status, Status::Confirmed);
    stack.stop("worker").await;
    set_stock(&stack, "overconfirm", 100).await;
    // In one message, so that one batch decides them all.
    let event = EventId::parse("overconfirm").unwrap();
    let items: Vec<flashgrid::queue::Queued> = (0..9)
        .map(|i| flashgrid::queue::Queued {
            id: flashgrid_wire::ReservationId::random(),
            event: event.clone(),
            user: flashgrid_wire::UserId::parse(&format!("late-{i}")).unwrap(),
            qty: flashgrid_wire::Quantity::ONE,
            at: chrono::Utc::now(),
            sale: 1,
        })
        .collect();
    stack
        .publish_raw(&flashgrid::queue::Group::encode(&items))
        .await;
    let queued: Vec<flashgrid_wire::Accepted> = items
        .iter()
        .map(|q| flashgrid_wire::Accepted {
            reservation_id: q.id,
            status: Status::Pending,
            status_url: flashgrid_wire::status_path(&event, &q.id),
        })
        .collect();
    stack.start_worker().await;
    let mut told = Vec::new();
    for a in &queued {
        told.push(stack.decided(a).await);
    }
    let confirmed = told
        .iter()
        .filter(|d| d.status == Status::Confirmed)
        .count();
    assert_eq!(confirmed, 4, "the capacity left, and no more");
    for d in told.iter().filter(|d| d.status != Status::Confirmed) {
        assert_eq!(
            (d.status, d.reason),
            (Status::Rejected, Some(flashgrid_wire::Reason::SoldOut))
        );
    }
    assert_eq!(stack.db_counts("overconfirm").await, (5, 5, 5));
    // The five PostgreSQL's guard refused; the worker then deleted the
    // stock, so that the state is rebuilt.
    assert_eq!(stack.db_revoked("overconfirm").await, 5);
    // The gateway's metrics say so once the worker reported.
    crate::helpers::eventually(
        "the revocations in /metrics",
        Duration::from_secs(10),
        || async {
            stack
                .metrics()
                .await
                .lines()
                .any(|l| l == "flashgrid_worker_revoked_total 5")
                .then_some(())
        },
    )
    .await;
}

/// Tells Redis the event has `left` seats left, whatever PostgreSQL holds.
async fn set_stock(stack: &TestStack, event: &str, left: i64) {
    let _: () = redis::cmd("SET")
        .arg(stack.keys(event).stock)
        .arg(left)
        .query_async(&mut stack.redis().await)
        .await
        .unwrap();
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
    assert!(stack.forget_outcomes("halfloss").await >= 1);
    let again = flashgrid::queue::Queued {
        id: a.reservation_id,
        event: EventId::parse("halfloss").unwrap(),
        user: flashgrid_wire::UserId::parse("x").unwrap(),
        qty: flashgrid_wire::Quantity::new(2).unwrap(),
        at: chrono::Utc::now(),
        sale: 1,
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

/// Redis comes back older than PostgreSQL with its state whole (a copy
/// restored from before, a lagging replica promoted): more seats left than
/// PostgreSQL allows. A worker that committed since, or heard another
/// worker's commit since (`Notice::Floor`), knows the floor, and rebuilds
/// the state before deciding anything in it: nothing is handed out twice,
/// nothing has to be revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stock_above_what_postgresql_holds_is_rebuilt_before_it_decides() {
    let stack = TestStack::spawn().await;
    stack.create_event("floor", 5).await;
    let first: flashgrid_wire::Accepted = stack.accepted("floor", "first", 1, None).await;
    assert_eq!(stack.decided(&first).await.status, Status::Confirmed);
    set_stock(&stack, "floor", 100).await;
    let mut confirmed = 0;
    for i in 0..9 {
        let r = stack
            .reserve("floor", &format!("late-{i}"), 1, None)
            .await
            .unwrap();
        if r.status().as_u16() == 202 {
            let a: flashgrid_wire::Accepted = r.json().await.unwrap();
            if stack.decided(&a).await.status == Status::Confirmed {
                confirmed += 1;
            }
        }
    }
    assert_eq!(confirmed, 4, "the capacity left, and no more");
    assert_eq!(stack.db_counts("floor").await, (5, 5, 5));
    assert_eq!(stack.db_revoked("floor").await, 0, "caught before deciding");
    assert_eq!(stock(&stack, "floor").await, Some(0));
}

/// The same older state after the sale sold out: no purchase comes to run
/// into it, and the worker rebuilds it by itself (its audit, once a
/// second), so Redis does not keep stale seats and entries for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_state_after_a_sell_out_is_rebuilt_without_a_purchase() {
    let stack = TestStack::spawn().await;
    stack.create_event("after", 5).await;
    sell_first(&stack, "after", 5).await;
    assert_eq!(stock(&stack, "after").await, Some(0));

    // A copy from before three of the sales comes back: three seats left
    // by Redis's count, none by PostgreSQL's.
    set_stock(&stack, "after", 3).await;
    eventually(
        "the worker rebuilds the stale state",
        Duration::from_secs(10),
        || async { (stock(&stack, "after").await == Some(0)).then_some(()) },
    )
    .await;
    assert_eq!(stack.db_counts("after").await, (5, 5, 5));
}
