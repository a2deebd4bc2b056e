//! The inventory panel of the selected event: remaining and sold gauges, the
//! invariant line, the queue and the share that never touched PostgreSQL.
//! An event with holds shows held and purchased, and the invariant with
//! them (held + purchased + remaining = capacity).

use super::{Palette, block, ratio};
use crate::app::App;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Color;
use ratatui::text::Span;
use ratatui::widgets::{Gauge, Paragraph};
use std::time::Instant;

pub(super) fn draw(f: &mut Frame, area: Rect, app: &App, now: Instant, p: &Palette) {
    let title = match app.selected_event() {
        Some(e) => format!("Inventory: {}", e.event_id),
        None => "Inventory".into(),
    };
    let b = block(&title, app, now, p);
    let inner = b.inner(area);
    f.render_widget(b, area);
    let Some(e) = app.selected_event() else {
        f.render_widget(Paragraph::new("no event selected").style(p.dim()), inner);
        return;
    };
    let rows = Layout::vertical([Constraint::Length(1); 4]).split(inner);
    let cap = u64::from(e.capacity);
    let remaining = Gauge::default()
        .ratio(ratio(u64::from(e.remaining), cap))
        .label(format!("remaining {} of {}", e.remaining, e.capacity))
        .gauge_style(p.fg(Color::Cyan));
    f.render_widget(remaining, rows[0]);
    let broken = e.invariant();
    let locked = if e.confirmed >= e.capacity {
        ": LOCKED at capacity"
    } else {
        ""
    };
    let taken = if e.hold_seconds.is_some() {
        format!(
            "held {} + purchased {} of {}{locked}",
            e.held, e.purchased, e.capacity
        )
    } else {
        format!(
            "safe transactions {} of {}{locked}",
            e.confirmed, e.capacity
        )
    };
    let sold = Gauge::default()
        .ratio(ratio(u64::from(e.confirmed), cap))
        .label(taken)
        .gauge_style(if broken.is_err() {
            p.bad()
        } else {
            p.fg(Color::Green)
        });
    f.render_widget(sold, rows[1]);
    let line = match &broken {
        Ok(()) if e.hold_seconds.is_some() => Span::styled(
            super::fit(
                rows[2].width,
                format!(
                    "✓ held {} + purchased {} + remaining {} = capacity {}",
                    e.held, e.purchased, e.remaining, e.capacity
                ),
                || {
                    format!(
                        "✓ held+bought+left {}+{}+{} = {}",
                        e.held, e.purchased, e.remaining, e.capacity
                    )
                },
            ),
            p.ok(),
        ),
        Ok(()) => Span::styled(
            format!(
                "✓ confirmed {} + remaining {} = capacity {}, {} ≤ {}",
                e.confirmed, e.remaining, e.capacity, e.confirmed, e.capacity
            ),
            p.ok(),
        ),
        Err(why) => Span::styled(format!("✗ {why}"), p.bad()),
    };
    f.render_widget(Paragraph::new(line), rows[2]);
    if let Some((s, _)) = app.shown() {
        let untouched = if s.gateway.requests_total == 0 {
            "-".to_string()
        } else {
            format!(
                "{:.1}%",
                100.0 * (1.0 - ratio(s.workers.db_writes_total, s.gateway.requests_total))
            )
        };
        let depth = s
            .queue
            .depth
            .map_or("unknown".to_string(), |d| d.to_string());
        let p99 = s.gateway.latency_ms.p99;
        let line = super::fit(
            rows[3].width,
            format!("queue {depth} msgs   never touched PostgreSQL {untouched}   p99 {p99:.1} ms"),
            || {
                format!(
                    "queue {depth} msgs  untouched DB {untouched}  p99 {} ms",
                    super::ms(p99)
                )
            },
        );
        f.render_widget(Paragraph::new(line), rows[3]);
    }
}
