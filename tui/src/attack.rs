//! The attack launcher: the load generator's engine with the console as its
//! view. Samples are folded into a progress record sent ten times a second,
//! so the histogram and percentiles move live; then every 202 is followed
//! and the sale judged, as `flashgrid-load` does.

use crate::event::{AttackEvent, Event, Progress};
use flashgrid_load::{AttackSpec, Report, Tally, Target, spec, verify};
use flashgrid_wire::{EventId, Quantity};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub fn spawn(
    url: String,
    event: String,
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
    event: &str,
    requests: u64,
    concurrency: usize,
    tx: &mpsc::Sender<Event>,
) -> Result<Report, String> {
    let target = Target::resolve(url).await?;
    let event = EventId::parse(event).map_err(|e| e.to_string())?;
    let spec = AttackSpec {
        target: target.clone(),
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
    while let Some(sample) = rx.recv().await {
        tally.record(sample);
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
    if tally.responses() == 0 {
        return Err(format!(
            "no request got an answer from {}: is the gateway running?",
            target.base
        ));
    }
    let _ = tx.send(Event::Attack(AttackEvent::Verifying)).await;
    let t = Instant::now();
    let decisions = verify::follow(&target, &tally.accepted, 256, Duration::from_secs(60)).await;
    let took = t.elapsed();
    let view = verify::event(&target, &event).await?;
    let verdict = verify::judge(&decisions, &view, false);
    Ok(Report::new(
        &tally,
        live.connect_retries.load(Ordering::Relaxed),
        Some((&decisions, &verdict, &view, took)),
    ))
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
