//! Nothing to use: this crate exists for its `Cargo.toml`, which turns on
//! the dependency features the tests would turn on, in every build (see
//! there). Remove a line when `cargo tree` no longer shows the difference.
