//! docs/API.md's examples, run against a live stack: every ```` ```sh ````
//! block in order, in one shell (so a variable one sets, the next uses),
//! and each answer compared with the ```` ```http ```` or ```` ```text ````
//! block right after it. `…` in an expected answer stands for anything
//! (ids, times); an HTTP answer must have its status line, the headers
//! shown, and a JSON body with the same keys and values.

use crate::helpers::{TOKEN, TestStack};
use serde_json::Value;
use std::time::Duration;

const API_MD: &str = include_str!("../../../docs/API.md");

/// A block of the page, and the line it starts on.
struct Block {
    lang: String,
    line: usize,
    text: String,
    /// Only blank lines between it and the block before.
    follows: bool,
}

fn blocks(md: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    let mut gap_is_blank = false;
    for (i, line) in md.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(lang)) => {
                open = Some(Block {
                    lang: lang.trim().to_owned(),
                    line: i + 1,
                    text: String::new(),
                    follows: gap_is_blank,
                });
            }
            (Some(_), Some(_)) => {
                out.push(open.take().expect("an open block"));
                gap_is_blank = true;
            }
            (Some(b), None) => {
                b.text.push_str(line);
                b.text.push('\n');
            }
            (None, None) => gap_is_blank &= line.trim().is_empty(),
        }
    }
    assert!(open.is_none(), "docs/API.md: a block is never closed");
    out
}

/// `pattern` with `…` standing for any text.
fn glob(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('…').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || s.len() < first.len() + last.len() || !s.ends_with(last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// Same keys, same values; an expected string may hold `…`.
fn same_json(expected: &Value, actual: &Value, at: &str) -> Result<(), String> {
    match (expected, actual) {
        (Value::String(e), Value::String(a)) if glob(e, a) => Ok(()),
        (Value::Object(e), Value::Object(a)) => {
            let (ek, ak): (Vec<_>, Vec<_>) = (e.keys().collect(), a.keys().collect());
            if ek != ak {
                return Err(format!("{at}: keys {ak:?}, the page shows {ek:?}"));
            }
            e.iter()
                .try_for_each(|(k, v)| same_json(v, &a[k], &format!("{at}.{k}")))
        }
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => e
            .iter()
            .zip(a)
            .enumerate()
            .try_for_each(|(i, (e, a))| same_json(e, a, &format!("{at}[{i}]"))),
        (e, a) if e == a => Ok(()),
        (e, a) => Err(format!("{at}: {a}, the page shows {e}")),
    }
}

fn same_http(expected: &str, actual: &str) -> Result<(), String> {
    let (e_head, e_body) = expected.split_once("\n\n").unwrap_or((expected, ""));
    let actual = actual.replace("\r\n", "\n");
    let (a_head, a_body) = actual.split_once("\n\n").unwrap_or((&actual, ""));
    let mut e_lines = e_head.lines();
    let mut a_lines = a_head.lines();
    let (e_status, a_status) = (e_lines.next(), a_lines.next());
    if e_status != a_status {
        return Err(format!("status {a_status:?}, the page shows {e_status:?}"));
    }
    let headers: Vec<(String, &str)> = a_lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim()))
        .collect();
    for line in e_lines {
        let (k, v) = line
            .split_once(':')
            .ok_or(format!("header line {line:?}"))?;
        let k = k.trim().to_ascii_lowercase();
        if !headers
            .iter()
            .any(|(hk, hv)| *hk == k && glob(v.trim(), hv))
        {
            return Err(format!("no header {line:?} in {headers:?}"));
        }
    }
    if e_body.trim().is_empty() {
        return Ok(());
    }
    let e: Value = serde_json::from_str(e_body.trim())
        .map_err(|err| format!("the page's body is not JSON: {err}"))?;
    let a: Value = serde_json::from_str(a_body.trim())
        .map_err(|err| format!("the answer's body is not JSON ({err}): {a_body}"))?;
    same_json(&e, &a, "body")
}

fn same_text(expected: &str, actual: &str) -> Result<(), String> {
    let (e, a): (Vec<_>, Vec<_>) = (
        expected.trim_end().lines().collect(),
        actual.trim_end().lines().collect(),
    );
    if e.len() == a.len()
        && e.iter()
            .zip(&a)
            .all(|(e, a)| glob(e.trim_end(), a.trim_end()))
    {
        Ok(())
    } else {
        Err(format!("printed {a:?}, the page shows {e:?}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_of_the_api_guide_answer_what_it_shows() {
    let all = blocks(API_MD);
    // Each shell block, and the answer shown right after it (if any).
    let mut examples: Vec<(&Block, Option<&Block>)> = Vec::new();
    for (i, b) in all.iter().enumerate() {
        if b.lang == "sh" {
            let answer = all
                .get(i + 1)
                .filter(|n| n.follows && (n.lang == "http" || n.lang == "text"));
            examples.push((b, answer));
        }
    }
    assert!(examples.len() >= 10, "{} examples", examples.len());
    assert!(
        examples.iter().all(|(_, a)| a.is_some()),
        "every example shows its answer"
    );

    let stack = TestStack::spawn().await;
    let mut script = String::new();
    for (n, (b, _)) in examples.iter().enumerate() {
        script.push_str(&format!("printf '\\n@@@ {n} @@@\\n'\n{}", b.text));
    }
    let run = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .env("FLASHGRID_URL", &stack.url)
        .env("FLASHGRID_ADMIN_TOKEN", TOKEN)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("the examples finish within 90 s")
        .expect("run bash (the examples also need curl and jq)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the examples failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Vec<&str> = stdout.split("\n@@@ ").skip(1).collect();
    assert_eq!(printed.len(), examples.len(), "{stdout}");
    let mut wrong = Vec::new();
    for ((b, answer), printed) in examples.iter().zip(printed) {
        let printed = printed.split_once(" @@@\n").map_or("", |(_, p)| p);
        let answer = answer.expect("checked above");
        let verdict = match answer.lang.as_str() {
            "http" => same_http(&answer.text, printed),
            _ => same_text(&answer.text, printed),
        };
        if let Err(e) = verdict {
            wrong.push(format!("docs/API.md:{}: {e}", b.line));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_matching_of_answers_can_fail() {
    assert!(glob(
        "/events/e/reservations/…",
        "/events/e/reservations/abc"
    ));
    assert!(!glob(
        "/events/e/reservations/…",
        "/events/f/reservations/abc"
    ));
    assert!(glob("a…b…c", "a-x-b-y-c") && !glob("a…b…c", "a-x-c-y-b"));
    let e: Value = serde_json::json!({"status": "held", "id": "…"});
    assert!(same_json(&e, &serde_json::json!({"status": "held", "id": "x"}), "b").is_ok());
    assert!(
        same_json(
            &e,
            &serde_json::json!({"status": "pending", "id": "x"}),
            "b"
        )
        .is_err()
    );
    assert!(same_json(&e, &serde_json::json!({"status": "held"}), "b").is_err());
    let page = "HTTP/1.1 200 OK\ncontent-type: application/json\n\n{\"a\":1}\n";
    let ok = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ndate: x\r\n\r\n{\"a\":1}";
    assert!(same_http(page, ok).is_ok());
    assert!(same_http(page, &ok.replace("200 OK", "404 Not Found")).is_err());
    assert!(same_http(page, &ok.replace("{\"a\":1}", "{\"a\":2}")).is_err());
    assert!(same_http(page, &ok.replace("content-type", "x-type")).is_err());
}
