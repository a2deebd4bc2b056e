//! The admin routes a client needs: create an event, reset one (the admin
//! token is needed), and both together to set the stage before an attack.

use crate::client::{self, Connection};
use crate::spec::Target;
use flashgrid_wire::{AdminToken, Capacity, EventId, EventView};
use http::Method;
use std::time::Duration;

/// Creates the event; `Ok(None)` when it already exists.
pub async fn create(
    target: &Target,
    token: &AdminToken,
    event: &EventId,
    capacity: Capacity,
) -> Result<Option<EventView>, String> {
    let body = serde_json::json!({"event_id": event, "name": event.as_str(), "capacity": capacity});
    let (status, bytes) = post(target, token, "/admin/events", body.to_string()).await?;
    match status {
        201 => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| e.to_string()),
        409 => Ok(None),
        s => Err(refused(s, "POST /admin/events", &bytes)),
    }
}

/// Resets the event (to a new capacity if given): stock restored, its
/// reservations removed — the confirmed ones too (`discard_confirmed`: a
/// drill asked for by whoever holds the admin token).
pub async fn reset(
    target: &Target,
    token: &AdminToken,
    event: &EventId,
    capacity: Option<Capacity>,
) -> Result<EventView, String> {
    let body = flashgrid_wire::ResetEvent {
        capacity,
        discard_confirmed: true,
    };
    let body = serde_json::to_value(&body).map_err(|e| e.to_string())?;
    let path = format!("/admin/events/{event}/reset");
    let (status, bytes) = post(target, token, &path, body.to_string()).await?;
    match status {
        200 => serde_json::from_slice(&bytes).map_err(|e| e.to_string()),
        s => Err(refused(s, &format!("POST {path}"), &bytes)),
    }
}

/// Creates the event with `capacity` seats, or resets it to them.
pub async fn create_or_reset(
    target: &Target,
    token: &AdminToken,
    event: &EventId,
    capacity: Capacity,
) -> Result<EventView, String> {
    match create(target, token, event, capacity).await? {
        Some(e) => Ok(e),
        None => reset(target, token, event, Some(capacity)).await,
    }
}

async fn post(
    target: &Target,
    token: &AdminToken,
    path: &str,
    body: String,
) -> Result<(u16, bytes::Bytes), String> {
    let mut c = Connection::open(target)
        .await
        .map_err(|e| format!("cannot reach the gateway at {}: {e}", target.base))?;
    let auth = format!("Bearer {}", token.expose());
    let req = client::request(
        target,
        Method::POST,
        path,
        &[("authorization", &auth)],
        Some(body),
    );
    let resp = c
        .send(req, Duration::from_secs(10))
        .await
        .map_err(|e| format!("POST {path}: {e}"))?;
    Ok((resp.status().as_u16(), resp.into_body()))
}

fn refused(status: u16, what: &str, body: &[u8]) -> String {
    if status == 401 {
        return "the gateway refused the admin token: pass --token or set FLASHGRID_ADMIN_TOKEN (`just up` prints it)".into();
    }
    let message = serde_json::from_slice::<flashgrid_wire::ErrorBody>(body)
        .map(|e| e.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned());
    format!("{what} answered {status}: {message}")
}
