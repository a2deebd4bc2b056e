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
//! decides them in one Lua call per event ([`inventory`]), writes the winners
//! to PostgreSQL in one statement that also guards capacity ([`db`]), and only
//! then acks. Decisions are published ([`notify`]) so gateways learn sold-out
//! without asking Redis per request and long-polls wake up.
//!
//! Modules:
//! - [`config`]: flags and environment of both daemons.
//! - [`names`]: every Redis key, channel and AMQP name, under one namespace.
//! - [`services`]: connecting to PostgreSQL, Redis and RabbitMQ, with errors
//!   that say how to fix them.
//! - [`db`]: migrations, events and the capacity-guarded commit.
//! - [`inventory`]: Redis state and the Lua scripts that decide sales.
//! - [`queue`]: the message format and AMQP topology.
//! - [`notify`]: the pub/sub messages between workers and gateways.
//! - [`shutdown`]: one cancellation token fed by SIGTERM and Ctrl-C.

pub mod config;
pub mod db;
#[cfg(feature = "testkit")]
pub mod faults;
pub mod gateway;
pub mod inventory;
pub mod names;
pub mod notify;
pub mod queue;
pub mod services;
pub mod shutdown;
pub mod telemetry;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod worker;
