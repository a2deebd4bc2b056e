//! A Redis state that comes back older than what a worker already saw of
//! it (a copy restored from before, a lagging replica promoted) with no
//! more seats left than PostgreSQL allows, so that the floor (`restock.rs`)
//! cannot tell it is behind: the worker knows the state's mark (sale,
//! epoch, sequence; `decide.lua`) it last saw, and rebuilds a state behind
//! it. Driven step by step with the worker's own `Decider`, so the moment
//! of the copy is the test's to choose.

use crate::helpers::{TestStack, purchase};
use flashgrid::inventory::{Expect, Inventory};
use flashgrid_wire::{EventId, Quantity, Reason, ReservationId, Status, UserId};
use redis::AsyncCommands;

/// The event's stock, users and won keys, dumped.
async fn copy(stack: &TestStack, event: &str) -> Vec<(String, Vec<u8>)> {
    let k = stack.keys(event);
    let mut redis = stack.redis().await;
    let mut out = Vec::new();
    for key in [k.stock, k.users, k.won] {
        let dump: Vec<u8> = redis::cmd("DUMP")
            .arg(&key)
            .query_async(&mut redis)
            .await
            .unwrap();
        out.push((key, dump));
    }
    out
}

async fn put_back(stack: &TestStack, copy: &[(String, Vec<u8>)]) {
    let mut redis = stack.redis().await;
    for (key, dump) in copy {
        let _: () = redis::cmd("RESTORE")
            .arg(key)
            .arg(0)
            .arg(dump)
            .arg("REPLACE")
            .query_async(&mut redis)
            .await
            .unwrap();
    }
}

/// What the won hash records of `id` ("c…" once committed), and the
/// event's committed seats by its count.
async fn won(stack: &TestStack, event: &str, id: &ReservationId) -> (Option<String>, Option<i64>) {
    let k = stack.keys(event);
    let mut redis = stack.redis().await;
    let entry: Option<String> = redis.hget(&k.won, id.0.to_string()).await.unwrap();
    let committed: Option<i64> = redis.hget(&k.won, "\u{2}").await.unwrap();
    (entry, committed)
}

/// Every seat decided before the copy, committed and settled after it: the
/// copy put back holds them unsettled ("C"), with as many seats left as
/// PostgreSQL allows (none). Nothing would settle them again, and a
/// `sold_out` rejection counted against the committed seats would stay
/// tentative for good. The worker saw the state after its settle, so the
/// copy is behind what it saw: its audit rebuilds it, and a purchase
/// decided in it first rebuilds it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_from_before_the_last_settle_is_rebuilt() {
    let stack = TestStack::empty().await;
    stack.start_gateway().await;
    stack.create_event("older", 2).await;
    let a = stack.decider().await;
    let sold = [purchase("older", "x"), purchase("older", "y")];
    let (mut outcomes, epochs) = a.decide(&sold).await.unwrap();
    assert!(outcomes.iter().all(|o| o.status == Status::Confirmed));
    let before = copy(&stack, "older").await;
    a.commit(&sold, &mut outcomes, &epochs).await.unwrap();
    a.settle(&sold, &outcomes).await.unwrap();
    assert_eq!(stack.db_counts("older").await, (2, 2, 2));
    let (entry, committed) = won(&stack, "older", &sold[0].id).await;
    assert!(entry.unwrap().starts_with('c'));
    assert_eq!(committed, Some(2));

    put_back(&stack, &before).await;
    let (entry, committed) = won(&stack, "older", &sold[0].id).await;
    assert!(entry.unwrap().starts_with('C'), "the copy is of before");
    assert_eq!(committed, None);

    assert_eq!(a.audit().await, 1, "the audit rebuilds the state");
    for s in &sold {
        let (entry, committed) = won(&stack, "older", &s.id).await;
        assert!(entry.unwrap().starts_with('c'), "settled again");
        assert_eq!(committed, Some(2));
    }

    // Again, run into by a purchase instead of the audit.
    put_back(&stack, &before).await;
    let late = [purchase("older", "z")];
    let report = a.process(&late).await.unwrap();
    assert_eq!(
        (report.rejected, report.tentative.len()),
        (1, 0),
        "{report:?}"
    );
    let (decided, _) = a.decide(&late).await.unwrap();
    assert_eq!(
        (decided[0].reason, decided[0].certain_at),
        (Some(Reason::SoldOut), None),
        "certain: the committed seats are counted again"
    );
    let (entry, committed) = won(&stack, "older", &sold[1].id).await;
    assert!(entry.unwrap().starts_with('c'));
    assert_eq!(committed, Some(2));
    assert_eq!(stack.db_counts("older").await, (2, 2, 2));
}

/// A state rebuilt by another worker between two calls of one batch's
/// decision (`DECIDE_CHUNK`) does not hold what the first call decided:
/// the second call, told the epoch the first was decided under, refuses to
/// decide in another state, so that the batch is decided again from its
/// first call and its first attempts keep the order taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_part_refuses_a_state_rebuilt_since_the_first() {
    let stack = TestStack::empty().await;
    stack.start_gateway().await;
    stack.create_event("parts", 5).await;
    let (_, redis) = flashgrid::services::redis(&stack.services()).await.unwrap();
    let inv = Inventory::new(redis, stack.namespace());
    let event = EventId::parse("parts").unwrap();
    let limit = flashgrid_wire::PerUserLimit::new(4).unwrap();
    let user = UserId::parse("first").unwrap();
    let after = |epoch| Expect {
        epoch: Some(epoch),
        ..Expect::default()
    };
    let ask = |user| flashgrid::inventory::Ask {
        id: ReservationId::random(),
        user,
        quantity: Quantity::ONE,
        closed: false,
        sale: 1,
        kept: None,
    };
    let first = inv
        .decide(&event, limit, Expect::default(), &[ask(&user)])
        .await
        .unwrap();
    assert_eq!(first.outcomes[0].status, Status::Confirmed);
    // Another worker rebuilds the state: a new epoch, without the first
    // call's confirmation.
    let b = stack.decider().await;
    let _: () = stack
        .redis()
        .await
        .del(stack.keys("parts").stock)
        .await
        .unwrap();
    b.process(&[purchase("parts", "other")]).await.unwrap();

    let second = inv
        .decide(&event, limit, after(first.epoch()), &[ask(&user)])
        .await;
    assert!(
        matches!(second, Err(flashgrid::inventory::InventoryError::Rebuilt)),
        "{second:?}"
    );
    // Told no epoch (a first call), it decides in the rebuilt state.
    let again = inv
        .decide(&event, limit, Expect::default(), &[ask(&user)])
        .await
        .unwrap();
    assert!(again.epoch() > first.epoch());
}

/// Two workers, and a copy restored behind what the *other* one committed:
/// worker `a` committed early and then nothing, `b` sold most of the seats
/// after the copy was taken. By `a`'s own last commit the copy claims no
/// more seats left than PostgreSQL allows; by PostgreSQL now it claims three
/// too many. `b` publishes what PostgreSQL held at its commit, `a` raises
/// its floor to it, and rebuilds the state instead of selling those seats
/// again and having PostgreSQL's guard revoke them
/// (`faults::redis_restore_older_x2` failed so, `revoked` 2 and 5, when one
/// worker had committed little of the event).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_behind_another_workers_commits_is_rebuilt_before_deciding() {
    let stack = TestStack::empty().await;
    stack.start_gateway().await;
    stack.create_event("others", 6).await;
    let (a, b) = (stack.decider().await, stack.decider().await);
    let stop = tokio_util::sync::CancellationToken::new();
    let (target, conn) = flashgrid::services::redis(&stack.services()).await.unwrap();
    let nodes = target.subscribe_clients().unwrap();
    let following = tokio::spawn({
        let (a, stop) = (a.clone(), stop.clone());
        async move { a.follow_floors(nodes, stop).await }
    });
    // Subscribed once it hears a notice: a floor of another event, sent
    // until heard.
    let probe = EventId::parse("probe").unwrap();
    let heard = flashgrid::notify::Notice::Floor(
        probe.clone(),
        flashgrid::inventory::Floor {
            sale: 1,
            max_stock: 1,
            released: 0,
        },
    );
    crate::helpers::eventually(
        "a to subscribe",
        std::time::Duration::from_secs(10),
        || async {
            flashgrid::notify::publish(&conn, &stack.namespace(), &heard).await;
            a.floor(&probe).map(|_| ())
        },
    )
    .await;
    a.process(&[purchase("others", "early")]).await.unwrap();
    let before = copy(&stack, "others").await;
    let sold: Vec<_> = (0..3)
        .map(|i| purchase("others", &format!("b-{i}")))
        .collect();
    let report = b.process(&sold).await.unwrap();
    assert_eq!(report.confirmed, 3);
    assert_eq!(stack.db_counts("others").await, (4, 4, 4));
    let event = EventId::parse("others").unwrap();
    crate::helpers::eventually(
        "a hears what b's commit left",
        std::time::Duration::from_secs(10),
        || async { (a.floor(&event).map(|f| f.max_stock) == Some(2)).then_some(()) },
    )
    .await;

    put_back(&stack, &before).await;
    let late: Vec<_> = (0..4)
        .map(|i| purchase("others", &format!("a-{i}")))
        .collect();
    let report = a.process(&late).await.unwrap();
    assert_eq!(
        (report.confirmed, report.revoked),
        (2, 0),
        "the two seats left, nothing sold twice: {report:?}"
    );
    assert_eq!(stack.db_counts("others").await, (6, 6, 6));
    assert_eq!(stack.db_revoked("others").await, 0);
    stop.cancel();
    following.await.unwrap();
}

/// All or part of a state lost after the last decision (its won hash, its
/// users hash, or everything): once the sale sold out no decision may
/// come to rebuild it, and every status read and keyed retry would ask
/// PostgreSQL for good. The audit rebuilds it (the fault drills
/// `redis-outcomes-lost` and `redis-wipe-sold-out` ended so once, the
/// keys deleted after the last buyer: every seat sold missing from Redis).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_lost_in_all_or_part_is_rebuilt_by_the_audit() {
    let stack = TestStack::empty().await;
    stack.start_gateway().await;
    stack.create_event("partly", 2).await;
    let a = stack.decider().await;
    let sold = [purchase("partly", "x"), purchase("partly", "y")];
    let (mut outcomes, epochs) = a.decide(&sold).await.unwrap();
    a.commit(&sold, &mut outcomes, &epochs).await.unwrap();
    a.settle(&sold, &outcomes).await.unwrap();
    assert_eq!(a.audit().await, 0, "a whole state is left alone");

    let k = stack.keys("partly");
    let all = [&k.stock, &k.users, &k.won];
    for keys in [&[&k.won][..], &[&k.users], &all] {
        let lost = format!("{keys:?}");
        let mut redis = stack.redis().await;
        let n: usize = redis.del(keys).await.unwrap();
        assert_eq!(n, keys.len(), "{lost} deleted");
        assert_eq!(
            a.audit().await,
            1,
            "the audit rebuilds a state missing {lost}"
        );
        for s in &sold {
            let (entry, committed) = won(&stack, "partly", &s.id).await;
            assert!(entry.unwrap().starts_with('c'), "{lost}: settled again");
            assert_eq!(committed, Some(2));
        }
        let held: Option<i64> = redis.hget(&k.users, "x").await.unwrap();
        assert_eq!(held, Some(1), "{lost}: x's seat counted again");
        assert_eq!(a.audit().await, 0, "rebuilt whole");
    }
    assert_eq!(stack.db_counts("partly").await, (2, 2, 2));
}
