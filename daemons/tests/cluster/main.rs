//! The cluster suite: FlashGrid on a Redis Cluster (3 masters, 3 replicas)
//! and a 3-node RabbitMQ cluster with quorum queues, two gateways and two
//! workers as processes. `just test-cluster` starts clusters of its own
//! for it (apart from `just cluster up`'s: its tests may kill nodes) and
//! runs it, one test at a time; `just test` lists its tests as ignored.
//! The drills kill or cut nodes mid-sale and leave both clusters whole.

use clap::Parser;
use flashgrid_testkit::{FEED_TOKEN, Instance, Services, Stack, TOKEN, eventually};
use flashgrid_wire::{Accepted, ReservationView, Status};
use std::path::Path;
use std::time::Duration;

const GATEWAY: &str = env!("CARGO_BIN_EXE_flashgrid-gateway");
const WORKER: &str = env!("CARGO_BIN_EXE_flashgrid-worker");

/// A stack on the clusters with room for two gateways, none started.
async fn on_clusters() -> Stack {
    Stack::on(Services::clusters(), 2).await
}

fn start(stack: &Stack, which: Instance) {
    let bin = match which.role {
        flashgrid_testkit::Role::Gateway => GATEWAY,
        flashgrid_testkit::Role::Worker => WORKER,
    };
    stack.start_process_with(which, Path::new(bin), &[], None);
}

/// Two gateways and two workers, every gateway ready.
async fn two_of_each(stack: &Stack) {
    for n in 0..2 {
        start(stack, Instance::worker(n));
        start(stack, Instance::gateway(n));
    }
    for n in 0..2 {
        stack.wait_gateway_ready(n).await;
    }
}

/// Masters of the Redis Cluster that hold keys of the stack's namespace.
async fn masters_holding_keys(stack: &Stack) -> usize {
    let mut holding = 0;
    let target = flashgrid::store::RedisTarget::parse(&stack.services.redis_url).unwrap();
    for url in target.nodes() {
        let client = redis::Client::open(url.as_str()).unwrap();
        let Ok(mut c) = client.get_multiplexed_async_connection().await else {
            continue;
        };
        let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut c).await.unwrap();
        if !matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master") {
            continue;
        }
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(stack.namespace().key_pattern())
            .query_async(&mut c)
            .await
            .unwrap();
        holding += usize::from(!keys.is_empty());
    }
    holding
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local clusters: run `just test-cluster`"]
async fn sales_through_two_gateways_and_two_workers_sell_each_seat_once() {
    let stack = on_clusters().await;
    two_of_each(&stack).await;
    let urls = format!("{},{}", stack.gateway_url(0), stack.gateway_url(1));
    // Several events at once, so that their keys fall on several shards
    // and their messages on several partitions.
    let events = ["drop-a", "drop-b", "drop-c", "drop-d", "drop-e", "drop-f"];
    let attacks = events.iter().map(|event| {
        let opts = flashgrid_load::cli::Opts::parse_from([
            "flashgrid-load",
            "--url",
            &urls,
            "--event",
            event,
            "--token",
            TOKEN,
            "--capacity",
            "40",
            "-n",
            "1500",
            "-c",
            "100",
            "--json",
        ]);
        flashgrid_load::cli::run(opts)
    });
    let reports = futures::future::join_all(attacks).await;
    for (event, report) in events.iter().zip(reports) {
        let report = report.unwrap_or_else(|e| panic!("attack on {event}: {e}"));
        assert_eq!(report.verdict, "pass", "{event}: {}", report.text());
        assert_eq!(report.confirmed, 40, "{event}: every seat sold");
        assert_eq!(
            (report.pending, report.lost, report.oversold),
            (0, 0, false),
            "{event}"
        );
        let (rows, seats, _) = stack.db_counts(event).await;
        assert_eq!((rows, seats), (40, 40), "{event} in PostgreSQL");
    }
    // Hash tags put each event in one slot; six events land on more than
    // one of the three shards (the chance that all six share one: 1/243).
    assert!(
        masters_holding_keys(&stack).await >= 2,
        "the events' keys are all on one shard"
    );
    every_daemon_reaches_every_node(&stack).await;
}

/// Gateway 0's feed lists the two gateways and two workers, each reaching
/// every node of both clusters: 3 Redis masters, 3 replicas, 3 RabbitMQ
/// nodes (one of them its connection's).
async fn every_daemon_reaches_every_node(stack: &Stack) {
    use futures::StreamExt;
    let ws_url = format!(
        "{}/ws?token={FEED_TOKEN}",
        stack.gateway_url(0).replace("http://", "ws://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut last = None;
    let snap = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the feed never listed 4 daemons reaching every node; last: {last:#?}"
        );
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a snapshot within 5 s")
            .unwrap()
            .unwrap();
        let s: flashgrid_wire::Snapshot = serde_json::from_str(msg.to_text().unwrap()).unwrap();
        if s.daemons.len() == 4
            && s.daemons
                .iter()
                .all(|d| d.silent_ms < 2000 && d.unreached().next().is_none())
        {
            break s;
        }
        last = Some(s);
    };
    let ids: Vec<&str> = snap.daemons.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["gateway-0", "gateway-1", "worker-0", "worker-1"]);
    for d in &snap.daemons {
        let of = |service: &'static str| d.nodes.iter().filter(move |n| n.service == service);
        assert_eq!(of("postgres").count(), 1, "{d:?}");
        let roles: Vec<&str> = of("redis").filter_map(|n| n.role.as_deref()).collect();
        assert_eq!(roles.len(), 6, "{d:?}");
        assert_eq!(roles.iter().filter(|r| **r == "master").count(), 3, "{d:?}");
        assert_eq!(of("rabbitmq").count(), 3, "{d:?}");
        assert_eq!(of("rabbitmq").filter(|n| n.connected).count(), 1, "{d:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local clusters: run `just test-cluster`"]
async fn a_decision_wakes_a_long_poll_on_the_other_gateway() {
    let stack = on_clusters().await;
    // Gateways only: the purchase waits in the queue until a worker runs.
    start(&stack, Instance::gateway(0));
    start(&stack, Instance::gateway(1));
    stack.wait_gateway_ready(0).await;
    stack.wait_gateway_ready(1).await;
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{}/admin/events", stack.gateway_url(0)))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"event_id": "polled", "name": "Polled", "capacity": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    // Bought through gateway 1 once it knows the event (it learns of it
    // through the cluster's pub/sub, or its periodic reload).
    let accepted: Accepted = eventually(
        "gateway 1 to take a purchase of the new event",
        Duration::from_secs(30),
        || async {
            let r = http
                .post(format!("{}/reserve", stack.gateway_url(1)))
                .json(&serde_json::json!({"event_id": "polled", "user_id": "ann", "quantity": 1}))
                .send()
                .await
                .ok()?;
            if r.status() != 202 {
                return None;
            }
            r.json().await.ok()
        },
    )
    .await;
    // Followed through gateway 0, long-polling; the worker starts after
    // the poll began. Only the worker's "decided" notice, sent through
    // the Redis Cluster, ends the poll before its 20 s: a poll that ends
    // pending means the notice never arrived.
    let url = format!(
        "{}{}?wait_ms=20000",
        stack.gateway_url(0),
        accepted.status_url
    );
    let poll = tokio::spawn({
        let http = http.clone();
        async move {
            http.get(url)
                .send()
                .await
                .unwrap()
                .json::<ReservationView>()
                .await
                .unwrap()
        }
    });
    // The worker starts once the poll waits (gateway 0 counts it).
    eventually(
        "the long-poll waiting on gateway 0",
        Duration::from_secs(10),
        || async {
            let text = http
                .get(format!("{}/metrics", stack.gateway_url(0)))
                .bearer_auth(FEED_TOKEN)
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            text.lines()
                .any(|l| l.starts_with("flashgrid_status_long_polls ") && l.ends_with(" 1"))
                .then_some(())
        },
    )
    .await;
    start(&stack, Instance::worker(0));
    let view = poll.await.unwrap();
    assert_eq!(view.status, Status::Confirmed, "{view:?}");
}

/// One cluster drill (see `flashgrid_faults`): 3,000 buyers for 300 seats
/// through two gateways and two workers, the fault mid-sale, every verdict
/// 0 — oversold, leaked, lost, double, drift, dead, over_limit,
/// unanswered, flipped.
async fn drill(scenario: flashgrid_faults::Scenario) {
    use flashgrid_faults::{Binaries, Options, cluster::Clusters};
    let mut opts = Options::new(
        Binaries {
            gateway: GATEWAY.into(),
            worker: WORKER.into(),
        },
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("cluster-faults"),
    );
    opts.instances = 2;
    opts.clusters = Some(Clusters::from_env().expect("the test clusters"));
    let report = flashgrid_faults::run(scenario, &opts)
        .await
        .expect("the drill ran");
    println!("{}", report.line());
    assert!(report.passed(), "{}", report.explain());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local clusters: run `just test-cluster`"]
async fn redis_master_kill() {
    drill(flashgrid_faults::Scenario::RedisMasterKill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local clusters: run `just test-cluster`"]
async fn rabbitmq_leader_kill() {
    drill(flashgrid_faults::Scenario::RabbitLeaderKill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local clusters: run `just test-cluster`"]
async fn gateway_worker_kill() {
    drill(flashgrid_faults::Scenario::GatewayWorkerKill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local clusters: run `just test-cluster`"]
async fn cluster_cut() {
    drill(flashgrid_faults::Scenario::ClusterCut).await;
}
