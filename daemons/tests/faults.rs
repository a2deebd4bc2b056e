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
//!
//! The holds scenario (`holds_worker_kill`, `…_x2`; `just faults
//! holds-worker-kill`) runs a hold sale through `flashgrid-load` with a
//! worker SIGKILLed as holds are released.

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

/// The holds scenario (`flashgrid_faults::holds`): a hold sale with half
/// the winners abandoning, worker 0 SIGKILLed as holds are released.
async fn holds(workers: usize) {
    let binaries = Binaries {
        gateway: env!("CARGO_BIN_EXE_flashgrid-gateway").into(),
        worker: env!("CARGO_BIN_EXE_flashgrid-worker").into(),
    };
    let logs = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("faults");
    let run = faults::holds::run(&binaries, workers, &logs)
        .await
        .expect("the scenario ran");
    println!("{}\n{}", run.line(), run.report.text());
    assert!(run.passed(), "{}\n{}", run.explain(), run.report.text());
    let c = &run.report.holds.as_ref().expect("a hold sale").checkout;
    assert_eq!(c.won, 200, "the crowd won every seat");
    assert_eq!(c.purchased + c.too_late + c.abandoned, 200);
    assert!(c.released() >= c.abandoned, "every abandoned hold released");
    assert_eq!(c.resold, c.released(), "every released seat sold again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_worker_kill() {
    holds(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_worker_kill_x2() {
    holds(2).await;
}
