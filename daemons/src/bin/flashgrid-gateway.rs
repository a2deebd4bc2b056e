//! `flashgrid-gateway`: parses flags, starts logging and runs the gateway.

use clap::Parser;
use flashgrid::config::GatewayConfig;

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
