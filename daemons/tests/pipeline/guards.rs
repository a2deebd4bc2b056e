//! PostgreSQL guards the sale's two rules in the commit that writes the
//! winners, so a Redis that forgot or came back older cannot break them:
//! no oversell (the capacity CHECK) and no user over the per-user limit
//! (the `holdings` CHECK).

use crate::helpers::TestStack;
use chrono::Utc;
use flashgrid::db::{self, CommitError, Winner};
use flashgrid_wire::{EventId, Quantity, Reason, ReservationId, Status, UserId};

fn winner(event: &str, user: &str, qty: u8) -> Winner {
    Winner {
        id: ReservationId::random(),
        event: EventId::parse(event).unwrap(),
        user: UserId::parse(user).unwrap(),
        quantity: Quantity::new(qty.into()).unwrap(),
        accepted_at: Utc::now(),
        epoch: 0,
        sale: 1,
    }
}

async fn held(stack: &TestStack, event: &str, user: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT COALESCE(SUM(quantity), 0)::bigint FROM reservations
         WHERE event_id = $1 AND user_id = $2",
    )
    .bind(event)
    .bind(user)
    .fetch_one(&stack.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_refuses_a_commit_over_the_per_user_limit() {
    let stack = TestStack::empty().await;
    sqlx::query(
        "INSERT INTO events (event_id, name, capacity, per_user_limit) VALUES ('capped', 'capped', 100, 2)",
    )
    .execute(&stack.pool)
    .await
    .unwrap();
    // Two workers each confirmed one purchase of 2 for the same user (a
    // Redis rebuilt between their decisions forgot the first).
    let first = db::commit_winners(&stack.pool, &[winner("capped", "u", 2)]).await;
    assert_eq!(first.unwrap().written, 1);
    let second = db::commit_winners(
        &stack.pool,
        &[winner("capped", "someone", 1), winner("capped", "u", 1)],
    )
    .await;
    assert!(
        matches!(second, Err(CommitError::Guard("per-user limit"))),
        "{second:?}"
    );
    assert_eq!(held(&stack, "capped", "u").await, 2);
    assert_eq!(held(&stack, "capped", "someone").await, 0, "refused whole");

    // The exact path commits what fits and names the rule for the rest.
    let event = EventId::parse("capped").unwrap();
    let batch = [
        winner("capped", "someone", 1),
        winner("capped", "u", 1),
        winner("capped", "someone", 2),
    ];
    let done = db::commit_event_guarded(&stack.pool, &event, &batch)
        .await
        .unwrap();
    let refused: Vec<_> = done.overflow.iter().map(|(w, r)| (w.id, *r)).collect();
    assert_eq!(
        refused,
        vec![
            (batch[1].id, Reason::UserLimit),
            (batch[2].id, Reason::UserLimit)
        ]
    );
    assert_eq!(done.seats.confirmed, 3);
    assert_eq!(held(&stack, "capped", "someone").await, 1);
    assert_eq!(stack.db_counts("capped").await, (2, 3, 3));
    let revoked: i32 = sqlx::query_scalar("SELECT revoked FROM events WHERE event_id = 'capped'")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(revoked, 2);
}

/// A batch committed again (redelivered after its commit, or retried after
/// its reply was lost) writes only its winners not written yet and counts
/// nothing twice, its users' holdings included; so is a winner listed twice
/// in one batch. The commit tries every winner as new first: this is the
/// path it takes when one is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_committed_again_writes_and_counts_only_its_new_winners() {
    let stack = TestStack::empty().await;
    sqlx::query(
        "INSERT INTO events (event_id, name, capacity, per_user_limit) VALUES ('again', 'again', 100, 4)",
    )
    .execute(&stack.pool)
    .await
    .unwrap();
    let first = [winner("again", "a", 1), winner("again", "b", 2)];
    let done = db::commit_winners(&stack.pool, &first).await.unwrap();
    assert_eq!(done.written, 2);

    let new = winner("again", "a", 1);
    let again = [first[0].clone(), new.clone(), first[1].clone(), new];
    let done = db::commit_winners(&stack.pool, &again).await.unwrap();
    assert_eq!(done.written, 1, "only the new winner is written");
    assert_eq!(stack.db_counts("again").await, (3, 4, 4));
    let holdings: Vec<(String, i32)> = sqlx::query_as(
        "SELECT user_id, quantity FROM holdings WHERE event_id = 'again' ORDER BY user_id",
    )
    .fetch_all(&stack.pool)
    .await
    .unwrap();
    assert_eq!(holdings, vec![("a".into(), 2), ("b".into(), 2)]);
    assert_eq!(held(&stack, "again", "a").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_gives_every_user_their_limit_back() {
    let stack = TestStack::spawn().await;
    stack
        .create_event_json(serde_json::json!({
            "event_id": "again", "name": "again", "capacity": 10, "per_user_limit": 1
        }))
        .await;
    let a = stack.accepted("again", "u", 1, None).await;
    assert_eq!(stack.decided(&a).await.status, Status::Confirmed);
    let r = stack
        .http
        .post(format!("{}/admin/events/again/reset", stack.url))
        .bearer_auth(crate::helpers::TOKEN)
        .json(&serde_json::json!({"discard_confirmed": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b = stack.accepted("again", "u", 1, None).await;
    assert_eq!(stack.decided(&b).await.status, Status::Confirmed);
    assert_eq!(held(&stack, "again", "u").await, 1);
}

/// Redis's `users` hash comes back as it was before the user bought (a
/// lagging replica promoted, a restore from an older copy): Redis confirms
/// a purchase over the limit, and PostgreSQL refuses it; the buyer reads
/// `rejected user_limit`, never a confirmation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_comes_back_older_cannot_lift_the_per_user_limit() {
    let stack = TestStack::spawn().await;
    stack
        .create_event_json(serde_json::json!({
            "event_id": "older", "name": "older", "capacity": 50, "per_user_limit": 2
        }))
        .await;
    let opener = stack.accepted("older", "opener", 1, None).await;
    assert_eq!(stack.decided(&opener).await.status, Status::Confirmed);

    let keys = stack
        .namespace()
        .event_keys(&EventId::parse("older").unwrap());
    let mut redis = stack.redis().await;
    let copy: Vec<u8> = redis::cmd("DUMP")
        .arg(&keys.users)
        .query_async(&mut redis)
        .await
        .unwrap();
    for _ in 0..2 {
        let a = stack.accepted("older", "u", 1, None).await;
        assert_eq!(stack.decided(&a).await.status, Status::Confirmed);
    }
    let _: () = redis::cmd("RESTORE")
        .arg(&keys.users)
        .arg(0)
        .arg(copy)
        .arg("REPLACE")
        .query_async(&mut redis)
        .await
        .unwrap();

    let over = stack.accepted("older", "u", 1, None).await;
    let view = stack.decided(&over).await;
    assert_eq!(
        (view.status, view.reason),
        (Status::Rejected, Some(Reason::UserLimit))
    );
    // The status URL may have told the rejection before the worker's
    // guarded commit ended (PostgreSQL already made it certain): wait for it.
    crate::helpers::eventually(
        "the guard's revocation counted",
        std::time::Duration::from_secs(20),
        || async { (stack.db_revoked("older").await == 1).then_some(()) },
    )
    .await;
    assert_eq!(held(&stack, "older", "u").await, 2);
    // The state was rebuilt from PostgreSQL: the next try is refused by
    // Redis itself, with nothing more for the guard to revoke.
    let again = stack.accepted("older", "u", 1, None).await;
    assert_eq!(stack.decided(&again).await.reason, Some(Reason::UserLimit));
    assert_eq!(stack.db_revoked("older").await, 1);
}
