//! The `flashgrid-load` command as a library function, so tests run exactly
//! what the CLI runs: set up the event, attack with progress, follow every
//! `202`, judge.

use crate::{AttackSpec, Check, Report, Tally, Target, admin, conclude, spec, verify};
use clap::Parser;
use flashgrid_wire::{AdminToken, Capacity, EventId, Quantity};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "flashgrid-load",
    version,
    about = "Attack a FlashGrid sale with a crowd of buyers, then verify nothing was oversold or lost"
)]
pub struct Opts {
    /// The gateway; several, comma-separated, spread the connections over
    /// them in turn (the first sets the event up and follows the decisions).
    #[arg(long, env = "FLASHGRID_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The event to attack.
    #[arg(long)]
    pub event: String,
    /// Create the event with this many seats, or reset it to them, before the attack (needs the token).
    #[arg(long)]
    pub capacity: Option<Capacity>,
    /// Admin token (for --capacity).
    #[arg(long, env = "FLASHGRID_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<AdminToken>,
    /// Number of requests [default: 200 unless -z is given].
    #[arg(short = 'n')]
    pub requests: Option<u64>,
    /// Number of connections, each a buyer's client sending one request after another.
    #[arg(short = 'c', default_value = "50")]
    pub concurrency: usize,
    /// Open model: send this many requests per second, latency measured from each one's scheduled time.
    #[arg(short = 'q')]
    pub rate: Option<f64>,
    /// Send for this long (e.g. 10s, 500ms, 2m).
    #[arg(short = 'z', value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Draw buyers from this many users (default: a distinct user per request).
    #[arg(long)]
    pub users: Option<u64>,
    /// Seats per reservation.
    #[arg(long, default_value = "1")]
    pub quantity: i64,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Skip following the 202s and the verdict.
    #[arg(long)]
    pub no_verify: bool,
    /// How long to wait for every accepted reservation to be decided.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub verify_timeout: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (try 10s, 500ms, 2m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("{s:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Runs an attack as the CLI does. `Err` is a usage or connection error
/// (exit status 2), with the text to show.
pub async fn run(opts: Opts) -> Result<Report, String> {
    let event = EventId::parse(&opts.event).map_err(|e| format!("--event: {e}"))?;
    let quantity = Quantity::new(opts.quantity).map_err(|e| format!("--quantity: {e}"))?;
    let mut spread = Vec::new();
    for url in opts.url.split(',').map(str::trim) {
        spread.push(Target::resolve(url).await?);
    }
    let target = spread[0].clone();
    if spread.len() == 1 {
        spread.clear();
    }
    let spec = AttackSpec {
        target: target.clone(),
        spread,
        event: event.clone(),
        requests: opts.requests.or(if opts.duration.is_none() {
            Some(200)
        } else {
            None
        }),
        concurrency: opts.concurrency,
        rate: opts.rate,
        duration: opts.duration,
        users: opts.users,
        quantity,
        run_id: spec::new_run_id(),
    };
    spec.validate()?;
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < spec.concurrency as u64 + 64 => eprintln!(
            "flashgrid-load: warning: the open-files limit is {limit}, below -c {} plus a margin; connections beyond it will fail (raise it with `ulimit -n`)",
            spec.concurrency
        ),
        Ok(_) => {}
        Err(e) => eprintln!("flashgrid-load: warning: could not raise the open-files limit: {e}"),
    }

    let exclusive = opts.capacity.is_some();
    if let Some(capacity) = opts.capacity {
        let Some(token) = opts.token.as_ref() else {
            return Err(
                "--capacity needs the admin token: --token or FLASHGRID_ADMIN_TOKEN".into(),
            );
        };
        admin::create_or_reset(&target, token, &event, capacity).await?;
    } else if !opts.no_verify
        && let Err(e) = verify::event(&target, &event).await
    {
        return Err(format!(
            "{e} (create it with --capacity N and the admin token)"
        ));
    }

    let progress = progress_bar(&spec);
    let (mut rx, live, engine) = crate::run(spec.clone());
    let mut tally = Tally::default();
    while let Some(sample) = rx.recv().await {
        tally.record(sample);
        progress.inc(1);
    }
    let _ = engine.await;
    progress.finish_and_clear();
    let retries = live.connect_retries.load(Ordering::Relaxed);
    let check = (!opts.no_verify).then(|| Check {
        target: target.clone(),
        event,
        exclusive,
        timeout: opts.verify_timeout,
        connections: 256,
    });
    if check.is_some() && tally.responses() > 0 && !opts.json && std::io::stderr().is_terminal() {
        eprintln!(
            "Following {} accepted reservations to their decisions…",
            tally.accepted.len()
        );
    }
    conclude(&tally, retries, &target, check.as_ref()).await
}

/// Live progress on a terminal (rate, done/total, ETA); hidden otherwise.
fn progress_bar(spec: &AttackSpec) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let total = match (spec.requests, spec.rate, spec.duration) {
        (Some(n), _, _) => Some(n),
        (None, Some(q), Some(z)) => Some((q * z.as_secs_f64()) as u64),
        _ => None,
    };
    match total {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {pos} requests {per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_oha() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("0s").is_err());
    }
}
