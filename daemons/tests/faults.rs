//! The fault matrix (see `flashgrid_faults`): each scenario injects one fault
//! into a burst of 3,000 real-client buyers for 300 seats, against the real
//! daemon binaries, and fails on any verdict — oversold, leaked, lost,
//! double, drift, dead — or any 5xx other than 503.
//!
//! Every scenario runs with one gateway and one worker; those where a second
//! instance changes what is tested run again with two of each (`…_x2`):
//! a worker killed or holding a commit while another sells on, a gateway
//! killed while another serves, a Redis loss or a PostgreSQL cut seen by
//! every daemon, rejections derived again through another gateway than the
//! one that accepted them. The rest (a broker or Redis cut, a retry storm,
//! a redelivery, a partial loss) meet the same code through one instance or
//! two; `just soak` runs them in both topologies.

use flashgrid_faults::{self as faults, Binaries, Options, Scenario};

async fn check(scenario: Scenario, instances: usize) {
    let mut opts = Options::new(
        Binaries {
            gateway: env!("CARGO_BIN_EXE_flashgrid-gateway").into(),
            worker: env!("CARGO_BIN_EXE_flashgrid-worker").into(),
        },
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("faults"),
    );
    opts.instances = instances;
    let report = faults::run(scenario, &opts)
        .await
        .expect("the scenario ran");
    println!("{}", report.line());
    assert!(report.passed(), "{}", report.explain());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_kill() {
    check(Scenario::WorkerKill, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_kill() {
    check(Scenario::GatewayKill, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_cut() {
    check(Scenario::BrokerCut, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cut() {
    check(Scenario::RedisCut, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cut() {
    check(Scenario::PostgresCut, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_wipe() {
    check(Scenario::RedisWipe, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_wipe_sold_out() {
    check(Scenario::RedisWipeSoldOut, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_storm() {
    check(Scenario::RetryStorm, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivery() {
    check(Scenario::Redelivery, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_users_lost() {
    check(Scenario::RedisUsersLost, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outcomes_lost() {
    check(Scenario::RedisOutcomesLost, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restore_older() {
    check(Scenario::RedisRestoreOlder, 1).await;
}

/// Always two workers (`Scenario::min_instances`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_wipe_commit_held_x2() {
    check(Scenario::RedisWipeCommitHeld, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_kill_x2() {
    check(Scenario::WorkerKill, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_kill_x2() {
    check(Scenario::GatewayKill, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cut_x2() {
    check(Scenario::PostgresCut, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_wipe_x2() {
    check(Scenario::RedisWipe, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_wipe_sold_out_x2() {
    check(Scenario::RedisWipeSoldOut, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restore_older_x2() {
    check(Scenario::RedisRestoreOlder, 2).await;
}
