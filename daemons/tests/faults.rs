//! The fault matrix (see `flashgrid_faults`): each scenario injects one fault
//! into a burst of 3,000 real-client buyers for 300 seats, against the real
//! daemon binaries, and fails on any verdict — oversold, leaked, lost,
//! double, drift, dead — or any 5xx other than 503.

use flashgrid_faults::{self as faults, Binaries, Options, Scenario};

async fn check(scenario: Scenario) {
    let opts = Options::new(
        Binaries {
            gateway: env!("CARGO_BIN_EXE_flashgrid-gateway").into(),
            worker: env!("CARGO_BIN_EXE_flashgrid-worker").into(),
        },
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("faults"),
    );
    let report = faults::run(scenario, &opts)
        .await
        .expect("the scenario ran");
    println!("{}", report.line());
    assert!(report.passed(), "{}", report.explain());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_kill() {
    check(Scenario::WorkerKill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_kill() {
    check(Scenario::GatewayKill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_cut() {
    check(Scenario::BrokerCut).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cut() {
    check(Scenario::RedisCut).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cut() {
    check(Scenario::PostgresCut).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_wipe() {
    check(Scenario::RedisWipe).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_wipe_sold_out() {
    check(Scenario::RedisWipeSoldOut).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_storm() {
    check(Scenario::RetryStorm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivery() {
    check(Scenario::Redelivery).await;
}
