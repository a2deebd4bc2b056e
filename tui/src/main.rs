//! `flashgrid`: the operator console. Flags, terminal set-up (restored on
//! every exit path, panics included), and the event loop.

use clap::Parser;
use crossterm::event::{Event as TermEvent, EventStream, KeyEventKind};
use flashgrid_tui::app::{Action, App};
use flashgrid_tui::event::Event;
use flashgrid_tui::{admin, attack, feed, ui};
use futures::StreamExt;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

#[derive(Debug, Parser)]
#[command(
    name = "flashgrid",
    version,
    about = "FlashGrid's operator console: watch a sale live and attack it before it opens"
)]
struct Opts {
    /// The gateway.
    #[arg(long, env = "FLASHGRID_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Feed token (read-only): the live feed. Enough to watch a sale and
    /// attack it.
    #[arg(long, env = "FLASHGRID_FEED_TOKEN", hide_env_values = true)]
    feed_token: Option<flashgrid_wire::AdminToken>,
    /// Admin token: creating and resetting events (also opens the feed).
    #[arg(long, env = "FLASHGRID_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<flashgrid_wire::AdminToken>,
}

/// Restores the terminal when dropped, whatever the exit path.
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let opts = Opts::parse();
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let mut app = App::new(opts.url.clone(), color, opts.token.is_some());

    // `init` also installs a panic hook that restores the terminal first.
    let mut terminal = ratatui::init();
    let _guard = TerminalGuard;

    let (tx, mut rx) = mpsc::channel::<Event>(1024);
    // The read-only token where there is one: the admin token need not
    // travel for watching.
    let feed_token = opts.feed_token.clone().or_else(|| opts.token.clone());
    feed::spawn(opts.url.clone(), feed_token, tx.clone());
    {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut input = EventStream::new();
            while let Some(Ok(ev)) = input.next().await {
                let ev = match ev {
                    TermEvent::Key(k) if k.kind == KeyEventKind::Press => Event::Key(k),
                    TermEvent::Resize(..) => Event::Resize,
                    _ => continue,
                };
                if tx.send(ev).await.is_err() {
                    return;
                }
            }
        });
    }
    {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                if tx.send(Event::Tick).await.is_err() {
                    return;
                }
            }
        });
    }

    loop {
        terminal.draw(|f| ui::draw(f, &app, Instant::now()))?;
        let Some(ev) = rx.recv().await else { break };
        match app.update(ev) {
            Action::None => {}
            Action::Quit => break,
            Action::Attack {
                event,
                requests,
                concurrency,
            } => attack::spawn(opts.url.clone(), event, requests, concurrency, tx.clone()),
            Action::Reset { event } => {
                if let Some(t) = &opts.token {
                    let call = admin::Call::Reset { event };
                    admin::spawn(opts.url.clone(), t.clone(), call, tx.clone())
                }
            }
            Action::Create { event, capacity } => {
                if let Some(t) = &opts.token {
                    let call = admin::Call::Create { event, capacity };
                    admin::spawn(opts.url.clone(), t.clone(), call, tx.clone())
                }
            }
        }
    }
    Ok(())
}
