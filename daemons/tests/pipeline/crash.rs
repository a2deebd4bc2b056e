//! A worker that dies between its Redis decision and its PostgreSQL commit
//! loses nothing and counts nothing twice once a worker runs again.

use crate::helpers::{TestStack, burst, eventually};
use flashgrid::inventory::Inventory;
use flashgrid::queue::Group;
use flashgrid::worker::Decider;
use flashgrid_wire::{EventId, Status};
use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use redis::AsyncCommands;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decided_but_uncommitted_batch_is_committed_once_after_restart() {
    let stack = TestStack::empty().await;
    stack.start_gateway().await;
    stack.create_event("crash", 20).await;
    let (accepted, others) = burst(&stack, "crash", 10).await;
    assert_eq!((accepted.len(), others.len()), (10, 0));

    // A "worker" that takes the messages, decides them in Redis, and dies
    // before committing or acking.
    let (_, redis) = flashgrid::services::redis(&stack.services()).await.unwrap();
    let decider = Decider::new(stack.pool.clone(), Inventory::new(redis, stack.namespace()));
    let conn = flashgrid::queue::connect("amqp://guest:guest@127.0.0.1:5672/%2f", "doomed")
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.basic_qos(100, BasicQosOptions::default()).await.unwrap();
    let mut consumer = ch
        .basic_consume(
            stack.namespace().queue().as_str().into(),
            "doomed".into(),
            BasicConsumeOptions::default(),
            Default::default(),
        )
        .await
        .unwrap();
    let mut decided = 0;
    while decided < 10 {
        let d = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .expect("messages")
            .unwrap()
            .unwrap();
        let items = Group::decode(&d.data).unwrap().items;
        let (outcomes, _) = decider.decide(&items).await.unwrap();
        assert!(outcomes.iter().all(|o| o.status == Status::Confirmed));
        decided += items.len();
    }
    let stock_key = stack
        .namespace()
        .event_keys(&EventId::parse("crash").unwrap())
        .stock;
    let stock: i64 = stack.redis().await.get(&stock_key).await.unwrap();
    assert_eq!(stock, 10);
    assert_eq!(
        stack.db_counts("crash").await,
        (0, 0, 0),
        "nothing committed yet"
    );
    conn.close(320, "simulated crash".into()).await.unwrap();

    stack.start_worker().await;
    let decisions = futures::future::join_all(accepted.iter().map(|a| stack.decided(a))).await;
    assert!(decisions.iter().all(|d| d.status == Status::Confirmed));
    eventually(
        "the redelivered batch to be committed",
        Duration::from_secs(30),
        || async { (stack.db_counts("crash").await == (10, 10, 10)).then_some(()) },
    )
    .await;
    let stock: i64 = stack.redis().await.get(&stock_key).await.unwrap();
    assert_eq!(stock, 10, "redelivery did not take seats a second time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_mid_burst_then_restarted_sells_exactly_the_capacity() {
    let stack = TestStack::empty().await;
    stack.start_gateway().await;
    stack.create_event("sigkill", 1_000).await;
    stack.start_process("worker");

    // 1,500 buyers over about a second for 1,000 seats: the sale cannot be
    // decided before most of them arrive (a burst at once was decided in
    // one batch, before any kill could land inside it).
    let sales = async {
        let futs = (0..1_500u64).map(|i| {
            let stack = &stack;
            async move {
                tokio::time::sleep(Duration::from_micros(700 * i)).await;
                let r = stack
                    .reserve("sigkill", &format!("b{i}"), 1, None)
                    .await
                    .expect("the gateway was never killed");
                match r.status().as_u16() {
                    202 => Some(r.json::<flashgrid_wire::Accepted>().await.unwrap()),
                    409 => None,
                    s => panic!("b{i} answered {s}"),
                }
            }
        });
        let accepted: Vec<_> = futures::future::join_all(futs)
            .await
            .into_iter()
            .flatten()
            .collect();
        (accepted, ())
    };
    let killer = async {
        // Killed while the burst is still coming in and the sale is half
        // decided: seats committed, and seats left to decide.
        let sold = eventually("the worker to commit", Duration::from_secs(30), || async {
            let sold = stack.db_counts("sigkill").await.0;
            (sold > 0).then_some(sold)
        })
        .await;
        stack.stop("worker").await; // SIGKILL
        stack.start_process("worker");
        sold
    };
    let ((accepted, _), sold_at_kill) = tokio::join!(sales, killer);
    assert!(
        sold_at_kill < 1_000,
        "the kill came after the sale was decided ({sold_at_kill} sold): the test proved nothing"
    );

    let decisions = futures::future::join_all(accepted.iter().map(|a| stack.decided(a))).await;
    let confirmed = decisions
        .iter()
        .filter(|d| d.status == Status::Confirmed)
        .count();
    assert_eq!(confirmed, 1_000);
    assert_eq!(stack.db_counts("sigkill").await, (1_000, 1_000, 1_000));
}
