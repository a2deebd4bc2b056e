//! The feed task: connects to the gateway's `/ws`, forwards snapshots, and on
//! any failure reports it and reconnects with backoff — the console never
//! dies because the gateway is down or restarts.

use crate::event::{Event, FeedEvent};
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use flashgrid_wire::AdminToken;
use futures::StreamExt;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The console waits 250 ms, doubling up to 5 s, between two attempts to
/// reach the gateway: quick to come back after a restart, quiet while it is down.
fn reconnect_schedule() -> ExponentialBackoff {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(Duration::from_secs(5))
        .without_max_times()
        .build()
}

pub fn spawn(url: String, token: Option<AdminToken>, tx: mpsc::Sender<Event>) {
    tokio::spawn(async move {
        let ws_url = format!("{}/ws", url.trim_end_matches('/').replacen("http", "ws", 1));
        let mut schedule = reconnect_schedule();
        loop {
            let reason = match connect(&ws_url, token.as_ref()).await {
                Ok(mut ws) => {
                    schedule = reconnect_schedule();
                    if tx.send(Event::Feed(FeedEvent::Connected)).await.is_err() {
                        return;
                    }
                    loop {
                        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
                            Ok(Some(Ok(msg))) if msg.is_text() => {
                                match serde_json::from_str(msg.to_text().unwrap_or("")) {
                                    Ok(s) => {
                                        if tx
                                            .send(Event::Feed(FeedEvent::Snapshot(Box::new(s))))
                                            .await
                                            .is_err()
                                        {
                                            return;
                                        }
                                    }
                                    Err(e) => break format!("unreadable snapshot: {e}"),
                                }
                            }
                            Ok(Some(Ok(msg))) if msg.is_close() => {
                                break "the gateway closed the feed".into();
                            }
                            Ok(Some(Ok(_))) => {}
                            Ok(Some(Err(e))) => break e.to_string(),
                            Ok(None) => break "the gateway closed the feed".into(),
                            Err(_) => break "no snapshot for 5 s".into(),
                        }
                    }
                }
                Err(e) => e,
            };
            let delay = schedule.next().unwrap_or(Duration::from_secs(5));
            if tx
                .send(Event::Feed(FeedEvent::Disconnected {
                    reason,
                    retry_in: delay,
                }))
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(delay).await;
        }
    });
}

async fn connect(
    url: &str,
    token: Option<&AdminToken>,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    String,
> {
    let mut req = url
        .into_client_request()
        .map_err(|e| format!("bad URL {url}: {e}"))?;
    if let Some(t) = token
        && let Ok(v) = format!("Bearer {}", t.expose()).parse()
    {
        req.headers_mut().insert("authorization", v);
    }
    match tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(req),
    )
    .await
    {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(r))) if r.status() == 401 => Err(
            "the gateway refused the token (401): pass --feed-token or set FLASHGRID_FEED_TOKEN (`just up` prints it)".into(),
        ),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("connect timed out".into()),
    }
}
