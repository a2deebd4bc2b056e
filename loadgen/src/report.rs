//! The report of an attack, as text for people or one JSON object.

use crate::latency::Percentiles;
use crate::tally::Tally;
use crate::verify::{Decisions, Verdict};
use flashgrid_wire::EventView;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub requests: u64,
    pub duration_s: f64,
    pub rps: f64,
    pub statuses: BTreeMap<String, u64>,
    pub transport_errors: BTreeMap<String, u64>,
    pub connect_retries: u64,
    pub latency_ms: Percentiles,
    pub accepted: u64,
    pub confirmed: u64,
    pub rejected: u64,
    pub rejected_by_reason: BTreeMap<String, u64>,
    pub pending: u64,
    pub oversold: bool,
    pub lost: u64,
    pub counts_agree: Option<bool>,
    pub verdict: &'static str,
    pub problems: Vec<String>,
    pub event: Option<EventView>,
    pub verify_s: f64,
}

impl Report {
    pub fn new(
        tally: &Tally,
        connect_retries: u64,
        checked: Option<(&Decisions, &Verdict, &EventView, Duration)>,
    ) -> Self {
        let secs = tally.last_response.as_secs_f64();
        let (decisions, verdict, event, verify_s) = match checked {
            Some((d, v, e, t)) => (Some(d), Some(v), Some(e.clone()), t.as_secs_f64()),
            None => (None, None, None, 0.0),
        };
        Self {
            requests: tally.done,
            duration_s: secs,
            rps: if secs > 0.0 {
                tally.responses() as f64 / secs
            } else {
                0.0
            },
            statuses: tally
                .statuses
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            transport_errors: tally
                .errors
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            connect_retries,
            latency_ms: tally.latency.percentiles(),
            accepted: tally.accepted.len() as u64,
            confirmed: decisions.map_or(0, |d| d.confirmed),
            rejected: decisions.map_or(0, Decisions::rejected_total),
            rejected_by_reason: decisions.map(|d| d.rejected.clone()).unwrap_or_default(),
            pending: decisions.map_or(0, |d| d.pending),
            oversold: verdict.is_some_and(|v| v.oversold),
            lost: verdict.map_or(0, |v| v.lost),
            counts_agree: verdict.map(|v| v.counts_agree),
            verdict: match verdict {
                None => "unverified",
                Some(v) if v.pass => "pass",
                Some(_) => "fail",
            },
            problems: verdict.map(|v| v.problems.clone()).unwrap_or_default(),
            event,
            verify_s,
        }
    }

    pub fn passed(&self) -> bool {
        self.verdict != "fail"
    }

    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "Summary:");
        let _ = writeln!(s, "  Requests:        {}", self.requests);
        let _ = writeln!(
            s,
            "  Duration:        {:.3} s (to the last response)",
            self.duration_s
        );
        let _ = writeln!(s, "  Requests/sec:    {:.0}", self.rps);
        let _ = writeln!(s, "\nStatus codes:");
        for (k, v) in &self.statuses {
            let _ = writeln!(s, "  [{k}] {v} responses");
        }
        if !self.transport_errors.is_empty() || self.connect_retries > 0 {
            let _ = writeln!(s, "\nTransport:");
            for (k, v) in &self.transport_errors {
                let _ = writeln!(s, "  {k}: {v}");
            }
            let _ = writeln!(s, "  connect retries: {}", self.connect_retries);
        }
        let l = self.latency_ms;
        let _ = writeln!(s, "\nLatency (ms):");
        let _ = writeln!(
            s,
            "  p50 {:.2}   p90 {:.2}   p99 {:.2}   p99.9 {:.2}   max {:.2}",
            l.p50, l.p90, l.p99, l.p99_9, l.max
        );
        if self.verdict == "unverified" {
            let _ = writeln!(s, "\nVerification skipped (--no-verify).");
            return s;
        }
        let _ = writeln!(
            s,
            "\nDecisions of the {} accepted (followed in {:.2} s):",
            self.accepted, self.verify_s
        );
        let _ = writeln!(s, "  confirmed: {}", self.confirmed);
        let reasons: Vec<String> = self
            .rejected_by_reason
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        if reasons.is_empty() {
            let _ = writeln!(s, "  rejected:  {}", self.rejected);
        } else {
            let _ = writeln!(s, "  rejected:  {} ({})", self.rejected, reasons.join(", "));
        }
        let _ = writeln!(s, "  pending:   {}", self.pending);
        if let Some(e) = &self.event {
            let _ = writeln!(
                s,
                "\nEvent {}: capacity {}, confirmed {}, remaining {}, sold out {}",
                e.event_id, e.capacity, e.confirmed, e.remaining, e.sold_out
            );
        }
        let _ = writeln!(
            s,
            "\nVerdict: {}  (oversold: {}, lost: {}, counts agree: {})",
            self.verdict.to_uppercase(),
            if self.oversold { "YES" } else { "no" },
            self.lost,
            match self.counts_agree {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "-",
            }
        );
        for p in &self.problems {
            let _ = writeln!(s, "  ! {p}");
        }
        s
    }
}
