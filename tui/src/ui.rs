//! Drawing: a pure function of the state and the clock. Nothing here does
//! I/O, and nothing a snapshot holds can make it panic (ratios are clamped,
//! an oversold event still renders — in red).

use crate::app::{App, Connection, Overlay, Phase};
use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Bar, BarChart, BarGroup, Block, Borders, Clear, Gauge, List, ListItem, ListState, Paragraph,
    Sparkline, Wrap,
};
use std::time::{Duration, Instant};

/// Below this the console says so instead of drawing.
pub const MIN_WIDTH: u16 = 64;
pub const MIN_HEIGHT: u16 = 20;
/// A snapshot older than this is shown as stale.
const STALE: Duration = Duration::from_secs(2);

struct Palette {
    color: bool,
}

impl Palette {
    fn fg(&self, c: Color) -> Style {
        if self.color {
            Style::default().fg(c)
        } else {
            Style::default()
        }
    }
    fn ok(&self) -> Style {
        self.fg(Color::Green)
    }
    fn bad(&self) -> Style {
        if self.color {
            Style::default().fg(Color::Red).add_modifier(Modifier::BOLD)
        } else {
            Style::default().add_modifier(Modifier::BOLD | Modifier::REVERSED)
        }
    }
    fn warn(&self) -> Style {
        self.fg(Color::Yellow)
    }
    fn dim(&self) -> Style {
        if self.color {
            Style::default().fg(Color::DarkGray)
        } else {
            Style::default()
        }
    }
    fn title(&self) -> Style {
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
    let [status, body, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_status(f, status, app, now, &p);
    draw_keys(f, keys, app, &p);
    let left_width = if area.width >= 100 { 30 } else { 22 };
    let [left, right] =
        Layout::horizontal([Constraint::Length(left_width), Constraint::Min(0)]).areas(body);
    draw_events(f, left, app, now, &p);
    let [throughput, inventory, attack] = Layout::vertical([
        Constraint::Min(6),
        Constraint::Length(6),
        Constraint::Min(9),
    ])
    .areas(right);
    draw_throughput(f, throughput, app, now, &p);
    draw_inventory(f, inventory, app, now, &p);
    draw_attack(f, attack, app, &p);
    draw_overlay(f, area, app, &p);
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

fn block<'a>(title: &'a str, app: &App, now: Instant, p: &Palette) -> Block<'a> {
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

fn draw_status(f: &mut Frame, area: Rect, app: &App, now: Instant, p: &Palette) {
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
    let wide = area.width >= 100;
    let url = if wide {
        app.url.as_str()
    } else {
        app.url.trim_start_matches("http://")
    };
    let mut spans = vec![
        Span::styled(if wide { "FlashGrid " } else { "" }, p.title()),
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
    }
    if app.frozen.is_some() {
        spans.push(Span::styled("  FROZEN (f)", p.warn()));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_keys(f: &mut Frame, area: Rect, app: &App, p: &Palette) {
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
        Overlay::Help => &[("any key", "close")],
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

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 / whole as f64).clamp(0.0, 1.0)
    }
}

fn draw_events(f: &mut Frame, area: Rect, app: &App, now: Instant, p: &Palette) {
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

fn draw_throughput(f: &mut Frame, area: Rect, app: &App, now: Instant, p: &Palette) {
    let b = block("Throughput (per second)", app, now, p);
    let inner = b.inner(area);
    f.render_widget(b, area);
    let h = &app.history;
    let g = app
        .shown()
        .map(|(s, _)| (s.gateway.clone(), s.workers.clone()));
    let rows: [(&str, &std::collections::VecDeque<u64>, f64, Color); 4] = [
        (
            "incoming ",
            &h.incoming,
            g.as_ref().map_or(0.0, |g| g.0.requests_per_s),
            Color::Cyan,
        ),
        (
            "accepted ",
            &h.accepted,
            g.as_ref().map_or(0.0, |g| g.0.accepted_per_s),
            Color::Green,
        ),
        (
            "rejected ",
            &h.rejected,
            g.as_ref().map_or(0.0, |g| g.0.rejected_per_s),
            Color::Yellow,
        ),
        (
            "confirmed",
            &h.confirmed,
            g.as_ref().map_or(0.0, |g| g.1.confirmed_per_s),
            Color::Magenta,
        ),
    ];
    let each = (inner.height / 4).max(1);
    for (i, (label, data, now_rate, color)) in rows.into_iter().enumerate() {
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

fn draw_inventory(f: &mut Frame, area: Rect, app: &App, now: Instant, p: &Palette) {
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
    let sold = Gauge::default()
        .ratio(ratio(u64::from(e.confirmed), cap))
        .label(if e.confirmed >= e.capacity {
            format!(
                "safe transactions {} of {}: LOCKED at capacity",
                e.confirmed, e.capacity
            )
        } else {
            format!("safe transactions {} of {}", e.confirmed, e.capacity)
        })
        .gauge_style(if broken.is_err() {
            p.bad()
        } else {
            p.fg(Color::Green)
        });
    f.render_widget(sold, rows[1]);
    let line = match &broken {
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
        f.render_widget(
            Paragraph::new(format!(
                "queue {depth} msgs   never touched PostgreSQL {untouched}   p99 {:.1} ms",
                s.gateway.latency_ms.p99
            )),
            rows[3],
        );
    }
}

fn draw_attack(f: &mut Frame, area: Rect, app: &App, p: &Palette) {
    let a = &app.attack;
    let b = Block::default().borders(Borders::ALL).title(Span::styled(
        format!(
            "Attack: {} requests over {} connections (a: launch)",
            a.requests, a.concurrency
        ),
        p.title(),
    ));
    let inner = b.inner(area);
    f.render_widget(b, area);
    let Some(run) = &a.run else {
        f.render_widget(
            Paragraph::new("Press a to attack the selected event with these settings; +/- and </> change them.")
                .style(p.dim())
                .wrap(Wrap { trim: true }),
            inner,
        );
        return;
    };
    let [head, stats, chart, verdict] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(inner);
    let pr = &run.progress;
    let phase = match &run.phase {
        Phase::Running => "running",
        Phase::Verifying => "following the 202s",
        Phase::Done(_) => "done",
        Phase::Failed(_) => "failed",
    };
    let statuses: Vec<String> = pr
        .statuses
        .iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect();
    let rate = if pr.elapsed.as_secs_f64() > 0.0 {
        pr.done as f64 / pr.elapsed.as_secs_f64()
    } else {
        0.0
    };
    f.render_widget(
        Paragraph::new(format!(
            "{} {phase}: {}/{} ({rate:.0}/s)  {}  errors {}",
            run.event,
            pr.done,
            pr.total,
            statuses.join(" "),
            pr.errors
        )),
        head,
    );
    let q = pr.latency.percentiles();
    f.render_widget(
        Paragraph::new(format!(
            "p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1} ms",
            q.p50, q.p90, q.p99, q.p99_9, q.max
        )),
        stats,
    );
    // Logarithmic buckets: one slow outlier adds a bar, it does not flatten the rest.
    let buckets = pr.latency.log_buckets();
    let bars: Vec<Bar> = buckets
        .iter()
        .map(|(upper, n)| {
            let label = if *upper < 1.0 {
                format!("{:.2}", upper)
            } else {
                format!("{:.0}", upper)
            };
            Bar::default()
                .value(*n)
                .label(Line::from(label))
                .text_value(String::new())
        })
        .collect();
    let bar_width = if buckets.is_empty() {
        1
    } else {
        (chart.width / buckets.len() as u16)
            .clamp(1, 6)
            .saturating_sub(1)
            .max(1)
    };
    f.render_widget(
        BarChart::default()
            .data(BarGroup::default().bars(&bars))
            .bar_width(bar_width)
            .bar_gap(1)
            .bar_style(p.fg(Color::Cyan)),
        chart,
    );
    let line = match &run.phase {
        Phase::Done(r) if r.verdict == "pass" => Span::styled(
            format!(
                "VERDICT PASS: confirmed {}, rejected {}, pending {}, oversold no, counts agree",
                r.confirmed, r.rejected, r.pending
            ),
            p.ok(),
        ),
        Phase::Done(r) => Span::styled(format!("VERDICT FAIL: {}", r.problems.join("; ")), p.bad()),
        Phase::Failed(e) => Span::styled(format!("attack failed: {e}"), p.bad()),
        _ => Span::styled("latency histogram (ms, log buckets)", p.dim()),
    };
    f.render_widget(Paragraph::new(line), verdict);
}

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

fn draw_overlay(f: &mut Frame, area: Rect, app: &App, p: &Palette) {
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
