//! FlashGrid's shared vocabulary: the domain (ids, the sale's rules) and the
//! wire types (the JSON bodies of the gateway's HTTP API and its feed), used
//! alike by the daemons, the console, the load generator and the fault
//! verdicts.
//!
//! This crate is deliberately small (serde, uuid, chrono) so that clients do not
//! compile the daemons' database and broker dependencies.
//!
//! - [`ids`]: the domain newtypes (`EventId`, `UserId`, `Quantity`,
//!   `ReservationId`) that parse input once; an invalid value cannot exist.
//! - [`sale`]: an event's window and seats, a reservation's outcome, and the
//!   invariant every screen and verdict checks.
//! - [`api`]: request and response bodies of each route.
//! - [`feed`]: the snapshots of the live feed (`GET /ws`).
//! - `schema` (feature `openapi`): the OpenAPI schemas of the newtypes.
//! - [`token`]: the admin token, whose `Debug` never shows it.

pub mod api;
pub mod feed;
pub mod ids;
pub mod sale;
#[cfg(feature = "openapi")]
pub mod schema;
pub mod token;

pub use api::*;
pub use feed::*;
pub use ids::*;
pub use token::AdminToken;
