//! `flashgrid-worker`: parses flags, starts logging and runs the worker.

use clap::Parser;
use flashgrid::config::WorkerConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cfg = WorkerConfig::parse();
    flashgrid::telemetry::init("info");
    if cfg.replay_dead_letters {
        cfg.validate().map_err(anyhow::Error::msg)?;
        let ns = &cfg.services.namespace;
        let r = flashgrid::worker::replay(&cfg.services.amqp_url, ns).await?;
        println!(
            "moved {} messages ({} reservations) from {} back to {}; {} unreadable left in place",
            r.moved,
            r.reservations,
            ns.dead_letter_queue(),
            ns.queue(),
            r.unreadable
        );
        return Ok(());
    }
    let shutdown = flashgrid::shutdown::on_signals();
    flashgrid::worker::run(cfg, shutdown).await
}
