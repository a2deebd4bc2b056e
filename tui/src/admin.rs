//! Admin actions from the console (create, reset), run as tasks whose result
//! comes back as an event.

use crate::event::Event;
use flashgrid_load::{Target, admin};
use flashgrid_wire::{AdminToken, Capacity, EventId};
use tokio::sync::mpsc;

/// One admin route to call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Create { event: EventId, capacity: Capacity },
    Reset { event: EventId },
}

/// Calls the gateway's admin route in a task; the event or the error comes
/// back as [`Event::Admin`].
pub fn spawn(url: String, token: AdminToken, call: Call, tx: mpsc::Sender<Event>) {
    tokio::spawn(async move {
        let r = async {
            let target = Target::resolve(&url).await?;
            match call {
                Call::Create { event, capacity } => {
                    admin::create(&target, &token, &event, capacity)
                        .await?
                        .ok_or_else(|| format!("event {event} already exists"))
                }
                Call::Reset { event } => admin::reset(&target, &token, &event, None).await,
            }
        }
        .await;
        let _ = tx.send(Event::Admin(r)).await;
    });
}
