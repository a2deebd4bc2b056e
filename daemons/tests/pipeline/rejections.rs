//! A rejection its buyer may already have read is never decided again the
//! other way, even when Redis forgot it and the confirmation it was decided
//! against is itself fenced out and decided again. Driven step by step with
//! the workers' own `Decider`s, as `fence.rs` does: the moment of the wipe
//! between a batch's steps is the test's to choose.
//!
//! Found by the fault matrix (`redis-wipe-commit-held` ×2, 1 run in 10:
//! `flipped 1, drift 1`): a buyer's second purchase was rejected
//! `user_limit` against the first one's uncommitted confirmation, and read
//! `rejected`; Redis was wiped before its worker settled the batch; the
//! batch, retried, was decided again in the state rebuilt from PostgreSQL,
//! where the first purchase (held at a stalled proxy, then fenced) held
//! nothing: the second purchase was sold the seat.

use crate::helpers::TestStack;
use flashgrid::inventory::Inventory;
use flashgrid::queue::Queued;
use flashgrid::worker::{BatchError, Decider};
use flashgrid_wire::{Accepted, EventId, Quantity, Reason, Status, UserId};

const EVENT: &str = "told";

async fn decider(stack: &TestStack) -> Decider {
    let (_, redis) = flashgrid::services::redis(&stack.services()).await.unwrap();
    Decider::new(stack.pool.clone(), Inventory::new(redis, stack.namespace()))
}

/// A purchase accepted by the gateway (a receipt to read), and the queue
/// item a worker takes for it.
async fn purchase(stack: &TestStack, user: &str, key: &str) -> (Accepted, Queued) {
    let a = stack.accepted(EVENT, user, 1, Some(key)).await;
    let q = Queued {
        id: a.reservation_id,
        event: EventId::parse(EVENT).unwrap(),
        user: UserId::parse(user).unwrap(),
        qty: Quantity::ONE,
        at: chrono::Utc::now(),
        sale: 1,
    };
    (a, q)
}

/// Redis restarts without persistence: every key of the namespace goes.
async fn wipe(stack: &TestStack) {
    let mut conn = stack.redis().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(stack.namespace().key_pattern())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!keys.is_empty(), "the sale had a Redis state to lose");
    let _: i64 = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .unwrap();
}

/// The reservations PostgreSQL holds, sorted.
async fn rows(stack: &TestStack) -> Vec<uuid::Uuid> {
    sqlx::query_scalar(
        "SELECT reservation_id FROM reservations WHERE event_id = $1 ORDER BY reservation_id",
    )
    .bind(EVENT)
    .fetch_all(&stack.pool)
    .await
    .unwrap()
}

fn sorted(accepted: &[&Accepted]) -> Vec<uuid::Uuid> {
    let mut ids: Vec<uuid::Uuid> = accepted.iter().map(|a| a.reservation_id.0).collect();
    ids.sort();
    ids
}

/// A gateway (for the receipts) and an event of 10 seats, one a buyer.
async fn sale() -> TestStack {
    let stack = TestStack::empty().await;
    stack.start_gateway().await;
    stack
        .create_event_json(serde_json::json!({
            "event_id": EVENT, "name": EVENT, "capacity": 10, "per_user_limit": 1
        }))
        .await;
    stack
}

/// Worker 1 confirms a buyer's first purchase and its commit is held;
/// worker 0 rejects the buyer's second purchase for the limit (against that
/// uncommitted confirmation), commits the rest of its batch, and the buyer
/// reads the rejection. Redis is wiped before worker 0 settles: its batch
/// is retried, and is decided again in the state worker 0 rebuilds from
/// PostgreSQL, where the buyer holds nothing. The rejection must stand;
/// worker 1's held commit is fenced and decided again, and sells the first
/// purchase the seat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_read_before_a_wipe_stays_when_its_batch_is_retried() {
    let stack = sale().await;
    let (first_a, first) = purchase(&stack, "buyer", "k-1").await;
    let (second_a, second) = purchase(&stack, "buyer", "k-2").await;
    let (other_a, other) = purchase(&stack, "other", "k-3").await;
    let (held_worker, retrying_worker) = (decider(&stack).await, decider(&stack).await);

    let held = [first];
    let (mut held_outcomes, held_epochs) = held_worker.decide(&held).await.unwrap();
    assert_eq!(held_outcomes[0].status, Status::Confirmed);

    // Worker 0's first attempt: decided, committed, not settled.
    let batch = [second, other];
    let (mut outcomes, epochs) = retrying_worker.decide(&batch).await.unwrap();
    assert_eq!(
        (outcomes[0].status, outcomes[0].reason),
        (Status::Rejected, Some(Reason::UserLimit)),
        "the second purchase, against the first's confirmation"
    );
    assert_eq!(outcomes[1].status, Status::Confirmed);
    let report = retrying_worker
        .commit(&batch, &mut outcomes, &epochs)
        .await
        .unwrap();
    assert_eq!(report.written, 1);
    let told = stack.status(&second_a, 0).await;
    assert_eq!(
        (told.status, told.reason),
        (Status::Rejected, Some(Reason::UserLimit)),
        "the buyer reads the rejection"
    );

    wipe(&stack).await;
    // The retry of worker 0's batch (its settle failed: Redis went away).
    retrying_worker.process(&batch).await.unwrap();
    // Worker 1's commit arrives, late: fenced, decided again.
    let late = held_worker
        .commit(&held, &mut held_outcomes, &held_epochs)
        .await;
    assert!(matches!(late, Err(BatchError::Fenced(_))), "{late:?}");
    held_worker.process(&held).await.unwrap();

    let end = stack.status(&second_a, 0).await;
    assert_eq!(
        end.status,
        Status::Rejected,
        "the status URL of the second purchase said rejected to its buyer: {end:?}"
    );
    assert_eq!(
        rows(&stack).await,
        sorted(&[&first_a, &other_a]),
        "PostgreSQL holds the first purchase and the other buyer's"
    );
    assert_eq!(stack.decided(&first_a).await.status, Status::Confirmed);
    assert_eq!(stack.decided(&other_a).await.status, Status::Confirmed);
}

/// The same, with the rejection in the fenced batch: worker 1 rejects the
/// buyer's second purchase for the limit against worker 0's uncommitted
/// confirmation of the first (and confirms a third buyer's); the buyer
/// reads the rejection. Redis is wiped before
/// either commit lands; worker 0's commit fails, a third worker rebuilds the
/// state, worker 1's commit is fenced and its batch decided again first,
/// where the buyer holds nothing. The rejection must stand, and worker 0's
/// retry sells the first purchase the seat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_read_before_a_wipe_stays_when_its_batch_is_fenced() {
    let stack = sale().await;
    let (first_a, first) = purchase(&stack, "buyer", "k-1").await;
    let (second_a, second) = purchase(&stack, "buyer", "k-2").await;
    let (third_a, third) = purchase(&stack, "third", "k-4").await;
    let (other_a, other) = purchase(&stack, "other", "k-3").await;
    let (w0, w1, w2) = (
        decider(&stack).await,
        decider(&stack).await,
        decider(&stack).await,
    );

    let a = [first];
    let (outcomes, _) = w0.decide(&a).await.unwrap();
    assert_eq!(outcomes[0].status, Status::Confirmed);
    let fenced = [second, third];
    let (mut fenced_outcomes, fenced_epochs) = w1.decide(&fenced).await.unwrap();
    assert_eq!(fenced_outcomes[0].reason, Some(Reason::UserLimit));
    assert_eq!(fenced_outcomes[1].status, Status::Confirmed);
    let told = stack.status(&second_a, 0).await;
    assert_eq!(
        told.status,
        Status::Rejected,
        "the buyer reads the rejection"
    );

    wipe(&stack).await;
    // Another worker rebuilds and sells on (the epoch moves on).
    w2.process(&[other]).await.unwrap();
    let late = w1
        .commit(&fenced, &mut fenced_outcomes, &fenced_epochs)
        .await;
    assert!(matches!(late, Err(BatchError::Fenced(_))), "{late:?}");
    w1.process(&fenced).await.unwrap();
    // Worker 0's commit had failed: its batch is retried now.
    w0.process(&a).await.unwrap();

    let end = stack.status(&second_a, 0).await;
    assert_eq!(
        end.status,
        Status::Rejected,
        "the status URL of the second purchase said rejected to its buyer: {end:?}"
    );
    assert_eq!(rows(&stack).await, sorted(&[&first_a, &third_a, &other_a]));
    assert_eq!(stack.decided(&first_a).await.status, Status::Confirmed);
}
