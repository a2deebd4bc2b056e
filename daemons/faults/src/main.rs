//! `flashgrid-faults`: runs the fault matrix (`just faults`) or soaks it
//! (`just soak`), one line per run; exit status 1 if any verdict failed
//! (a scenario with a known failure, named by its issue, excepted), 2 if a
//! scenario could not run.

use anyhow::Context;
use clap::Parser;
use flashgrid_faults::{self as faults, Binaries, Options, Report, Scenario};
use std::path::PathBuf;
use std::time::Duration;

/// Injects each fault a sale meets in production into a burst of buyers and
/// checks that nothing was oversold, leaked, lost or counted twice.
#[derive(Debug, Parser)]
#[command(name = "flashgrid-faults", version)]
struct Opts {
    /// Scenarios to run (default: all; `--list` names them).
    scenarios: Vec<String>,

    /// Runs of each scenario.
    #[arg(long, default_value = "1")]
    runs: usize,

    /// Buyers per run, each wanting one seat.
    #[arg(long, default_value = "3000")]
    buyers: usize,

    /// Gateways, and workers, each run starts: `2` for two of each,
    /// `1,2` for every scenario in both topologies (a scenario needing more,
    /// such as redis-wipe-commit-held, always gets its minimum).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    instances: Vec<usize>,

    /// Seats on sale.
    #[arg(long, default_value = "300")]
    capacity: u32,

    /// Buyers arrive evenly over this many seconds.
    #[arg(long, default_value = "3")]
    spread: f64,

    /// Where the daemons' logs go.
    #[arg(long, default_value = ".run/faults")]
    log_dir: PathBuf,

    /// Also write the counts per scenario, as a Markdown table, to this file.
    #[arg(long)]
    table: Option<PathBuf>,

    /// List the scenarios and what each injects, then exit.
    #[arg(long)]
    list: bool,

    /// Run on the local clusters the file `FLASHGRID_TEST_CLUSTER_ENV`
    /// names (`just faults --cluster` starts its own): the cluster drills
    /// by default, two gateways and two workers.
    #[arg(long)]
    cluster: bool,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Opts::parse()).await {
        Ok(code) => code,
        Err(e) => {
            // An operator error: the message says what to fix; no backtrace.
            eprintln!("flashgrid-faults: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run(o: Opts) -> anyhow::Result<std::process::ExitCode> {
    if o.list {
        for s in Scenario::ALL.into_iter().chain(Scenario::CLUSTER) {
            let known = s
                .known_failure()
                .map(|k| format!(" [known to fail: {k}]"))
                .unwrap_or_default();
            println!("{:<22} {}{known}", s.name(), s.describe());
        }
        println!("{:<22} {}", faults::holds::NAME, faults::holds::DESCRIBE);
        return Ok(std::process::ExitCode::SUCCESS);
    }
    // The holds scenario runs by a harness of its own (flashgrid-load on a
    // hold sale): in the default matrix, or when named.
    let holds = !o.cluster
        && (o.scenarios.is_empty() || o.scenarios.iter().any(|n| n == faults::holds::NAME));
    let named: Vec<String> = o
        .scenarios
        .iter()
        .filter(|n| *n != faults::holds::NAME)
        .cloned()
        .collect();
    let scenarios: Vec<Scenario> = if o.scenarios.is_empty() {
        if o.cluster {
            Scenario::CLUSTER.to_vec()
        } else {
            Scenario::ALL.to_vec()
        }
    } else {
        named
            .iter()
            .map(|n| {
                Scenario::parse(n).with_context(|| {
                    let names: Vec<_> = Scenario::ALL
                        .iter()
                        .chain(&Scenario::CLUSTER)
                        .map(|s| s.name())
                        .chain([faults::holds::NAME])
                        .collect();
                    format!("no scenario {n:?}: choose among {}", names.join(", "))
                })
            })
            .collect::<anyhow::Result<_>>()?
    };
    anyhow::ensure!(o.runs >= 1, "--runs must be at least 1");
    anyhow::ensure!(
        o.buyers >= 1 && o.capacity >= 3,
        "--buyers must be at least 1 and --capacity at least 3"
    );
    anyhow::ensure!(
        (0.0..=600.0).contains(&o.spread),
        "--spread must be 0..=600 seconds"
    );
    anyhow::ensure!(
        !o.instances.is_empty()
            && o.instances
                .iter()
                .all(|n| (1..=faults::MAX_INSTANCES).contains(n)),
        "--instances takes 1 to {} (or a list: 1,2)",
        faults::MAX_INSTANCES
    );
    for s in &scenarios {
        if o.cluster && !s.runs_on_cluster() {
            anyhow::bail!(
                "{} acts on this machine's Redis: run it without --cluster",
                s.name()
            );
        }
        if !o.cluster && s.needs_cluster() {
            anyhow::bail!("{} drills a cluster: run it with --cluster", s.name());
        }
    }
    let runs_of = topologies(&scenarios, &o.instances);
    let mut opts = Options::new(Binaries::beside_current_exe()?, o.log_dir.clone());
    if o.cluster {
        opts.clusters = Some(faults::cluster::Clusters::from_env()?);
    }
    opts.buyers = o.buyers;
    opts.capacity = o.capacity;
    opts.spread = Duration::from_secs_f64(o.spread);

    println!(
        "fault matrix{}: {} buyers for {} seats over {:.1} s, {} run(s) each, instances {}; logs in {}",
        if o.cluster { " on the clusters" } else { "" },
        opts.buyers,
        opts.capacity,
        o.spread,
        o.runs,
        o.instances
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
        o.log_dir.display()
    );
    let mut reports: Vec<Report> = Vec::new();
    // Runs that could not go on (the fault found nothing to act on, a
    // service did not answer the harness): said, and the others still run,
    // so one of them does not end a long soak; the exit status is then 2.
    let mut unrun = 0usize;
    let (mut holds_runs, mut holds_failed) = (0usize, 0usize);
    for run in 1..=o.runs {
        for &(s, instances) in &runs_of {
            opts.instances = instances;
            let prefix = if o.runs > 1 {
                format!("[{run}/{}] ", o.runs)
            } else {
                String::new()
            };
            let r = match faults::run(s, &opts).await {
                Ok(r) => r,
                Err(e) => {
                    unrun += 1;
                    println!(
                        "{prefix}{} COULD NOT RUN: {e:#}",
                        faults::report::label(s, instances)
                    );
                    continue;
                }
            };
            if r.passed() {
                println!("{prefix}{}", r.line());
            } else {
                println!("{prefix}{}", r.explain());
                if let Some(k) = s.known_failure() {
                    println!("  known failure: {k}");
                }
            }
            reports.push(r);
        }
        if holds {
            for &workers in &o.instances {
                let prefix = if o.runs > 1 {
                    format!("[{run}/{}] ", o.runs)
                } else {
                    String::new()
                };
                match faults::holds::run(&opts.binaries, workers, &o.log_dir).await {
                    Ok(h) if h.passed() => println!("{prefix}{}", h.line()),
                    Ok(h) => {
                        holds_failed += 1;
                        println!("{prefix}{}", h.explain());
                    }
                    Err(e) => {
                        unrun += 1;
                        println!("{prefix}{} COULD NOT RUN: {e:#}", faults::holds::NAME);
                    }
                }
                holds_runs += 1;
            }
        }
    }
    let failed = reports.iter().filter(|r| !r.passed()).count() + holds_failed;
    let known = reports
        .iter()
        .filter(|r| !r.passed() && r.scenario.known_failure().is_some())
        .count();
    let unexpected = failed - known;
    println!(
        "{} of {} runs passed{}{}{}",
        reports.len() + holds_runs - failed,
        reports.len() + holds_runs,
        if known == 0 {
            String::new()
        } else {
            format!(", {known} known failure(s)")
        },
        if unrun == 0 {
            String::new()
        } else {
            format!(", {unrun} more could not run")
        },
        if unexpected == 0 { "" } else { ": FAILED" }
    );
    if let Some(path) = &o.table {
        std::fs::write(path, faults::report::soak_table(&reports))
            .with_context(|| format!("write {}", path.display()))?;
    }
    if unrun > 0 {
        return Ok(std::process::ExitCode::from(2));
    }
    Ok(if unexpected == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

/// Each scenario in each topology asked for, topology by topology; a
/// scenario needing more instances than asked runs with its minimum, once
/// (not again for a topology that gives it the same).
fn topologies(scenarios: &[Scenario], instances: &[usize]) -> Vec<(Scenario, usize)> {
    let mut runs: Vec<(Scenario, usize)> = Vec::new();
    for &n in instances {
        for &s in scenarios {
            let run = (s, n.max(s.min_instances()));
            if !runs.contains(&run) {
                runs.push(run);
            }
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_scenario_runs_once_per_topology_and_never_below_its_minimum() {
        let held = Scenario::RedisWipeCommitHeld;
        let both = topologies(&[Scenario::RedisCut, held], &[1, 2]);
        assert_eq!(
            both,
            [(Scenario::RedisCut, 1), (held, 2), (Scenario::RedisCut, 2)]
        );
        assert_eq!(topologies(&[held], &[1]), [(held, 2)]);
    }
}
