//! A batch smaller than `--batch-max` waits (`--linger`) while the batch
//! before it is in flight, and goes no sooner than the linger after that
//! one went, so that purchases arriving one by one at a low rate are
//! committed together rather than each in a transaction of its own.
//! Rows inserted by one transaction share their `xmin`: the count of
//! distinct ones is the count of commits.

use crate::helpers::{TestStack, eventually};
use std::time::Duration;

const EVENT: &str = "linger";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purchases_arriving_while_a_batch_commits_are_committed_together() {
    let stack = TestStack::empty().await;
    stack.start_gateway().await;
    let mut cfg = stack.worker_config();
    // Far longer than the test needs (beyond what `--linger` accepts): the
    // wait starts when the second purchase is taken and must last through
    // the next three, on a loaded machine too. It also ends the wait: a
    // batch goes no sooner than the linger after the one before it went,
    // so the four go about this long after the first purchase, not when
    // the first batch is done.
    cfg.linger = Duration::from_secs(10);
    cfg.pipeline = 2;
    stack.start_worker_with(cfg).await;
    stack.create_event(EVENT, 100).await;
    let queue = stack.namespace().queue();
    let held = |ready: u64, unacked: u64, consumers: u64| {
        let queue = queue.clone();
        async move {
            let q = flashgrid_faults::endstate::queue_named(&queue).await.ok()?;
            (q.ready == ready && q.unacked == unacked && q.consumers == consumers).then_some(())
        }
    };
    // Consuming before the first purchase: else all five are handed over
    // at once, as one batch.
    eventually("the worker to consume", Duration::from_secs(30), || {
        held(0, 0, 1)
    })
    .await;

    // The event's row locked: the first batch decides, then waits to commit.
    let mut lock = stack.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM events WHERE event_id = $1 FOR UPDATE")
        .bind(EVENT)
        .execute(&mut *lock)
        .await
        .unwrap();
    let first = stack.accepted(EVENT, "buyer-0", 1, None).await;
    // Four more, one message each (each one's 202 comes before the next is
    // sent), while the first batch is in flight.
    let mut later = Vec::new();
    for i in 1..5 {
        later.push(stack.accepted(EVENT, &format!("buyer-{i}"), 1, None).await);
    }
    // All five handed to the worker before the first batch may commit.
    eventually(
        "the worker to hold all five messages",
        Duration::from_secs(30),
        || held(0, 5, 1),
    )
    .await;
    lock.commit().await.unwrap();

    for a in std::iter::once(&first).chain(&later) {
        let v = stack.decided(a).await;
        assert_eq!(v.status, flashgrid_wire::Status::Confirmed, "{v:?}");
    }
    let commits: i64 = sqlx::query_scalar(
        "SELECT COUNT(DISTINCT xmin::text) FROM reservations WHERE event_id = $1",
    )
    .bind(EVENT)
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    // The first purchase's batch, then the four that waited for it. Taken
    // at once instead, the second purchase is a batch of its own, and the
    // last three wait for room in the pipeline: three commits.
    assert_eq!(commits, 2, "five purchases in two commits");
}
