//! `just api-check`: the HTTP API judged against its OpenAPI document by
//! tools we did not write (schemathesis, openapi-spec-validator) and by a
//! probe of what generated requests cannot reach (scripts/api-check/).
//!
//! This test starts the stack they run against: gateway 0 and a worker as
//! any stack has them, gateway 1 strict (rate limits of one request per
//! 100 s, a 1 s body timeout, 4 connections per address) and gateway 2 with
//! its RabbitMQ connection cut. Ignored by `just test`: it needs the
//! virtual environment `scripts/api-check.sh` makes (API_CHECK_PYTHON).

use flashgrid_testkit::{FEED_TOKEN, Instance, Proxy, Stack, TOKEN, eventually};
use std::path::Path;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by `just api-check`, which installs schemathesis"]
async fn schemathesis_and_the_probe_find_nothing_wrong() {
    let python = std::env::var("API_CHECK_PYTHON")
        .expect("API_CHECK_PYTHON: the virtual environment's python (run `just api-check`)");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let reports = root.join(".run/api-check");
    std::fs::create_dir_all(&reports).expect("create .run/api-check");
    let log = reports.join("gateways.log");

    let stack = Stack::empty_with_gateways(3).await;
    stack.start_gateway().await;
    stack.start_worker().await;
    let gateway = Path::new(env!("CARGO_BIN_EXE_flashgrid-gateway"));
    let strict = [
        ("FLASHGRID_RATE_LIMIT", "0.01"),
        ("FLASHGRID_RATE_BURST", "1"),
        ("FLASHGRID_READ_RATE_LIMIT", "0.01"),
        ("FLASHGRID_READ_RATE_BURST", "1"),
        ("FLASHGRID_BODY_TIMEOUT", "1"),
        ("FLASHGRID_MAX_CONNECTIONS_PER_ADDR", "4"),
        // The probe holds 4 idle connections open while it is refused.
        ("FLASHGRID_HEADER_TIMEOUT", "30"),
    ]
    .map(|(k, v)| (k, v.to_owned()));
    stack.start_process_with(Instance::gateway(1), gateway, &strict, Some(&log));
    let amqp = Proxy::start(5672).await;
    let via_proxy = [(
        "AMQP_URL",
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", amqp.port),
    )];
    stack.start_process_with(Instance::gateway(2), gateway, &via_proxy, Some(&log));
    stack.wait_gateway_ready(1).await;
    stack.wait_gateway_ready(2).await;
    amqp.cut();
    let broken = stack.gateway_url(2);
    let http = reqwest::Client::new();
    eventually(
        "gateway 2 to tell its broker is away",
        Duration::from_secs(30),
        || async {
            let r = http.get(format!("{broken}/readyz")).send().await.ok()?;
            (r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE).then_some(())
        },
    )
    .await;

    let status = tokio::process::Command::new(&python)
        .arg(root.join("scripts/api-check/check.py"))
        .args(["--url", &stack.url])
        .args(["--strict", &stack.gateway_url(1)])
        .args(["--broken", &broken])
        .args(["--admin-token", TOKEN, "--feed-token", FEED_TOKEN])
        .arg("--committed")
        .arg(root.join("docs/openapi.json"))
        .arg("--report-dir")
        .arg(&reports)
        .args([
            "--seed",
            &std::env::var("API_CHECK_SEED").unwrap_or_else(|_| "1".into()),
        ])
        .kill_on_drop(true)
        .status()
        .await
        .unwrap_or_else(|e| panic!("run {python}: {e}"));
    assert!(
        status.success(),
        "the API check failed (above; the gateways' logs: {})",
        log.display()
    );
}
