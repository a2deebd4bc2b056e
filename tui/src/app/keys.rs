//! What each key does: on the main screen, and inside an overlay (edited in
//! place, its effect on the rest of the state returned as a [`Step`]).

use super::{Action, App, AttackRun, Overlay, Phase};
use crate::event::Progress;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use flashgrid_wire::{Capacity, EventId};

/// What a key pressed in an overlay leads to.
#[derive(Debug)]
struct Step {
    action: Action,
    /// Close the overlay.
    close: bool,
    /// An error for the operator.
    notice: Option<String>,
}

impl Step {
    fn close(action: Action) -> Self {
        Self {
            action,
            close: true,
            notice: None,
        }
    }

    /// The overlay stays open (the key may have edited it).
    fn stay() -> Self {
        Self {
            action: Action::None,
            close: false,
            notice: None,
        }
    }
}

impl App {
    pub fn on_key(&mut self, key: KeyEvent) -> Action {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Action::Quit;
        }
        // The overlay is edited in place; what the key means for the rest of
        // the state comes back as a step.
        let step = match &mut self.overlay {
            Overlay::None => return self.on_main_key(key),
            // Any key closes help and the daemons' list.
            Overlay::Help | Overlay::Daemons => Step::close(Action::None),
            Overlay::ConfirmReset { event, typed } => match key.code {
                KeyCode::Esc => Step::close(Action::None),
                KeyCode::Enter if typed == event.as_str() => Step::close(Action::Reset {
                    event: event.clone(),
                }),
                KeyCode::Enter => Step {
                    notice: Some("reset cancelled: the typed id did not match".into()),
                    ..Step::close(Action::None)
                },
                KeyCode::Backspace => {
                    typed.pop();
                    Step::stay()
                }
                KeyCode::Char(c) => {
                    typed.push(c);
                    Step::stay()
                }
                _ => Step::stay(),
            },
            Overlay::Create {
                id,
                capacity,
                on_capacity,
            } => match key.code {
                KeyCode::Esc => Step::close(Action::None),
                KeyCode::Tab | KeyCode::BackTab | KeyCode::Up | KeyCode::Down => {
                    *on_capacity = !*on_capacity;
                    Step::stay()
                }
                KeyCode::Enter => match (EventId::parse(id), capacity.parse::<Capacity>()) {
                    (Ok(event), Ok(capacity)) => Step::close(Action::Create { event, capacity }),
                    (Err(e), _) | (_, Err(e)) => Step {
                        notice: Some(e.to_string()),
                        ..Step::stay()
                    },
                },
                KeyCode::Backspace => {
                    if *on_capacity {
                        capacity.pop();
                    } else {
                        id.pop();
                    }
                    Step::stay()
                }
                KeyCode::Char(c) if *on_capacity && c.is_ascii_digit() => {
                    capacity.push(c);
                    Step::stay()
                }
                KeyCode::Char(c) if !*on_capacity && id.len() < 64 => {
                    id.push(c);
                    Step::stay()
                }
                _ => Step::stay(),
            },
        };
        if step.close {
            self.overlay = Overlay::None;
        }
        if let Some(n) = step.notice {
            self.notify(n, true);
        }
        step.action
    }
    fn on_main_key(&mut self, key: KeyEvent) -> Action {
        let n = self.events().len();
        match key.code {
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Char('?') => self.overlay = Overlay::Help,
            KeyCode::Char('d') => self.overlay = Overlay::Daemons,
            KeyCode::Esc => self.notice = None,
            KeyCode::Char('f') => {
                self.frozen = match self.frozen.take() {
                    Some(_) => None,
                    None => self.snapshot.clone(),
                }
            }
            KeyCode::Down | KeyCode::Char('j') | KeyCode::Tab if n > 0 => {
                self.selected = (self.selected + 1) % n
            }
            KeyCode::Up | KeyCode::Char('k') | KeyCode::BackTab if n > 0 => {
                self.selected = (self.selected + n - 1) % n
            }
            KeyCode::Char('+') | KeyCode::Char('l') | KeyCode::Right => {
                self.attack.requests = (self.attack.requests * 2).min(1_000_000)
            }
            KeyCode::Char('-') | KeyCode::Char('h') | KeyCode::Left => {
                self.attack.requests = (self.attack.requests / 2).max(1)
            }
            KeyCode::Char('>') => {
                self.attack.concurrency = (self.attack.concurrency * 2).min(10_000)
            }
            KeyCode::Char('<') => self.attack.concurrency = (self.attack.concurrency / 2).max(1),
            KeyCode::Char('a') => return self.launch(),
            KeyCode::Char('r') => match self.selected_event() {
                Some(e) if self.has_token => {
                    self.overlay = Overlay::ConfirmReset {
                        event: e.event_id.clone(),
                        typed: String::new(),
                    }
                }
                Some(_) => self.notify(
                    "reset needs the admin token (--token or FLASHGRID_ADMIN_TOKEN)",
                    true,
                ),
                None => self.notify("no event selected", true),
            },
            KeyCode::Char('e') => {
                if self.has_token {
                    self.overlay = Overlay::Create {
                        id: String::new(),
                        capacity: "100".into(),
                        on_capacity: false,
                    }
                } else {
                    self.notify("creating an event needs the admin token (--token or FLASHGRID_ADMIN_TOKEN)", true)
                }
            }
            _ => {}
        }
        Action::None
    }

    fn launch(&mut self) -> Action {
        if self.attack_running() {
            self.notify("an attack is already running", true);
            return Action::None;
        }
        let Some(e) = self.selected_event() else {
            self.notify("no event to attack: create one with e", true);
            return Action::None;
        };
        let event = e.event_id.clone();
        self.attack.run = Some(AttackRun {
            event: event.clone(),
            progress: Progress {
                total: self.attack.requests,
                ..Progress::default()
            },
            phase: Phase::Running,
        });
        Action::Attack {
            event,
            requests: self.attack.requests,
            concurrency: self.attack.concurrency.min(self.attack.requests as usize),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{AttackEvent, Event, FeedEvent};
    use crossterm::event::KeyEventKind;
    use flashgrid_wire::{EventView, Snapshot};
    use flashgrid_wire::{GatewayStats, PerUserLimit, QueueStats, WorkerStats};

    pub fn key(c: KeyCode) -> KeyEvent {
        KeyEvent {
            code: c,
            modifiers: KeyModifiers::NONE,
            kind: KeyEventKind::Press,
            state: crossterm::event::KeyEventState::NONE,
        }
    }

    fn snapshot(events: &[(&str, u32, u32)]) -> Snapshot {
        Snapshot {
            at: chrono::Utc::now(),
            interval_ms: 250,
            gateway: GatewayStats {
                requests_per_s: 100.0,
                ..Default::default()
            },
            queue: QueueStats::default(),
            workers: WorkerStats::default(),
            events: events
                .iter()
                .map(|(id, cap, conf)| EventView {
                    event_id: EventId::parse(id).unwrap(),
                    name: id.to_string(),
                    capacity: *cap,
                    remaining: cap.saturating_sub(*conf),
                    confirmed: *conf,
                    per_user_limit: PerUserLimit::DEFAULT,
                    sold_out: conf >= cap,
                    opens_at: None,
                    closes_at: None,
                    hold_seconds: None,
                    held: 0,
                    purchased: 0,
                    released: 0,
                })
                .collect(),
            services: None,
            daemons: vec![],
            holds: Default::default(),
        }
    }

    fn app_with(events: &[(&str, u32, u32)]) -> App {
        let mut app = App::new("http://x".into(), true, true);
        app.update(Event::Feed(FeedEvent::Snapshot(Box::new(snapshot(events)))));
        app
    }

    #[test]
    fn navigation_wraps_and_quit_works() {
        let mut app = app_with(&[("a", 10, 0), ("b", 10, 0)]);
        app.on_key(key(KeyCode::Char('j')));
        assert_eq!(app.selected, 1);
        app.on_key(key(KeyCode::Down));
        assert_eq!(app.selected, 0);
        app.on_key(key(KeyCode::Char('k')));
        assert_eq!(app.selected, 1);
        assert_eq!(app.on_key(key(KeyCode::Char('q'))), Action::Quit);
        let ctrl_c = KeyEvent {
            modifiers: KeyModifiers::CONTROL,
            ..key(KeyCode::Char('c'))
        };
        assert_eq!(app.on_key(ctrl_c), Action::Quit);
    }

    #[test]
    fn reset_needs_the_id_typed_and_defaults_to_cancel() {
        let mut app = app_with(&[("demo", 10, 0)]);
        app.on_key(key(KeyCode::Char('r')));
        assert!(matches!(app.overlay, Overlay::ConfirmReset { .. }));
        // Enter right away cancels (nothing typed).
        assert_eq!(app.on_key(key(KeyCode::Enter)), Action::None);
        assert_eq!(app.overlay, Overlay::None);
        app.on_key(key(KeyCode::Char('r')));
        for c in "demo".chars() {
            app.on_key(key(KeyCode::Char(c)));
        }
        assert_eq!(
            app.on_key(key(KeyCode::Enter)),
            Action::Reset {
                event: EventId::parse("demo").unwrap()
            }
        );
        // Esc backs out.
        app.on_key(key(KeyCode::Char('r')));
        app.on_key(key(KeyCode::Esc));
        assert_eq!(app.overlay, Overlay::None);
    }

    #[test]
    fn attack_uses_the_settings_and_runs_once_at_a_time() {
        let mut app = app_with(&[("demo", 10, 0)]);
        app.on_key(key(KeyCode::Char('-')));
        app.on_key(key(KeyCode::Char('<')));
        let a = app.on_key(key(KeyCode::Char('a')));
        assert_eq!(
            a,
            Action::Attack {
                event: EventId::parse("demo").unwrap(),
                requests: 5_000,
                concurrency: 500
            }
        );
        assert!(app.attack_running());
        assert_eq!(
            app.on_key(key(KeyCode::Char('a'))),
            Action::None,
            "second launch refused"
        );
        app.update(Event::Attack(AttackEvent::Failed("boom".into())));
        assert!(!app.attack_running());
    }

    #[test]
    fn freeze_keeps_the_display_while_snapshots_arrive() {
        let mut app = app_with(&[("demo", 10, 0)]);
        app.on_key(key(KeyCode::Char('f')));
        app.update(Event::Feed(FeedEvent::Snapshot(Box::new(snapshot(&[(
            "demo", 10, 7,
        )])))));
        assert_eq!(app.selected_event().unwrap().confirmed, 0, "frozen");
        app.on_key(key(KeyCode::Char('f')));
        assert_eq!(app.selected_event().unwrap().confirmed, 7, "live again");
    }

    #[test]
    fn create_form_validates_before_acting() {
        let mut app = app_with(&[]);
        app.on_key(key(KeyCode::Char('e')));
        for c in "Bad Id".chars() {
            app.on_key(key(KeyCode::Char(c)));
        }
        assert_eq!(app.on_key(key(KeyCode::Enter)), Action::None);
        assert!(app.notice.as_ref().unwrap().1, "an error is shown");
        for _ in 0..6 {
            app.on_key(key(KeyCode::Backspace));
        }
        for c in "drop".chars() {
            app.on_key(key(KeyCode::Char(c)));
        }
        app.on_key(key(KeyCode::Tab));
        app.on_key(key(KeyCode::Backspace));
        app.on_key(key(KeyCode::Backspace));
        app.on_key(key(KeyCode::Backspace));
        app.on_key(key(KeyCode::Char('5')));
        assert_eq!(
            app.on_key(key(KeyCode::Enter)),
            Action::Create {
                event: EventId::parse("drop").unwrap(),
                capacity: Capacity::new(5).unwrap()
            }
        );
    }

    #[test]
    fn admin_actions_without_a_token_say_what_is_missing() {
        let mut app = app_with(&[("demo", 10, 0)]);
        app.has_token = false;
        app.on_key(key(KeyCode::Char('r')));
        assert_eq!(app.overlay, Overlay::None);
        assert!(app.notice.as_ref().unwrap().0.contains("token"));
    }
}
