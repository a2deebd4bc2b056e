//! Lookups gathered into one round trip (`gateway::lookups`,
//! `Inventory::lookup_many`) answer each reservation as a lookup of its own
//! would: winners, rejections, pending markers and unknown ids, of several
//! events mixed in the gatherer's batches, a value FlashGrid cannot read
//! failing only its own reservation.

use crate::helpers::TestStack;
use flashgrid::gateway::lookups::Lookups;
use flashgrid::inventory::{Inventory, Lookup};
use flashgrid::queue::Queued;
use flashgrid_wire::sale::Outcome;
use flashgrid_wire::{EventId, Quantity, ReservationId, Status, UserId};
use tokio_util::sync::CancellationToken;

/// What a lookup said, in a form to compare: each outcome's status and
/// whether the event's state is whole, or that it failed.
fn said(
    l: &Result<Lookup, flashgrid::inventory::InventoryError>,
) -> Option<(Option<Status>, bool)> {
    l.as_ref()
        .ok()
        .map(|l| (l.outcome.as_ref().map(|o| o.status), l.whole))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_gathered_answer_each_reservation_as_alone() {
    let stack = TestStack::empty().await;
    stack.start_gateway().await;
    stack.create_event("gathered", 1).await;
    stack.create_event("untouched", 5).await;
    let (_, redis) = flashgrid::services::redis(&stack.services()).await.unwrap();
    let inv = Inventory::new(redis, stack.namespace());
    let gathered_event = EventId::parse("gathered").unwrap();
    let untouched = EventId::parse("untouched").unwrap();
    let item = |user: &str| Queued {
        id: ReservationId::random(),
        event: gathered_event.clone(),
        user: UserId::parse(user).unwrap(),
        qty: Quantity::ONE,
        at: chrono::Utc::now(),
        sale: 1,
    };
    // One seat: the first wins (a confirmation in the won hash), the second
    // is rejected (an outcome key of its own), tentatively until the
    // winner's seat is committed; then committed.
    let decided = [item("winner"), item("loser")];
    let decider = stack.decider().await;
    let (outcomes, _) = decider.decide(&decided).await.unwrap();
    assert_eq!(outcomes[0].status, Status::Confirmed);
    assert_eq!(outcomes[1].status, Status::Rejected);
    assert!(outcomes[1].is_tentative(), "{:?}", outcomes[1]);
    decider.process(&decided).await.unwrap();
    let pending = ReservationId::random();
    let marker = Outcome::pending(Quantity::ONE, UserId::parse("waiting").unwrap());
    inv.mark_pending([(&gathered_event, 1, pending, &marker)].into_iter())
        .await
        .unwrap();
    let garbled = ReservationId::random();
    let mut conn = stack.redis().await;
    let _: () = redis::cmd("SET")
        .arg(stack.keys("gathered").outcome(1, &garbled))
        .arg("not an outcome")
        .query_async(&mut conn)
        .await
        .unwrap();
    // Redis lost the other event's confirmations: its state is not whole.
    let _: () = redis::cmd("DEL")
        .arg(stack.keys("untouched").won)
        .query_async(&mut conn)
        .await
        .unwrap();

    let asked = [
        (gathered_event.clone(), decided[0].id),
        (untouched.clone(), ReservationId::random()),
        (gathered_event.clone(), pending),
        (gathered_event.clone(), garbled),
        (gathered_event.clone(), decided[1].id),
        (gathered_event.clone(), ReservationId::random()),
    ];
    let expected = vec![
        Some((Some(Status::Confirmed), true)),
        Some((None, false)),
        Some((Some(Status::Pending), true)),
        None,
        Some((Some(Status::Rejected), true)),
        Some((None, true)),
    ];
    // Each event's reservations in one call, answered back in the order
    // asked.
    let of = |event: &EventId| -> Vec<(u32, ReservationId)> {
        asked
            .iter()
            .filter(|(e, _)| e == event)
            .map(|(_, id)| (1, *id))
            .collect()
    };
    let mut in_gathered = inv
        .lookup_many(&gathered_event, &of(&gathered_event))
        .await
        .into_iter();
    let mut in_untouched = inv
        .lookup_many(&untouched, &of(&untouched))
        .await
        .into_iter();
    let together: Vec<_> = asked
        .iter()
        .map(|(e, _)| {
            let answers = if *e == gathered_event {
                &mut in_gathered
            } else {
                &mut in_untouched
            };
            answers.next().expect("an answer a reservation")
        })
        .collect();
    assert_eq!(together.iter().map(said).collect::<Vec<_>>(), expected);
    // The committed seat makes the rejection certain as it is read (Redis
    // keeps it tentative).
    let raw: String = redis::cmd("GET")
        .arg(stack.keys("gathered").outcome(1, &decided[1].id))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        flashgrid::inventory::record::decode(&raw)
            .unwrap()
            .is_tentative()
    );
    let loser = together[4].as_ref().unwrap().outcome.as_ref().unwrap();
    assert!(!loser.is_tentative(), "{loser:?}");
    for ((event, id), t) in asked.iter().zip(&together) {
        let alone = inv.lookup(event, 1, id).await;
        match (&alone, t) {
            (Ok(a), Ok(t)) => assert_eq!(a, t, "{id:?} alone and together"),
            (a, t) => assert_eq!(said(a), said(t), "{id:?} alone and together"),
        }
    }

    // Through the gatherer, many at once: batches form, and every caller
    // gets its own reservation's answer.
    let stop = CancellationToken::new();
    let (lookups, gatherer) = Lookups::start(inv.clone(), stop.clone());
    let calls = (0..2_000).map(|n| {
        let lookups = lookups.clone();
        let (event, id) = asked[n % asked.len()].clone();
        async move { (n, lookups.lookup(&event, 1, &id).await) }
    });
    for (n, got) in futures::future::join_all(calls).await {
        assert_eq!(said(&got), expected[n % asked.len()], "call {n}");
    }
    let (gathered, batches) = lookups.gathered();
    assert_eq!(gathered, 2_000, "every lookup gathered, none alone");
    assert!(batches < gathered, "{batches} batches: none gathered two");
    // Stopped, the gatherer answers nobody: a lookup goes to Redis alone.
    stop.cancel();
    gatherer.await.unwrap();
    let after = lookups.lookup(&gathered_event, 1, &decided[0].id).await;
    assert_eq!(said(&after), expected[0]);
    assert_eq!(lookups.gathered().0, 2_000, "alone, not gathered");
}
