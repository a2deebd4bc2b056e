//! Integration tests of the reservation pipeline against the real PostgreSQL,
//! Redis and RabbitMQ of this machine. Each test spawns its own stack (own
//! database, own namespace, port 0) and removes it afterwards, so they run in
//! parallel; see `helpers`.

mod helpers;

mod answers;
mod api_errors;
mod attack;
mod big_batch;
mod burst;
mod contract;
mod counts;
mod crash;
mod docs;
mod feed;
mod fence;
mod fuzz;
mod guards;
mod holds;
mod idempotency;
mod linger;
mod lookups;
mod memory;
mod older;
mod partitions;
mod poison;
mod pressure;
mod rate_limit;
mod reconnect;
mod rejections;
mod restock;
mod shutdown;
mod window;
