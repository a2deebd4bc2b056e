//! The admin routes a client needs: create an event, reset one (the admin
//! token is needed), and both together to set the stage before an attack.

use crate::client::{self, Connection};
use crate::spec::Target;
use flashgrid_wire::{AdminToken, Capacity, EventId, EventView};
use http::Method;
use std::time::Duration;

/// How the stage is set: the seats, and how long a won seat is held
/// (`None`: decisions are final).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage {
    pub capacity: Capacity,
    pub hold_seconds: Option<u32>,
}

/// Creates the event; `Ok(None)` when it already exists.
pub async fn create(
    target: &Target,
    token: &AdminToken,
    event: &EventId,
    capacity: Capacity,
) -> Result<Option<EventView>, String> {
    create_staged(
        target,
        token,
        event,
        Stage {
            capacity,
            hold_seconds: None,
        },
    )
    .await
}

async fn create_staged(
    target: &Target,
    token: &AdminToken,
    event: &EventId,
    stage: Stage,
) -> Result<Option<EventView>, String> {
    let mut body =
        serde_json::json!({"event_id": event, "name": event.as_str(), "capacity": stage.capacity});
    if let Some(h) = stage.hold_seconds {
        body["hold_seconds"] = h.into();
    }
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
    reset_to(target, token, event, capacity, None).await
}

/// [`reset`], setting the hold time too when `hold_seconds` is given.
async fn reset_to(
    target: &Target,
    token: &AdminToken,
    event: &EventId,
    capacity: Option<Capacity>,
    hold_seconds: Option<Option<u32>>,
) -> Result<EventView, String> {
    let body = flashgrid_wire::ResetEvent {
        capacity,
        discard_confirmed: true,
        hold_seconds,
    };
    let body = serde_json::to_value(&body).map_err(|e| e.to_string())?;
    let path = format!("/admin/events/{event}/reset");
    let (status, bytes) = post(target, token, &path, body.to_string()).await?;
    match status {
        200 => serde_json::from_slice(&bytes).map_err(|e| e.to_string()),
        s => Err(refused(s, &format!("POST {path}"), &bytes)),
    }
}

/// Creates the event as `stage` says, or resets it to that.
pub async fn create_or_reset(
    target: &Target,
    token: &AdminToken,
    event: &EventId,
    stage: Stage,
) -> Result<EventView, String> {
    match create_staged(target, token, event, stage).await? {
        Some(e) => Ok(e),
        None => {
            reset_to(
                target,
                token,
                event,
                Some(stage.capacity),
                Some(stage.hold_seconds),
            )
            .await
        }
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
