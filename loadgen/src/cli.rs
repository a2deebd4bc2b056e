//! The `flashgrid-load` command as a library function, so tests run exactly
//! what the CLI runs: set up the event, attack with progress, follow every
//! `202`, judge.

use crate::checkout::{self, Abandon, Buyers, Plan};
use crate::report::HoldsReport;
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
    /// How long to wait for every accepted reservation to be decided (on
    /// an event with holds: beyond the hold time, for every hold to end).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub verify_timeout: Duration,
    /// With --capacity: hold each won seat this many seconds for its buyer
    /// to purchase (the winners then check out, see --checkout).
    #[arg(long, value_name = "SECONDS")]
    pub hold: Option<u32>,
    /// On an event with holds: the share of the winners that purchase
    /// (0 to 1); the rest abandon their hold (--abandon).
    #[arg(long, value_name = "P", default_value = "1")]
    pub checkout: f64,
    /// How the winners who do not purchase walk away.
    #[arg(long, value_enum, default_value = "expire")]
    pub abandon: Abandon,
    /// How long a winner thinks before purchasing or cancelling [default: a
    /// fifth of the hold, at most 2s].
    #[arg(long, value_parser = parse_duration)]
    pub think: Option<Duration>,
    /// On an event with holds: new buyers per second once the crowd is
    /// done, until every seat given back is sold again.
    #[arg(long, value_name = "PER_SECOND", default_value = "200")]
    pub late_rate: f64,
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

    if opts.hold.is_some() && opts.capacity.is_none() {
        return Err("--hold sets the event up: give --capacity N too".into());
    }
    if !(0.0..=1.0).contains(&opts.checkout) {
        return Err(
            "--checkout must be a share from 0 to 1 (0.5: half the winners purchase)".into(),
        );
    }
    if !(opts.late_rate > 0.0 && opts.late_rate.is_finite()) {
        return Err("--late-rate must be a positive rate".into());
    }
    let exclusive = opts.capacity.is_some();
    let view = if let Some(capacity) = opts.capacity {
        let Some(token) = opts.token.as_ref() else {
            return Err(
                "--capacity needs the admin token: --token or FLASHGRID_ADMIN_TOKEN".into(),
            );
        };
        let stage = admin::Stage {
            capacity,
            hold_seconds: opts.hold,
        };
        Some(admin::create_or_reset(&target, token, &event, stage).await?)
    } else if !opts.no_verify {
        Some(
            verify::event(&target, &event)
                .await
                .map_err(|e| format!("{e} (create it with --capacity N and the admin token)"))?,
        )
    } else {
        None
    };
    // An event with holds: the winners check out while the crowd comes.
    let holds = view
        .as_ref()
        .and_then(|v| v.hold_seconds)
        .filter(|_| !opts.no_verify);
    let plan = holds.map(|h| Plan {
        share: opts.checkout,
        abandon: opts.abandon,
        think: opts.think.unwrap_or_else(|| {
            Duration::from_secs(u64::from(h))
                .div_f64(5.0)
                .min(Duration::from_secs(2))
        }),
        late_rate: opts.late_rate,
    });
    if let (Some(h), Some(p)) = (holds, &plan)
        && p.think >= Duration::from_secs(u64::from(h))
    {
        return Err(format!(
            "--think {:?} is not shorter than the event's hold of {h} s: every purchase would come too late",
            p.think
        ));
    }
    let buyers = plan.zip(holds).map(|(p, h)| {
        let hold = Duration::from_secs(u64::from(h));
        Buyers::start(target.clone(), p, hold, spec.run_id.clone())
    });

    let progress = progress_bar(&spec);
    let (mut rx, live, engine) = crate::run(spec.clone());
    let mut tally = Tally::default();
    while let Some(samples) = rx.recv().await {
        progress.inc(samples.len() as u64);
        for sample in samples {
            if let (Some(b), Some(a)) = (&buyers, &sample.accepted) {
                b.accepted(a.clone());
            }
            tally.record(sample);
        }
    }
    let _ = engine.await;
    progress.finish_and_clear();
    let retries = live.connect_retries.load(Ordering::Relaxed);
    if let (Some(buyers), Some(plan), Some(hold)) = (buyers, plan, holds) {
        let sale = HoldSale {
            spec: &spec,
            buyers,
            plan,
            hold,
            exclusive,
        };
        return sale.conclude(&opts, &tally, retries).await;
    }
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

/// The end of an attack on an event with holds: the winners purchase or walk
/// away, late buyers take the seats given back, then the sale is judged.
struct HoldSale<'a> {
    spec: &'a AttackSpec,
    buyers: Buyers,
    plan: Plan,
    hold: u32,
    exclusive: bool,
}

impl HoldSale<'_> {
    async fn conclude(self, opts: &Opts, tally: &Tally, retries: u64) -> Result<Report, String> {
        let Self {
            spec,
            buyers,
            plan,
            hold,
            exclusive,
        } = self;
        let target = &spec.target;
        if tally.responses() == 0 {
            return conclude(tally, retries, target, None).await;
        }
        let started = std::time::Instant::now();
        let end = started + Duration::from_secs(u64::from(hold)) + plan.think + opts.verify_timeout;
        buyers.give_up_at(end);
        if !opts.json && std::io::stderr().is_terminal() {
            eprintln!(
                "Following {} accepted reservations; the winners check out, late buyers come at {}/s until every seat given back is sold again…",
                tally.accepted.len(),
                plan.late_rate
            );
        }
        let (done_tx, done_rx) = tokio::sync::watch::channel(None);
        let late = checkout::Late {
            target: target.clone(),
            event: spec.event.clone(),
            quantity: spec.quantity,
            plan,
            hold: Duration::from_secs(u64::from(hold)),
            run_id: spec.run_id.clone(),
            end,
        };
        let late = tokio::spawn(checkout::late_buyers(late, done_rx));
        let (crowd, mut c) = buyers.finish().await;
        let _ = done_tx.send(Some(c.released()));
        if let Ok(l) = late.await {
            c.merge(l);
        }
        let took = started.elapsed();
        let view = verify::event(target, &spec.event).await?;
        let verdict = checkout::judge(&crowd, &c, &view, exclusive);
        let mut report = Report::new(tally, retries, Some((&crowd, &verdict, &view, took)));
        report.holds = Some(HoldsReport::new(hold, &plan, c));
        Ok(report)
    }
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
