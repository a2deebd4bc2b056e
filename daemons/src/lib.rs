//! FlashGrid's daemons: the gateway that takes every request of a flash crowd
//! and the worker that decides each sale.
//!
//! ```text
//! client ─POST /reserve─▶ gateway ─group publish (confirmed)─▶ RabbitMQ ─▶ worker
//!                           ▲  │                                          │
//!      sold-out, decisions  │  └─ pending marker ─▶ Redis ◀── Lua decide ─┤
//!      (Redis pub/sub) ─────┘                                             └─ batched INSERT ─▶ PostgreSQL
//! ```
//!
//! A reservation's life: the [`gateway`] validates it, answers `409` at once
//! when its event is known to be sold out or closed, and otherwise hands it to
//! the group publisher, which gathers what arrives meanwhile into one
//! persistent message and answers every buyer in it `202` once RabbitMQ
//! confirmed that message. The [`worker`] takes many messages at a time,
//! decides them in Lua calls per event of a few hundred reservations each
//! ([`inventory`]), writes the winners to PostgreSQL in one statement that
//! also guards capacity ([`db`]), and only then acks. Decisions are published ([`notify`]) so gateways learn sold-out
//! without asking Redis per request and long-polls wake up.
//!
//! The sale's rules themselves (windows, seats, outcomes, the invariant) live
//! in `flashgrid_wire::sale`, shared with the console and the load generator;
//! this crate is how the daemons apply them. Test harnesses live in crates of
//! their own (`flashgrid-testkit`, `flashgrid-faults`): nothing here exists
//! only for tests.
//!
//! Modules, from the edges in:
//! - [`config`]: flags and environment of both daemons, parsed and checked once.
//! - [`services`]: connecting to PostgreSQL, Redis and RabbitMQ at start (one
//!   [`services::Connected`] value each daemon's `serve` takes), with errors
//!   that say how to fix them; probing them while running.
//! - [`backoff`]: the one backoff of every reconnect and retry loop.
//! - [`names`]: every Redis key, channel and AMQP name, under one namespace.
//! - [`db`]: migrations, events and the capacity-guarded commit.
//! - [`store`]: Redis as one server or a Redis Cluster, behind one handle.
//! - [`inventory`]: Redis state and the Lua scripts that decide sales.
//! - [`queue`]: the message format and AMQP topology.
//! - [`notify`]: the pub/sub messages between workers and gateways.
//! - [`reach`]: which node of each service a daemon reaches, for the feed.
//! - [`gateway`], [`worker`]: the two daemons, each with `run` (from its
//!   configuration) and `serve` (on connected services).
//! - [`redact`], [`shutdown`], [`telemetry`]: passwords out of logs, one
//!   cancellation token fed by SIGTERM and Ctrl-C, structured logs.

pub mod backoff;
pub mod config;
pub mod db;
pub mod gateway;
pub mod inventory;
pub mod names;
pub mod notify;
pub mod queue;
pub mod reach;
pub mod redact;
pub mod services;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod worker;
