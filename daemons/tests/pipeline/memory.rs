//! Redis memory is bounded by the winners: confirmations stay with their
//! seats, pending markers and rejections expire (`FLASHGRID_OUTCOME_TTL`),
//! and a rebuild stages the winners in chunks. An expired rejection is
//! still answered, from PostgreSQL.

use crate::helpers::{TestStack, burst, eventually};
use flashgrid::db::{EventSnapshot, SnapshotRow};
use flashgrid::inventory::Inventory;
use flashgrid_wire::{EventId, Reason, ReservationId, Status};
use std::time::Duration;

/// The outcome keys of an event and the time to live of each.
async fn outcome_ttls(stack: &TestStack, event: &str) -> Vec<i64> {
    let mut conn = stack.redis().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(stack.keys(event).outcome_pattern())
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut ttls = Vec::new();
    for k in keys {
        ttls.push(
            redis::cmd("TTL")
                .arg(k)
                .query_async(&mut conn)
                .await
                .unwrap(),
        );
    }
    ttls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_expire_winners_stay_and_both_are_still_answered() {
    let stack = TestStack::empty().await;
    let ttl = Duration::from_secs(2);
    let mut g = stack.gateway_config();
    g.services.outcome_ttl = ttl;
    stack.start_gateway_with(g).await;
    stack.create_event("bounded", 3).await;
    // Queued while no worker runs, so the worker decides every one of them
    // (none is turned away at the door once sold out).
    let (accepted, _) = burst(&stack, "bounded", 40).await;
    assert_eq!(accepted.len(), 40);
    let mut w = stack.worker_config();
    w.services.outcome_ttl = ttl;
    stack.start_worker_with(w).await;
    let mut decided = Vec::new();
    for a in &accepted {
        decided.push(stack.decided(a).await);
    }
    let won = decided
        .iter()
        .filter(|v| v.status == Status::Confirmed)
        .count();
    assert_eq!(won, 3);

    let k = stack.keys("bounded");
    let mut conn = stack.redis().await;
    let (entries, won_ttl): (usize, i64) = redis::pipe()
        .hlen(&k.won)
        .ttl(&k.won)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        entries,
        3 + 1,
        "the won hash holds the winners and its sentinel"
    );
    assert_eq!(won_ttl, -1, "confirmations do not expire");
    let ttls = outcome_ttls(&stack, "bounded").await;
    assert_eq!(ttls.len(), 37, "one key per rejection: {ttls:?}");
    assert!(ttls.iter().all(|t| (1..=2).contains(t)), "{ttls:?}");

    eventually(
        "the rejections to expire",
        Duration::from_secs(20),
        || async {
            outcome_ttls(&stack, "bounded")
                .await
                .is_empty()
                .then_some(())
        },
    )
    .await;
    for (a, was) in accepted.iter().zip(&decided) {
        let now = stack.status(a, 0).await;
        assert_eq!((now.status, now.reason), (was.status, was.reason));
        if was.status == Status::Rejected {
            assert_eq!(was.reason, Some(Reason::SoldOut));
        }
    }
}

/// A rebuild of an event with more winners than one staging chunk: the
/// stock, the won hash and every user's count come back whole, and nothing
/// staged is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_of_many_winners_is_staged_and_swapped_whole() {
    let stack = TestStack::empty().await;
    let (_, redis) = flashgrid::services::redis(&stack.services()).await.unwrap();
    let inv = Inventory::new(redis, stack.namespace());
    let event = EventId::parse("many").unwrap();
    // 1,234 rows of 617 users, two seats each but one.
    let confirmed: Vec<SnapshotRow> = (0..1_234)
        .map(|i| SnapshotRow {
            id: ReservationId::random(),
            user: format!("u{}", i / 2),
            quantity: if i == 0 { 2 } else { 1 },
        })
        .collect();
    let snap = EventSnapshot {
        capacity: 2_000,
        sale: 1,
        epoch: 5,
        confirmed,
    };
    // A stale state to replace: whole, under an older epoch, with an
    // uncommitted confirmation a rebuild must not carry over.
    inv.reset(&event, 2_000, 4, 1).await.unwrap();
    let k = stack.keys("many");
    let mut conn = stack.redis().await;
    let _: () = redis::cmd("HSET")
        .arg(&k.won)
        .arg(ReservationId::random().to_string())
        .arg("C||3|ghost")
        .query_async(&mut conn)
        .await
        .unwrap();

    assert_eq!(
        inv.restock(&event, &snap).await.unwrap(),
        Some(2_000 - 1_235)
    );
    let (entries, first, ghost, sentinel): (usize, i64, Option<i64>, i32) = redis::pipe()
        .hlen(&k.won)
        .hget(&k.users, "u0")
        .hget(&k.users, "ghost")
        .hget(&k.users, "\u{1}")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(entries, 1_234 + 1);
    assert_eq!((first, ghost, sentinel), (3, None, 5));
    let (staged_won, staged_users) = k.staging(5);
    let left: usize = redis::cmd("EXISTS")
        .arg(&staged_won)
        .arg(&staged_users)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 0, "nothing staged is left behind");
    // Whole under this epoch: a second rebuild of the same snapshot is a
    // no-op.
    assert_eq!(inv.restock(&event, &snap).await.unwrap(), None);
}
