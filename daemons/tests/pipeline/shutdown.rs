//! Both daemons stopped with SIGTERM in the middle of a burst and started
//! again: every 202 is decided afterwards, none twice.

use crate::helpers::{TestStack, eventually};
use flashgrid_wire::{Accepted, Status};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_burst_loses_nothing() {
    let stack = TestStack::empty().await;
    stack.start_process("worker");
    stack.start_process("gateway");
    stack.wait_ready().await;
    stack.create_event("term", 300).await;

    let accepted = Mutex::new(Vec::<Accepted>::new());
    let sent = AtomicUsize::new(0);
    let signalled = AtomicBool::new(false);
    // Answers other than 202/409/503, and transport errors met while the
    // gateway was up: none allowed.
    let wrong = Mutex::new(Vec::<String>::new());
    let buyers = async {
        let futs = (0..2_000).map(|i| {
            let (stack, accepted, sent, signalled, wrong) =
                (&stack, &accepted, &sent, &signalled, &wrong);
            async move {
                // Spread the burst so the signal lands in the middle of it.
                tokio::time::sleep(Duration::from_micros(500 * i as u64)).await;
                sent.fetch_add(1, Ordering::Relaxed);
                match stack.reserve("term", &format!("b{i}"), 1, None).await {
                    Ok(r) if r.status() == 202 => {
                        let a: Accepted = r.json().await.unwrap();
                        accepted.lock().unwrap().push(a);
                    }
                    Ok(r) if [409, 503].contains(&r.status().as_u16()) => {}
                    Ok(r) => wrong.lock().unwrap().push(format!("b{i}: {}", r.status())),
                    // Once the gateway is told to stop, new connections may
                    // be refused; before, never.
                    Err(e) if !signalled.load(Ordering::SeqCst) => {
                        wrong.lock().unwrap().push(format!("b{i}: {e}"))
                    }
                    Err(_) => {}
                }
            }
        });
        futures::future::join_all(futs).await;
    };
    let stopper = async {
        eventually(
            "some requests accepted",
            Duration::from_secs(30),
            || async { (accepted.lock().unwrap().len() >= 50).then_some(()) },
        )
        .await;
        signalled.store(true, Ordering::SeqCst);
        // What the sale stood at when the signal went out.
        let at_signal = (sent.load(Ordering::SeqCst), accepted.lock().unwrap().len());
        let gw = stack.terminate_process("gateway").await;
        let wk = stack.terminate_process("worker").await;
        (gw, wk, at_signal)
    };
    let ((), (gw, wk, (sent_at_signal, accepted_at_signal))) = tokio::join!(buyers, stopper);
    assert!(
        sent_at_signal < 2_000 && accepted_at_signal < 300,
        "the signal came after the burst or the sell-out ({sent_at_signal} sent, {accepted_at_signal} accepted): the test proved nothing"
    );
    let wrong = wrong.into_inner().unwrap();
    assert!(
        wrong.is_empty(),
        "{} wrong answers: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    assert!(gw.success(), "gateway exit status {gw}");
    assert!(wk.success(), "worker exit status {wk}");
    let accepted = accepted.into_inner().unwrap();

    // Start again: everything accepted before the signal gets decided.
    stack.start_process("worker");
    stack.start_process("gateway");
    stack.wait_ready().await;
    let decisions = futures::future::join_all(accepted.iter().map(|a| stack.decided(a))).await;
    let confirmed = decisions
        .iter()
        .filter(|d| d.status == Status::Confirmed)
        .count();
    assert_eq!(confirmed, accepted.len().min(300));
    let (rows, qty, counter) = stack.db_counts("term").await;
    assert_eq!(
        (rows, qty, counter),
        (confirmed as i64, confirmed as i64, confirmed as i32)
    );
}
