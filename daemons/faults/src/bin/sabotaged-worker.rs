//! `flashgrid-sabotaged-worker`: the worker with the defect named by
//! `FLASHGRID_SABOTAGE` (see `flashgrid_faults::sabotage`). For the
//! sabotage tests only: it must make the fault matrix fail.

use anyhow::Context;
use clap::Parser;
use flashgrid::config::WorkerConfig;
use flashgrid_faults::sabotage::{self, Sabotage};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cfg = WorkerConfig::parse();
    flashgrid::telemetry::init("info");
    let name =
        std::env::var(sabotage::ENV).with_context(|| format!("{} is not set", sabotage::ENV))?;
    let which = Sabotage::parse(&name).with_context(|| format!("no sabotage {name:?}"))?;
    sabotage::worker::run(cfg, which).await
}
