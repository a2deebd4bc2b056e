//! The OpenAPI schemas of the domain newtypes (feature `openapi`): each
//! states the rule its parser enforces, so that the published contract and
//! the gateway refuse the same values.

use crate::ids::{Capacity, EventId, PerUserLimit, Quantity, ReservationId, UserId};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

/// No control character (what `char::is_control` refuses: C0, DEL, C1),
/// as an ECMA-262 and Python regex alike.
pub const PRINTABLE: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$";

fn string(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
}

fn whole(description: &str, min: u32, max: u32) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(min))
        .maximum(Some(max))
        .description(Some(description))
        .into()
}

impl PartialSchema for EventId {
    fn schema() -> RefOr<Schema> {
        string("An event's id: a slug of 1-64 characters `[a-z0-9-]`, starting with a letter or digit.")
            .min_length(Some(1))
            .max_length(Some(EventId::MAX_LEN))
            .pattern(Some("^[a-z0-9][a-z0-9-]{0,63}$"))
            .examples(["spring-drop"])
            .into()
    }
}
impl ToSchema for EventId {}

impl PartialSchema for UserId {
    fn schema() -> RefOr<Schema> {
        string("A buyer's id: 1-128 characters, none a control character.")
            .min_length(Some(1))
            .max_length(Some(UserId::MAX_CHARS))
            .pattern(Some(PRINTABLE))
            .examples(["buyer-42"])
            .into()
    }
}
impl ToSchema for UserId {}

impl PartialSchema for Quantity {
    fn schema() -> RefOr<Schema> {
        whole(
            "Seats one reservation asks for.",
            1,
            u32::from(Quantity::MAX),
        )
    }
}
impl ToSchema for Quantity {}

impl PartialSchema for PerUserLimit {
    fn schema() -> RefOr<Schema> {
        whole(
            "The most seats one buyer may win of one event (4 when absent).",
            1,
            10,
        )
    }
}
impl ToSchema for PerUserLimit {}

impl PartialSchema for Capacity {
    fn schema() -> RefOr<Schema> {
        whole("The seats an event offers.", 1, Capacity::MAX)
    }
}
impl ToSchema for Capacity {}

impl PartialSchema for ReservationId {
    fn schema() -> RefOr<Schema> {
        string("A reservation's id.")
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
            .into()
    }
}
impl ToSchema for ReservationId {}
