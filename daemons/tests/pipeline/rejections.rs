//! A rejection its buyer can read is never decided again the other way,
//! even when Redis forgets it and the confirmation it was decided against
//! is itself fenced out and decided again: a rejection resting on a
//! confirmation not committed yet is tentative and reads `pending` until
//! that confirmation is committed (`decide.lua`). Driven step by step with
//! the workers' own `Decider`s, as `fence.rs` does: the moment of the wipe
//! between a batch's steps is the test's to choose.
//!
//! Found by the fault matrix (`redis-wipe-commit-held` ×2, 1 run in 10:
//! `flipped 1, drift 1`): a buyer's second purchase was rejected
//! `user_limit` against the first one's uncommitted confirmation, and read
//! `rejected`; Redis was wiped before its worker settled the batch; the
//! batch, retried, was decided again in the state rebuilt from PostgreSQL,
//! where the first purchase (held at a stalled proxy, then fenced) held
//! nothing: the second purchase was sold the seat. Keeping a worker's own
//! rejections for its retries closed that path only; a redelivery to
//! another worker, or a decide whose reply was lost, still flipped.

use crate::helpers::{TestStack, eventually};
use flashgrid::queue::Queued;
use flashgrid::worker::{BatchError, BatchReport, Decider};
use flashgrid_wire::{Accepted, EventId, Quantity, Reason, ReservationId, Status, UserId};
use std::time::Duration;

const EVENT: &str = "told";

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
    let keys = flashgrid_testkit::scan_keys(&mut conn, &stack.namespace().key_pattern())
        .await
        .unwrap();
    assert!(!keys.is_empty(), "the sale had a Redis state to lose");
    let _: i64 = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .unwrap();
}

/// What a restart loses of this sale, named rather than scanned: the
/// event's state and the outcomes of `ids`. For a wipe that must land
/// within a worker's patience (500 ms), which a SCAN of the shared
/// keyspace, as long as other runs left it, can outlast.
async fn wipe_sale(stack: &TestStack, ids: &[ReservationId]) {
    let k = stack.keys(EVENT);
    let mut keys = vec![k.stock.clone(), k.users.clone(), k.won.clone()];
    keys.extend(ids.iter().map(|id| k.outcome(1, id)));
    let mut conn = stack.redis().await;
    let gone: usize = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(gone >= 3, "the sale had a Redis state to lose: {gone} keys");
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

/// The outcome Redis records of a reservation, as stored.
async fn recorded(stack: &TestStack, id: ReservationId) -> Option<String> {
    let mut conn = stack.redis().await;
    redis::cmd("GET")
        .arg(stack.keys(EVENT).outcome(1, &id))
        .query_async(&mut conn)
        .await
        .unwrap()
}

/// `worker` processes `item` (of `accepted`) in the background; returns
/// its task once it has rejected the purchase tentatively, with the record.
async fn tentatively_rejected(
    stack: &TestStack,
    worker: &Decider,
    item: Queued,
    accepted: &Accepted,
) -> (
    tokio::task::JoinHandle<Result<BatchReport, BatchError>>,
    String,
) {
    let task = tokio::spawn({
        let worker = worker.clone();
        async move { worker.process(&[item]).await }
    });
    let record = eventually(
        "the purchase to be rejected tentatively",
        Duration::from_secs(10),
        || async {
            recorded(stack, accepted.reservation_id)
                .await
                .filter(|o| o.starts_with('R'))
        },
    )
    .await;
    (task, record)
}

/// Worker 1 confirms a buyer's first purchase; its commit is held. Worker
/// 0 rejects the buyer's second purchase for the limit against that
/// uncommitted confirmation and commits the rest of its batch: the buyer
/// reads `pending`, not the rejection (the seat it rests on may yet go).
/// Redis is wiped before worker 0 settles: its batch is retried in the
/// state rebuilt from PostgreSQL, where the buyer holds nothing, and sells
/// the second purchase the seat; worker 1's held commit is fenced, and
/// decided again, rejects the first purchase for the limit — certain now.
/// Nobody read a decision that changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_resting_on_an_uncommitted_seat_reads_pending_and_may_be_sold_after_a_wipe() {
    let stack = sale().await;
    let (first_a, first) = purchase(&stack, "buyer", "k-1").await;
    let (second_a, second) = purchase(&stack, "buyer", "k-2").await;
    let (other_a, other) = purchase(&stack, "other", "k-3").await;
    let (held_worker, retrying_worker) = (stack.decider().await, stack.decider().await);

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
    assert!(outcomes[0].is_tentative(), "{:?}", outcomes[0]);
    assert_eq!(outcomes[1].status, Status::Confirmed);
    let report = retrying_worker
        .commit(&batch, &mut outcomes, &epochs)
        .await
        .unwrap();
    assert_eq!(report.written, 1);
    let told = stack.status(&second_a, 0).await;
    assert_eq!(
        told.status,
        Status::Pending,
        "the rejection rests on a seat not committed: {told:?}"
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

    assert_eq!(
        rows(&stack).await,
        sorted(&[&second_a, &other_a]),
        "PostgreSQL holds the second purchase and the other buyer's"
    );
    assert_eq!(stack.decided(&second_a).await.status, Status::Confirmed);
    let first_end = stack.decided(&first_a).await;
    assert_eq!(
        (first_end.status, first_end.reason),
        (Status::Rejected, Some(Reason::UserLimit))
    );
    assert_eq!(stack.decided(&other_a).await.status, Status::Confirmed);
}

/// A rejection certain when it was decided (the seat it counts committed)
/// is read at once and stands through a wipe and a redelivery of its
/// message to another worker: decided again in the state rebuilt from
/// PostgreSQL, it is the same rejection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certain_rejection_stands_through_a_wipe_and_a_redelivery() {
    let stack = sale().await;
    let (first_a, first) = purchase(&stack, "buyer", "k-1").await;
    let (second_a, second) = purchase(&stack, "buyer", "k-2").await;
    let (w0, w1) = (stack.decider().await, stack.decider().await);
    w0.process(&[first]).await.unwrap();
    let (outcomes, _) = w0.decide(std::slice::from_ref(&second)).await.unwrap();
    assert_eq!(outcomes[0].reason, Some(Reason::UserLimit));
    assert!(!outcomes[0].is_tentative(), "the first seat is committed");
    let told = stack.status(&second_a, 0).await;
    assert_eq!(
        (told.status, told.reason),
        (Status::Rejected, Some(Reason::UserLimit))
    );

    // Worker 0 dies before acking; Redis restarts empty; worker 1 takes
    // the redelivered message.
    wipe(&stack).await;
    w1.process(&[second]).await.unwrap();
    let end = stack.decided(&second_a).await;
    assert_eq!((end.status, end.reason), (told.status, told.reason));
    assert_eq!(rows(&stack).await, sorted(&[&first_a]));
}

/// A worker whose batch holds a rejection resting on another worker's
/// uncommitted confirmation waits for it before its batch is done: once
/// that commit is settled, the rejection is certain and its buyer reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_waits_for_the_commit_its_rejections_rest_on() {
    let stack = sale().await;
    let (first_a, first) = purchase(&stack, "buyer", "k-1").await;
    let (second_a, second) = purchase(&stack, "buyer", "k-2").await;
    let (w0, w1) = (stack.decider().await, stack.decider().await);
    let held = [first];
    let (mut held_outcomes, held_epochs) = w0.decide(&held).await.unwrap();

    let (waiting, tentative) = tentatively_rejected(&stack, &w1, second, &second_a).await;
    assert!(tentative.contains("|user_limit|"), "{tentative}");
    assert_eq!(stack.status(&second_a, 0).await.status, Status::Pending);

    w0.commit(&held, &mut held_outcomes, &held_epochs)
        .await
        .unwrap();
    w0.settle(&held, &held_outcomes).await.unwrap();
    let report = waiting.await.unwrap().unwrap();
    assert_eq!(
        (report.confirmed, report.rejected, report.tentative.len()),
        (0, 1, 0),
        "done once its rejection was certain"
    );
    let told = stack.status(&second_a, 0).await;
    assert_eq!(
        (told.status, told.reason),
        (Status::Rejected, Some(Reason::UserLimit))
    );
    assert_eq!(rows(&stack).await, sorted(&[&first_a]));
}

/// The confirmation a waiting batch's rejection rests on is lost (Redis
/// wiped, its worker dead before committing): the waiting worker decides
/// the reservation again in the state rebuilt from PostgreSQL and sells it
/// the seat, within its patience. Its buyer never read a rejection; the
/// first purchase, redelivered later, is rejected for the limit, certain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_rejection_whose_basis_is_lost_is_decided_again() {
    let stack = sale().await;
    let (first_a, first) = purchase(&stack, "buyer", "k-1").await;
    let (second_a, second) = purchase(&stack, "buyer", "k-2").await;
    let (w0, w1, w2) = (
        stack.decider().await,
        stack.decider().await,
        stack.decider().await,
    );
    let (outcomes, _) = w0.decide(std::slice::from_ref(&first)).await.unwrap();
    assert_eq!(outcomes[0].status, Status::Confirmed);

    let (waiting, _) = tentatively_rejected(&stack, &w1, second, &second_a).await;
    // Worker 0 dies; Redis restarts empty.
    wipe_sale(&stack, &[first_a.reservation_id, second_a.reservation_id]).await;
    let report = waiting.await.unwrap().unwrap();
    assert_eq!((report.confirmed, report.written), (1, 1));
    assert_eq!(stack.decided(&second_a).await.status, Status::Confirmed);

    // Worker 0's message, redelivered.
    w2.process(&[first]).await.unwrap();
    let end = stack.decided(&first_a).await;
    assert_eq!(
        (end.status, end.reason),
        (Status::Rejected, Some(Reason::UserLimit))
    );
    assert_eq!(rows(&stack).await, sorted(&[&second_a]));
}

/// End to end, through a running worker: a rejection resting on a
/// confirmation another worker decided and never commits (it hangs) is
/// not acked past the worker's patience: its message goes back to the
/// queue and is decided again until certain. When that confirmation is
/// lost (Redis restarts empty; the hung worker never comes back), the next
/// round decides the purchase afresh and sells it the seat. Acked after the
/// wait instead, nothing would decide it again: it would read pending for
/// good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_rejection_is_not_certain_goes_back_to_the_queue() {
    let stack = sale().await;
    let hung = stack.decider().await;
    let first = Queued {
        id: ReservationId::random(),
        event: EventId::parse(EVENT).unwrap(),
        user: UserId::parse("buyer").unwrap(),
        qty: Quantity::ONE,
        at: chrono::Utc::now(),
        sale: 1,
    };
    let (outcomes, _) = hung.decide(std::slice::from_ref(&first)).await.unwrap();
    assert_eq!(outcomes[0].status, Status::Confirmed);

    stack.start_worker().await;
    let second = stack.accepted(EVENT, "buyer", 1, Some("k-2")).await;
    eventually(
        "the worker to hand the message back",
        Duration::from_secs(20),
        || async {
            let metrics = stack.metrics().await;
            metrics
                .lines()
                .any(|l| {
                    l.starts_with("flashgrid_worker_handed_back_total ")
                        && l != "flashgrid_worker_handed_back_total 0"
                })
                .then_some(())
        },
    )
    .await;
    let told = stack.status(&second, 0).await;
    assert_eq!((told.status, told.reason), (Status::Pending, None));

    wipe(&stack).await;
    assert_eq!(stack.decided(&second).await.status, Status::Confirmed);
    assert_eq!(rows(&stack).await, sorted(&[&second]));
}
