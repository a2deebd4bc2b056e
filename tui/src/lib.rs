//! `flashgrid`, the operator console: watch a sale live over the gateway's
//! feed, and attack it before it opens with the load generator's engine.
//!
//! The shape follows the ratatui async template: one channel of [`event::Event`]s
//! (terminal keys, ticks, feed snapshots, attack progress, admin results)
//! feeds [`app::App::update`] (keys in `app/keys.rs`); [`ui::draw`] is a
//! pure function of the state (no I/O, the clock passed in), one file per
//! panel under `ui/`, so screens are tested by rendering into a
//! `TestBackend`. I/O lives in tasks: [`feed`] (WebSocket with reconnect and
//! backoff), [`attack`] (the loadgen engine, then the same
//! `flashgrid_load::conclude` as the CLI), [`admin`] (create, reset). Event
//! ids are `EventId`s from the moment a key names one.

pub mod admin;
pub mod app;
pub mod attack;
pub mod event;
pub mod feed;
pub mod ui;
