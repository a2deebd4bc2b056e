//! The report of an attack, as text for people or one JSON object.

use crate::checkout::{Abandon, Checkout, Plan};
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
    /// Won, then given back (a hold expired or cancelled) by the time it
    /// was followed.
    #[serde(default)]
    pub released: u64,
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
    /// A hold sale: what the winners did and the late buyers resold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holds: Option<HoldsReport>,
}

/// A hold sale's part of the report.
#[derive(Debug, Clone, Serialize)]
pub struct HoldsReport {
    pub hold_seconds: u32,
    pub checkout_share: f64,
    pub abandon: Abandon,
    pub think_ms: u64,
    #[serde(flatten)]
    pub checkout: Checkout,
}

impl HoldsReport {
    pub fn new(hold_seconds: u32, plan: &Plan, checkout: Checkout) -> Self {
        Self {
            hold_seconds,
            checkout_share: plan.share,
            abandon: plan.abandon,
            think_ms: plan.think.as_millis() as u64,
            checkout,
        }
    }

    fn text(&self, s: &mut String) {
        let c = &self.checkout;
        let walk = match self.abandon {
            Abandon::Expire => "let the hold run out",
            Abandon::Cancel => "cancel",
        };
        let _ = writeln!(
            s,
            "\nHolds ({} s; {:.0}% of the winners purchase after {} ms, the rest {walk}):",
            self.hold_seconds,
            self.checkout_share * 100.0,
            self.think_ms
        );
        let _ = writeln!(s, "  won by the crowd:  {} holds", c.won);
        let _ = writeln!(
            s,
            "  purchased:         {} seats ({} refused: the hold had expired)",
            c.purchased, c.too_late
        );
        let _ = writeln!(
            s,
            "  given back:        {} seats ({} expired, {} cancelled)",
            c.released(),
            c.expired,
            c.cancelled
        );
        let _ = writeln!(
            s,
            "  late buyers:       {} requests, {} won, {} seats resold{}{}",
            c.late_requests,
            c.late_won,
            c.resold,
            match c.resold_after() {
                Some(d) if c.expired > 0 => format!(
                    ", the last {} ms after the last hold expired",
                    d.as_millis()
                ),
                _ => String::new(),
            },
            if c.resale_timed_out {
                " (stopped at the deadline)"
            } else {
                ""
            }
        );
        if c.unsettled > 0 || c.late_lost > 0 {
            let _ = writeln!(
                s,
                "  unsettled:         {} seats still held, {} late reservations undecided",
                c.unsettled, c.late_lost
            );
        }
    }
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
            released: decisions.map_or(0, |d| d.released),
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
            holds: None,
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
        if self
            .event
            .as_ref()
            .is_some_and(|e| e.hold_seconds.is_some())
        {
            let _ = writeln!(s, "  won:       {} (held)", self.confirmed);
        } else {
            let _ = writeln!(s, "  confirmed: {}", self.confirmed);
        }
        if self.released > 0 {
            let _ = writeln!(
                s,
                "  released:  {} (won, then expired or cancelled)",
                self.released
            );
        }
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
        if let Some(h) = &self.holds {
            h.text(&mut s);
        }
        if let Some(e) = &self.event
            && e.hold_seconds.is_some()
        {
            let _ = writeln!(
                s,
                "\nEvent {}: capacity {}, purchased {}, held {}, remaining {}",
                e.event_id, e.capacity, e.purchased, e.held, e.remaining
            );
        } else if let Some(e) = &self.event {
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
