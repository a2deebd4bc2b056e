//! A status route that answers `rejected` for what it does not know: an
//! HTTP proxy in front of the real gateway that remembers each purchase it
//! saw accepted and turns a `404` on its status URL into a `200` saying
//! `rejected` (`sold_out`), as a gateway guessing instead of admitting it
//! does not know would.

use bytes::Bytes;
use flashgrid_wire::{Accepted, Reason, ReservationId, ReservationView, ReserveRequest, Status};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// The proxy; it stops when dropped.
#[derive(Debug)]
pub struct LyingStatus {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LyingStatus {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Known = Arc<Mutex<HashMap<ReservationId, ReserveRequest>>>;

impl LyingStatus {
    /// Listens on a port of its own, forwarding to `gateway` (`http://host:port`).
    pub async fn start(gateway: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let gateway: Arc<str> = gateway.into();
        let http = crate::buyers::client();
        let known = Known::default();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (gateway, http, known) = (gateway.clone(), http.clone(), known.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        forward(gateway.clone(), http.clone(), known.clone(), req)
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { url, task })
    }
}

async fn forward(
    gateway: Arc<str>,
    http: crate::buyers::Http,
    known: Known,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let (parts, body) = req.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return Ok(answer(StatusCode::BAD_REQUEST, Bytes::new()));
    };
    let mut path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    // A gateway that guesses has no receipts: the status URL's signed part
    // is dropped, so what Redis and PostgreSQL do not hold is a 404 to it.
    if parts.method == Method::GET {
        path = without_receipt(&path);
    }
    let mut out = Request::builder()
        .method(parts.method.clone())
        .uri(format!("{gateway}{path}"));
    for (k, v) in &parts.headers {
        if k != http::header::HOST && k != http::header::CONTENT_LENGTH {
            out = out.header(k, v);
        }
    }
    let Ok(out) = out.body(Full::new(body.clone())) else {
        return Ok(answer(StatusCode::BAD_REQUEST, Bytes::new()));
    };
    let resp = match http.request(out).await {
        Ok(r) => r,
        // The buyer sees a transport error, as with the gateway itself.
        Err(_) => return Ok(answer(StatusCode::BAD_GATEWAY, Bytes::new())),
    };
    let (rparts, rbody) = resp.into_parts();
    let rbody = rbody
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if parts.method == Method::POST
        && parts.uri.path() == "/reserve"
        && rparts.status == StatusCode::ACCEPTED
        && let (Ok(asked), Ok(given)) = (
            serde_json::from_slice::<ReserveRequest>(&body),
            serde_json::from_slice::<Accepted>(&rbody),
        )
    {
        known
            .lock()
            .expect("known purchases")
            .insert(given.reservation_id, asked);
    }
    if parts.method == Method::GET && rparts.status == StatusCode::NOT_FOUND {
        let id = parts
            .uri
            .path()
            .rsplit('/')
            .next()
            .and_then(|s| s.split('.').next()?.parse::<ReservationId>().ok());
        let asked = id.and_then(|id| Some((id, known.lock().expect("known").get(&id)?.clone())));
        if let Some((id, asked)) = asked {
            let view = ReservationView {
                reservation_id: id,
                event_id: asked.event_id,
                user_id: asked.user_id,
                quantity: asked.quantity,
                status: Status::Rejected,
                reason: Some(Reason::SoldOut),
                expires_at: None,
                payment_ref: None,
            };
            let json = serde_json::to_vec(&view).expect("a view serializes");
            return Ok(answer(StatusCode::OK, json.into()));
        }
    }
    let mut r = Response::new(Full::new(rbody));
    *r.status_mut() = rparts.status;
    *r.headers_mut() = rparts.headers;
    // The body is whole now: hyper sets its length.
    r.headers_mut().remove(http::header::TRANSFER_ENCODING);
    r.headers_mut().remove(http::header::CONTENT_LENGTH);
    Ok(r)
}

/// `/events/e/reservations/<id>.<receipt>?q` → `/events/e/reservations/<id>?q`.
fn without_receipt(path: &str) -> String {
    let (p, q) = path
        .split_once('?')
        .map_or((path, None), |(p, q)| (p, Some(q)));
    let (dir, last) = p.rsplit_once('/').unwrap_or(("", p));
    let id = last.split('.').next().unwrap_or(last);
    match q {
        Some(q) => format!("{dir}/{id}?{q}"),
        None => format!("{dir}/{id}"),
    }
}

fn answer(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_receipt_is_dropped_and_the_rest_kept() {
        assert_eq!(
            super::without_receipt("/events/e/reservations/abc.SIGNED?wait_ms=5"),
            "/events/e/reservations/abc?wait_ms=5"
        );
        assert_eq!(
            super::without_receipt("/events/e/reservations/abc"),
            "/events/e/reservations/abc"
        );
        assert_eq!(super::without_receipt("/readyz"), "/readyz");
    }
}
