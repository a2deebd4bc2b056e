//! The other daemons of the namespace as this gateway last heard them: the
//! views every gateway and worker publishes per interval (`Notice::Daemon`),
//! kept for the feed. A daemon silent for [`LIVE`] is no longer summed into
//! the totals but still listed (the console shows it silent); after
//! [`FORGET`] it is dropped.

use flashgrid_wire::{DaemonKind, DaemonView};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A daemon heard from within this long counts as live.
pub const LIVE: Duration = Duration::from_secs(2);
/// A daemon silent for this long is forgotten (one that stopped for good).
pub const FORGET: Duration = Duration::from_secs(30);

/// The latest view of every other daemon, by kind and id (a gateway and a
/// worker given the same name are two daemons).
#[derive(Debug)]
pub struct Peers {
    me: String,
    heard: Mutex<HashMap<(DaemonKind, String), (Instant, DaemonView)>>,
}

impl Peers {
    /// `me`: this gateway's own id, whose echo from pub/sub is ignored (the
    /// feed puts its own figures first, fresh).
    pub fn new(me: String) -> Self {
        Self {
            me,
            heard: Mutex::default(),
        }
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    pub fn heard(&self, view: DaemonView, at: Instant) {
        if view.kind == DaemonKind::Gateway && view.id == self.me {
            return;
        }
        let mut heard = self.heard.lock().unwrap_or_else(|p| p.into_inner());
        heard.insert((view.kind, view.id.clone()), (at, view));
    }

    /// A daemon that said it stopped: dropped at once, not shown silent.
    pub fn left(&self, kind: DaemonKind, id: &str) {
        let mut heard = self.heard.lock().unwrap_or_else(|p| p.into_inner());
        heard.remove(&(kind, id.to_owned()));
    }

    /// Every daemon heard from within [`FORGET`], gateways first then by
    /// id, each with how long it has been silent; the forgotten are dropped.
    pub fn listed(&self, now: Instant) -> Vec<DaemonView> {
        let mut heard = self.heard.lock().unwrap_or_else(|p| p.into_inner());
        heard.retain(|_, (at, _)| now.saturating_duration_since(*at) < FORGET);
        let mut list: Vec<DaemonView> = heard
            .values()
            .map(|(at, v)| DaemonView {
                silent_ms: now.saturating_duration_since(*at).as_millis() as u64,
                ..v.clone()
            })
            .collect();
        drop(heard);
        list.sort_by(|a, b| {
            (a.kind != DaemonKind::Gateway, &a.id).cmp(&(b.kind != DaemonKind::Gateway, &b.id))
        });
        list
    }
}

/// Whether a listed view is recent enough to count in the totals.
pub fn is_live(v: &DaemonView) -> bool {
    v.silent_ms < LIVE.as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: &str, kind: DaemonKind) -> DaemonView {
        DaemonView {
            id: id.into(),
            kind,
            listen: None,
            silent_ms: 0,
            gateway: None,
            latency_buckets: vec![],
            worker: None,
            nodes: vec![],
        }
    }

    #[test]
    fn lists_others_gateways_first_and_forgets_the_long_silent() {
        let peers = Peers::new("me".into());
        let t0 = Instant::now();
        peers.heard(view("me", DaemonKind::Gateway), t0);
        peers.heard(view("w-a", DaemonKind::Worker), t0);
        peers.heard(view("g-b", DaemonKind::Gateway), t0);
        peers.heard(view("a-old", DaemonKind::Worker), t0);
        // A newer view replaces the older one.
        peers.heard(
            view("w-a", DaemonKind::Worker),
            t0 + Duration::from_secs(20),
        );
        let at = t0 + Duration::from_secs(21);
        let listed = peers.listed(at);
        let ids: Vec<&str> = listed.iter().map(|v| v.id.as_str()).collect();
        assert_eq!(ids, ["g-b", "a-old", "w-a"]);
        assert_eq!(listed[2].silent_ms, 1000);
        assert!(is_live(&listed[2]) && !is_live(&listed[0]));
        // Past FORGET the silent ones are gone.
        let ids: Vec<String> = peers
            .listed(t0 + FORGET + Duration::from_secs(1))
            .into_iter()
            .map(|v| v.id)
            .collect();
        assert_eq!(ids, ["w-a"]);
        // A worker may share a gateway's name; one that leaves is gone.
        peers.heard(view("me", DaemonKind::Worker), t0);
        peers.heard(view("w-b", DaemonKind::Worker), t0);
        peers.left(DaemonKind::Worker, "w-b");
        let ids: Vec<String> = peers.listed(t0).into_iter().map(|v| v.id).collect();
        assert_eq!(ids, ["me", "w-a"]);
    }
}
