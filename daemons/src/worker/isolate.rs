//! Taking a stuck batch apart, so that one bad reservation never stalls a
//! sale: message by message, then reservation by reservation; what fails
//! alone while the services answer is set aside in the dead-letter queue,
//! where an operator replays it once its cause is fixed.

use super::batch::{BatchError, Decider};
use super::consume::Message;
use super::report::Unreported;
use super::retry::{Processed, until_done};
use crate::queue::{self, Group, Queued, Topology};
use anyhow::Context;
use lapin::options::BasicAckOptions;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Longest the broker may take to confirm a reservation set aside.
const SET_ASIDE_TIMEOUT: Duration = Duration::from_secs(10);

/// Takes a stuck batch apart: message by message, then, within a message
/// that still fails, reservation by reservation. A reservation that fails
/// alone while the services answer is set aside — published on its own to
/// the dead-letter queue, where an operator can replay it once its cause is
/// fixed — so that one bad reservation never stalls a sale. Nothing is
/// dropped: each message is acked only once every reservation in it is
/// committed, rejected or set aside.
#[derive(Debug)]
pub(super) struct Isolate<'a> {
    /// Set-asides go over a connection of their own: a broker under a
    /// memory alarm blocks publishing connections, and this worker's acks
    /// must still get through.
    pub amqp_url: &'a str,
    pub channel: &'a lapin::Channel,
    pub topology: &'a Topology,
    pub decider: &'a Decider,
    pub unreported: &'a Unreported,
    pub shutdown: &'a CancellationToken,
}

impl Isolate<'_> {
    /// `false` if shutdown came first.
    pub(super) async fn run(&self, items: &[Queued], messages: &[Message]) -> anyhow::Result<bool> {
        let mut aside: Option<(lapin::Connection, lapin::Channel)> = None;
        // Taken apart one piece after another: nothing waits on its turn.
        let unwatched = CancellationToken::new();
        for message in messages {
            let group = &items[message.items.clone()];
            match until_done(self.decider, group, &unwatched, self.shutdown).await {
                Processed::Done(r) => self.unreported.add(&r),
                Processed::Shutdown => return Ok(false),
                Processed::Stuck(_) => {
                    for item in group {
                        let one = std::slice::from_ref(item);
                        match until_done(self.decider, one, &unwatched, self.shutdown).await {
                            Processed::Done(r) => self.unreported.add(&r),
                            Processed::Shutdown => return Ok(false),
                            Processed::Stuck(e) => {
                                if let Err(err) = self.set_aside(&mut aside, item, &e).await {
                                    close_aside(aside).await;
                                    return Err(err);
                                }
                            }
                        }
                    }
                }
            }
            self.channel
                .basic_ack(message.tag, BasicAckOptions { multiple: false })
                .await
                .context("ack")?;
        }
        close_aside(aside).await;
        Ok(true)
    }

    async fn set_aside(
        &self,
        aside: &mut Option<(lapin::Connection, lapin::Channel)>,
        item: &Queued,
        error: &BatchError,
    ) -> anyhow::Result<()> {
        let ch = match aside {
            Some((_, ch)) => ch,
            None => {
                let conn = queue::connect(self.amqp_url, "flashgrid-worker-set-aside").await?;
                let ch = queue::confirm_channel(&conn, self.topology).await?;
                &aside.insert((conn, ch)).1
            }
        };
        let dead = self.topology.ns.dead_letter_queue();
        let body = Group::encode(std::slice::from_ref(item));
        queue::publish_kept(ch, &dead, &body, SET_ASIDE_TIMEOUT)
            .await
            .context("set a reservation aside")?;
        tracing::error!(
            error = %error, reservation_id = %item.id, event_id = %item.event,
            "reservation set aside in {dead}: it fails on its own while PostgreSQL and Redis answer; it stays pending until replayed"
        );
        Ok(())
    }
}

async fn close_aside(aside: Option<(lapin::Connection, lapin::Channel)>) {
    if let Some((conn, _)) = aside {
        queue::close(&conn, 200, "set-asides done").await;
    }
}
