//! Request and response bodies of the gateway's HTTP API (see DESIGN.md).

use crate::ids::{Capacity, EventId, PerUserLimit, Quantity, ReservationId, UserId, Whole};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Header a client sets so that a retried purchase is the same reservation.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// Longest `Idempotency-Key` accepted, in bytes.
pub const IDEMPOTENCY_KEY_MAX: usize = 255;
/// Longest long-poll a status request may ask for (`?wait_ms=`).
pub const MAX_WAIT_MS: u64 = 30_000;

/// `POST /reserve`. Unknown fields are refused: a misspelt `quantity`
/// would otherwise reserve one seat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReserveRequest {
    pub event_id: EventId,
    pub user_id: UserId,
    /// 1 when absent.
    #[serde(default = "one")]
    pub quantity: Quantity,
}

fn one() -> Quantity {
    Quantity::ONE
}

/// Where a reservation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Status {
    Pending,
    /// Won, for good (an event without holds).
    Confirmed,
    Rejected,
    /// Won, held until `expires_at` (an event with holds): purchase it or
    /// cancel it before then.
    Held,
    /// A hold purchased: the seat is the buyer's for good.
    Purchased,
    /// A hold not purchased by `expires_at`: its seats went back on sale.
    Expired,
    /// A hold given back by its buyer (or the admin): its seats went back
    /// on sale.
    Cancelled,
}

impl Status {
    /// Decided for good: nothing will change it any more.
    pub fn is_final(self) -> bool {
        !matches!(self, Status::Pending | Status::Held)
    }

    /// The buyer has (or had, until they give it back) the seats: a
    /// confirmation, a hold or a purchase.
    pub fn won(self) -> bool {
        matches!(
            self,
            Status::Confirmed
                | Status::Held
                | Status::Purchased
                | Status::Expired
                | Status::Cancelled
        )
    }
}

/// Why a reservation was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Reason {
    SoldOut,
    UserLimit,
    SaleClosed,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::SoldOut => "sold_out",
            Reason::UserLimit => "user_limit",
            Reason::SaleClosed => "sale_closed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sold_out" => Some(Reason::SoldOut),
            "user_limit" => Some(Reason::UserLimit),
            "sale_closed" => Some(Reason::SaleClosed),
            _ => None,
        }
    }
}

/// `202` answer of `POST /reserve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Accepted {
    pub reservation_id: ReservationId,
    /// `pending`; a retry with the same `Idempotency-Key` of a reservation
    /// decided since answers its decision (its `reason` or `expires_at`:
    /// read `status_url`).
    pub status: Status,
    /// Where the reservation's decision is read (`GET`), relative to the
    /// gateway's base URL. Its last segment is the reservation's
    /// capability: it names the reservation to `purchase` and `cancel`.
    pub status_url: String,
}

/// The path of a reservation's status, relative to the gateway's base URL.
pub fn status_path(event: &EventId, id: &ReservationId) -> String {
    format!("/events/{event}/reservations/{id}")
}

/// `GET <status_url>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReservationView {
    pub reservation_id: ReservationId,
    pub event_id: EventId,
    pub user_id: UserId,
    pub quantity: Quantity,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// A hold's end: purchase before it (`held`), or when it ended
    /// (`expired`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// What the purchase named (`purchased`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_ref: Option<String>,
}

/// `GET /events/{id}` (and each element of `GET /events`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventView {
    pub event_id: EventId,
    pub name: String,
    pub capacity: u32,
    pub remaining: u32,
    pub confirmed: u32,
    pub per_user_limit: PerUserLimit,
    pub sold_out: bool,
    // Always written (`null` when unset); read as absent from older gateways.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub opens_at: Option<DateTime<Utc>>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub closes_at: Option<DateTime<Utc>>,
    /// How long a won seat is held before it must be purchased; absent: a
    /// decision is final.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 86_400))]
    pub hold_seconds: Option<u32>,
    /// Of `confirmed` (the seats taken), those held and not yet purchased.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub held: u32,
    /// Of `confirmed`, those purchased.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub purchased: u32,
    /// Seats held and given back (expired or cancelled) in this sale, all
    /// told: each went back on sale.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub released: u32,
}

/// Longest hold, in seconds (a day).
pub const MAX_HOLD_SECONDS: u32 = 86_400;
/// Longest payment reference, in characters.
pub const MAX_PAYMENT_REF_CHARS: usize = 200;

/// `POST /events/{id}/reservations/{rid}/purchase` (the body is optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Purchase {
    /// The payment's reference, kept with the purchase and answered again
    /// to a repeated call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 200,
            pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
        )
    )]
    pub payment_ref: Option<String>,
}

impl Purchase {
    pub fn validate(&self) -> Result<(), String> {
        match &self.payment_ref {
            Some(r)
                if r.is_empty()
                    || r.chars().count() > MAX_PAYMENT_REF_CHARS
                    || r.chars().any(char::is_control) =>
            {
                Err(format!(
                    "payment_ref must be 1-{MAX_PAYMENT_REF_CHARS} printable characters"
                ))
            }
            _ => Ok(()),
        }
    }
}

/// Longest event name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// `POST /admin/events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateEvent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<EventId>,
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 200,
            pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
        )
    )]
    pub name: String,
    pub capacity: Capacity,
    #[serde(default)]
    pub per_user_limit: PerUserLimit,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opens_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closes_at: Option<DateTime<Utc>>,
    /// Hold each won seat this many seconds (1 to 86,400) for its buyer to
    /// purchase; absent: a decision is final.
    #[serde(
        default,
        deserialize_with = "hold_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 86_400))]
    pub hold_seconds: Option<u32>,
}

impl CreateEvent {
    /// Checks what serde cannot: bounds and the window's order.
    pub fn validate(&self) -> Result<(), String> {
        let chars = self.name.chars().count();
        if chars == 0 || chars > MAX_NAME_CHARS || self.name.chars().any(char::is_control) {
            return Err(format!(
                "name must be 1-{MAX_NAME_CHARS} printable characters"
            ));
        }
        if let (Some(o), Some(c)) = (self.opens_at, self.closes_at)
            && o >= c
        {
            return Err("opens_at must be before closes_at".into());
        }
        if let Some(h) = self.hold_seconds
            && !(1..=MAX_HOLD_SECONDS).contains(&h)
        {
            return Err(format!(
                "hold_seconds must be 1-{MAX_HOLD_SECONDS} (or absent: decisions are final)"
            ));
        }
        Ok(())
    }
}

/// `POST /admin/events/{id}/reset` (the body is optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResetEvent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Capacity>,
    /// Must be `true` to reset an event that has confirmed reservations:
    /// the reset deletes them (answered `409 confirmation_required` otherwise).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub discard_confirmed: bool,
    /// Absent: the hold time stays as it is; a number (1 to 86,400): hold
    /// each seat won from now on this long; `null`: decisions are final.
    #[serde(
        default,
        deserialize_with = "present_hold_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = Option<u32>, minimum = 1, maximum = 86_400)
    )]
    pub hold_seconds: Option<Option<u32>>,
}

impl ResetEvent {
    pub fn validate(&self) -> Result<(), String> {
        match self.hold_seconds {
            Some(Some(h)) if !(1..=MAX_HOLD_SECONDS).contains(&h) => Err(format!(
                "hold_seconds must be 1-{MAX_HOLD_SECONDS}, or null for final decisions"
            )),
            _ => Ok(()),
        }
    }
}

/// A hold time: a whole number of seconds (`null`: none).
fn hold_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    Option::<Whole>::deserialize(d)?
        .map(|Whole(n)| {
            u32::try_from(n)
                .ok()
                .filter(|h| (1..=MAX_HOLD_SECONDS).contains(h))
                .ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "hold_seconds must be 1-{MAX_HOLD_SECONDS}, got {n}"
                    ))
                })
        })
        .transpose()
}

/// A hold time that is present, even as `null`: `Some(None)`; serde's
/// `default` makes an absent one `None`.
fn present_hold_seconds<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<u32>>, D::Error> {
    hold_seconds(d).map(Some)
}

/// `GET /healthz`: the process answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Liveness {
    /// Always `alive`.
    #[cfg_attr(feature = "openapi", schema(examples("alive")))]
    pub status: String,
}

/// `GET /readyz`: whether each service answers, and what is wrong with
/// those that do not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Readiness {
    /// All three answer: the gateway can take reservations.
    pub ready: bool,
    pub checks: ServiceChecks,
    /// Only when not ready: for each service that fails, why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<ServiceFaults>,
}

/// Whether each service answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceChecks {
    pub postgres: bool,
    pub redis: bool,
    pub rabbitmq: bool,
}

/// What is wrong with each service that does not answer, in words an
/// operator can act on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceFaults {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rabbitmq: Option<String>,
}

/// Every error body: a stable machine code and a human message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    // A string here, so that a client built on this crate reads the codes
    // of a newer gateway; the gateway answers an `ErrorCode`.
    /// What went wrong, for programs: one of `ErrorCode`.
    #[cfg_attr(feature = "openapi", schema(value_type = ErrorCode))]
    pub error: String,
    /// For people: what went wrong and what to do about it.
    pub message: String,
}

/// The machine-readable code of every error answer (`error` in its body);
/// its status and what a client should do are in docs/API.md. Codes may be
/// added: act on one you do not know by its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ErrorCode {
    /// 400: the request breaks a rule its message names.
    InvalidRequest,
    /// 401: a token is missing or wrong.
    Unauthorized,
    /// 404: no such route or reservation.
    NotFound,
    /// 404: no such event.
    UnknownEvent,
    /// 405: the route takes another method (see `Allow`).
    MethodNotAllowed,
    /// 408: the body did not arrive in time.
    RequestTimeout,
    /// 409: no seats left.
    SoldOut,
    /// 409: outside the sale's window, or of a sale reset since.
    SaleClosed,
    /// 409: a reset that would delete confirmed reservations, unconfirmed.
    ConfirmationRequired,
    /// 409: an event of that id exists.
    Exists,
    /// 409: the reservation holds no seat (pending or rejected).
    NotHeld,
    /// 409: the event has no holds: its confirmations are final.
    FinalDecision,
    /// 409: purchased already, with another `payment_ref`.
    PurchasedWithAnotherPayment,
    /// 409: purchased already: it cannot be cancelled.
    AlreadyPurchased,
    /// 409: the hold was cancelled; its seats went back on sale.
    HoldCancelled,
    /// 409: the hold expired; its seats went back on sale.
    HoldExpired,
    /// 413: the body is over the gateway's limit.
    PayloadTooLarge,
    /// 415: the body is not declared JSON.
    UnsupportedMediaType,
    /// 429: over this client's rate (see `Retry-After`).
    RateLimited,
    /// 503: a dependency cannot take the request now (see `Retry-After`).
    Unavailable,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 20] = [
        ErrorCode::InvalidRequest,
        ErrorCode::Unauthorized,
        ErrorCode::NotFound,
        ErrorCode::UnknownEvent,
        ErrorCode::MethodNotAllowed,
        ErrorCode::RequestTimeout,
        ErrorCode::SoldOut,
        ErrorCode::SaleClosed,
        ErrorCode::ConfirmationRequired,
        ErrorCode::Exists,
        ErrorCode::NotHeld,
        ErrorCode::FinalDecision,
        ErrorCode::PurchasedWithAnotherPayment,
        ErrorCode::AlreadyPurchased,
        ErrorCode::HoldCancelled,
        ErrorCode::HoldExpired,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::RateLimited,
        ErrorCode::Unavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::NotFound => "not_found",
            ErrorCode::UnknownEvent => "unknown_event",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::SoldOut => "sold_out",
            ErrorCode::SaleClosed => "sale_closed",
            ErrorCode::ConfirmationRequired => "confirmation_required",
            ErrorCode::Exists => "exists",
            ErrorCode::NotHeld => "not_held",
            ErrorCode::FinalDecision => "final_decision",
            ErrorCode::PurchasedWithAnotherPayment => "purchased_with_another_payment",
            ErrorCode::AlreadyPurchased => "already_purchased",
            ErrorCode::HoldCancelled => "hold_cancelled",
            ErrorCode::HoldExpired => "hold_expired",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reset_tells_an_absent_hold_time_from_a_null_one() {
        let keep: ResetEvent = serde_json::from_str("{}").unwrap();
        assert_eq!(keep.hold_seconds, None);
        let drop: ResetEvent = serde_json::from_str(r#"{"hold_seconds":null}"#).unwrap();
        assert_eq!(drop.hold_seconds, Some(None));
        let set: ResetEvent = serde_json::from_str(r#"{"hold_seconds":5}"#).unwrap();
        assert_eq!(set.hold_seconds, Some(Some(5)));
        assert!(set.validate().is_ok());
        let zero = serde_json::from_str::<ResetEvent>(r#"{"hold_seconds":0}"#).unwrap_err();
        assert!(
            zero.to_string().contains("hold_seconds must be 1-86400"),
            "{zero}"
        );
        let whole: ResetEvent = serde_json::from_str(r#"{"hold_seconds":5.0}"#).unwrap();
        assert_eq!(whole.hold_seconds, Some(Some(5)));
        assert_eq!(
            serde_json::to_string(&drop).unwrap(),
            r#"{"hold_seconds":null}"#
        );
        assert_eq!(serde_json::to_string(&keep).unwrap(), "{}");
    }

    #[test]
    fn error_codes_are_written_as_serde_writes_them() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
            assert!(seen.insert(code.as_str()), "{code:?} twice");
        }
    }

    /// JSON Schema's `integer` admits `3.0`: so does every whole-number
    /// field, and nothing else.
    #[test]
    fn whole_numbers_may_be_written_with_a_zero_fraction() {
        let r: ReserveRequest =
            serde_json::from_str(r#"{"event_id":"e","user_id":"u","quantity":3.0}"#).unwrap();
        assert_eq!(r.quantity.get(), 3);
        let c: CreateEvent = serde_json::from_str(
            r#"{"name":"n","capacity":2e3,"per_user_limit":2.0,"hold_seconds":60.0}"#,
        )
        .unwrap();
        assert_eq!(
            (c.capacity.get(), c.per_user_limit.get(), c.hold_seconds),
            (2000, 2, Some(60))
        );
        for bad in [
            r#"{"event_id":"e","user_id":"u","quantity":2.5}"#,
            r#"{"event_id":"e","user_id":"u","quantity":1e300}"#,
            r#"{"event_id":"e","user_id":"u","quantity":18446744073709551615}"#,
            r#"{"event_id":"e","user_id":"u","quantity":"3"}"#,
        ] {
            assert!(
                serde_json::from_str::<ReserveRequest>(bad).is_err(),
                "{bad}"
            );
        }
        let e =
            serde_json::from_str::<CreateEvent>(r#"{"name":"n","capacity":1,"hold_seconds":1.5}"#)
                .unwrap_err();
        assert!(e.to_string().contains("whole number"), "{e}");
    }

    #[test]
    fn reserve_request_defaults_quantity_to_one() {
        let r: ReserveRequest = serde_json::from_str(r#"{"event_id":"e","user_id":"u"}"#).unwrap();
        assert_eq!(r.quantity.get(), 1);
    }

    #[test]
    fn reserve_request_rejects_bad_fields_with_their_rule() {
        let e = serde_json::from_str::<ReserveRequest>(r#"{"event_id":"E!","user_id":"u"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("event_id must be a slug"), "{e}");
        let e = serde_json::from_str::<ReserveRequest>(
            r#"{"event_id":"e","user_id":"u","quantity":0}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("quantity must be 1..=10"), "{e}");
    }

    #[test]
    fn create_event_validation() {
        let mut c: CreateEvent = serde_json::from_str(r#"{"name":"n","capacity":3}"#).unwrap();
        assert!(c.validate().is_ok());
        assert_eq!(c.per_user_limit.get(), 4);
        // A capacity out of bounds cannot even be parsed.
        let zero = serde_json::from_str::<CreateEvent>(r#"{"name":"n","capacity":0}"#);
        assert!(zero.unwrap_err().to_string().contains("capacity must be"));
        c.opens_at = Some(Utc::now());
        c.closes_at = c.opens_at;
        assert!(c.validate().is_err());
        assert!(serde_json::from_str::<CreateEvent>(r#"{"name":"n","capacity":3,"x":1}"#).is_err());
    }

    /// Whatever bytes arrive, parsing a `/reserve` body returns (never
    /// panics), and whatever it accepts is within DESIGN.md's bounds, checked
    /// here independently of the newtypes' own parsers.
    mod reserve_body {
        use super::*;
        use proptest::prelude::*;
        use serde_json::{Value, json};

        fn check(bytes: &[u8]) {
            let Ok(r) = serde_json::from_slice::<ReserveRequest>(bytes) else {
                return;
            };
            let e = r.event_id.as_str().as_bytes();
            assert!((1..=64).contains(&e.len()), "event_id length {}", e.len());
            assert!(e[0].is_ascii_lowercase() || e[0].is_ascii_digit());
            assert!(
                e.iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
            );
            let u = r.user_id.as_str();
            assert!((1..=128).contains(&u.chars().count()), "user_id {u:?}");
            assert!(!u.chars().any(char::is_control), "user_id {u:?}");
            assert!((1..=10).contains(&r.quantity.get()));
            // What was accepted serialises back to itself.
            let again: ReserveRequest =
                serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
            assert_eq!(again, r);
        }

        /// Any JSON value, a few levels deep.
        fn any_json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                any::<f64>().prop_map(|f| json!(f)),
                ".{0,20}".prop_map(Value::from),
            ];
            leaf.prop_recursive(4, 32, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                    prop::collection::btree_map(".{0,8}", inner, 0..4)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// A field value: mostly near the valid shape, sometimes anything.
        fn slug_like() -> impl Strategy<Value = Value> {
            prop_oneof![
                4 => "[a-z0-9-]{0,70}".prop_map(Value::from),
                1 => "[a-zA-Z0-9_ -]{0,70}".prop_map(Value::from),
                1 => any::<String>().prop_map(Value::from),
                1 => any_json(),
            ]
        }

        fn user_like() -> impl Strategy<Value = Value> {
            prop_oneof![
                3 => "\\PC{0,140}".prop_map(Value::from),
                1 => "\\PC{120,135}".prop_map(Value::from),
                1 => ".{0,20}".prop_map(Value::from),
                1 => any::<String>().prop_map(Value::from),
                1 => any_json(),
            ]
        }

        fn quantity_like() -> impl Strategy<Value = Value> {
            prop_oneof![
                (-3i64..15).prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                any::<f64>().prop_map(|f| json!(f)),
                any_json(),
            ]
        }

        /// A JSON object with each field mostly present, and maybe one more.
        fn body() -> impl Strategy<Value = String> {
            (
                prop::option::weighted(0.9, slug_like()),
                prop::option::weighted(0.9, user_like()),
                prop::option::of(quantity_like()),
                prop::option::of((".{0,10}", any_json())),
            )
                .prop_map(|(e, u, q, extra)| {
                    let mut parts = Vec::new();
                    for (k, v) in [("event_id", e), ("user_id", u), ("quantity", q)] {
                        if let Some(v) = v {
                            parts.push(format!("{}:{v}", json!(k)));
                        }
                    }
                    if let Some((k, v)) = extra {
                        parts.push(format!("{}:{v}", json!(k)));
                    }
                    format!("{{{}}}", parts.join(","))
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: 2000,
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            #[test]
            fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
                check(&bytes);
            }

            #[test]
            fn json_bodies_parse_only_within_bounds(body in body()) {
                check(body.as_bytes());
            }

            /// The other half: every body within the bounds is accepted, as
            /// written (a parser that refused valid purchases would pass
            /// the tests above).
            #[test]
            fn valid_bodies_are_accepted(
                event in "[a-z0-9][a-z0-9-]{0,63}",
                user in "\\PC{1,128}",
                quantity in prop::option::of(1i64..=10),
            ) {
                let mut body = json!({"event_id": event, "user_id": user});
                if let Some(q) = quantity {
                    body["quantity"] = json!(q);
                }
                let r: ReserveRequest = serde_json::from_value(body.clone())
                    .unwrap_or_else(|e| panic!("{body} refused: {e}"));
                prop_assert_eq!(r.event_id.as_str(), event.as_str());
                prop_assert_eq!(r.user_id.as_str(), user.as_str());
                prop_assert_eq!(i64::from(r.quantity.get()), quantity.unwrap_or(1));
            }

            #[test]
            fn truncated_bodies_never_panic(body in body(), cut in any::<prop::sample::Index>()) {
                let bytes = body.as_bytes();
                check(&bytes[..cut.index(bytes.len() + 1)]);
            }
        }

        #[test]
        fn the_bounds_themselves_parse() {
            let max = format!(
                r#"{{"event_id":"{}","user_id":"{}","quantity":10}}"#,
                "a".repeat(64),
                "é".repeat(128)
            );
            assert!(serde_json::from_str::<ReserveRequest>(&max).is_ok());
        }
    }

    #[test]
    fn status_serialises_as_design_says() {
        let v = ReservationView {
            reservation_id: ReservationId::random(),
            event_id: EventId::parse("e").unwrap(),
            user_id: UserId::parse("u").unwrap(),
            quantity: Quantity::ONE,
            status: Status::Rejected,
            reason: Some(Reason::SoldOut),
            expires_at: None,
            payment_ref: None,
        };
        let j = serde_json::to_value(&v).unwrap();
        assert_eq!(j["status"], "rejected");
        assert_eq!(j["reason"], "sold_out");
        assert_eq!(j["quantity"], 1);
    }
}
