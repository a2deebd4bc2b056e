//! `flashgrid-load` against a real stack: the report it prints agrees with
//! what PostgreSQL holds.

use crate::helpers::{TOKEN, TestStack};
use clap::Parser;
use flashgrid_load::cli::{Opts, run};

/// `flashgrid-load` on the stack's event `attacked`, with the admin token.
fn attack_opts(stack: &TestStack, args: &[&str]) -> Opts {
    let base = ["flashgrid-load", "--url", &stack.url, "--event", "attacked"];
    let token = ["--token", TOKEN];
    Opts::parse_from(base.into_iter().chain(token).chain(args.iter().copied()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_attack_reports_what_the_database_holds() {
    let stack = TestStack::spawn().await;
    let opts = attack_opts(
        &stack,
        &["--capacity", "25", "-n", "400", "-c", "100", "--json"],
    );
    let report = run(opts).await.expect("the attack runs");
    assert_eq!(report.verdict, "pass", "{}", report.text());
    assert_eq!(report.requests, 400);
    assert_eq!(
        report.statuses.values().sum::<u64>(),
        400,
        "every request answered"
    );
    // Answered means a decision (202 or 409), not any status at all.
    let answers: Vec<&str> = report.statuses.keys().map(String::as_str).collect();
    assert!(
        answers.iter().all(|s| *s == "202" || *s == "409"),
        "a healthy stack answers every purchase 202 or 409, got {answers:?}"
    );
    assert_eq!(report.confirmed, 25);
    assert_eq!(report.confirmed + report.rejected, report.accepted);
    assert_eq!(
        (report.pending, report.lost, report.oversold),
        (0, 0, false)
    );
    let (rows, seats, counter) = stack.db_counts("attacked").await;
    assert_eq!((rows, seats, counter), (25, 25, 25));
    let json = serde_json::to_value(&report).unwrap();
    for field in [
        "rps",
        "latency_ms",
        "statuses",
        "confirmed",
        "rejected",
        "pending",
        "oversold",
        "lost",
    ] {
        assert!(json.get(field).is_some(), "JSON report lacks {field}");
    }
    assert!(
        json["latency_ms"]["p99_9"].as_f64().unwrap()
            >= json["latency_ms"]["p50"].as_f64().unwrap()
    );

    // A second attack on the same event (reset again) also passes: runs do
    // not collide on buyers or keys.
    let again = attack_opts(
        &stack,
        &["--capacity", "5", "-n", "50", "-c", "10", "--users", "3"],
    );
    let again = run(again).await.unwrap();
    assert_eq!(again.verdict, "pass", "{}", again.text());
    assert_eq!(again.confirmed, 5);
}

/// What `flashgrid-load` with these arguments says is wrong.
async fn usage_error(args: &[&str]) -> String {
    let argv = std::iter::once("flashgrid-load").chain(args.iter().copied());
    run(Opts::parse_from(argv)).await.unwrap_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacking_without_a_gateway_is_a_usage_error() {
    let err = usage_error(&["--url", "http://127.0.0.1:9", "--event", "x", "-n", "5"]).await;
    assert!(err.contains("cannot reach the gateway"), "{err}");
    let err = usage_error(&["--event", "Bad Id", "-n", "5"]).await;
    assert!(err.contains("--event"), "{err}");
}
