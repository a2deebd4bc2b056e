//! The fence: a batch decided in a Redis state that was rebuilt or reset
//! before its commit is not written; it is decided again in the state as
//! it is now. Driven step by step with the worker's own `Decider`, so the
//! moment between decide and commit is the test's to choose.

use crate::helpers::{TestStack, purchase};
use flashgrid::worker::BatchError;
use flashgrid_wire::{EventId, Reason, Status};

/// Worker A decides a purchase; Redis loses the event's state; worker B
/// rebuilds it from PostgreSQL (A's decision is not there) and sells the
/// same buyer a seat. A's late commit would put the buyer over the limit:
/// it is fenced out, and deciding it again rejects it for the limit in
/// Redis itself, with nothing for PostgreSQL's guard to revoke.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_decided_before_a_rebuild_is_decided_again() {
    let stack = TestStack::empty().await;
    stack.start_gateway().await;
    stack
        .create_event_json(serde_json::json!({
            "event_id": "fence", "name": "fence", "capacity": 10, "per_user_limit": 1
        }))
        .await;
    let (a, b) = (stack.decider().await, stack.decider().await);
    let first = [purchase("fence", "u")];
    let (mut outcomes, epochs) = a.decide(&first).await.unwrap();
    assert_eq!(outcomes[0].status, Status::Confirmed);

    let keys = stack
        .namespace()
        .event_keys(&EventId::parse("fence").unwrap());
    let gone: u32 = redis::cmd("DEL")
        .arg(&keys.stock)
        .arg(&keys.users)
        .arg(&keys.won)
        .query_async(&mut stack.redis().await)
        .await
        .unwrap();
    assert_eq!(gone, 3);
    let second = [purchase("fence", "u")];
    let report = b.process(&second).await.unwrap();
    assert_eq!(report.written, 1, "the rebuilt state sold u a seat");

    let late = a.commit(&first, &mut outcomes, &epochs).await;
    assert!(matches!(late, Err(BatchError::Fenced(_))), "{late:?}");
    assert_eq!(stack.db_counts("fence").await, (1, 1, 1));
    let again = a.process(&first).await.unwrap();
    assert_eq!((again.written, again.rejected, again.revoked), (0, 1, 0));
    let (decided, _) = a.decide(&first).await.unwrap();
    assert_eq!(decided[0].reason, Some(Reason::UserLimit));
    assert_eq!(stack.db_revoked("fence").await, 0);
}

/// A drill's reset while a worker holds a decided batch: nothing decided
/// for the old sale lands in the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_decided_before_a_reset_does_not_land_in_the_new_sale() {
    let stack = TestStack::empty().await;
    stack.start_gateway().await;
    stack.create_event("drill", 5).await;
    let a = stack.decider().await;
    let old = [purchase("drill", "before")];
    let (mut outcomes, epochs) = a.decide(&old).await.unwrap();
    assert_eq!(outcomes[0].status, Status::Confirmed);

    stack.reset_event("drill").await;
    let late = a.commit(&old, &mut outcomes, &epochs).await;
    assert!(matches!(late, Err(BatchError::Fenced(_))), "{late:?}");
    assert_eq!(stack.db_counts("drill").await, (0, 0, 0));
    let view = stack.event("drill").await;
    assert_eq!((view.confirmed, view.remaining), (0, 5));
}

/// A purchase still in the queue when its event is reset (no worker was
/// running) belongs to the old sale: it is rejected `sale_closed` when the
/// worker gets to it, never sold in the new sale, and its buyer reads that
/// rejection through the status URL they were given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_queued_before_a_reset_is_not_sold_in_the_new_sale() {
    let stack = TestStack::empty().await;
    stack.start_gateway().await;
    stack.create_event("regen", 1).await;
    let old = stack.accepted("regen", "early", 1, None).await;
    stack.reset_event("regen").await;
    let new = stack.accepted("regen", "late", 1, None).await;
    stack.start_worker().await;

    let v = stack.decided(&old).await;
    assert_eq!(
        (v.status, v.reason),
        (Status::Rejected, Some(Reason::SaleClosed)),
        "a purchase of the old sale"
    );
    assert_eq!(stack.decided(&new).await.status, Status::Confirmed);
    assert_eq!(stack.db_counts("regen").await, (1, 1, 1));

    // Redis forgets the rejection: the receipt still tells the sale it was
    // made in, so PostgreSQL makes the rejection certain.
    assert!(stack.forget_outcomes("regen").await >= 1);
    let again = stack.status(&old, 0).await;
    assert_eq!(
        (again.status, again.reason),
        (Status::Rejected, Some(Reason::SaleClosed))
    );
}

/// A keyed purchase queued before a reset, retried with the same key after
/// it: the same reservation id, rejected in the old sale and sold in the
/// new one. Each receipt reads its own sale's answer: the old one stays
/// `sale_closed` (a decision never changes), the new one `confirmed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_retried_after_a_reset_keeps_the_old_receipts_answer() {
    let stack = TestStack::empty().await;
    stack.start_gateway().await;
    stack.create_event("again", 1).await;
    let old = stack.accepted("again", "buyer", 1, Some("k-1")).await;
    stack.reset_event("again").await;
    stack.start_worker().await;
    let before = stack.decided(&old).await;
    assert_eq!(before.reason, Some(Reason::SaleClosed));

    let new = stack.accepted("again", "buyer", 1, Some("k-1")).await;
    assert_eq!(new.reservation_id, old.reservation_id);
    assert_eq!(stack.decided(&new).await.status, Status::Confirmed);
    let after = stack.status(&old, 0).await;
    assert_eq!(
        (after.status, after.reason),
        (Status::Rejected, Some(Reason::SaleClosed)),
        "the old sale's receipt changed its answer"
    );
}
