//! The events panel: every event with its seats, marked by the invariant.

use super::{Palette, block};
use crate::app::App;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{List, ListItem, ListState, Paragraph};
use std::time::Instant;

pub(super) fn draw(f: &mut Frame, area: Rect, app: &App, now: Instant, p: &Palette) {
    let items: Vec<ListItem> = app
        .events()
        .iter()
        .map(|e| {
            let (mark, style) = match e.invariant() {
                Err(_) => ("!", p.bad()),
                Ok(()) if e.sold_out => ("■", p.warn()),
                Ok(()) => ("●", p.ok()),
            };
            ListItem::new(Line::from(vec![
                Span::styled(format!("{mark} "), style),
                Span::raw(format!("{} {}/{}", e.event_id, e.confirmed, e.capacity)),
            ]))
        })
        .collect();
    let empty = items.is_empty();
    let list = List::new(items)
        .block(block("Events", app, now, p))
        .highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    let mut state = ListState::default().with_selected((!empty).then_some(app.selected));
    f.render_stateful_widget(list, area, &mut state);
    if empty {
        let inner = area.inner(ratatui::layout::Margin::new(1, 1));
        f.render_widget(Paragraph::new("no events (e: new)").style(p.dim()), inner);
    }
}
