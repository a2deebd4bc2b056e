//! The holds scenario (`holds-worker-kill`): a sale of 200 seats held 3 s
//! each, half of the winners abandoning their hold, and worker 0 SIGKILLed
//! (restarted 1 s later) once the first holds are being released —
//! mid-sweep, while late buyers come for the seats. The sale is driven and
//! judged by `flashgrid-load` on hold sales (never more purchased than the
//! capacity, nor held at once; every purchase counted once; every
//! abandoned hold expired; every released seat sold again), then
//! PostgreSQL's rows are held against the event's counts. Worker kills
//! only: a Redis loss is a known gap of holds (docs/HOLDS.md).

use crate::Binaries;
use anyhow::Context;
use clap::Parser;
use flashgrid_testkit::{Instance, Stack};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// The scenario's name for `just faults`.
pub const NAME: &str = "holds-worker-kill";
/// What it injects, for `--list`.
pub const DESCRIBE: &str = "a hold sale (200 seats held 3 s, half the winners abandoning): worker 0 SIGKILLed as the first holds are released, restarted 1 s later, while late buyers come";

const SEATS: u32 = 200;
const EVENT: &str = "held-sale";

/// One run of the scenario.
#[derive(Debug)]
pub struct HoldsRun {
    pub workers: usize,
    /// Seats released when worker 0 was killed.
    pub released_at_kill: i32,
    pub report: flashgrid_load::Report,
    /// What PostgreSQL's rows say against the event's counts, and the
    /// load generator's problems.
    pub problems: Vec<String>,
    pub wall: Duration,
}

impl HoldsRun {
    pub fn passed(&self) -> bool {
        self.report.passed() && self.problems.is_empty()
    }

    /// One line, as the matrix prints each run.
    pub fn line(&self) -> String {
        let c = self
            .report
            .holds
            .as_ref()
            .map(|h| h.checkout.clone())
            .unwrap_or_default();
        format!(
            "{NAME}{} {}: {} holds won, {} purchased, {} given back and {} sold again; worker 0 killed at {} released; {:.1} s",
            if self.workers > 1 { " x2" } else { "" },
            if self.passed() { "PASS" } else { "FAIL" },
            c.won,
            c.all_purchased(),
            c.released(),
            c.resold,
            self.released_at_kill,
            self.wall.as_secs_f64()
        )
    }

    /// The line, and what failed.
    pub fn explain(&self) -> String {
        let mut s = self.line();
        for p in &self.problems {
            s.push_str("\n  ! ");
            s.push_str(p);
        }
        s
    }
}

/// Runs the scenario with `workers` workers (worker 0 killed) and one
/// gateway, on this machine's services; logs in `log_dir`.
pub async fn run(binaries: &Binaries, workers: usize, log_dir: &Path) -> anyhow::Result<HoldsRun> {
    let started = Instant::now();
    std::fs::create_dir_all(log_dir).with_context(|| format!("create {}", log_dir.display()))?;
    let stack = Stack::empty().await;
    let log = |n: usize| log_dir.join(format!("{NAME}-{}-worker{n}.log", stack.ns));
    for n in 0..workers {
        stack.start_process_with(Instance::worker(n), &binaries.worker, &[], Some(&log(n)));
    }
    stack.start_gateway().await;
    stack.wait_ready().await;
    let argv = [
        "flashgrid-load",
        "--url",
        &stack.url,
        "--token",
        flashgrid_testkit::TOKEN,
        "--event",
        EVENT,
        "--capacity",
        &SEATS.to_string(),
        "--hold",
        "3",
        "-n",
        "3000",
        "-c",
        "300",
        "--checkout",
        "0.5",
        "--think",
        "300ms",
        "--late-rate",
        "300",
    ]
    .map(str::to_owned);
    let sale = tokio::spawn(flashgrid_load::cli::run(
        flashgrid_load::cli::Opts::parse_from(argv),
    ));
    // The fault: once the first holds are released.
    let released = || async {
        sqlx::query_scalar::<_, i32>("SELECT released FROM events WHERE event_id = $1")
            .bind(EVENT)
            .fetch_optional(&stack.pool)
            .await
            .map(Option::unwrap_or_default)
    };
    let watch_start = Instant::now();
    while released().await? == 0 {
        anyhow::ensure!(
            watch_start.elapsed() < Duration::from_secs(60),
            "no hold was released within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let released_at_kill = released().await?;
    stack.stop(Instance::worker(0)).await; // SIGKILL
    tokio::time::sleep(Duration::from_secs(1)).await; // the fault lasts 1 s
    stack.start_process_with(Instance::worker(0), &binaries.worker, &[], Some(&log(0)));

    let report = sale
        .await
        .context("the load generator panicked")?
        .map_err(|e| anyhow::anyhow!("the sale could not run: {e}"))?;
    let mut problems = report.problems.clone();
    if !report.passed() && problems.is_empty() {
        problems.push(format!("the load generator's verdict: {}", report.verdict));
    }
    problems.extend(rows_against_counts(&stack).await?);
    Ok(HoldsRun {
        workers,
        released_at_kill,
        report,
        problems,
        wall: started.elapsed(),
    })
}

/// PostgreSQL's rows held against the event's counts at the end: every
/// seat purchased (the late buyers bought back every seat given back),
/// none held, each release counted once, the buyers' holdings the seats
/// they bought.
async fn rows_against_counts(stack: &Stack) -> anyhow::Result<Vec<String>> {
    let (confirmed, purchased, released, holdings): (i32, i32, i32, i64) = sqlx::query_as(
        "SELECT confirmed, purchased, released,
                (SELECT COALESCE(SUM(quantity), 0)::bigint FROM holdings h WHERE h.event_id = e.event_id)
         FROM events e WHERE event_id = $1",
    )
    .bind(EVENT)
    .fetch_one(&stack.pool)
    .await?;
    let by_state: BTreeMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
        "SELECT state, SUM(quantity)::bigint FROM reservations WHERE event_id = $1 GROUP BY state",
    )
    .bind(EVENT)
    .fetch_all(&stack.pool)
    .await?
    .into_iter()
    .collect();
    let seats = |s: &str| by_state.get(s).copied().unwrap_or(0);
    let all = i64::from(SEATS);
    let mut problems = Vec::new();
    if (i64::from(confirmed), i64::from(purchased), holdings) != (all, all, all) {
        problems.push(format!(
            "the event counts {confirmed} taken and {purchased} purchased, the buyers hold {holdings}, of {SEATS} seats"
        ));
    }
    if seats("purchased") != all || seats("held") != 0 {
        problems.push(format!("the rows by state: {by_state:?}"));
    }
    if seats("expired") + seats("cancelled") != i64::from(released) {
        problems.push(format!(
            "the event counts {released} seats released, the rows {by_state:?}"
        ));
    }
    Ok(problems)
}
