//! What operators and their tools call: the live feed (`/ws`), Prometheus
//! `/metrics`, `/healthz` (alive) and `/readyz` (every service reachable).

use super::Gateway;
use crate::gateway::error::{ApiError, Body, json};
use crate::gateway::feed;
use crate::services;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use std::time::Duration;

impl Gateway {
    pub(super) fn feed(&self, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
        feed::upgrade(req, self.feed.clone(), self.shutdown.clone())
    }

    pub(super) fn metrics(&self) -> Response<Body> {
        self.stats
            .long_polls
            .set(i64::try_from(self.waiters.len()).unwrap_or(i64::MAX));
        let mut resp = Response::new(http_body_util::Full::new(bytes::Bytes::from(
            self.stats.render(),
        )));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        );
        resp
    }

    pub(super) async fn ready(&self) -> Response<Body> {
        let reach = services::answering(
            &self.pool,
            &self.inventory.connection(),
            Duration::from_secs(1),
        )
        .await;
        // Read once: the body and the status must tell the same story.
        let broker_down = self.publisher.unavailable_because();
        let rabbitmq = broker_down.is_none();
        let checks = serde_json::json!({
            "postgres": reach.postgres,
            "redis": reach.redis,
            "rabbitmq": rabbitmq,
        });
        let ready = reach.both() && rabbitmq;
        // What is wrong, in words an operator can act on.
        let mut why = serde_json::Map::new();
        if !reach.postgres {
            why.insert("postgres".into(), "no answer to SELECT 1 within 1 s".into());
        }
        if !reach.redis {
            why.insert("redis".into(), "no answer to PING within 1 s".into());
        }
        if let Some(b) = broker_down {
            why.insert("rabbitmq".into(), b.into());
        }
        let body = if ready {
            serde_json::json!({"ready": ready, "checks": checks})
        } else {
            serde_json::json!({"ready": ready, "checks": checks, "why": why})
        };
        let mut resp = json(
            if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            },
            &body,
        );
        if !ready {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(1));
        }
        resp
    }
}

pub(super) fn alive() -> Response<Body> {
    json(StatusCode::OK, &serde_json::json!({"status": "alive"}))
}
