//! What operators and their tools call: the live feed (`/ws`), Prometheus
//! `/metrics`, `/healthz` (alive), `/readyz` (every service reachable) and
//! `/openapi.json` (the API's contract).

use super::Gateway;
use crate::gateway::error::{ApiError, Body, json, json_bytes};
use crate::gateway::feed;
use crate::services;
use flashgrid_wire::{Liveness, Readiness, ServiceChecks, ServiceFaults};
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
        let checks = ServiceChecks {
            postgres: reach.postgres,
            redis: reach.redis,
            rabbitmq: broker_down.is_none(),
        };
        let ready = checks.postgres && checks.redis && checks.rabbitmq;
        // What is wrong, in words an operator can act on.
        let why = (!ready).then(|| ServiceFaults {
            postgres: (!reach.postgres).then(|| "no answer to SELECT 1 within 1 s".into()),
            redis: (!reach.redis).then(|| "no answer to PING within 1 s".into()),
            rabbitmq: broker_down,
        });
        let mut resp = json(
            if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            },
            &Readiness { ready, checks, why },
        );
        if !ready {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(1));
        }
        resp
    }
}

pub(super) fn alive() -> Response<Body> {
    json(
        StatusCode::OK,
        &Liveness {
            status: "alive".into(),
        },
    )
}

/// The API's OpenAPI document, serialised once.
pub(super) fn openapi() -> Response<Body> {
    json_bytes(StatusCode::OK, crate::gateway::openapi::json())
}
