//! Modals over the screen: help, the daemons' list, the reset confirmation,
//! the new-event form.

use super::Palette;
use crate::app::{App, Overlay};
use flashgrid_wire::{DaemonKind, DaemonView};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

pub(super) fn draw(f: &mut Frame, area: Rect, app: &App, p: &Palette) {
    let (title, lines): (&str, Vec<Line>) = match &app.overlay {
        Overlay::None => return,
        Overlay::Help => (
            "Help",
            vec![
                Line::from("j/k ↑/↓ Tab   select an event"),
                Line::from("d             every gateway and worker, their nodes"),
                Line::from("a             attack it (the settings on screen)"),
                Line::from("+/- ←/→ h/l   requests ×2 / ÷2"),
                Line::from("< >           connections ÷2 / ×2"),
                Line::from("e             create an event (admin token)"),
                Line::from("r             reset the selected event (admin token)"),
                Line::from("f             freeze / unfreeze the display"),
                Line::from("Esc           back out, clear the message"),
                Line::from("q, Ctrl-C     quit"),
                Line::from(""),
                Line::from("The invariant line turns red if confirmed + remaining"),
                Line::from("≠ capacity or confirmed > capacity."),
            ],
        ),
        Overlay::Daemons => {
            let lines = daemon_lines(app, p);
            let h = (lines.len() as u16 + 2).min(area.height);
            let r = centered(area, area.width.saturating_sub(4).min(100), h);
            f.render_widget(Clear, r);
            f.render_widget(
                Paragraph::new(lines).wrap(Wrap { trim: false }).block(
                    Block::default()
                        .borders(Borders::ALL)
                        .title(Span::styled("Daemons", p.title())),
                ),
                r,
            );
            return;
        }
        Overlay::ConfirmReset { event, typed } => (
            "Reset event",
            vec![
                Line::from(format!("Reset {event}: its reservations are removed and")),
                Line::from("its stock restored. Type the event id to confirm:"),
                Line::from(Span::styled(format!("> {typed}_"), p.title())),
                Line::from(Span::styled(
                    "Enter resets only if it matches; Esc cancels",
                    p.dim(),
                )),
            ],
        ),
        Overlay::Create {
            id,
            capacity,
            on_capacity,
        } => (
            "New event",
            vec![
                Line::from(vec![
                    Span::raw("event id: "),
                    Span::styled(
                        format!("{id}{}", if *on_capacity { "" } else { "_" }),
                        p.title(),
                    ),
                ]),
                Line::from(vec![
                    Span::raw("capacity: "),
                    Span::styled(
                        format!("{capacity}{}", if *on_capacity { "_" } else { "" }),
                        p.title(),
                    ),
                ]),
                Line::from(Span::styled(
                    "Tab switches field, Enter creates, Esc cancels",
                    p.dim(),
                )),
            ],
        ),
    };
    let h = lines.len() as u16 + 2;
    let r = centered(area, 60, h);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(Span::styled(title, p.title())),
        ),
        r,
    );
}

/// Two lines a daemon: who it is and its figures; then each node it is
/// configured with (✓ answered, ✗ did not, ● its connection's node).
fn daemon_lines<'a>(app: &App, p: &Palette) -> Vec<Line<'a>> {
    let Some((s, _)) = app.shown() else {
        return vec![Line::from("no snapshot yet")];
    };
    if s.daemons.is_empty() {
        return vec![Line::from(
            "this gateway does not list daemons (an older version)",
        )];
    }
    let mut lines = Vec::new();
    for d in &s.daemons {
        let silent = d.silent_ms >= super::bars::SILENT_MS;
        let mut head = vec![Span::styled(
            format!("{:<7} {}", d.kind.as_str(), d.id),
            p.title(),
        )];
        if let Some(l) = &d.listen {
            head.push(Span::raw(format!(" {l}")));
        }
        head.push(Span::raw("  "));
        head.push(figures(d));
        if silent {
            head.push(Span::styled(
                format!("  silent {}s", d.silent_ms / 1000),
                p.bad(),
            ));
        }
        lines.push(Line::from(head));
        let mut nodes = vec![Span::raw("  ")];
        let mut service = "";
        for n in &d.nodes {
            if n.service != service {
                service = &n.service;
                nodes.push(Span::styled(format!(" {service} "), p.dim()));
            }
            let addr = n.addr.strip_prefix("127.0.0.1:").unwrap_or(&n.addr);
            let role = match n.role.as_deref() {
                Some("master") => "M",
                Some("replica") => "r",
                _ => "",
            };
            let mark = match (n.up, n.connected && n.service == "rabbitmq") {
                (false, _) => "✗",
                (true, true) => "●",
                (true, false) => "✓",
            };
            nodes.push(Span::styled(
                format!("{addr}{role}{mark} "),
                if n.up { p.ok() } else { p.bad() },
            ));
        }
        lines.push(Line::from(nodes));
    }
    lines
}

fn figures<'a>(d: &DaemonView) -> Span<'a> {
    match (d.kind, &d.gateway, &d.worker) {
        (DaemonKind::Gateway, Some(g), _) => Span::raw(format!(
            "{:.0} req/s, {:.0} accepted/s, p99 {:.1} ms, {} requests",
            g.requests_per_s, g.accepted_per_s, g.latency_ms.p99, g.requests_total
        )),
        (DaemonKind::Worker, _, Some(w)) => Span::raw(format!(
            "{:.0} confirmed/s, {:.0} rejected/s, {} confirmed, {} rows",
            w.confirmed_per_s, w.rejected_per_s, w.confirmed_total, w.db_writes_total
        )),
        _ => Span::raw(""),
    }
}
