//! The throughput panel: incoming, accepted, rejected and confirmed per
//! second, each with its sparkline; with an event with holds, a line of
//! purchases, returns and expiries per second under them.

use super::{Palette, block};
use crate::app::App;
use flashgrid_wire::DaemonKind;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Color;
use ratatui::widgets::{Paragraph, Sparkline};
use std::time::Instant;

pub(super) fn draw(f: &mut Frame, area: Rect, app: &App, now: Instant, p: &Palette) {
    // With several gateways the figures are their sum: say so.
    let gateways = app.shown().map_or(0, |(s, _)| {
        s.daemons
            .iter()
            .filter(|d| d.kind == DaemonKind::Gateway && d.silent_ms < super::bars::SILENT_MS)
            .count()
    });
    let title = if gateways > 1 {
        format!("Throughput (per second, {gateways} gateways)")
    } else {
        "Throughput (per second)".to_owned()
    };
    let b = block(&title, app, now, p);
    let mut inner = b.inner(area);
    f.render_widget(b, area);
    // Holds: their line takes the panel's last row.
    if let Some((s, _)) = app.shown()
        && s.events.iter().any(|e| e.hold_seconds.is_some())
        && inner.height >= 2
    {
        inner.height -= 1;
        let row = Rect {
            y: inner.y + inner.height,
            height: 1,
            ..inner
        };
        let (bought, back, expired) = (
            s.holds.purchased_per_s,
            s.holds.returned_per_s,
            s.workers.expired_per_s,
        );
        let line = super::fit(
            row.width,
            format!("holds: purchased {bought:.0}/s  returned {back:.0}/s  expired {expired:.0}/s"),
            || format!("holds/s: bought {bought:.0} back {back:.0} expired {expired:.0}"),
        );
        f.render_widget(Paragraph::new(line).style(p.fg(Color::Blue)), row);
    }
    let h = &app.history;
    // The rates of the snapshot on screen, in the order of the rows.
    let rates = app.shown().map_or([0.0; 4], |(s, _)| {
        [
            s.gateway.requests_per_s,
            s.gateway.accepted_per_s,
            s.gateway.rejected_per_s,
            s.workers.confirmed_per_s,
        ]
    });
    let labels = ["incoming ", "accepted ", "rejected ", "confirmed"];
    let histories = [&h.incoming, &h.accepted, &h.rejected, &h.confirmed];
    let colors = [Color::Cyan, Color::Green, Color::Yellow, Color::Magenta];
    let rows = (0..4).map(|i| (labels[i], histories[i], rates[i], colors[i]));
    let each = (inner.height / 4).max(1);
    for (i, (label, data, now_rate, color)) in rows.enumerate() {
        let y = inner.y + i as u16 * each;
        if y >= inner.y + inner.height {
            break;
        }
        let row = Rect {
            x: inner.x,
            y,
            width: inner.width,
            height: each.min(inner.y + inner.height - y),
        };
        let [l, s] = Layout::horizontal([Constraint::Length(19), Constraint::Min(0)]).areas(row);
        f.render_widget(Paragraph::new(format!("{label} {now_rate:>8.0}")), l);
        let width = s.width as usize;
        let tail: Vec<u64> = data
            .iter()
            .skip(data.len().saturating_sub(width))
            .copied()
            .collect();
        f.render_widget(Sparkline::default().data(&tail).style(p.fg(color)), s);
    }
}
