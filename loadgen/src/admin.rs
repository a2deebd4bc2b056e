//! Setting the stage: create the event with the given capacity, or reset it
//! to that capacity if it exists (the admin token is needed).

use crate::client::{self, Connection};
use crate::spec::Target;
use flashgrid_wire::{EventId, EventView};
use http::Method;
use std::time::Duration;

pub async fn create_or_reset(
    target: &Target,
    token: &str,
    event: &EventId,
    capacity: u32,
) -> Result<EventView, String> {
    let mut c = Connection::open(target)
        .await
        .map_err(|e| format!("cannot reach the gateway at {}: {e}", target.base))?;
    let auth = format!("Bearer {token}");
    let body = serde_json::json!({"event_id": event, "name": event.as_str(), "capacity": capacity});
    let req = client::request(
        target,
        Method::POST,
        "/admin/events",
        &[("authorization", &auth)],
        Some(body.to_string()),
    );
    let resp = c
        .send(req, Duration::from_secs(10))
        .await
        .map_err(|e| format!("POST /admin/events: {e}"))?;
    let resp = if resp.status() == 409 {
        let req = client::request(
            target,
            Method::POST,
            &format!("/admin/events/{event}/reset"),
            &[("authorization", &auth)],
            Some(serde_json::json!({"capacity": capacity}).to_string()),
        );
        c.send(req, Duration::from_secs(10))
            .await
            .map_err(|e| format!("POST /admin/events/{event}/reset: {e}"))?
    } else {
        resp
    };
    match resp.status().as_u16() {
        200 | 201 => serde_json::from_slice(resp.body()).map_err(|e| e.to_string()),
        401 => Err("the gateway refused the admin token: pass --token or set FLASHGRID_ADMIN_TOKEN (`just up` prints it)".into()),
        s => Err(format!(
            "could not set up event {event}: HTTP {s}: {}",
            String::from_utf8_lossy(resp.body())
        )),
    }
}
