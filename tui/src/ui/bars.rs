//! The status line at the top (gateway, connection, services) and the key
//! line at the bottom.

use super::Palette;
use crate::app::{App, Connection, Overlay};
use flashgrid_wire::{DaemonKind, Snapshot};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use std::time::Instant;

/// The status line's text for a terminal `width` wide; it may be longer
/// than that (then it wraps onto a second line, see `ui::draw`).
pub(super) fn status_line<'a>(app: &'a App, now: Instant, width: u16, p: &Palette) -> Line<'a> {
    let (state, style) = match &app.connection {
        Connection::Connecting => ("connecting…".to_string(), p.warn()),
        Connection::Connected => ("● connected".to_string(), p.ok()),
        Connection::Reconnecting { reason, retry_at } => (
            format!(
                "○ reconnecting in {:.0}s: {reason}",
                retry_at.saturating_duration_since(now).as_secs_f64().ceil()
            ),
            p.bad(),
        ),
    };
    let updated = match app.age(now) {
        Some(a) => format!("{:.1}s ago", a.as_secs_f64()),
        None => "no data yet".into(),
    };
    let wide = width >= 100;
    let url = if wide {
        app.url.as_str()
    } else {
        app.url.trim_start_matches("http://")
    };
    let mut spans = vec![
        Span::styled("FlashGrid ", p.title()),
        Span::raw(format!("{url}  ")),
        Span::styled(format!("{updated}  "), p.dim()),
        Span::styled(state, style),
    ];
    if let Some((s, _)) = app.shown() {
        // What the gateway could not reach, and a queue nobody consumes:
        // the first thing to know while a sale is failing.
        let down: Vec<&str> = s.services.iter().flat_map(|h| h.down()).collect();
        if !down.is_empty() {
            spans.push(Span::styled(
                format!("  ✗ {} unreachable", down.join(", ")),
                p.bad(),
            ));
        }
        if s.queue.consumers == Some(0) {
            spans.push(Span::styled("  ✗ no worker", p.bad()));
        }
        spans.extend(daemons(s, p));
    }
    if app.frozen.is_some() {
        spans.push(Span::styled("  FROZEN (f)", p.warn()));
    }
    Line::from(spans)
}

pub(super) fn status(f: &mut Frame, area: Rect, line: Line) {
    f.render_widget(Paragraph::new(line).wrap(Wrap { trim: true }), area);
}

/// How many gateways and workers report, and the first thing wrong with
/// them: one gone silent, or one that cannot reach a node (`d` lists all).
fn daemons<'a>(s: &Snapshot, p: &Palette) -> Vec<Span<'a>> {
    if s.daemons.is_empty() {
        return Vec::new();
    }
    let live = |kind| {
        s.daemons
            .iter()
            .filter(|d| d.kind == kind && d.silent_ms < SILENT_MS)
            .count()
    };
    let mut spans = vec![Span::styled(
        format!(
            "  {}gw {}wk",
            live(DaemonKind::Gateway),
            live(DaemonKind::Worker)
        ),
        p.dim(),
    )];
    if let Some(d) = s.daemons.iter().find(|d| d.silent_ms >= SILENT_MS) {
        spans.push(Span::styled(
            format!("  ✗ {} {} silent (d)", d.kind.as_str(), d.id),
            p.bad(),
        ));
    } else if let Some((d, n)) = s
        .daemons
        .iter()
        .find_map(|d| d.unreached().next().map(|n| (d, n)))
    {
        spans.push(Span::styled(
            format!("  ✗ {} ✗ {} {} (d)", d.id, n.service, n.addr),
            p.bad(),
        ));
    }
    spans
}

/// A daemon silent this long is shown as such (the gateway stops summing
/// it after 2 s).
pub(super) const SILENT_MS: u64 = 2_000;

pub(super) fn keys(f: &mut Frame, area: Rect, app: &App, p: &Palette) {
    let keys: &[(&str, &str)] = match app.overlay {
        Overlay::None => &[
            ("q", "quit"),
            ("?", "help"),
            ("j/k", "event"),
            ("a", "attack"),
            ("+-", "reqs"),
            ("<>", "conns"),
            ("e", "new"),
            ("r", "reset"),
            ("f", "freeze"),
        ],
        Overlay::Help | Overlay::Daemons => &[("any key", "close")],
        Overlay::ConfirmReset { .. } => {
            &[("type the id", ""), ("Enter", "reset"), ("Esc", "cancel")]
        }
        Overlay::Create { .. } => &[("Tab", "field"), ("Enter", "create"), ("Esc", "cancel")],
    };
    let mut spans = Vec::new();
    for (k, v) in keys {
        spans.push(Span::styled(
            k.to_string(),
            p.title().add_modifier(Modifier::REVERSED),
        ));
        spans.push(Span::raw(format!(" {v} ")));
    }
    if let Some((text, error, _)) = &app.notice {
        spans.push(Span::styled(
            format!(" {text}"),
            if *error { p.bad() } else { p.ok() },
        ));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}
