//! Modals over the screen: help, the reset confirmation, the new-event form.

use super::Palette;
use crate::app::{App, Overlay};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

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
