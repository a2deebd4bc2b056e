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
    let keys = flashgrid_testkit::scan_keys(&mut conn, &stack.keys(event).outcome_pattern())
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
        3 + 3 + 4,
        "the won hash holds the winners, each buyer's committed count, its sentinel, the committed seats, the capacity and the sequence of its mark"
    );
    assert_eq!(won_ttl, -1, "confirmations do not expire");
    // One key per rejection, and each winner's pending marker (kept, so a
    // confirmation a rebuild drops still reads pending).
    let ttls = outcome_ttls(&stack, "bounded").await;
    assert_eq!(ttls.len(), 40, "{ttls:?}");
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
        released: Vec::new(),
        released_seats: 0,
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
    assert_eq!(entries, 1_234 + 617 + 3, "rows, buyers' counts, 3 fields");
    assert_eq!((first, ghost, sentinel), (3, None, 5));
    // What the committed rows add up to, which makes tentative rejections
    // certain (decide.lua): the rebuilt state's rows are all committed.
    let (seats, of_first, of_ghost, capacity): (i64, i64, Option<i64>, i64) = redis::pipe()
        .hget(&k.won, "\u{2}")
        .hget(&k.won, "\u{2}u0")
        .hget(&k.won, "\u{2}ghost")
        .hget(&k.won, "\u{3}")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        (seats, of_first, of_ghost, capacity),
        (1_235, 3, None, 2_000)
    );
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

fn snapshot(epoch: i32, rows: usize) -> EventSnapshot {
    EventSnapshot {
        capacity: 100,
        sale: 1,
        epoch,
        confirmed: (0..rows)
            .map(|i| SnapshotRow {
                id: ReservationId::random(),
                user: format!("u{i}"),
                quantity: 1,
            })
            .collect(),
        released: Vec::new(),
        released_seats: 0,
    }
}

/// A rebuild from an older snapshot, landing after a newer one whose
/// stock was since dropped (a revoke): it must not replace the newer
/// state, whose rows it does not hold; nor may a reset of an older epoch
/// wipe a state rebuilt after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_snapshot_or_reset_never_replaces_a_newer_state() {
    let stack = TestStack::empty().await;
    let (_, redis) = flashgrid::services::redis(&stack.services()).await.unwrap();
    let inv = Inventory::new(redis, stack.namespace());
    let event = EventId::parse("late").unwrap();
    let k = stack.keys("late");
    let mut conn = stack.redis().await;
    assert_eq!(
        inv.restock(&event, &snapshot(6, 10)).await.unwrap(),
        Some(90)
    );
    inv.drop_stock(&event).await.unwrap();
    assert_eq!(inv.restock(&event, &snapshot(5, 4)).await.unwrap(), None);
    let entries: usize = redis::cmd("HLEN")
        .arg(&k.won)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(entries, 10 + 10 + 3, "the newer state's winners are kept");

    assert_eq!(
        inv.restock(&event, &snapshot(7, 10)).await.unwrap(),
        Some(90)
    );
    inv.reset(&event, 100, 6, 1).await.unwrap();
    let (entries, stock): (usize, i64) = redis::pipe()
        .hlen(&k.won)
        .get(&k.stock)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        (entries, stock),
        (10 + 10 + 3, 90),
        "a late reset of epoch 6 changed nothing"
    );
}

/// A confirmation not yet committed when a rebuild replaces the state
/// (its commit will be fenced and it is decided again) still reads
/// pending meanwhile, not unknown: a keyed retry of it is queued, never
/// told sold_out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncommitted_confirmation_dropped_by_a_rebuild_still_reads_pending() {
    use flashgrid::queue::Queued;
    use flashgrid::worker::Decider;
    let stack = TestStack::empty().await;
    stack.start_gateway().await;
    stack.create_event("dropped", 5).await;
    let (_, redis) = flashgrid::services::redis(&stack.services()).await.unwrap();
    let inv = Inventory::new(redis, stack.namespace());
    let a = Decider::new(stack.pool.clone(), inv.clone());
    let item = |user: &str| Queued {
        id: ReservationId::random(),
        event: EventId::parse("dropped").unwrap(),
        user: flashgrid_wire::UserId::parse(user).unwrap(),
        qty: flashgrid_wire::Quantity::ONE,
        at: chrono::Utc::now(),
        sale: 1,
    };
    let first = [item("first")];
    let (outcomes, _) = a.decide(&first).await.unwrap();
    assert_eq!(outcomes[0].status, Status::Confirmed);
    // The stock dropped (a revoke elsewhere); the next decision rebuilds
    // the state from PostgreSQL, which does not hold `first`.
    inv.drop_stock(&EventId::parse("dropped").unwrap())
        .await
        .unwrap();
    let b = Decider::new(stack.pool.clone(), inv.clone());
    b.process(&[item("second")]).await.unwrap();
    let event = EventId::parse("dropped").unwrap();
    let now = inv.lookup(&event, 1, &first[0].id).await.unwrap();
    assert_eq!(
        now.outcome.map(|o| o.status),
        Some(Status::Pending),
        "dropped from the won hash, it must still read pending"
    );
}
