//! The attack launcher: the load generator's engine with the console as its
//! view. Samples are folded into a progress record sent ten times a second,
//! so the histogram and percentiles move live; then the attack ends in the
//! load generator's own [`conclude`], as `flashgrid-load`'s does.

use crate::event::{AttackEvent, Event, Progress};
use flashgrid_load::{AttackSpec, Check, Report, Tally, Target, conclude, spec};
use flashgrid_wire::{EventId, Quantity};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub fn spawn(
    url: String,
    event: EventId,
    requests: u64,
    concurrency: usize,
    tx: mpsc::Sender<Event>,
) {
    tokio::spawn(async move {
        let result = run(&url, &event, requests, concurrency, &tx).await;
        let last = match result {
            Ok(r) => AttackEvent::Finished(Box::new(r)),
            Err(e) => AttackEvent::Failed(e),
        };
        let _ = tx.send(Event::Attack(last)).await;
    });
}

async fn run(
    url: &str,
    event: &EventId,
    requests: u64,
    concurrency: usize,
    tx: &mpsc::Sender<Event>,
) -> Result<Report, String> {
    let target = Target::resolve(url).await?;
    let spec = AttackSpec {
        target: target.clone(),
        spread: Vec::new(),
        event: event.clone(),
        requests: Some(requests),
        concurrency,
        rate: None,
        duration: None,
        users: None,
        quantity: Quantity::ONE,
        run_id: spec::new_run_id(),
    };
    spec.validate()?;
    let started = Instant::now();
    let (mut rx, live, engine) = flashgrid_load::run(spec);
    let mut tally = Tally::default();
    let mut last_sent = Instant::now();
    while let Some(samples) = rx.recv().await {
        for sample in samples {
            tally.record(sample);
        }
        if last_sent.elapsed() >= Duration::from_millis(100) {
            last_sent = Instant::now();
            let _ = tx
                .send(Event::Attack(AttackEvent::Progress(progress(
                    &tally, requests, started,
                ))))
                .await;
        }
    }
    let _ = engine.await;
    let _ = tx
        .send(Event::Attack(AttackEvent::Progress(progress(
            &tally, requests, started,
        ))))
        .await;
    if tally.responses() > 0 {
        let _ = tx.send(Event::Attack(AttackEvent::Verifying)).await;
    }
    let check = Check {
        target: target.clone(),
        event: event.clone(),
        // Others may be buying the same event meanwhile.
        exclusive: false,
        timeout: Duration::from_secs(60),
        connections: 256,
    };
    conclude(
        &tally,
        live.connect_retries.load(Ordering::Relaxed),
        &target,
        Some(&check),
    )
    .await
}

fn progress(t: &Tally, total: u64, started: Instant) -> Progress {
    Progress {
        done: t.done,
        total,
        statuses: t.statuses.clone(),
        errors: t.transport_errors(),
        latency: t.latency.clone(),
        elapsed: started.elapsed(),
    }
}
