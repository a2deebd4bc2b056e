//! The checker checked: each sabotage (see `flashgrid_faults::sabotage`)
//! runs the scenario that exposes it, and the matrix must **fail** with the
//! verdict the defect breaks. A matrix that passes here has gone blind.

use flashgrid_faults::sabotage::Sabotage;
use flashgrid_faults::{self as faults, Binaries, Options};
use std::path::Path;

async fn must_fail(sabotage: Sabotage) {
    let sabotaged = Path::new(env!("CARGO_BIN_EXE_flashgrid-sabotaged-worker"));
    // The real daemons are built beside it by `cargo test --workspace`.
    let real =
        Binaries::beside(sabotaged.parent().expect("a directory")).expect("the daemons' binaries");
    let binaries = Binaries {
        worker: if sabotage.in_worker() {
            sabotaged.into()
        } else {
            real.worker
        },
        gateway: real.gateway,
    };
    let mut opts = Options::new(
        binaries,
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("sabotage"),
    );
    opts.sabotage = Some(sabotage);
    let scenario = sabotage.scenario();
    // A fault lands at a moment the matrix chooses by watching the sale, not
    // at an exact instruction (a SIGKILL may find no acked batch mid-commit):
    // the defect must be caught in one of three runs, else the matrix is
    // blind to it.
    let mut said = Vec::new();
    for _ in 0..3 {
        let report = faults::run(scenario, &opts)
            .await
            .expect("the scenario ran");
        println!("{}: {}", sabotage.name(), report.line());
        let caught = report
            .verdicts
            .pairs()
            .into_iter()
            .find(|(k, _)| *k == sabotage.breaks())
            .map_or(0, |(_, n)| n);
        if caught > 0 {
            return;
        }
        said.push(report.explain());
    }
    panic!(
        "{} under {} should fail `{}`, but in three runs the matrix said:\n{}",
        sabotage.name(),
        scenario.name(),
        sabotage.breaks(),
        said.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_acking_before_its_commit_loses_buyers() {
    must_fail(Sabotage::AckBeforeCommit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stock_rebuilt_from_the_capacity_is_caught_by_the_revocations() {
    must_fail(Sabotage::RestockFromCapacity).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decide_ignoring_the_limit_is_caught_by_the_database_guard() {
    must_fail(Sabotage::IgnoreLimit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decide_ignoring_the_limit_without_the_guard_is_over_limit() {
    must_fail(Sabotage::IgnoreLimitUnguarded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_route_guessing_rejected_is_drift() {
    must_fail(Sabotage::UnknownIsRejected).await;
}
