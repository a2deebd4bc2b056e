//! A reservation that can never be committed (here PostgreSQL refuses its
//! row, whatever the retries) does not stall the sale: the worker takes its
//! batch apart, commits everything else, and sets that one reservation aside
//! in the dead-letter queue, for an operator to replay.

use crate::helpers::{AMQP, TestStack, eventually};
use flashgrid::queue::Group;
use flashgrid_wire::Status;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_that_always_fails_is_set_aside_and_the_rest_is_sold() {
    let stack = TestStack::spawn().await;
    stack.create_event("poison", 50).await;
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.user_id = 'poison' THEN RAISE EXCEPTION 'this row is refused'; END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_poison BEFORE INSERT ON reservations
           FOR EACH ROW EXECUTE FUNCTION refuse_poison();",
    )
    .execute(&stack.pool)
    .await
    .unwrap();

    // The poisoned purchase among 30 others sent at the same moment, so it
    // shares their batch and, most likely, their queue message.
    let buyers = std::iter::once("poison".to_string()).chain((0..30).map(|i| format!("b{i}")));
    let stack = &stack;
    let accepted = futures::future::join_all(
        buyers.map(|user| async move { (stack.accepted("poison", &user, 1, None).await, user) }),
    )
    .await;
    for (a, user) in &accepted {
        if user == "poison" {
            continue;
        }
        assert_eq!(stack.decided(a).await.status, Status::Confirmed, "{user}");
    }
    eventually(
        "the 30 others committed",
        Duration::from_secs(30),
        || async { (stack.db_counts("poison").await == (30, 30, 30)).then_some(()) },
    )
    .await;

    // The poisoned reservation, alone, waits in the dead-letter queue.
    let conn = flashgrid::queue::connect(AMQP, "test").await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    let dead = stack.namespace().dead_letter_queue();
    let got = eventually(
        "the set-aside reservation",
        Duration::from_secs(30),
        || async {
            ch.basic_get(dead.as_str().into(), Default::default())
                .await
                .unwrap()
        },
    )
    .await;
    let group = Group::decode(&got.delivery.data).unwrap();
    assert_eq!(group.items.len(), 1, "only the failing reservation");
    let poisoned = &accepted.iter().find(|(_, u)| u == "poison").unwrap().0;
    assert_eq!(group.items[0].id, poisoned.reservation_id);
    assert_eq!(group.items[0].user.as_str(), "poison");
    // Not decided: it stays pending until an operator replays it.
    let view: flashgrid_wire::ReservationView = stack
        .http
        .get(format!("{}{}", stack.url, poisoned.status_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view.status, Status::Pending);
    let _ = conn.close(200, "".into()).await;
}
