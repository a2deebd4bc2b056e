//! Whole screens rendered into a `TestBackend` for fixed states, with the
//! clock injected: each asserts what an operator must see, and that nothing
//! panics (tiny terminals, an oversold event).

use flashgrid_load::latency::Latency;
use flashgrid_tui::app::{App, AttackRun, Connection, Phase};
use flashgrid_tui::event::{Event, FeedEvent, Progress};
use flashgrid_tui::ui;
use flashgrid_wire::{
    DaemonKind, DaemonView, EventId, EventView, GatewayStats, NodeView, PerUserLimit, QueueStats,
    ServiceHealth, Snapshot, WorkerStats,
};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::time::{Duration, Instant};

fn event(id: &str, capacity: u32, confirmed: u32, remaining: u32) -> EventView {
    EventView {
        event_id: EventId::parse(id).unwrap(),
        name: id.into(),
        capacity,
        remaining,
        confirmed,
        per_user_limit: PerUserLimit::DEFAULT,
        sold_out: remaining == 0,
        opens_at: None,
        closes_at: None,
        hold_seconds: None,
        held: 0,
        purchased: 0,
        released: 0,
    }
}

fn snapshot(events: Vec<EventView>) -> Snapshot {
    Snapshot {
        at: chrono::Utc::now(),
        interval_ms: 250,
        gateway: GatewayStats {
            requests_per_s: 9500.0,
            accepted_per_s: 120.0,
            rejected_per_s: 9380.0,
            requests_total: 10_000,
            ..Default::default()
        },
        queue: QueueStats {
            depth: Some(3),
            consumers: Some(1),
        },
        workers: WorkerStats {
            confirmed_per_s: 20.0,
            confirmed_total: 20,
            db_writes_total: 20,
            ..Default::default()
        },
        events,
        services: Some(ServiceHealth {
            postgres: true,
            redis: true,
            rabbitmq: true,
        }),
        daemons: vec![],
        holds: Default::default(),
    }
}

fn node(service: &str, port: u16, up: bool, role: Option<&str>, connected: bool) -> NodeView {
    NodeView {
        service: service.into(),
        addr: format!("127.0.0.1:{port}"),
        up,
        role: role.map(Into::into),
        connected,
    }
}

/// Two gateways and two workers on the clusters; `cut` makes worker w-2
/// lose one Redis master.
fn daemons(cut: bool, silent_ms: u64) -> Vec<DaemonView> {
    let nodes = |cut: bool| {
        vec![
            node("postgres", 5432, true, None, true),
            node(
                "redis",
                7000,
                !cut,
                if cut { None } else { Some("master") },
                false,
            ),
            node("redis", 7003, true, Some("replica"), false),
            node("rabbitmq", 5673, true, None, true),
            node("rabbitmq", 5674, true, None, false),
        ]
    };
    let gateway = |id: &str, port: u16, rps: f64| DaemonView {
        id: id.into(),
        kind: DaemonKind::Gateway,
        listen: Some(format!("127.0.0.1:{port}")),
        silent_ms: 0,
        gateway: Some(GatewayStats {
            requests_per_s: rps,
            requests_total: 1234,
            ..Default::default()
        }),
        latency_buckets: vec![],
        worker: None,
        nodes: nodes(false),
    };
    let worker = |id: &str, cut: bool, silent_ms: u64| DaemonView {
        id: id.into(),
        kind: DaemonKind::Worker,
        listen: None,
        silent_ms,
        gateway: None,
        latency_buckets: vec![],
        worker: Some(WorkerStats {
            confirmed_per_s: 7.0,
            confirmed_total: 77,
            ..Default::default()
        }),
        nodes: nodes(cut),
    };
    vec![
        gateway("gw-1", 8080, 4000.0),
        gateway("gw-2", 8081, 5500.0),
        worker("w-1", false, 0),
        worker("w-2", cut, silent_ms),
    ]
}

fn app_with_daemons(d: Vec<DaemonView>) -> App {
    let mut a = App::new("http://127.0.0.1:8080".into(), true, true);
    let mut s = snapshot(vec![event("demo", 20, 5, 15)]);
    s.daemons = d;
    a.update(Event::Feed(FeedEvent::Snapshot(Box::new(s))));
    a
}

fn app(events: Vec<EventView>) -> App {
    let mut app = App::new("http://127.0.0.1:8080".into(), true, true);
    for _ in 0..30 {
        app.update(Event::Feed(FeedEvent::Snapshot(Box::new(snapshot(
            events.clone(),
        )))));
    }
    app
}

/// The foreground colour of every cell of the first on-screen occurrence of
/// `text`.
fn colours_of(app: &App, w: u16, h: u16, text: &str) -> Vec<ratatui::style::Color> {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| ui::draw(f, app, Instant::now())).unwrap();
    let buf = t.backend().buffer().clone();
    for y in 0..h {
        let row: Vec<&str> = (0..w).map(|x| buf[(x, y)].symbol()).collect();
        let line: String = row.concat();
        if let Some(byte) = line.find(text) {
            // Cells are one char each here (no wide glyphs in these texts).
            let x = line[..byte].chars().count() as u16;
            return (x..x + text.chars().count() as u16)
                .map(|x| buf[(x, y)].fg)
                .collect();
        }
    }
    panic!("{text:?} is not on screen");
}

fn render(app: &App, w: u16, h: u16, now: Instant) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| ui::draw(f, app, now)).unwrap();
    let buf = t.backend().buffer().clone();
    let mut s = String::new();
    for y in 0..h {
        for x in 0..w {
            s.push_str(buf[(x, y)].symbol());
        }
        s.push('\n');
    }
    s
}

#[test]
fn live_sale_at_80x24_shows_rates_inventory_and_the_invariant() {
    let a = app(vec![event("demo", 20, 5, 15), event("other", 100, 0, 100)]);
    let screen = render(&a, 80, 24, Instant::now());
    for needle in [
        "● connected",
        "Events",
        "demo 5/20",
        "incoming",
        "9500",
        "remaining 15 of 20",
        "✓ confirmed 5 + remaining 15 = capacity 20",
        "queue 3 msgs",
        "99.8%",
        "q quit",
        "f freeze",
    ] {
        assert!(screen.contains(needle), "missing {needle:?} in\n{screen}");
    }
}

#[test]
fn an_unreachable_service_and_a_queue_without_worker_show_in_red() {
    let healthy = render(
        &app(vec![event("demo", 20, 5, 15)]),
        100,
        24,
        Instant::now(),
    );
    assert!(!healthy.contains("unreachable") && !healthy.contains("no worker"));

    let mut a = App::new("http://127.0.0.1:8080".into(), true, true);
    let mut s = snapshot(vec![event("demo", 20, 5, 15)]);
    s.services = Some(ServiceHealth {
        postgres: true,
        redis: false,
        rabbitmq: false,
    });
    s.queue.consumers = Some(0);
    a.update(Event::Feed(FeedEvent::Snapshot(Box::new(s))));
    let screen = render(&a, 100, 24, Instant::now());
    let status = screen.lines().next().unwrap();
    assert!(
        status.contains("✗ Redis, RabbitMQ unreachable"),
        "status line: {status}"
    );
    assert!(status.contains("✗ no worker"), "status line: {status}");
    assert!(!status.contains("PostgreSQL"), "status line: {status}");
}

#[test]
fn every_gateway_and_worker_is_counted_and_listed_with_its_nodes() {
    let a = app_with_daemons(daemons(false, 0));
    let screen = render(&a, 80, 24, Instant::now());
    let status = screen.lines().next().unwrap();
    assert!(status.contains("2gw 2wk"), "status line: {status}");
    assert!(!status.contains('✗'), "status line: {status}");
    assert!(
        screen.contains("Throughput (per second, 2 gateways)"),
        "{screen}"
    );

    // `d` lists them, each with its figures and its nodes.
    let mut a = a;
    a.on_key(crossterm::event::KeyEvent::from(
        crossterm::event::KeyCode::Char('d'),
    ));
    let screen = render(&a, 100, 30, Instant::now());
    for needle in [
        "gateway gw-1 127.0.0.1:8080  4000 req/s",
        "gateway gw-2 127.0.0.1:8081  5500 req/s",
        "worker  w-1  7 confirmed/s",
        "worker  w-2",
        "postgres 5432✓",
        "redis 7000M✓ 7003r✓",
        "rabbitmq 5673● 5674✓",
    ] {
        assert!(screen.contains(needle), "missing {needle:?} in\n{screen}");
    }
    // Any key closes it.
    a.on_key(crossterm::event::KeyEvent::from(
        crossterm::event::KeyCode::Char('x'),
    ));
    assert!(!render(&a, 100, 30, Instant::now()).contains("redis 7000M✓"));
}

#[test]
fn a_daemon_cut_from_a_node_or_gone_silent_shows_in_red() {
    let a = app_with_daemons(daemons(true, 0));
    let status = render(&a, 100, 24, Instant::now())
        .lines()
        .next()
        .unwrap()
        .to_owned();
    assert!(
        status.contains("✗ w-2 ✗ redis 127.0.0.1:7000 (d)"),
        "status line: {status}"
    );
    assert_eq!(
        colours_of(&a, 100, 24, "w-2 ✗ redis")[0],
        ratatui::style::Color::Red
    );

    // A silent worker is not counted, and said silent.
    let a = app_with_daemons(daemons(false, 5_000));
    let status = render(&a, 100, 24, Instant::now())
        .lines()
        .next()
        .unwrap()
        .to_owned();
    assert!(status.contains("2gw 1wk"), "status line: {status}");
    assert!(
        status.contains("✗ worker w-2 silent (d)"),
        "status line: {status}"
    );
}

/// A hold sale of 200 seats: 40 held, 150 purchased, 10 left.
fn hold_sale(purchased: u32) -> EventView {
    EventView {
        hold_seconds: Some(300),
        held: 190 - purchased,
        purchased,
        released: 35,
        ..event("drop", 200, 190, 10)
    }
}

#[test]
fn at_80x24_a_hold_sale_shows_held_purchased_and_the_rates_of_holds() {
    let mut a = App::new("http://127.0.0.1:8080".into(), true, true);
    let mut s = snapshot(vec![hold_sale(150)]);
    s.holds.purchased_per_s = 12.0;
    s.holds.returned_per_s = 7.0;
    s.workers.expired_per_s = 4.0;
    a.update(Event::Feed(FeedEvent::Snapshot(Box::new(s))));
    let screen = render(&a, 80, 24, Instant::now());
    for needle in [
        "held 40 + purchased 150 of 200",
        "✓ held 40 + purchased 150 + remaining 10 = capacity 200",
        "holds: purchased 12/s  returned 7/s  expired 4/s",
        "incoming",
        "confirmed",
    ] {
        assert!(
            screen.contains(needle),
            "missing {needle:?} in
{screen}"
        );
    }
    // Held and purchased that do not make the seats taken: red.
    let mut a = App::new("http://127.0.0.1:8080".into(), true, true);
    let mut bad = hold_sale(150);
    bad.held = 41;
    a.update(Event::Feed(FeedEvent::Snapshot(Box::new(snapshot(vec![
        bad,
    ])))));
    let screen = render(&a, 80, 24, Instant::now());
    let broken = "BROKEN: held 41 + purchased 150 ≠ seats taken 190";
    assert!(screen.contains(broken), "{screen}");
    let red = ratatui::style::Color::Red;
    assert!(colours_of(&a, 80, 24, broken).iter().all(|&c| c == red));
    // Without holds, no line of holds.
    let plain = render(&app(vec![event("demo", 20, 5, 15)]), 80, 24, Instant::now());
    assert!(!plain.contains("holds:"), "{plain}");
}

#[test]
fn sold_out_locks_the_safe_transactions_bar() {
    let a = app(vec![event("demo", 20, 20, 0)]);
    let screen = render(&a, 100, 30, Instant::now());
    assert!(screen.contains("LOCKED at capacity"), "{screen}");
    assert!(screen.contains("■ demo 20/20"), "{screen}");
}

#[test]
fn an_oversold_event_renders_red_without_panicking() {
    // Values no correct system produces: the console must still draw them.
    let a = app(vec![event("bad", 20, 23, 0), event("drift", 20, 5, 5)]);
    let screen = render(&a, 80, 24, Instant::now());
    assert!(
        screen.contains("OVERSOLD: confirmed 23 > capacity 20"),
        "{screen}"
    );
    assert!(screen.contains("! bad 23/20"), "{screen}");
    let red = ratatui::style::Color::Red;
    let colours = colours_of(&a, 80, 24, "OVERSOLD: confirmed 23 > capacity 20");
    assert!(colours.iter().all(|&c| c == red), "{colours:?}");
    // In the list, its marker is red.
    assert_eq!(colours_of(&a, 80, 24, "! bad 23/20")[0], red);
    let mut b = a.clone();
    b.selected = 1;
    let screen = render(&b, 80, 24, Instant::now());
    assert!(
        screen.contains("BROKEN: confirmed 5 + remaining 5 ≠ capacity 20"),
        "{screen}"
    );
    let colours = colours_of(&b, 80, 24, "BROKEN: confirmed 5");
    assert!(colours.iter().all(|&c| c == red), "{colours:?}");
    // A healthy sale is not red.
    let good = app(vec![event("demo", 20, 5, 15)]);
    let colours = colours_of(&good, 80, 24, "✓ confirmed 5 + remaining 15");
    assert!(colours.iter().all(|&c| c != red), "{colours:?}");
    let _ = render(&app(vec![event("zero", 0, 0, 0)]), 80, 24, Instant::now());
}

#[test]
fn disconnected_shows_reconnecting_and_how_old_the_figures_are() {
    let mut a = app(vec![event("demo", 20, 5, 15)]);
    let now = Instant::now() + Duration::from_secs(7);
    a.connection = Connection::Reconnecting {
        reason: "connection refused".into(),
        retry_at: now + Duration::from_secs(2),
    };
    let screen = render(&a, 80, 24, now);
    assert!(
        screen.contains("reconnecting in 2s: connection refused"),
        "{screen}"
    );
    assert!(screen.contains("stale 7s"), "{screen}");
    assert!(screen.contains("7.0s ago"), "{screen}");
}

#[test]
fn mid_attack_shows_progress_percentiles_and_a_histogram() {
    let mut a = app(vec![event("demo", 20, 5, 15)]);
    let mut latency = Latency::default();
    for ms in [1u64, 1, 2, 2, 2, 3, 5, 8, 40, 900] {
        latency.record(Duration::from_millis(ms));
    }
    a.attack.run = Some(AttackRun {
        event: EventId::parse("demo").unwrap(),
        progress: Progress {
            done: 4_000,
            total: 10_000,
            statuses: [(202, 40), (409, 3_960)].into_iter().collect(),
            errors: 0,
            latency,
            elapsed: Duration::from_secs(1),
        },
        phase: Phase::Running,
    });
    let screen = render(&a, 80, 24, Instant::now());
    // Whole lines, each ending inside the panel: a cut line or a value ten
    // times off fails.
    for needle in [
        "│demo running: 4000/10000 (4000/s) ",
        "│answers 202:40 409:3960  errors 0 ",
        "│p50 2.0  p90 40.0  p99 900.1  p99.9 900.1  max 900.1 ms │",
        "█",
    ] {
        assert!(screen.contains(needle), "missing {needle:?} in\n{screen}");
    }
}

fn done(verdict: &'static str, problems: Vec<String>) -> App {
    let mut a = app(vec![event("demo", 20, 20, 0)]);
    let mut latency = Latency::default();
    for ms in [1u64, 2, 3, 1234] {
        latency.record(Duration::from_millis(ms));
    }
    let report = flashgrid_load::Report {
        requests: 80,
        duration_s: 0.4,
        rps: 200.0,
        statuses: Default::default(),
        transport_errors: Default::default(),
        connect_retries: 0,
        latency_ms: latency.percentiles(),
        accepted: 80,
        confirmed: 20,
        rejected: 60,
        rejected_by_reason: Default::default(),
        pending: 0,
        oversold: false,
        lost: 0,
        counts_agree: Some(true),
        verdict,
        problems,
        event: None,
        verify_s: 0.1,
        holds: None,
        released: 0,
    };
    a.attack.run = Some(AttackRun {
        event: EventId::parse("demo").unwrap(),
        progress: Progress {
            done: 80,
            total: 80,
            statuses: [(202, 80)].into_iter().collect(),
            errors: 3,
            latency,
            elapsed: Duration::from_millis(400),
        },
        phase: Phase::Done(Box::new(report)),
    });
    a
}

/// The text of the screen with the panels' borders and the line ends taken
/// out, so that a line wrapped inside a panel reads whole.
fn unwrapped(screen: &str) -> String {
    screen
        .lines()
        .map(|l| {
            // The attack panel's part of the line: after the events list.
            let cells: Vec<char> = l.chars().collect();
            let right: String = cells.iter().skip(23).collect();
            right
                .trim_matches(|c: char| c == '│' || c.is_whitespace())
                .to_owned()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What an operator reads after an attack, at the 80×24 an SSH session
/// gets: the product, the verdict, the errors and the slowest answer, each
/// whole (wrapped if need be, never cut).
#[test]
fn at_80x24_nothing_the_operator_needs_is_cut() {
    let a = done("pass", vec![]);
    let screen = render(&a, 80, 24, Instant::now());
    let status = screen.lines().next().unwrap();
    assert!(status.starts_with("FlashGrid "), "status line: {status}");
    let text = unwrapped(&screen);
    for needle in [
        "VERDICT PASS: confirmed 20, rejected 60, pending 0, oversold no, counts agree",
        "errors 3",
        "max 1235 ms",
        "p99 0.0 ms",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{screen}");
    }

    let a = done(
        "fail",
        vec![
            "oversold: 21 confirmed for 20 seats".into(),
            "2 reservations lost".into(),
        ],
    );
    let screen = render(&a, 80, 24, Instant::now());
    let text = unwrapped(&screen);
    let verdict = "VERDICT FAIL: oversold: 21 confirmed for 20 seats; 2 reservations lost";
    assert!(text.contains(verdict), "missing {verdict:?} in\n{screen}");

    // A status line with every warning wraps rather than cuts them.
    let mut a = app_with_daemons(daemons(true, 0));
    if let Some((s, _)) = a.snapshot.as_mut() {
        s.services = Some(ServiceHealth {
            postgres: true,
            redis: false,
            rabbitmq: false,
        });
        s.queue.consumers = Some(0);
    }
    let screen = render(&a, 80, 24, Instant::now());
    let top: String = screen.lines().take(2).collect::<Vec<_>>().join(" ");
    for needle in [
        "FlashGrid",
        "✗ Redis, RabbitMQ unreachable",
        "✗ no worker",
        "(d)",
    ] {
        assert!(top.contains(needle), "missing {needle:?} in\n{screen}");
    }
}

#[test]
fn too_small_a_terminal_says_what_it_has_and_needs() {
    let a = app(vec![event("demo", 20, 5, 15)]);
    let screen = render(&a, 40, 10, Instant::now());
    assert!(screen.contains("terminal 40×10"), "{screen}");
    assert!(screen.contains("64×20"), "{screen}");
    for (w, h) in [(1, 1), (64, 20), (63, 20), (200, 60)] {
        let _ = render(&a, w, h, Instant::now());
    }
}

#[test]
fn no_color_still_marks_a_broken_invariant() {
    let mut a = app(vec![event("bad", 20, 23, 0)]);
    a.color = false;
    let mut t = Terminal::new(TestBackend::new(80, 24)).unwrap();
    t.draw(|f| ui::draw(f, &a, Instant::now())).unwrap();
    let buf = t.backend().buffer();
    let colored = buf
        .content()
        .iter()
        .any(|c| c.fg != ratatui::style::Color::Reset && c.fg != ratatui::style::Color::default());
    assert!(!colored, "NO_COLOR: no foreground colours");
}
