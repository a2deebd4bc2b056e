//! A reservation that can never be committed (here PostgreSQL refuses its
//! row, whatever the retries) does not stall the sale: the worker takes its
//! batch apart, commits everything else, and sets that one reservation aside
//! in the dead-letter queue; once the cause is fixed, a replay sells it.

use crate::helpers::{AMQP, TestStack, eventually};
use flashgrid::queue::Group;
use flashgrid_wire::Status;
use std::time::Duration;

/// The first group in the dead-letter queue (waited for), unacked: closing
/// the returned connection puts it back.
async fn set_aside(stack: &TestStack) -> (lapin::Connection, Group) {
    let conn = flashgrid::queue::connect(AMQP, "test").await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    let dead = stack.namespace().dead_letter_queue();
    let got = eventually(
        "a reservation set aside",
        Duration::from_secs(30),
        || async {
            ch.basic_get(dead.as_str().into(), Default::default())
                .await
                .unwrap()
        },
    )
    .await;
    (conn, Group::decode(&got.delivery.data).unwrap())
}

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
    let (conn, group) = set_aside(stack).await;
    assert_eq!(group.items.len(), 1, "only the failing reservation");
    let poisoned = &accepted.iter().find(|(_, u)| u == "poison").unwrap().0;
    assert_eq!(group.items[0].id, poisoned.reservation_id);
    assert_eq!(group.items[0].user.as_str(), "poison");
    // Not decided: it stays pending until an operator replays it.
    assert_eq!(stack.status(poisoned, 0).await.status, Status::Pending);
    // Unacked: closing puts it back in the dead-letter queue.
    conn.close(200, "".into()).await.unwrap();

    // The operator fixes the cause and replays: the reservation is sold.
    sqlx::raw_sql("DROP TRIGGER refuse_poison ON reservations")
        .execute(&stack.pool)
        .await
        .unwrap();
    let replayed = flashgrid::worker::replay(AMQP, &stack.topology())
        .await
        .unwrap();
    assert_eq!(
        (replayed.moved, replayed.reservations, replayed.unreadable),
        (1, 1, 0)
    );
    assert_eq!(stack.decided(poisoned).await.status, Status::Confirmed);
    eventually(
        "the replayed reservation committed",
        Duration::from_secs(30),
        || async { (stack.db_counts("poison").await == (31, 31, 31)).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_leaves_unreadable_messages_where_they_are() {
    let stack = TestStack::spawn().await;
    stack.create_event("replayed", 5).await;
    let accepted = stack.accepted("replayed", "first", 1, None).await;
    stack.decided(&accepted).await;

    // One readable group and one unreadable message wait in the dead-letter queue.
    let item = flashgrid::queue::Queued {
        id: flashgrid_wire::ReservationId::random(),
        event: flashgrid_wire::EventId::parse("replayed").unwrap(),
        user: flashgrid_wire::UserId::parse("from-the-dead").unwrap(),
        qty: flashgrid_wire::Quantity::new(1).unwrap(),
        at: chrono::Utc::now(),
        sale: 1,
    };
    let dead = stack.namespace().dead_letter_queue();
    stack
        .publish_to(&dead, &Group::encode(std::slice::from_ref(&item)))
        .await;
    stack.publish_to(&dead, b"not a group").await;

    let replayed = flashgrid::worker::replay(AMQP, &stack.topology())
        .await
        .unwrap();
    assert_eq!(
        (replayed.moved, replayed.reservations, replayed.unreadable),
        (1, 1, 1)
    );
    assert_eq!(
        stack.messages_in(&dead).await,
        1,
        "the unreadable one stays"
    );
    eventually(
        "the replayed reservation committed",
        Duration::from_secs(30),
        || async { (stack.db_counts("replayed").await == (2, 2, 2)).then_some(()) },
    )
    .await;
}

/// A stock key Redis holds under the wrong type (an operator's `HSET` on it,
/// a stray tool) makes the decide script fail with `WRONGTYPE`: a refusal,
/// so the reservation is set aside. It is not mistaken for a stock that went
/// missing — the state looks whole, so a rebuild changes nothing and the
/// batch would be retried forever, stalling every purchase behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stock_key_of_the_wrong_type_sets_the_purchase_aside_instead_of_rebuilding_forever() {
    use redis::AsyncCommands;
    let stack = TestStack::spawn().await;
    stack.create_event("wrongtype", 5).await;
    let first = stack.accepted("wrongtype", "first", 1, None).await;
    assert_eq!(stack.decided(&first).await.status, Status::Confirmed);

    let event = flashgrid_wire::EventId::parse("wrongtype").unwrap();
    let keys = stack.namespace().event_keys(&event);
    let mut redis = stack.redis().await;
    let _: () = redis.del(&keys.stock).await.unwrap();
    let _: () = redis.hset(&keys.stock, "not", "a number").await.unwrap();

    let stuck = stack.accepted("wrongtype", "second", 1, None).await;
    let (conn, group) = set_aside(&stack).await;
    assert_eq!(group.items.len(), 1);
    assert_eq!(group.items[0].id, stuck.reservation_id);
    assert_eq!(stack.status(&stuck, 0).await.status, Status::Pending);
    conn.close(200, "".into()).await.unwrap();

    // The operator deletes the bad key; the worker rebuilds the stock from
    // PostgreSQL and the replayed purchase is sold, counted once.
    let _: () = redis.del(&keys.stock).await.unwrap();
    let replayed = flashgrid::worker::replay(AMQP, &stack.topology())
        .await
        .unwrap();
    assert_eq!((replayed.moved, replayed.reservations), (1, 1));
    assert_eq!(stack.decided(&stuck).await.status, Status::Confirmed);
    eventually(
        "the replayed purchase committed",
        Duration::from_secs(30),
        || async { (stack.db_counts("wrongtype").await == (2, 2, 2)).then_some(()) },
    )
    .await;
}

/// A message whose every delivery dies with its consumer (a poison message
/// that crashes the worker) is dead-lettered once a quorum queue's delivery
/// limit is spent, instead of crashing workers forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_keeps_killing_its_consumer_is_dead_lettered_at_the_delivery_limit() {
    use lapin::options::{BasicConsumeOptions, BasicGetOptions};
    use lapin::types::FieldTable;
    let stack = TestStack::empty().await;
    let topology = flashgrid::queue::Topology {
        kind: flashgrid::queue::QueueType::Quorum,
        delivery_limit: 2,
        ..stack.topology()
    };
    let conn = flashgrid::queue::connect(AMQP, "test").await.unwrap();
    let ch = flashgrid::queue::confirm_channel(&conn, &topology)
        .await
        .unwrap();
    let queue = topology.queue(0);
    flashgrid::queue::publish_kept(&ch, &queue, b"poison", Duration::from_secs(10))
        .await
        .unwrap();
    // Each consumer takes it and dies (its channel closes, nothing acked).
    for delivery in 1..=3 {
        let doomed = conn.create_channel().await.unwrap();
        let mut consumer = doomed
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let got = tokio::time::timeout(
            Duration::from_secs(10),
            futures::StreamExt::next(&mut consumer),
        )
        .await
        .unwrap_or_else(|_| panic!("delivery {delivery} never came"));
        assert_eq!(got.unwrap().unwrap().data, b"poison");
        doomed.close(200, "dying".into()).await.unwrap();
    }
    let dead = stack.namespace().dead_letter_queue();
    let dead_lettered = eventually(
        "the poison message in the dead-letter queue",
        Duration::from_secs(30),
        || async {
            ch.basic_get(dead.as_str().into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap()
        },
    )
    .await;
    assert_eq!(dead_lettered.delivery.data, b"poison");
    let _ = conn.close(200, "".into()).await;
}
