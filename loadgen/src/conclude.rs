//! The step after every attack, whoever watched it: follow every `202` to
//! its decision, read the event's own counts, judge the sale and build the
//! report. The CLI and the console both end an attack here.

use crate::report::Report;
use crate::spec::Target;
use crate::tally::Tally;
use crate::verify;
use flashgrid_wire::EventId;
use std::time::{Duration, Instant};

/// How the sale is checked after the attack.
#[derive(Debug, Clone)]
pub struct Check {
    pub target: Target,
    pub event: EventId,
    /// The attack was the event's only traffic since its stock was set (it
    /// was created or reset just before): its confirmed seats must then
    /// equal the buyers' exactly.
    pub exclusive: bool,
    /// How long every accepted reservation may take to be decided.
    pub timeout: Duration,
    /// Connections used to follow the `202`s.
    pub connections: usize,
}

/// The report of an attack; with `check`, its `202`s followed and the sale
/// judged. `Err` when no request got an answer at all.
pub async fn conclude(
    tally: &Tally,
    connect_retries: u64,
    target: &Target,
    check: Option<&Check>,
) -> Result<Report, String> {
    if tally.responses() == 0 {
        return Err(format!(
            "no request got an answer from {} ({:?}): is the gateway running? (`just up`)",
            target.base, tally.errors
        ));
    }
    let Some(check) = check else {
        return Ok(Report::new(tally, connect_retries, None));
    };
    let started = Instant::now();
    let decisions = verify::follow(
        &check.target,
        &tally.accepted,
        check.connections,
        check.timeout,
    )
    .await;
    let took = started.elapsed();
    let view = verify::event(&check.target, &check.event).await?;
    let verdict = verify::judge(&decisions, &view, check.exclusive);
    Ok(Report::new(
        tally,
        connect_retries,
        Some((&decisions, &verdict, &view, took)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            base: "http://127.0.0.1:9".into(),
            authority: "127.0.0.1:9".into(),
            addr: "127.0.0.1:9".parse().unwrap(),
        }
    }

    #[tokio::test]
    async fn an_attack_nobody_answered_is_an_error_and_one_answered_a_report() {
        let mut tally = Tally::default();
        tally.errors.insert("connect", 5);
        let e = conclude(&tally, 0, &target(), None).await.unwrap_err();
        assert!(
            e.contains("no request got an answer") && e.contains("just up"),
            "{e}"
        );
        tally.statuses.insert(409, 3);
        let r = conclude(&tally, 0, &target(), None).await.unwrap();
        assert_eq!(r.statuses.get("409"), Some(&3));
        assert_eq!(r.verdict, "unverified", "no check asked");
    }
}
