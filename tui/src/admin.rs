//! Admin actions from the console (create, reset), run as tasks whose result
//! comes back as an event.

use crate::event::Event;
use flashgrid_load::{Target, admin};
use flashgrid_wire::{AdminToken, EventId};
use tokio::sync::mpsc;

pub fn create(
    url: String,
    token: AdminToken,
    event: EventId,
    capacity: u32,
    tx: mpsc::Sender<Event>,
) {
    tokio::spawn(async move {
        let r = async {
            let target = Target::resolve(&url).await?;
            admin::create(&target, &token, &event, capacity)
                .await?
                .ok_or_else(|| format!("event {event} already exists"))
        }
        .await;
        let _ = tx.send(Event::Admin(r)).await;
    });
}

pub fn reset(url: String, token: AdminToken, event: EventId, tx: mpsc::Sender<Event>) {
    tokio::spawn(async move {
        let r = async {
            let target = Target::resolve(&url).await?;
            admin::reset(&target, &token, &event, None).await
        }
        .await;
        let _ = tx.send(Event::Admin(r)).await;
    });
}
