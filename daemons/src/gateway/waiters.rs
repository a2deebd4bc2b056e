//! Long-poll waiters: a status request waiting for its reservation's decision
//! registers here and is woken by the worker's "decided" notice, so waiting
//! costs no Redis round trips.

use flashgrid_wire::ReservationId;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::oneshot;

#[derive(Debug, Default)]
pub struct Waiters {
    map: Mutex<HashMap<ReservationId, Vec<oneshot::Sender<()>>>>,
}

impl Waiters {
    pub fn register(&self, id: ReservationId) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.map
            .lock()
            .expect("waiters")
            .entry(id)
            .or_default()
            .push(tx);
        rx
    }

    pub fn wake(&self, ids: &[ReservationId]) {
        let mut map = self.map.lock().expect("waiters");
        for id in ids {
            if let Some(txs) = map.remove(id) {
                for tx in txs {
                    let _ = tx.send(());
                }
            }
        }
    }

    /// Wakes everyone: after a pub/sub reconnection notices may have been lost.
    pub fn wake_all(&self) {
        let map = std::mem::take(&mut *self.map.lock().expect("waiters"));
        for tx in map.into_values().flatten() {
            let _ = tx.send(());
        }
    }

    /// Drops waiters that gave up (timed out or disconnected).
    pub fn sweep(&self) {
        self.map.lock().expect("waiters").retain(|_, txs| {
            txs.retain(|tx| !tx.is_closed());
            !txs.is_empty()
        });
    }

    pub fn len(&self) -> usize {
        self.map.lock().expect("waiters").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wake_reaches_registered_waiters_and_sweep_drops_abandoned_ones() {
        let w = Waiters::default();
        let a = ReservationId::random();
        let b = ReservationId::random();
        let mut ra = w.register(a);
        let rb = w.register(b);
        w.wake(&[a]);
        assert!(ra.try_recv().is_ok());
        drop(rb);
        w.sweep();
        assert!(w.is_empty());
    }
}
