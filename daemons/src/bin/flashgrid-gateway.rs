//! `flashgrid-gateway`: parses flags, starts logging and runs the gateway.

use clap::Parser;
use flashgrid::config::GatewayConfig;

/// jemalloc, not the system's malloc: glibc's arenas fragment under a
/// connection burst (the gateway held 1.4 KiB more per idle connection than
/// the same HTTP stack answering fixed bytes: memory freed between the
/// connections' allocations that it could not give back); jemalloc's size
/// classes keep it at the bare stack's figure (`just bench`, section 7).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cfg = GatewayConfig::parse();
    if cfg.openapi {
        use std::io::Write;
        std::io::stdout().write_all(&flashgrid::gateway::openapi::json())?;
        return Ok(());
    }
    flashgrid::telemetry::init("info");
    let shutdown = flashgrid::shutdown::on_signals();
    flashgrid::gateway::run(cfg, shutdown).await
}
