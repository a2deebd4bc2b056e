//! Drawing: a pure function of the state and the clock. Nothing here does
//! I/O, and nothing a snapshot holds can make it panic (ratios are clamped,
//! an oversold event still renders — in red).

mod attack;
mod bars;
mod events;
mod inventory;
mod overlay;
mod throughput;

use crate::app::App;
use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use std::time::{Duration, Instant};

/// Below this the console says so instead of drawing.
pub const MIN_WIDTH: u16 = 64;
pub const MIN_HEIGHT: u16 = 20;
/// A snapshot older than this is shown as stale.
const STALE: Duration = Duration::from_secs(2);

pub(super) struct Palette {
    color: bool,
}

impl Palette {
    pub(super) fn fg(&self, c: Color) -> Style {
        if self.color {
            Style::default().fg(c)
        } else {
            Style::default()
        }
    }
    pub(super) fn ok(&self) -> Style {
        self.fg(Color::Green)
    }
    pub(super) fn bad(&self) -> Style {
        if self.color {
            Style::default().fg(Color::Red).add_modifier(Modifier::BOLD)
        } else {
            Style::default().add_modifier(Modifier::BOLD | Modifier::REVERSED)
        }
    }
    pub(super) fn warn(&self) -> Style {
        self.fg(Color::Yellow)
    }
    pub(super) fn dim(&self) -> Style {
        if self.color {
            Style::default().fg(Color::DarkGray)
        } else {
            Style::default()
        }
    }
    pub(super) fn title(&self) -> Style {
        Style::default().add_modifier(Modifier::BOLD)
    }
}

pub fn draw(f: &mut Frame, app: &App, now: Instant) {
    let area = f.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let msg = format!(
            "terminal {}×{}: flashgrid needs at least {}×{}",
            area.width, area.height, MIN_WIDTH, MIN_HEIGHT
        );
        f.render_widget(Paragraph::new(msg).wrap(Wrap { trim: true }), area);
        return;
    }
    let p = Palette { color: app.color };
    // A status line too long for the terminal (every warning at once, at
    // 80 columns) takes a second line rather than losing its end.
    let line = bars::status_line(app, now, area.width, &p);
    let status_height = if line.width() > usize::from(area.width) {
        2
    } else {
        1
    };
    let [status, body, keys] = Layout::vertical([
        Constraint::Length(status_height),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    bars::status(f, status, line);
    bars::keys(f, keys, app, &p);
    let left_width = if area.width >= 100 { 30 } else { 22 };
    let [left, right] =
        Layout::horizontal([Constraint::Length(left_width), Constraint::Min(0)]).areas(body);
    events::draw(f, left, app, now, &p);
    let [throughput, inventory, attack] = Layout::vertical([
        Constraint::Min(6),
        Constraint::Length(6),
        Constraint::Min(9),
    ])
    .areas(right);
    throughput::draw(f, throughput, app, now, &p);
    inventory::draw(f, inventory, app, now, &p);
    attack::draw(f, attack, app, &p);
    overlay::draw(f, area, app, &p);
}

fn age_text(app: &App, now: Instant) -> Option<String> {
    let age = app.age(now)?;
    (age >= STALE || app.frozen.is_some()).then(|| {
        if app.frozen.is_some() {
            format!("frozen, {}s old", age.as_secs())
        } else {
            format!("stale {}s", age.as_secs())
        }
    })
}

pub(super) fn block<'a>(title: &'a str, app: &App, now: Instant, p: &Palette) -> Block<'a> {
    let mut b = Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(title, p.title()));
    if let Some(age) = age_text(app, now) {
        b = b.title(
            Line::from(Span::styled(format!(" {age} "), p.warn())).alignment(Alignment::Right),
        );
    }
    b
}

pub(super) fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 / whole as f64).clamp(0.0, 1.0)
    }
}

/// `full` if it fits in `width` columns, else the shorter wording.
pub(super) fn fit(width: u16, full: String, short: impl FnOnce() -> String) -> String {
    if full.chars().count() <= usize::from(width) {
        full
    } else {
        short()
    }
}

/// Milliseconds in at most 4 digits: tenths below 100, whole above.
pub(super) fn ms(v: f64) -> String {
    if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}
