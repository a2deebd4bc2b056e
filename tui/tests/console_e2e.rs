//! The real console binary in a pseudo-terminal against a running stack:
//! it connects, shows the event, launches an attack on `a`, and shows the
//! verdict — read back from the screen as an operator would.

use flashgrid_testkit::{Stack, TOKEN, eventually};
use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_pty_attacks_and_shows_the_verdict() {
    let stack = Stack::spawn().await;
    // The event, through the admin API the console itself would use.
    let target = flashgrid_load::Target::resolve(&stack.url).await.unwrap();
    let id = flashgrid_wire::EventId::parse("pty").unwrap();
    let stage = flashgrid_load::admin::Stage {
        capacity: "20".parse().unwrap(),
        hold_seconds: None,
    };
    flashgrid_load::admin::create_or_reset(&target, &TOKEN.into(), &id, stage)
        .await
        .unwrap();

    let pty = native_pty_system()
        .openpty(PtySize {
            rows: 30,
            cols: 100,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_flashgrid"));
    cmd.env("FLASHGRID_URL", &stack.url);
    cmd.env("FLASHGRID_ADMIN_TOKEN", TOKEN);
    cmd.env("TERM", "xterm-256color");
    let child = pty.slave.spawn_command(cmd).unwrap();
    drop(pty.slave);
    let mut reader = pty.master.try_clone_reader().unwrap();
    let mut writer = pty.master.take_writer().unwrap();
    let screen = Arc::new(Mutex::new(vt100::Parser::new(30, 100, 0)));
    {
        let screen = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                screen.lock().unwrap().process(&buf[..n]);
            }
        });
    }
    let contents = || screen.lock().unwrap().screen().contents();
    let wait_for = |what: &'static str| {
        let contents = &contents;
        async move {
            eventually(what, Duration::from_secs(30), || async {
                contents().contains(what).then_some(())
            })
            .await
        }
    };

    wait_for("● connected").await;
    wait_for("pty 0/20").await;
    // Smaller settings than the defaults: 10,000 → 2,500 requests, 1,000 → 250 connections.
    writer.write_all(b"--<<").unwrap();
    writer.flush().unwrap();
    wait_for("Attack: 2500 requests over 250 connections").await;
    writer.write_all(b"a").unwrap();
    writer.flush().unwrap();
    wait_for("VERDICT PASS: confirmed 20,").await;
    wait_for("pty 20/20").await;
    let shown = contents();
    assert!(
        shown.contains("✓ confirmed 20 + remaining 0 = capacity 20"),
        "{shown}"
    );
    // The whole story on screen agrees with itself: every request answered
    // 202 or 409, none an error, and every 202 decided.
    assert!(shown.contains("pty done: 2500/2500"), "{shown}");
    let line = |start: &str| {
        let l = shown
            .lines()
            .find_map(|l| l.split_once(start).map(|(_, rest)| rest.to_owned()))
            .unwrap_or_else(|| panic!("no {start:?} on\n{shown}"));
        l.split('│').next().unwrap().trim().to_owned()
    };
    let number = |text: &str, after: &str| -> u64 {
        let (_, rest) = text
            .split_once(after)
            .unwrap_or_else(|| panic!("no {after:?} in {text:?}"));
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits
            .parse()
            .unwrap_or_else(|_| panic!("no number after {after:?} in {text:?}"))
    };
    let verdict = line("VERDICT PASS: ");
    let (confirmed, rejected, pending) = (
        number(&verdict, "confirmed "),
        number(&verdict, "rejected "),
        number(&verdict, "pending "),
    );
    assert_eq!((confirmed, pending), (20, 0), "{verdict}");
    let answers = line("answers ");
    let accepted = number(&answers, "202:");
    let sold_out = if answers.contains("409:") {
        number(&answers, "409:")
    } else {
        0
    };
    assert_eq!(number(&answers, "errors "), 0, "{answers}");
    assert_eq!(accepted + sold_out, 2500, "only 202s and 409s: {answers}");
    assert_eq!(
        accepted,
        confirmed + rejected,
        "every 202 decided: {verdict} / {answers}"
    );

    // q quits and the process exits by itself.
    writer.write_all(b"q").unwrap();
    writer.flush().unwrap();
    let child = Mutex::new(child);
    let status = eventually("the console to exit", Duration::from_secs(10), || async {
        child.lock().unwrap().try_wait().ok().flatten()
    })
    .await;
    assert!(status.success(), "{status:?}");
}
