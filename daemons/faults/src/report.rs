//! What a scenario run found, as one line for the terminal, a full account
//! when it failed, and the soak's table for `docs/RELIABILITY.md`.

use super::buyers::Attempts;
use super::scenario::Scenario;
use super::verdict::Verdicts;
use std::fmt::Write;
use std::path::PathBuf;
use std::time::Duration;

/// One run of one scenario.
#[derive(Debug, Clone)]
pub struct Report {
    pub scenario: Scenario,
    /// Gateways, and workers, the run had.
    pub instances: usize,
    pub verdicts: Verdicts,
    /// A line per problem the verdicts counted.
    pub problems: Vec<String>,
    pub capacity: u32,
    pub buyers: usize,
    /// Seats PostgreSQL holds at the end.
    pub sold: i64,
    /// Purchases answered 202, 409 sold out, or never answered (gave up).
    pub accepted: usize,
    pub sold_out: usize,
    pub gave_up: usize,
    pub tally: Attempts,
    /// What the fault did.
    pub detail: String,
    /// Seats committed when the fault was injected.
    pub landed_at_sold: i64,
    /// When the fault was injected, from the burst's start.
    pub fault_at: Duration,
    /// From the fault's end until the gateway was ready again.
    pub ready_after: Option<Duration>,
    pub wall: Duration,
    /// The daemons' logs.
    pub logs: Vec<PathBuf>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.verdicts.passed()
    }

    /// The scenario and its topology: `redis-wipe` with one instance of
    /// each daemon, `redis-wipe×2` with two gateways and two workers.
    pub fn label(&self) -> String {
        label(self.scenario, self.instances)
    }

    /// Retries the buyers made beyond their first request.
    pub fn retries(&self) -> u64 {
        let copies = self.scenario.copies() as u64;
        self.tally
            .attempts
            .saturating_sub(self.buyers as u64 * copies)
    }

    /// `redis-cut     PASS  sold 300/300 · 202 × 641 · 409 × 2359 · retries 212 (503 × 190, transport × 22) · fault at 0.21 s with 101 sold · ready 0.00 s after · 9.8 s`
    pub fn line(&self) -> String {
        let mut s = format!(
            "{:<13} {}  sold {}/{} · 202 × {} · 409 × {} · retries {}",
            self.label(),
            if self.passed() { "PASS" } else { "FAIL" },
            self.sold,
            self.capacity,
            self.accepted,
            self.sold_out,
            self.retries(),
        );
        let t = &self.tally;
        let parts: Vec<String> = [
            ("503", t.unavailable),
            ("429", t.rate_limited),
            ("transport", t.transport),
            ("status 404", t.status_not_found),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k} × {n}"))
        .collect();
        if !parts.is_empty() {
            let _ = write!(s, " ({})", parts.join(", "));
        }
        if self.gave_up > 0 {
            let _ = write!(s, " · gave up × {}", self.gave_up);
        }
        let _ = write!(
            s,
            " · fault at {:.2} s with {} sold ({}) · ready {} after · {:.1} s",
            self.fault_at.as_secs_f64(),
            self.landed_at_sold,
            self.detail,
            self.ready_after
                .map(|d| format!("{:.2} s", d.as_secs_f64()))
                .unwrap_or_else(|| "never".into()),
            self.wall.as_secs_f64()
        );
        if !self.passed() {
            let failed: Vec<String> = self
                .verdicts
                .pairs()
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            let _ = write!(s, " · {}", failed.join(", "));
        }
        s
    }

    /// The line, every problem, and where the logs are.
    pub fn explain(&self) -> String {
        let mut s = self.line();
        for p in &self.problems {
            let _ = write!(s, "\n  {p}");
        }
        for l in &self.logs {
            let _ = write!(s, "\n  log: {}", l.display());
        }
        s
    }
}

/// A scenario's name, suffixed `×n` when it ran with `n` > 1 instances of
/// each daemon.
pub fn label(scenario: Scenario, instances: usize) -> String {
    if instances > 1 {
        format!("{}×{instances}", scenario.name())
    } else {
        scenario.name().to_owned()
    }
}

/// The soak's counts per scenario and topology, as a Markdown table.
pub fn soak_table(reports: &[Report]) -> String {
    let names = Verdicts::default().pairs().map(|(k, _)| k);
    let mut s = format!(
        "| scenario | runs | passed | {} | 202s (min–max) | retries (min–max) | ready after (max) | wall (max) |\n|{}\n",
        names.join(" | "),
        "---|".repeat(names.len() + 7),
    );
    let mut topologies: Vec<usize> = reports.iter().map(|r| r.instances).collect();
    topologies.sort_unstable();
    topologies.dedup();
    let rows = Scenario::ALL
        .into_iter()
        .chain(Scenario::CLUSTER)
        .flat_map(|s| topologies.iter().map(move |&n| (s, n)));
    for (scenario, instances) in rows {
        let runs: Vec<&Report> = reports
            .iter()
            .filter(|r| r.scenario == scenario && r.instances == instances)
            .collect();
        if runs.is_empty() {
            continue;
        }
        let mut v = Verdicts::default();
        for r in &runs {
            v.add(&r.verdicts);
        }
        let passed = runs.iter().filter(|r| r.passed()).count();
        let span = |f: &dyn Fn(&Report) -> u64| {
            let (lo, hi) = runs
                .iter()
                .map(|r| f(r))
                .fold((u64::MAX, 0), |(lo, hi), x| (lo.min(x), hi.max(x)));
            format!("{lo}–{hi}")
        };
        let ready = runs
            .iter()
            .map(|r| r.ready_after)
            .try_fold(Duration::ZERO, |m, d| d.map(|d| m.max(d)))
            .map(|d| format!("{:.2} s", d.as_secs_f64()))
            .unwrap_or_else(|| "never (once or more)".into());
        let wall = runs.iter().map(|r| r.wall).max().unwrap_or_default();
        let counts: Vec<String> = v.pairs().iter().map(|(_, n)| n.to_string()).collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {:.1} s |",
            label(scenario, instances),
            runs.len(),
            passed,
            counts.join(" | "),
            span(&|r| r.accepted as u64),
            span(&|r| r.retries()),
            ready,
            wall.as_secs_f64()
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(scenario: Scenario, verdicts: Verdicts) -> Report {
        Report {
            scenario,
            instances: 1,
            verdicts,
            problems: vec!["lost: b1 never decided".into()],
            capacity: 300,
            buyers: 3000,
            sold: 300,
            accepted: 600,
            sold_out: 2400,
            gave_up: 0,
            tally: Attempts {
                attempts: 3100,
                unavailable: 90,
                transport: 10,
                ..Attempts::default()
            },
            landed_at_sold: 100,
            detail: "2 keys deleted".into(),
            fault_at: Duration::from_millis(210),
            ready_after: Some(Duration::from_millis(40)),
            wall: Duration::from_secs(9),
            logs: vec![],
        }
    }

    #[test]
    fn a_line_says_pass_or_names_the_failed_verdicts() {
        let ok = report(Scenario::RedisCut, Verdicts::default());
        let line = ok.line();
        assert!(line.starts_with("redis-cut     PASS"), "{line}");
        assert!(
            line.contains("retries 100 (503 × 90, transport × 10)"),
            "{line}"
        );
        let bad = report(
            Scenario::RedisCut,
            Verdicts {
                lost: 1,
                ..Verdicts::default()
            },
        );
        assert!(bad.line().contains("FAIL"));
        assert!(bad.line().ends_with("lost 1"), "{}", bad.line());
        assert!(bad.explain().contains("b1 never decided"));
        let mut two = report(Scenario::RedisWipe, Verdicts::default());
        two.instances = 2;
        assert!(
            two.line().starts_with("redis-wipe×2  PASS"),
            "{}",
            two.line()
        );
    }

    #[test]
    fn the_soak_table_sums_each_scenario() {
        let runs = [
            report(Scenario::WorkerKill, Verdicts::default()),
            report(
                Scenario::WorkerKill,
                Verdicts {
                    double: 2,
                    ..Verdicts::default()
                },
            ),
        ];
        let mut two = report(Scenario::WorkerKill, Verdicts::default());
        two.instances = 2;
        let runs = [runs[0].clone(), runs[1].clone(), two];
        let t = soak_table(&runs);
        assert!(
            t.contains(
                "| worker-kill | 2 | 1 | 0 | 0 | 0 | 0 | 0 | 0 | 0 | 2 | 0 | 0 | 0 | 0 | 600–600 |"
            ),
            "{t}"
        );
        let header = t.lines().next().unwrap();
        assert!(
            header.starts_with(
                "| scenario | runs | passed | oversold | revoked | over_limit | leaked | lost | unanswered | flipped | double |"
            ),
            "{header}"
        );
        // Every row has as many cells as the header.
        let cells = |l: &str| l.matches('|').count();
        assert!(t.lines().all(|l| cells(l) == cells(header)), "{t}");
        assert!(!t.contains("redis-cut"));
        // The topologies apart, one instance first.
        assert!(
            t.contains("| worker-kill×2 | 1 | 1 | 0 | 0 | 0 | 0 | 0 | 0 | 0 | 0 |"),
            "{t}"
        );
        assert!(
            t.find("| worker-kill |") < t.find("| worker-kill×2 |"),
            "{t}"
        );
    }
}
