//! `flashgrid-worker`: parses flags, starts logging and runs the worker.

use clap::Parser;
use flashgrid::config::WorkerConfig;

/// jemalloc, as the gateway (see there): the worker allocates per batch on
/// every thread, where glibc's per-thread arenas fragment the same way.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cfg = WorkerConfig::parse();
    flashgrid::telemetry::init("info");
    if cfg.replay_dead_letters {
        cfg.validate().map_err(anyhow::Error::msg)?;
        let topo = cfg.services.topology();
        let r = flashgrid::worker::replay(&cfg.services.amqp_url, &topo).await?;
        println!(
            "moved {} messages ({} reservations) from {} back to the reservation queues ({}); {} unreadable left in place",
            r.moved,
            r.reservations,
            topo.ns.dead_letter_queue(),
            topo.queues().collect::<Vec<_>>().join(", "),
            r.unreadable
        );
        return Ok(());
    }
    let shutdown = flashgrid::shutdown::on_signals();
    flashgrid::worker::run(cfg, shutdown).await
}
