//! FlashGrid's wire types: the JSON bodies of the gateway's HTTP API, shared by
//! the daemons, the console and the load generator.
//!
//! This crate is deliberately small (serde, uuid, chrono) so that clients do not
//! compile the daemons' database and broker dependencies.
//!
//! - [`ids`]: the domain newtypes (`EventId`, `UserId`, `Quantity`,
//!   `ReservationId`) that parse input once; an invalid value cannot exist.
//! - [`api`]: request and response bodies of each route.
//! - [`feed`]: the snapshots of the live feed (`GET /ws`).

pub mod api;
pub mod feed;
pub mod ids;

pub use api::*;
pub use feed::*;
pub use ids::*;
