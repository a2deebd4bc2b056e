//! FlashGrid's load generator and verifier, as a library: the `flashgrid-load`
//! CLI and the console's attack launcher run the same engine.
//!
//! The shape follows oha: the [`engine`] sends requests and emits one
//! [`engine::Sample`] per request into a channel (a few at a time); exactly one consumer reads
//! it — the CLI's [`tally::Tally`] with a progress bar, or the console's live
//! view. When the channel closes the attack is over; then both call
//! [`conclude`]: [`verify`] follows every `202` to its decision and judges
//! the sale, and [`report`] builds what is printed or shown.
//!
//! - [`spec`]: what to attack and how (closed or open model).
//! - [`schedule`]: intended send times of the open model (wrk2-style
//!   coordinated-omission correction).
//! - [`wire`]: the attack's own HTTP/1.1 connection, request bytes written
//!   straight to the socket.
//! - [`client`]: one HTTP/1.1 connection to the gateway (everything else).
//! - [`latency`]: the HDR histogram and its logarithmic buckets.
//! - [`admin`]: create or reset the event before an attack.
//! - [`checkout`]: a hold sale's winners purchase or walk away, and late
//!   buyers take the seats given back.
//! - [`cli`]: the `flashgrid-load` command, callable from tests.

pub mod admin;
pub mod checkout;
pub mod cli;
pub mod client;
pub mod conclude;
pub mod engine;
pub mod latency;
pub mod report;
pub mod schedule;
pub mod spec;
pub mod tally;
pub mod verify;
pub mod wire;

pub use conclude::{Check, conclude};
pub use engine::{Sample, run};
pub use report::Report;
pub use spec::{AttackSpec, Target};
pub use tally::Tally;
pub use verify::{Decisions, Verdict};
