//! Partitioned reservation queues: every reservation of an event goes to
//! the queue its id hashes to, the workers consume every partition, and
//! daemons that disagree on the count refuse to start.

use crate::helpers::{AMQP, TestStack};
use flashgrid::queue::{Group, Topology};
use flashgrid_wire::Status;
use lapin::options::BasicGetOptions;
use std::collections::BTreeSet;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_goes_to_its_own_partition_and_every_partition_is_consumed() {
    let stack = TestStack::empty().await;
    let mut gateway = stack.gateway_config();
    gateway.services.queue_partitions = 3;
    let topology: Topology = gateway.services.topology();
    stack.start_gateway_with(gateway).await;
    stack.wait_ready().await;
    let events: Vec<String> = (0..8).map(|i| format!("part-{i}")).collect();
    let mut accepted = Vec::new();
    for e in &events {
        stack.create_event(e, 5).await;
        for u in 0..2 {
            accepted.push(stack.accepted(e, &format!("u{u}"), 1, None).await);
        }
    }
    // No worker yet: read every message where it waits, and put it back.
    let conn = flashgrid::queue::connect(AMQP, "test").await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    let mut used = BTreeSet::new();
    let mut seen = 0;
    for p in 0..topology.partitions {
        let queue = topology.queue(p);
        let mut tags = Vec::new();
        while let Some(m) = ch
            .basic_get(queue.as_str().into(), BasicGetOptions::default())
            .await
            .unwrap()
        {
            for item in Group::decode(&m.delivery.data).unwrap().items {
                assert_eq!(
                    topology.partition_of(&item.event),
                    p,
                    "{} found in {queue}",
                    item.event
                );
                used.insert(p);
                seen += 1;
            }
            tags.push(m.delivery.delivery_tag);
        }
        for tag in tags {
            ch.basic_nack(
                tag,
                lapin::options::BasicNackOptions {
                    multiple: false,
                    requeue: true,
                },
            )
            .await
            .unwrap();
        }
    }
    let _ = conn.close(200, "".into()).await;
    assert_eq!(
        seen,
        accepted.len(),
        "every accepted purchase is in a queue"
    );
    assert!(
        used.len() >= 2,
        "eight events all hashed to one partition: {used:?}"
    );

    let mut worker = stack.worker_config();
    worker.services.queue_partitions = 3;
    stack.start_worker_with(worker).await;
    for a in &accepted {
        assert_eq!(stack.decided(a).await.status, Status::Confirmed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_refuses_to_start_beside_another_partition_count() {
    let stack = TestStack::empty().await;
    // Some daemon of the namespace runs with two partitions.
    let two = Topology {
        partitions: 2,
        ..stack.topology()
    };
    let conn = flashgrid::queue::connect(AMQP, "test").await.unwrap();
    flashgrid::queue::check_partitions(&conn, &two)
        .await
        .unwrap();
    // The same count passes again.
    flashgrid::queue::check_partitions(&conn, &two)
        .await
        .unwrap();
    let _ = conn.close(200, "".into()).await;
    let mut cfg = stack.worker_config();
    cfg.services.queue_partitions = 1;
    let ran = tokio::time::timeout(
        Duration::from_secs(30),
        flashgrid::worker::run(cfg, tokio_util::sync::CancellationToken::new()),
    )
    .await
    .expect("the worker stops at start");
    let e = format!("{:#}", ran.unwrap_err());
    assert!(
        e.contains(&two.partitions_marker()) && e.contains("FLASHGRID_QUEUE_PARTITIONS=1"),
        "{e}"
    );
}
