//! The console's state and how events change it ([`keys`]: how keys do).
//! No I/O: what must be done outside (launch an attack, call an admin route,
//! quit) comes back as an [`Action`].

mod keys;

use crate::event::{AttackEvent, Event, FeedEvent, Progress};
use flashgrid_load::Report;
use flashgrid_wire::{Capacity, EventId, EventView, Snapshot};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How many snapshots the sparklines remember (a minute at 4 a second).
pub const HISTORY: usize = 240;

/// What the main loop must do after an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    None,
    Quit,
    Attack {
        event: EventId,
        requests: u64,
        concurrency: usize,
    },
    Reset {
        event: EventId,
    },
    Create {
        event: EventId,
        capacity: Capacity,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    Connecting,
    Connected,
    Reconnecting { reason: String, retry_at: Instant },
}

/// A modal on top of the screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overlay {
    None,
    Help,
    /// Every gateway and worker, its figures and the nodes it reaches.
    Daemons,
    /// Reset needs the event id typed; Cancel is the default.
    ConfirmReset {
        event: EventId,
        typed: String,
    },
    /// New event: id and capacity, Tab between them.
    Create {
        id: String,
        capacity: String,
        on_capacity: bool,
    },
}

/// The attack launcher's settings and its current or last run.
#[derive(Debug, Clone)]
pub struct Attack {
    pub requests: u64,
    pub concurrency: usize,
    pub run: Option<AttackRun>,
}

#[derive(Debug, Clone)]
pub struct AttackRun {
    pub event: EventId,
    pub progress: Progress,
    pub phase: Phase,
}

#[derive(Debug, Clone)]
pub enum Phase {
    Running,
    Verifying,
    Done(Box<Report>),
    Failed(String),
}

/// Rates over time, for the sparklines.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub incoming: VecDeque<u64>,
    pub accepted: VecDeque<u64>,
    pub rejected: VecDeque<u64>,
    pub confirmed: VecDeque<u64>,
}

impl History {
    fn push(&mut self, s: &Snapshot) {
        for (q, v) in [
            (&mut self.incoming, s.gateway.requests_per_s),
            (&mut self.accepted, s.gateway.accepted_per_s),
            (&mut self.rejected, s.gateway.rejected_per_s),
            (&mut self.confirmed, s.workers.confirmed_per_s),
        ] {
            if q.len() == HISTORY {
                q.pop_front();
            }
            q.push_back(v.max(0.0).round() as u64);
        }
    }
}

#[derive(Debug, Clone)]
pub struct App {
    pub url: String,
    pub connection: Connection,
    /// The latest snapshot and when it arrived.
    pub snapshot: Option<(Snapshot, Instant)>,
    pub history: History,
    /// While frozen, new snapshots are kept aside, not shown.
    pub frozen: Option<(Snapshot, Instant)>,
    pub selected: usize,
    pub overlay: Overlay,
    pub attack: Attack,
    /// A line for the operator (admin results, refusals), with when it was set.
    pub notice: Option<(String, bool, Instant)>,
    pub color: bool,
    pub has_token: bool,
}

impl App {
    pub fn new(url: String, color: bool, has_token: bool) -> Self {
        Self {
            url,
            connection: Connection::Connecting,
            snapshot: None,
            history: History::default(),
            frozen: None,
            selected: 0,
            overlay: Overlay::None,
            attack: Attack {
                requests: 10_000,
                concurrency: 1_000,
                run: None,
            },
            notice: None,
            color,
            has_token,
        }
    }

    /// The snapshot on screen (the frozen one while frozen).
    pub fn shown(&self) -> Option<&(Snapshot, Instant)> {
        self.frozen.as_ref().or(self.snapshot.as_ref())
    }

    pub fn events(&self) -> &[EventView] {
        self.shown()
            .map(|(s, _)| s.events.as_slice())
            .unwrap_or(&[])
    }

    pub fn selected_event(&self) -> Option<&EventView> {
        self.events().get(self.selected)
    }

    fn notify(&mut self, text: impl Into<String>, error: bool) {
        self.notice = Some((text.into(), error, Instant::now()));
    }

    pub fn attack_running(&self) -> bool {
        matches!(
            self.attack.run.as_ref().map(|r| &r.phase),
            Some(Phase::Running | Phase::Verifying)
        )
    }

    pub fn update(&mut self, event: Event) -> Action {
        match event {
            Event::Tick | Event::Resize => Action::None,
            Event::Key(k) => self.on_key(k),
            Event::Feed(f) => {
                self.on_feed(f);
                Action::None
            }
            Event::Attack(a) => {
                self.on_attack(a);
                Action::None
            }
            Event::Admin(Ok(e)) => {
                self.notify(
                    format!("event {} ready: {} seats", e.event_id, e.capacity),
                    false,
                );
                Action::None
            }
            Event::Admin(Err(e)) => {
                self.notify(e, true);
                Action::None
            }
        }
    }

    fn on_feed(&mut self, f: FeedEvent) {
        match f {
            FeedEvent::Connected => self.connection = Connection::Connected,
            FeedEvent::Snapshot(s) => {
                self.connection = Connection::Connected;
                self.history.push(&s);
                self.snapshot = Some((*s, Instant::now()));
                let n = self.events().len();
                if n > 0 && self.selected >= n {
                    self.selected = n - 1;
                }
            }
            FeedEvent::Disconnected { reason, retry_in } => {
                self.connection = Connection::Reconnecting {
                    reason,
                    retry_at: Instant::now() + retry_in,
                }
            }
        }
    }

    fn on_attack(&mut self, a: AttackEvent) {
        let Some(run) = self.attack.run.as_mut() else {
            return;
        };
        match a {
            AttackEvent::Progress(p) => run.progress = p,
            AttackEvent::Verifying => run.phase = Phase::Verifying,
            AttackEvent::Finished(r) => run.phase = Phase::Done(r),
            AttackEvent::Failed(e) => run.phase = Phase::Failed(e),
        }
    }

    /// Seconds since the snapshot on screen was taken (`None` without one).
    pub fn age(&self, now: Instant) -> Option<Duration> {
        self.shown()
            .map(|(_, at)| now.saturating_duration_since(*at))
    }
}
