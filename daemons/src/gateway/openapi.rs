//! The HTTP API's contract: an OpenAPI 3.1 document generated from the wire
//! types' schemas and one declaration per route below (the route table in
//! `routes` answers them), served at `GET /openapi.json` and committed as
//! `docs/openapi.json` (`just openapi` writes it; a test fails when the two
//! differ).
//!
//! The functions here are declarations only: `utoipa` reads their
//! attributes, nothing calls them.

use bytes::Bytes;
use flashgrid_wire::{
    Accepted, CreateEvent, ErrorBody, ErrorCode, EventView, IDEMPOTENCY_KEY_MAX, Liveness,
    Purchase, Readiness, ReservationView, ReserveRequest, ResetEvent,
};
use std::sync::LazyLock;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, RefOr, Required, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToResponse};

/// The document, as served and committed (pretty, with a final newline).
pub fn json() -> Bytes {
    static JSON: LazyLock<Bytes> = LazyLock::new(|| {
        let text = document()
            .to_pretty_json()
            .expect("the OpenAPI document serialises");
        // utoipa 5.5 writes a link's fields in snake case (its `Link` lacks
        // serde's camelCase renaming); the specification's names are these.
        let mut text = text
            .replace("\"operation_id\": ", "\"operationId\": ")
            .replace("\"request_body\": ", "\"requestBody\": ");
        text.push('\n');
        Bytes::from(text)
    });
    JSON.clone()
}

/// The document, built.
pub fn document() -> utoipa::openapi::OpenApi {
    Api::openapi()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "FlashGrid gateway",
        description = "Flash-sale reservations: `POST /reserve` answers `202` once the request is durably queued; \
            its `status_url` tells the decision (long-poll with `wait_ms`); on an event with holds, a won seat is \
            held until `expires_at` and is `purchase`d or `cancel`led through the same URL. Every error is \
            `{\"error\": <code>, \"message\": <text>}` (see `ErrorCode`). Every route answers other methods `405` \
            with `Allow`; `HEAD` is `GET` without the body. A guide with examples: docs/API.md.",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(
        reserve,
        get_reservation,
        purchase,
        cancel,
        list_events,
        get_event,
        create_event,
        reset_event,
        feed,
        metrics,
        healthz,
        readyz,
        openapi_document,
    ),
    components(
        schemas(ErrorCode, NotReadyBody),
        responses(
            BadRequest,
            Unauthorized,
            UnknownEvent,
            RequestTimeout,
            PayloadTooLarge,
            UnsupportedMediaType,
            RateLimited,
            Unavailable,
            NotReady,
        )
    ),
    modifiers(&Contract),
    tags(
        (name = "sale", description = "What buyers call: reserve, read the decision, purchase or cancel a hold."),
        (name = "events", description = "The public catalogue."),
        (name = "admin", description = "Creating and resetting sales (the admin token)."),
        (name = "operations", description = "What operators and their tools call."),
    )
)]
struct Api;

/// Names of the bearer-token schemes.
const ADMIN: &str = "admin";
const FEED: &str = "feed";

/// What the derive cannot say: the bearer schemes, the `Idempotency-Key`
/// header (an optional header the derive would make nullable) and the
/// links between operations (a reservation's status URL names it to the
/// calls that follow, the created event to the reservations).
struct Contract;

impl Modify for Contract {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            ADMIN,
            SecurityScheme::Http(Http::builder().scheme(HttpAuthScheme::Bearer).description(Some(
                "FLASHGRID_ADMIN_TOKEN, in the `Authorization` header only (a URL is kept by proxies and shell histories).",
            )).build()),
        );
        components.add_security_scheme(
            FEED,
            SecurityScheme::Http(Http::builder().scheme(HttpAuthScheme::Bearer).description(Some(
                "FLASHGRID_FEED_TOKEN: read-only (the feed and /metrics); on /ws also as `?token=`.",
            )).build()),
        );
        let reserve = api
            .paths
            .paths
            .get_mut("/reserve")
            .and_then(|p| p.post.as_mut())
            .expect("POST /reserve is declared");
        reserve.parameters.get_or_insert_with(Vec::new).push(
            ParameterBuilder::new()
                .name("Idempotency-Key")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "1-255 visible ASCII characters: a retry with the same key (and the same `user_id` and \
                     `event_id`) is the same reservation, counted once.",
                ))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .min_length(Some(1))
                        .max_length(Some(IDEMPOTENCY_KEY_MAX))
                        .pattern(Some("^[!-~]+$")),
                ))
                .build(),
        );
        let reservation = "$response.body#/status_url#regex:/reservations/([^/?]+)$";
        let link = |op: &str, event: &str, rid: &str, what: &str| {
            LinkBuilder::new()
                .operation_id(op)
                .parameter("event_id", event)
                .parameter("reservation", rid)
                .description(what)
                .build()
        };
        let reserved = [
            ("GetReservation", "get_reservation", "Read its decision."),
            ("Purchase", "purchase", "Purchase its hold."),
            ("Cancel", "cancel", "Give its hold back."),
        ];
        add_links(
            api,
            "/reserve",
            "202",
            reserved.map(|(name, op, what)| {
                (name, link(op, "$request.body#/event_id", reservation, what))
            }),
        );
        let read = [
            ("Purchase", "purchase", "Purchase its hold."),
            ("Cancel", "cancel", "Give its hold back."),
        ];
        add_links(
            api,
            "/events/{event_id}/reservations/{reservation}",
            "200",
            read.map(|(name, op, what)| {
                (
                    name,
                    link(
                        op,
                        "$response.body#/event_id",
                        "$request.path.reservation",
                        what,
                    ),
                )
            }),
        );
        let event = |op: &str, what: &str| {
            LinkBuilder::new()
                .operation_id(op)
                .parameter("event_id", "$response.body#/event_id")
                .description(what)
                .build()
        };
        let created = [
            ("GetEvent", event("get_event", "Read it.")),
            ("ResetEvent", event("reset_event", "Reset it.")),
            (
                "Reserve",
                LinkBuilder::new()
                    .operation_id("reserve")
                    .request_body(Some(serde_json::json!({
                        "event_id": "$response.body#/event_id",
                        "user_id": "linked-buyer",
                    })))
                    .description("Reserve a seat of it.")
                    .build(),
            ),
        ];
        add_links(api, "/admin/events", "201", created);
    }
}

fn add_links<const N: usize>(
    api: &mut utoipa::openapi::OpenApi,
    path: &str,
    status: &str,
    links: [(&str, utoipa::openapi::link::Link); N],
) {
    let item = api
        .paths
        .paths
        .get_mut(path)
        .unwrap_or_else(|| panic!("no path {path}"));
    let op = item
        .get
        .as_mut()
        .or(item.post.as_mut())
        .unwrap_or_else(|| panic!("no operation on {path}"));
    let RefOr::T(response) = op
        .responses
        .responses
        .get_mut(status)
        .unwrap_or_else(|| panic!("no {status} from {path}"))
    else {
        panic!("{status} from {path} is a reference");
    };
    for (name, link) in links {
        response.links.insert(name.to_owned(), RefOr::T(link));
    }
}

/// A `{"error","message"}` answer.
fn error(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/json",
        Content::new(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
            "ErrorBody",
        )))),
    )
}

/// `Retry-After`, in whole seconds.
fn retry_after(r: ResponseBuilder) -> ResponseBuilder {
    r.header(
        "Retry-After",
        HeaderBuilder::new()
            .schema(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1)),
            )
            .description(Some("Seconds to wait before retrying."))
            .build(),
    )
}

/// Declares a shared error answer, `$ref`ed by the routes that give it.
macro_rules! shared_error {
    ($name:ident, $build:expr) => {
        struct $name;
        impl<'s> ToResponse<'s> for $name {
            fn response() -> (&'s str, RefOr<Response>) {
                (stringify!($name), RefOr::T($build.build()))
            }
        }
    };
}

shared_error!(
    BadRequest,
    error(
        "`invalid_request`: the message names the rule the request broke. Fix it; the same request fails again."
    )
);
shared_error!(
    Unauthorized,
    error(
        "`unauthorized`: the token is missing or wrong (or the route is disabled: the message says which)."
    )
);
shared_error!(
    UnknownEvent,
    error("`unknown_event`: no event has this id (GET /events lists them).")
);
shared_error!(
    RequestTimeout,
    error(
        "`request_timeout`: the body did not arrive within the gateway's body timeout (10 s by default)."
    )
);
shared_error!(
    PayloadTooLarge,
    error(
        "`payload_too_large`: the body is over the gateway's limit (16,384 bytes by default, FLASHGRID_MAX_BODY_BYTES)."
    )
);
shared_error!(
    UnsupportedMediaType,
    error(
        "`unsupported_media_type`: a `Content-Type` other than JSON. Send `application/json` (or none)."
    )
);
shared_error!(
    RateLimited,
    retry_after(error(
        "`rate_limited`: over this client's rate (off by default: FLASHGRID_RATE_LIMIT on /reserve, per user or \
         address; FLASHGRID_READ_RATE_LIMIT per address on the status URL and the catalogue). Nothing was done: \
         retry after `Retry-After` seconds."
    ))
);
shared_error!(
    Unavailable,
    retry_after(error(
        "`unavailable`: a service the gateway needs cannot answer now (the message says which), or this address \
         holds too many connections. Retry after `Retry-After` seconds."
    ))
);
shared_error!(
    NotReady,
    retry_after(
        ResponseBuilder::new()
            .description(
                "Not ready: `why` says what is wrong (or, as on every route, this address holds too many \
                 connections: an error body)."
            )
            .content(
                "application/json",
                Content::new(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                    "NotReadyBody"
                ))))
            )
    )
);

/// Take a seat: queued durably, decided by a worker in arrival order.
///
/// `202` means the request is in the queue (the broker confirmed it), not
/// that a seat is won: read `status_url` for the decision. A retry with the
/// same `Idempotency-Key` (and the same `user_id` and `event_id`) is the same
/// reservation, counted once; without one, a retry after a lost answer may
/// be a second purchase. Retry a `503`, a `429` or a lost answer with the
/// same key. A sold-out event is answered `409` at once.
#[utoipa::path(
    post,
    path = "/reserve",
    tag = "sale",
    operation_id = "reserve",
    request_body(content = ReserveRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Queued durably: read `status_url` for the decision.", body = Accepted),
        (status = 400, response = BadRequest),
        (status = 404, response = UnknownEvent),
        (status = 408, response = RequestTimeout),
        (status = 409, description = "`sold_out`: no seats left (a keyed retry of a decided purchase gets `202` \
            with its decision instead); `sale_closed`: outside the sale's window (`opens_at`, `closes_at`).",
            body = ErrorBody),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 429, response = RateLimited),
        (status = 503, response = Unavailable),
    )
)]
#[allow(dead_code)]
fn reserve() {}

/// Where a reservation stands; with `wait_ms`, a long-poll until decided.
///
/// The path is the `status_url` of the `202`: its last segment is the
/// reservation id with its signature. Safe to repeat.
#[utoipa::path(
    get,
    path = "/events/{event_id}/reservations/{reservation}",
    tag = "sale",
    operation_id = "get_reservation",
    params(
        ("event_id" = flashgrid_wire::EventId, Path, description = "The event's id."),
        ("reservation" = String, Path, min_length = 1,
            description = "The status URL's last segment (`<reservation id>.<signature>`); a bare reservation id \
            is answered only while the gateway still knows the reservation."),
        ("wait_ms" = Option<u32>, Query, minimum = 0, maximum = 30_000,
            description = "Wait up to this long for a decision (0 when absent: answer at once)."),
    ),
    responses(
        (status = 200, description = "The reservation: `pending` until decided (long-poll again), then final \
            (`confirmed`, `rejected` with a `reason`), or on an event with holds `held` until `expires_at`, then \
            `purchased`, `expired` or `cancelled`.", body = ReservationView),
        (status = 400, response = BadRequest),
        (status = 404, description = "`unknown_event`, or `not_found`: no such reservation.", body = ErrorBody),
        (status = 429, response = RateLimited),
        (status = 503, response = Unavailable),
    )
)]
#[allow(dead_code)]
fn get_reservation() {}

/// Purchase a held seat (events with holds), before its `expires_at`.
///
/// Idempotent: the same call again answers the same. Named by the status
/// URL (its capability), or by the bare reservation id with the admin token.
#[utoipa::path(
    post,
    path = "/events/{event_id}/reservations/{reservation}/purchase",
    tag = "sale",
    operation_id = "purchase",
    params(
        ("event_id" = flashgrid_wire::EventId, Path, description = "The event's id."),
        ("reservation" = String, Path, min_length = 1,
            description = "The status URL's last segment."),
    ),
    request_body(content = Option<Purchase>, content_type = "application/json",
        description = "Optional: the payment's reference."),
    security((), ("admin" = [])),
    responses(
        (status = 200, description = "The reservation, `purchased`.", body = ReservationView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, description = "`unknown_event`, or `not_found`: no such reservation.", body = ErrorBody),
        (status = 408, response = RequestTimeout),
        (status = 409, description = "Nothing changed: `hold_expired`, `hold_cancelled` (its seats went back on \
            sale), `not_held` (pending or rejected), `final_decision` (an event without holds), \
            `purchased_with_another_payment`, `sale_closed` (a sale reset since).", body = ErrorBody),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    )
)]
#[allow(dead_code)]
fn purchase() {}

/// Give a held seat back: it goes on sale again at once.
///
/// Idempotent: the same call again answers the same. It takes no body.
#[utoipa::path(
    post,
    path = "/events/{event_id}/reservations/{reservation}/cancel",
    tag = "sale",
    operation_id = "cancel",
    params(
        ("event_id" = flashgrid_wire::EventId, Path, description = "The event's id."),
        ("reservation" = String, Path, min_length = 1,
            description = "The status URL's last segment."),
    ),
    security((), ("admin" = [])),
    responses(
        (status = 200, description = "The reservation, `cancelled`.", body = ReservationView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, description = "`unknown_event`, or `not_found`: no such reservation.", body = ErrorBody),
        (status = 408, response = RequestTimeout),
        (status = 409, description = "Nothing changed: `already_purchased`, `hold_expired`, `not_held`, \
            `final_decision`, `sale_closed` (a sale reset since).", body = ErrorBody),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    )
)]
#[allow(dead_code)]
fn cancel() {}

/// Every event, with its seats.
#[utoipa::path(
    get,
    path = "/events",
    tag = "events",
    operation_id = "list_events",
    responses(
        (status = 200, description = "The events.", body = Vec<EventView>),
        (status = 429, response = RateLimited),
        (status = 503, response = Unavailable),
    )
)]
#[allow(dead_code)]
fn list_events() {}

/// One event, with its seats.
#[utoipa::path(
    get,
    path = "/events/{event_id}",
    tag = "events",
    operation_id = "get_event",
    params(("event_id" = flashgrid_wire::EventId, Path, description = "The event's id.")),
    responses(
        (status = 200, description = "The event.", body = EventView),
        (status = 404, response = UnknownEvent),
        (status = 429, response = RateLimited),
        (status = 503, response = Unavailable),
    )
)]
#[allow(dead_code)]
fn get_event() {}

/// Create a sale.
#[utoipa::path(
    post,
    path = "/admin/events",
    tag = "admin",
    operation_id = "create_event",
    request_body(content = CreateEvent, content_type = "application/json"),
    security(("admin" = [])),
    responses(
        (status = 201, description = "The event, its stock set.", body = EventView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 408, response = RequestTimeout),
        (status = 409, description = "`exists`: an event has this id.", body = ErrorBody),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    )
)]
#[allow(dead_code)]
fn create_event() {}

/// Start a sale again: its reservations removed, its stock restored.
#[utoipa::path(
    post,
    path = "/admin/events/{event_id}/reset",
    tag = "admin",
    operation_id = "reset_event",
    params(("event_id" = flashgrid_wire::EventId, Path, description = "The event's id.")),
    request_body(content = Option<ResetEvent>, content_type = "application/json",
        description = "Optional: a new capacity, the hold time, the confirmation to discard confirmed reservations."),
    security(("admin" = [])),
    responses(
        (status = 200, description = "The event, reset.", body = EventView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = UnknownEvent),
        (status = 408, response = RequestTimeout),
        (status = 409, description = "`confirmation_required`: the event has confirmed reservations; send \
            `{\"discard_confirmed\": true}` to delete them.", body = ErrorBody),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    )
)]
#[allow(dead_code)]
fn reset_event() {}

/// The live feed: a WebSocket of JSON snapshots, several a second.
#[utoipa::path(
    get,
    path = "/ws",
    tag = "operations",
    operation_id = "feed",
    params(("token" = Option<String>, Query,
        description = "The feed token, for clients that cannot set headers (browsers)."),
    ),
    security(("feed" = []), ("admin" = [])),
    responses(
        (status = 101, description = "Switched to the WebSocket feed."),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    )
)]
#[allow(dead_code)]
fn feed() {}

/// Prometheus metrics: open while the gateway runs without a feed token,
/// then the feed or admin token.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    operation_id = "metrics",
    security((), ("feed" = []), ("admin" = [])),
    responses(
        (status = 200, description = "The metrics.", body = String,
            content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    )
)]
#[allow(dead_code)]
fn metrics() {}

/// Alive: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    operation_id = "healthz",
    responses(
        (status = 200, description = "Alive.", body = Liveness),
        (status = 503, response = Unavailable),
    )
)]
#[allow(dead_code)]
fn healthz() {}

/// Ready: PostgreSQL, Redis and RabbitMQ all answer.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    operation_id = "readyz",
    responses(
        (status = 200, description = "Ready.", body = Readiness),
        (status = 503, response = NotReady),
    )
)]
#[allow(dead_code)]
fn readyz() {}

/// The 503 of `/readyz`: the readiness, or the refusal every route may
/// answer (a schema only: the gateway writes one or the other).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum NotReadyBody {
    Readiness(Readiness),
    Refused(ErrorBody),
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    operation_id = "openapi",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API.", body = Object),
        (status = 503, response = Unavailable),
    )
)]
#[allow(dead_code)]
fn openapi_document() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_with_every_route() {
        let doc: serde_json::Value = serde_json::from_slice(&json()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        for path in [
            "/reserve",
            "/events/{event_id}/reservations/{reservation}",
            "/events/{event_id}/reservations/{reservation}/purchase",
            "/events/{event_id}/reservations/{reservation}/cancel",
            "/events",
            "/events/{event_id}",
            "/admin/events",
            "/admin/events/{event_id}/reset",
            "/ws",
            "/metrics",
            "/healthz",
            "/readyz",
            "/openapi.json",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} is not documented");
        }
        let links = &doc["paths"]["/reserve"]["post"]["responses"]["202"]["links"];
        assert_eq!(links["GetReservation"]["operationId"], "get_reservation");
        let created = &doc["paths"]["/admin/events"]["post"]["responses"]["201"]["links"];
        assert_eq!(
            created["Reserve"]["requestBody"]["event_id"],
            "$response.body#/event_id"
        );
        let codes = &doc["components"]["schemas"]["ErrorCode"]["enum"];
        for code in ErrorCode::ALL {
            assert!(
                codes.as_array().unwrap().contains(&code.as_str().into()),
                "{code:?} is not in the document"
            );
        }
    }

    /// The committed `docs/openapi.json` is the document this code serves.
    #[test]
    fn the_committed_document_is_the_generated_one() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        let generated = String::from_utf8(json().to_vec()).unwrap();
        assert!(
            committed == generated,
            "docs/openapi.json differs from the document the gateway serves: run `just openapi` and commit it"
        );
    }
}
