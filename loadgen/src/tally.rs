//! The headless consumer of samples: counts statuses and errors, records
//! latencies, keeps every `202` for verification.

use crate::engine::Sample;
use crate::latency::Latency;
use flashgrid_wire::Accepted;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub latency: Latency,
    pub statuses: BTreeMap<u16, u64>,
    pub errors: BTreeMap<&'static str, u64>,
    pub accepted: Vec<Accepted>,
    pub done: u64,
    /// From the start to the last response.
    pub last_response: Duration,
}

impl Tally {
    pub fn record(&mut self, s: Sample) {
        self.done += 1;
        self.last_response = self.last_response.max(s.at + s.latency);
        match s.outcome {
            Ok(status) => {
                *self.statuses.entry(status).or_default() += 1;
                self.latency.record(s.latency);
            }
            Err(kind) => *self.errors.entry(kind).or_default() += 1,
        }
        if let Some(a) = s.accepted {
            self.accepted.push(a);
        }
    }

    pub fn responses(&self) -> u64 {
        self.statuses.values().sum()
    }

    pub fn transport_errors(&self) -> u64 {
        self.errors.values().sum()
    }
}
