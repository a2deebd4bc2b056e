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
    let line = verdict_line(&run.phase, p);
    // Progress and the answers on lines of their own: at 80 columns the
    // panel is 56 wide, and one line of both was cut mid-word. The verdict
    // wraps over as many lines as it needs (the histogram keeps 3).
    // Once known, the verdict comes before the histogram's height: the
    // chart keeps 2 lines (bars and labels).
    let verdict_height = (line.width() as u16)
        .div_ceil(inner.width.max(1))
        .clamp(1, inner.height.saturating_sub(5).max(1));
    let [head, answers, stats, chart, verdict] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(2),
        Constraint::Length(verdict_height),
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
    let percentiles = super::fit(
        stats.width,
        format!(
            "p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1} ms",
            q.p50, q.p90, q.p99, q.p99_9, q.max
        ),
        || {
            let ms = super::ms;
            format!(
                "p50 {} p90 {} p99 {} p99.9 {} max {} ms",
                ms(q.p50),
                ms(q.p90),
                ms(q.p99),
                ms(q.p99_9),
                ms(q.max)
            )
        },
    );
    f.render_widget(Paragraph::new(percentiles), stats);
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
    f.render_widget(Paragraph::new(line).wrap(Wrap { trim: true }), verdict);
}

/// The last line: the verdict once known, else what the histogram shows.
fn verdict_line<'a>(phase: &Phase, p: &Palette) -> Line<'a> {
    let span = match phase {
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
    Line::from(span)
}
