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

/// How many of the event's reservations are in each state, in PostgreSQL.
async fn states(stack: &TestStack, event: &str) -> std::collections::BTreeMap<String, i64> {
    sqlx::query_as::<_, (String, i64)>(
        "SELECT state, SUM(quantity)::bigint FROM reservations WHERE event_id = $1 GROUP BY state",
    )
    .bind(event)
    .fetch_all(&stack.pool)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_sale_sells_every_abandoned_seat_again() {
    let stack = TestStack::spawn().await;
    // Half the winners purchase; the other half let their 2-second holds
    // run out, and late buyers take the seats.
    let opts = attack_opts(
        &stack,
        &[
            "--capacity",
            "30",
            "--hold",
            "4",
            "-n",
            "300",
            "-c",
            "50",
            "--checkout",
            "0.5",
            "--think",
            "200ms",
        ],
    );
    let report = run(opts).await.expect("the attack runs");
    assert_eq!(report.verdict, "pass", "{}", report.text());
    let holds = report
        .holds
        .as_ref()
        .expect("a hold sale reports its holds");
    let c = &holds.checkout;
    // A purchase that came too late (a loaded machine) let its hold expire
    // too: its seat is sold again like an abandoned one.
    assert_eq!((c.won, c.purchased + c.too_late, c.abandoned), (30, 15, 15));
    assert_eq!(
        c.expired,
        c.abandoned + c.too_late,
        "every abandoned hold expired"
    );
    assert_eq!(c.resold, c.released(), "every seat given back sold again");
    assert!(!c.resale_timed_out && c.anomalies.is_empty(), "{c:?}");
    // PostgreSQL: 30 seats purchased, the 15 abandoned ones expired.
    let rows = states(&stack, "attacked").await;
    assert_eq!(rows.get("purchased"), Some(&30), "{rows:?}");
    assert_eq!(
        rows.get("expired"),
        Some(&(15 + c.too_late as i64)),
        "{rows:?}"
    );
    assert_eq!(rows.get("held"), None, "{rows:?}");
    let e = stack.event("attacked").await;
    assert_eq!((e.purchased, e.held, e.remaining), (30, 0, 0));
    let text = report.text();
    assert!(
        text.contains(&format!("{} seats resold", c.resold))
            && text.contains("purchased 30, held 0, remaining 0"),
        "{text}"
    );

    // Set up again without --hold: the reset makes decisions final again.
    let again = attack_opts(&stack, &["--capacity", "10", "-n", "50", "-c", "10"]);
    let again = run(again).await.unwrap();
    assert_eq!(again.verdict, "pass", "{}", again.text());
    assert!(again.holds.is_none());
    assert_eq!(again.event.as_ref().unwrap().hold_seconds, None);
    assert_eq!(states(&stack, "attacked").await.get("confirmed"), Some(&10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_flags_that_cannot_work_are_usage_errors() {
    let e = usage_error(&["--event", "e", "--hold", "5", "-n", "1"]).await;
    assert!(e.contains("--capacity"), "{e}");
    let e = usage_error(&["--event", "e", "--checkout", "1.5", "-n", "1"]).await;
    assert!(e.contains("--checkout"), "{e}");
}
