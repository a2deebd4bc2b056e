//! `flashgrid-load`: attack a sale, then prove it held.
//!
//! Exit status: 0 the verdict passed (or was skipped), 1 it failed (oversold,
//! lost, or counts that disagree), 2 usage or connection errors.

use clap::Parser;
use flashgrid_load::cli::{Opts, run};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let opts = Opts::parse();
    let json = opts.json;
    match run(opts).await {
        Ok(report) => {
            if json {
                println!("{}", serde_json::to_string(&report).unwrap_or_default());
            } else {
                print!("{}", report.text());
            }
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("flashgrid-load: {e}");
            ExitCode::from(2)
        }
    }
}
