//! `flashgrid-worker`: parses flags, starts logging and runs the worker.

use clap::Parser;
use flashgrid::config::WorkerConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cfg = WorkerConfig::parse();
    flashgrid::telemetry::init("info");
    let shutdown = flashgrid::shutdown::on_signals();
    flashgrid::worker::run(cfg, shutdown).await
}
