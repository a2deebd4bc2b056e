//! Everything that can change the console's state, on one channel.

use flashgrid_load::Report;
use flashgrid_load::latency::Latency;
use flashgrid_wire::{EventView, Snapshot};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug)]
pub enum Event {
    /// Redraw (ages and countdowns move even without news).
    Tick,
    Key(crossterm::event::KeyEvent),
    Resize,
    Feed(FeedEvent),
    Attack(AttackEvent),
    /// An admin action finished: a message for the operator.
    Admin(Result<EventView, String>),
}

#[derive(Debug, Clone)]
pub enum FeedEvent {
    Connected,
    Snapshot(Box<Snapshot>),
    /// Lost (or could not reach) the gateway; retrying after `retry_in`.
    Disconnected {
        reason: String,
        retry_in: Duration,
    },
}

#[derive(Debug, Clone)]
pub enum AttackEvent {
    Progress(Progress),
    /// All requests answered; following the 202s to their decisions.
    Verifying,
    Finished(Box<Report>),
    Failed(String),
}

/// An attack so far.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub errors: u64,
    pub latency: Latency,
    pub elapsed: Duration,
}
