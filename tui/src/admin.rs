//! Admin actions from the console (create, reset), run as tasks whose result
//! comes back as an event.

use crate::event::Event;
use flashgrid_load::{Target, admin};
use flashgrid_wire::EventId;
use tokio::sync::mpsc;

pub fn create(url: String, token: String, event: String, capacity: u32, tx: mpsc::Sender<Event>) {
    tokio::spawn(async move {
        let r = async {
            let target = Target::resolve(&url).await?;
            let id = EventId::parse(&event).map_err(|e| e.to_string())?;
            admin::create(&target, &token, &id, capacity)
                .await?
                .ok_or_else(|| format!("event {event} already exists"))
        }
        .await;
        let _ = tx.send(Event::Admin(r)).await;
    });
}

pub fn reset(url: String, token: String, event: String, tx: mpsc::Sender<Event>) {
    tokio::spawn(async move {
        let r = async {
            let target = Target::resolve(&url).await?;
            let id = EventId::parse(&event).map_err(|e| e.to_string())?;
            admin::reset(&target, &token, &id, None).await
        }
        .await;
        let _ = tx.send(Event::Admin(r)).await;
    });
}
