//! The attack panel: progress, status counts, percentiles and the live
//! log-bucket latency histogram, then the verdict.

use super::Palette;
use crate::app::{App, Phase};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Color;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Bar, BarChart, BarGroup, Block, Borders, Paragraph, Wrap};

pub(super) fn draw(f: &mut Frame, area: Rect, app: &App, p: &Palette) {
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
    // Progress and the answers on lines of their own: at 80 columns the
    // panel is 56 wide, and one line of both was cut mid-word.
    let [head, answers, stats, chart, verdict] = Layout::vertical([
        Constraint::Length(1),
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
            "{} {phase}: {}/{} ({rate:.0}/s)",
            run.event, pr.done, pr.total,
        )),
        head,
    );
    f.render_widget(
        Paragraph::new(format!(
            "answers {}  errors {}",
            statuses.join(" "),
            pr.errors
        ))
        .wrap(Wrap { trim: true }),
        answers,
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
