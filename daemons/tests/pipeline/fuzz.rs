//! Nothing a client sends makes the gateway answer 5xx, panic or hang: a
//! thousand generated odd requests, written as raw bytes over TCP, each
//! answered below 500 or closed within a deadline; the gateway serves
//! normally afterwards.

use crate::helpers::{TOKEN, TestStack};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

/// The event every generated reservation aims at (when it aims right).
const EVENT: &str = "fz";
/// How long one request may take before the gateway is said to hang.
const DEADLINE: Duration = Duration::from_secs(5);

/// Raw request bytes; shown escaped when a case fails.
#[derive(Clone)]
struct Raw(Vec<u8>);

impl std::fmt::Debug for Raw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

/// Panics raised outside the tests' own code (the daemons, their
/// dependencies), counted by a hook installed once for this binary.
static DAEMON_PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_daemon_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let file = info.location().map(|l| l.file()).unwrap_or("");
            // Test assertions (tests/, the testkit) are not the daemons'.
            if !file.contains("tests/") && !file.ends_with("testkit.rs") {
                DAEMON_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
}

// ---- generators -------------------------------------------------------------

fn method() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => Just(b"POST".to_vec()),
        2 => Just(b"GET".to_vec()),
        2 => prop::sample::select(vec![
            "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "TRACE", "CONNECT", "post", "PRI",
        ])
        .prop_map(|m| m.as_bytes().to_vec()),
        1 => "[A-Z]{1,12}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..8),
    ]
}

fn slugish() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just(EVENT.to_owned()),
        2 => "[a-z0-9-]{1,70}",
        1 => "[A-Za-z0-9%._~-]{0,20}",
    ]
}

fn target() -> impl Strategy<Value = Vec<u8>> {
    let uuid = prop_oneof![
        any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string()),
        "[0-9a-fA-F-]{0,40}",
    ];
    prop_oneof![
        8 => Just("/reserve".to_owned()),
        1 => prop::sample::select(vec![
            "/reserve?x=1", "/reserve/", "//reserve", "/RESERVE", "http://h/reserve", "*",
            "/", "", "/events", "/events/", "/metrics", "/healthz", "/readyz", "/ws",
            "/ws?token=nope", "/ws?token=", "/admin", "/admin/events", "/%00", "/..%2f..",
        ])
        .prop_map(str::to_owned),
        1 => slugish().prop_map(|e| format!("/events/{e}")),
        2 => (slugish(), uuid, prop::option::of("[0-9-]{0,7}|[a-z]{0,3}")).prop_map(
            |(e, r, w)| match w {
                Some(w) => format!("/events/{e}/reservations/{r}?wait_ms={w}"),
                None => format!("/events/{e}/reservations/{r}"),
            }
        ),
        2 => slugish().prop_map(|e| format!("/admin/events/{e}/reset")),
        1 => Just("/admin/events".to_owned()),
        1 => "/[!-~]{0,60}",
        1 => "/[ -~]{0,30}",
        1 => (0usize..20_000).prop_map(|n| format!("/{}", "a".repeat(n))),
    ]
    .prop_map(String::into_bytes)
}

fn version() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        12 => Just("HTTP/1.1"),
        1 => prop::sample::select(vec!["HTTP/1.0", "HTTP/2.0", "HTTP/1.2", "HTTP/0.9", "http/1.1", ""]),
    ]
}

/// A header name or value with odd bytes.
fn odd_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => "[ -~]{0,30}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..30),
        1 => ".{0,10}".prop_map(String::into_bytes),
    ]
}

fn header() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    let name = |n: &'static str| Just(n.as_bytes().to_vec());
    prop_oneof![
        3 => (name("Content-Type"), prop_oneof![
            5 => Just(b"application/json".to_vec()),
            1 => Just(b"application/json; charset=utf-8".to_vec()),
            1 => Just(b"application/problem+json".to_vec()),
            1 => Just(b"text/plain".to_vec()),
            1 => Just(b"multipart/form-data; boundary=x".to_vec()),
            1 => odd_bytes(),
        ]),
        2 => (name("Authorization"), prop_oneof![
            Just(b"Bearer wrong-token".to_vec()),
            Just(b"Bearer ".to_vec()),
            Just(format!("Bearer {TOKEN}x").into_bytes()),
            Just(format!("bearer {TOKEN}").into_bytes()),
            Just(b"Basic dXNlcjpwYXNz".to_vec()),
            odd_bytes().prop_map(|v| [b"Bearer ".to_vec(), v].concat()),
        ]),
        2 => (name("Idempotency-Key"), prop_oneof![
            "[!-~]{1,40}".prop_map(String::into_bytes),
            (200usize..300).prop_map(|n| vec![b'k'; n]),
            odd_bytes(),
        ]),
        1 => (name("Content-Length"), prop_oneof![
            Just(b"-1".to_vec()),
            Just(b"18446744073709551616".to_vec()),
            Just(b"99999999999".to_vec()),
            Just(b"0x10".to_vec()),
            Just(b"+5".to_vec()),
            Just(b"5, 6".to_vec()),
            (0u64..100).prop_map(|n| n.to_string().into_bytes()),
        ]),
        1 => (name("Transfer-Encoding"), prop_oneof![
            Just(b"chunked".to_vec()),
            Just(b"gzip, chunked".to_vec()),
            Just(b"chunked, gzip".to_vec()),
            Just(b"identity".to_vec()),
            odd_bytes(),
        ]),
        1 => (name("Expect"), prop_oneof![Just(b"100-continue".to_vec()), odd_bytes()]),
        1 => (name("Connection"), prop_oneof![
            Just(b"close".to_vec()), Just(b"upgrade".to_vec()), Just(b"keep-alive".to_vec()),
        ]),
        1 => (name("Upgrade"), prop_oneof![Just(b"websocket".to_vec()), Just(b"h2c".to_vec())]),
        1 => (name("Host"), odd_bytes()),
        1 => (odd_bytes(), odd_bytes()),
    ]
}

/// A JSON value of the wrong kind, or an extreme of the right one.
fn odd_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        Just("1e400".to_owned()),
        Just("-1e400".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("-9223372036854775809".to_owned()),
        Just("1.5".to_owned()),
        Just("-0".to_owned()),
        Just("\"\\ud800\"".to_owned()),
        Just("\"\\u0000\"".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        (-5i64..15).prop_map(|n| n.to_string()),
        any::<String>().prop_map(|s| serde_json::json!(s).to_string()),
        "\\PC{100,140}".prop_map(|s| serde_json::json!(s).to_string()),
        (1usize..3000).prop_map(|n| format!("{}1{}", "[".repeat(n), "]".repeat(n))),
        (1usize..3000).prop_map(|n| format!(
            "{}{}",
            "{\"a\":".repeat(n),
            "1".to_owned() + &"}".repeat(n)
        )),
    ]
}

fn reserve_json() -> impl Strategy<Value = Vec<u8>> {
    let good_event = Just(format!("\"{EVENT}\""));
    let good_user = "[a-z]{1,8}".prop_map(|u| format!("\"{u}\""));
    let good_qty = (1u8..=10).prop_map(|q| q.to_string());
    let field = |good: BoxedStrategy<String>| prop_oneof![4 => good.prop_map(Some), 1 => odd_value().prop_map(Some), 1 => Just(None)];
    (
        field(good_event.boxed()),
        field(good_user.boxed()),
        field(good_qty.boxed()),
        prop::option::of(("[a-z_]{1,10}", odd_value())),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(e, u, q, extra, dup)| {
            let mut parts = Vec::new();
            for (k, v) in [("event_id", e), ("user_id", u), ("quantity", q)] {
                if let Some(v) = v {
                    parts.push(format!("\"{k}\":{v}"));
                    if dup && k == "quantity" {
                        parts.push(format!("\"{k}\":{v}"));
                    }
                }
            }
            if let Some((k, v)) = extra {
                parts.push(format!("\"{k}\":{v}"));
            }
            format!("{{{}}}", parts.join(",")).into_bytes()
        })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => reserve_json(),
        1 => Just(Vec::new()),
        1 => prop::collection::vec(any::<u8>(), 0..200),
        1 => (reserve_json(), any::<prop::sample::Index>())
            .prop_map(|(b, i)| b[..i.index(b.len())].to_vec()),
        1 => prop_oneof![
            Just(br#"{"name":"x","capacity":-1}"#.to_vec()),
            Just(br#"{"name":"x","capacity":4294967296}"#.to_vec()),
            Just(br#"{"capacity":1e9}"#.to_vec()),
            Just(br#"{"capacity":"7"}"#.to_vec()),
        ],
        1 => (20_000usize..40_000).prop_map(|n| vec![b' '; n]),
    ]
}

/// How the body is framed.
#[derive(Debug, Clone)]
enum Framing {
    Length,
    WrongLength(i64),
    DuplicateLength(u64),
    Chunked,
    BadChunks(String),
    None,
}

fn framing() -> impl Strategy<Value = Framing> {
    prop_oneof![
        8 => Just(Framing::Length),
        1 => (-10i64..10).prop_map(Framing::WrongLength),
        1 => (0u64..50).prop_map(Framing::DuplicateLength),
        2 => Just(Framing::Chunked),
        1 => prop_oneof![
            Just("FFFFFFFFFFFFFFFFFF".to_owned()),
            Just("-1".to_owned()),
            Just("zz".to_owned()),
            Just("5;ext=\"".to_owned()),
            Just("".to_owned()),
            "[0-9a-fA-F]{1,20}",
        ]
        .prop_map(Framing::BadChunks),
        1 => Just(Framing::None),
    ]
}

/// Byte-level damage done to the whole request after it was assembled.
#[derive(Debug, Clone)]
enum Damage {
    None,
    Truncate(prop::sample::Index),
    Flip(Vec<(prop::sample::Index, u8)>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        8 => Just(Damage::None),
        1 => any::<prop::sample::Index>().prop_map(Damage::Truncate),
        1 => prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)
            .prop_map(Damage::Flip),
    ]
}

/// A request, and whether it is a well-formed purchase (which must be
/// answered, never closed on).
fn request() -> impl Strategy<Value = (Raw, bool)> {
    let admin = prop_oneof![4 => Just(false), 1 => Just(true)];
    let head = (method(), target(), version(), any::<bool>());
    let rest = (
        prop::collection::vec(header(), 0..4),
        body(),
        framing(),
        damage(),
        admin,
    );
    prop_oneof![
        4 => valid_reserve().prop_map(|r| (r, true)),
        15 => (head, rest).prop_map(
            |((m, t, v, host), (headers, body, framing, damage, admin))| {
                // The real token only on the admin routes: with it, /ws
                // would rightly stream its feed until the client leaves.
                let admin = admin && t.starts_with(b"/admin");
                (assemble(m, t, v, host, headers, body, framing, damage, admin), false)
            }
        ),
        1 => prop::collection::vec(any::<u8>(), 0..300).prop_map(|b| (Raw(b), false)),
    ]
}

/// A well-formed reservation (sometimes with an Idempotency-Key), so that
/// odd requests are interleaved with ones that go all the way to the queue.
fn valid_reserve() -> impl Strategy<Value = Raw> {
    (
        "[a-z0-9]{1,12}",
        1u8..=10,
        prop::option::of("[!-~]{1,40}"),
        any::<bool>(),
    )
        .prop_map(|(user, qty, key, chunked)| {
            let body = format!(r#"{{"event_id":"{EVENT}","user_id":"{user}","quantity":{qty}}}"#);
            let headers = [
                Some((b"Content-Type".to_vec(), b"application/json".to_vec())),
                key.map(|k| (b"Idempotency-Key".to_vec(), k.into_bytes())),
            ];
            let framing = if chunked {
                Framing::Chunked
            } else {
                Framing::Length
            };
            assemble(
                b"POST".to_vec(),
                b"/reserve".to_vec(),
                "HTTP/1.1",
                true,
                headers.into_iter().flatten().collect(),
                body.into_bytes(),
                framing,
                Damage::None,
                false,
            )
        })
}

#[allow(clippy::too_many_arguments)]
fn assemble(
    method: Vec<u8>,
    target: Vec<u8>,
    version: &str,
    host: bool,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
    framing: Framing,
    damage: Damage,
    admin: bool,
) -> Raw {
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(&method);
    out.push(b' ');
    out.extend_from_slice(&target);
    out.push(b' ');
    out.extend_from_slice(version.as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut header = |name: &[u8], value: &[u8]| {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    };
    if host {
        header(b"Host", b"127.0.0.1");
    }
    if admin {
        header(b"Authorization", format!("Bearer {TOKEN}").as_bytes());
    }
    for (n, v) in &headers {
        header(n, v);
    }
    let framed = match framing {
        Framing::Length => {
            header(b"Content-Length", body.len().to_string().as_bytes());
            body
        }
        Framing::WrongLength(d) => {
            let n = (body.len() as i64 + d).max(0);
            header(b"Content-Length", n.to_string().as_bytes());
            body
        }
        Framing::DuplicateLength(other) => {
            header(b"Content-Length", body.len().to_string().as_bytes());
            header(b"Content-Length", other.to_string().as_bytes());
            body
        }
        Framing::Chunked => {
            header(b"Transfer-Encoding", b"chunked");
            let mut c = Vec::new();
            for part in body.chunks(7) {
                c.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                c.extend_from_slice(part);
                c.extend_from_slice(b"\r\n");
            }
            c.extend_from_slice(b"0\r\n\r\n");
            c
        }
        Framing::BadChunks(size) => {
            header(b"Transfer-Encoding", b"chunked");
            let mut c = format!("{size}\r\n").into_bytes();
            c.extend_from_slice(&body);
            c.extend_from_slice(b"\r\n0\r\n\r\n");
            c
        }
        Framing::None => body,
    };
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&framed);
    match damage {
        Damage::None => {}
        Damage::Truncate(i) => out.truncate(i.index(out.len() + 1)),
        Damage::Flip(flips) => {
            for (i, b) in flips {
                let i = i.index(out.len());
                out[i] = b;
            }
        }
    }
    Raw(out)
}

// ---- one exchange -----------------------------------------------------------

/// What the gateway did with one request.
#[derive(Debug)]
enum RawReply {
    /// It answered these statuses (several if the bytes held several
    /// requests), the last error code if any, then closed.
    Statuses(Vec<u16>, Option<String>),
    /// It closed (or reset) without answering.
    Closed,
}

/// Writes `req`, half-closes so the gateway sees the end, and reads until the
/// gateway closes; `Err` if it has not within [`DEADLINE`].
fn exchange(addr: SocketAddr, req: &[u8]) -> Result<RawReply, String> {
    let start = Instant::now();
    let mut sock = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect: {e}"))?;
    sock.set_write_timeout(Some(DEADLINE)).unwrap();
    // The gateway may answer and close before reading everything (e.g. a
    // header parse error): a failed write is not a failure of the gateway.
    if sock.write_all(req).is_ok() {
        let _ = sock.shutdown(std::net::Shutdown::Write);
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = DEADLINE.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(format!(
                "no close within {DEADLINE:?}; got so far: {:?}",
                String::from_utf8_lossy(&got[..got.len().min(300)])
            ));
        }
        sock.set_read_timeout(Some(left)).unwrap();
        match sock.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // A reset after the answer (unread bytes at close) ends it too.
            Err(_) => break,
        }
    }
    let statuses = statuses(&got);
    Ok(if statuses.is_empty() {
        RawReply::Closed
    } else {
        RawReply::Statuses(statuses, error_code(&got))
    })
}

/// The status of every response in `bytes`: status lines start the buffer
/// or follow a CRLF (bodies are JSON or metrics text, never a raw CRLF then
/// `HTTP/1.`).
fn statuses(bytes: &[u8]) -> Vec<u16> {
    let mut out = Vec::new();
    let mut at = Some(0);
    while let Some(i) = at {
        let line = &bytes[i..];
        if line.starts_with(b"HTTP/1.")
            && let Some(code) = line.get(9..12)
            && let Some(code) = std::str::from_utf8(code).ok().and_then(|c| c.parse().ok())
        {
            out.push(code);
        }
        at = bytes[i..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|p| i + p + 2);
    }
    out
}

/// The last `"error":"<code>"` of the answers (hyper's own 400s have none).
fn error_code(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let (_, rest) = text.rsplit_once(r#""error":""#)?;
    Some(rest.split('"').next()?.to_owned())
}

// ---- the test ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_requests_never_get_5xx_a_panic_or_a_hang() {
    count_daemon_panics();
    let stack = TestStack::spawn().await;
    stack
        .create_event_json(serde_json::json!({
            "event_id": EVENT, "name": EVENT, "capacity": 1_000_000, "per_user_limit": 10
        }))
        .await;
    let addr: SocketAddr = stack.url.trim_start_matches("http://").parse().unwrap();
    let panics_before = DAEMON_PANICS.load(Ordering::SeqCst);

    let seen = Arc::new(Mutex::new(BTreeMap::<String, usize>::new()));
    let tally = seen.clone();
    let started = Instant::now();
    let result = tokio::task::spawn_blocking(move || {
        let mut runner = TestRunner::new(Config {
            cases: 1000,
            failure_persistence: None,
            // A hang costs the deadline per shrink step: keep shrinking short.
            max_shrink_time: 30_000,
            ..Config::default()
        });
        runner.run(&request(), |(Raw(bytes), well_formed)| {
            let answer = exchange(addr, &bytes).map_err(TestCaseError::fail)?;
            prop_assert!(
                !(well_formed && matches!(answer, RawReply::Closed)),
                "a well-formed purchase was closed on without an answer"
            );
            let key = match &answer {
                // The final answer (after any `100 Continue`).
                RawReply::Statuses(s, code) => match code {
                    Some(code) => format!("{} {code}", s[s.len() - 1]),
                    None => s[s.len() - 1].to_string(),
                },
                RawReply::Closed => "closed".into(),
            };
            *tally.lock().unwrap().entry(key).or_default() += 1;
            if let RawReply::Statuses(s, _) = &answer {
                prop_assert!(s.iter().all(|&c| c < 500), "answered {s:?}");
            }
            Ok(())
        })
    })
    .await
    .unwrap();
    let seen = seen.lock().unwrap().clone();
    eprintln!("fuzz: {seen:?} in {:.1} s", started.elapsed().as_secs_f64());
    if let Err(e) = result {
        panic!("{e}");
    }
    assert_eq!(
        DAEMON_PANICS.load(Ordering::SeqCst),
        panics_before,
        "the daemons panicked (see the output above)"
    );
    // The generator reached the handlers, not only the HTTP parser.
    for code in ["202", "400 invalid_request", "401", "404", "405"] {
        assert!(
            seen.keys().any(|k| k.starts_with(code)),
            "no {code} among {seen:?}"
        );
    }

    // Still serving.
    let health = stack
        .http
        .get(format!("{}/healthz", stack.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let a = stack.accepted(EVENT, "after-fuzz", 1, None).await;
    assert_eq!(
        stack.decided(&a).await.status,
        flashgrid_wire::Status::Confirmed
    );
}

// ---- what the fuzz found, kept as regular tests -------------------------------

/// Found by the fuzz: a client that half-closes its connection after sending
/// a reservation (as `nc -N` or some proxies do) got no answer at all, while
/// the reservation could still be queued. The gateway now finishes the
/// request and answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_half_closes_after_its_request_still_gets_its_answer() {
    let stack = TestStack::spawn().await;
    stack.create_event(EVENT, 10).await;
    let addr: SocketAddr = stack.url.trim_start_matches("http://").parse().unwrap();
    let body = format!(r#"{{"event_id":"{EVENT}","user_id":"half","quantity":1}}"#);
    let req = format!(
        "POST /reserve HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Idempotency-Key: half-1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = tokio::task::spawn_blocking(move || exchange(addr, req.as_bytes()))
        .await
        .unwrap()
        .unwrap();
    let RawReply::Statuses(s, _) = answer else {
        panic!("the gateway closed without answering")
    };
    assert_eq!(s, [202]);
    // The same purchase, retried normally, is the one reservation, decided.
    let a = stack.accepted(EVENT, "half", 1, Some("half-1")).await;
    assert_eq!(
        stack.decided(&a).await.status,
        flashgrid_wire::Status::Confirmed
    );
    assert_eq!(stack.db_counts(EVENT).await.0, 1);
}
