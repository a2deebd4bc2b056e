//! The published contract against the live gateway: `/openapi.json` is the
//! committed document, every documented path refuses other methods with
//! `405` and `Allow`, and the bodies the document allows are the bodies the
//! gateway takes (JSON objects only; `3.0` is a whole number; an optional
//! body may be `null`). The independent check is `just api-check`.

use crate::helpers::{TOKEN, TestStack};
use flashgrid_wire::{Accepted, ErrorBody, Status};
use reqwest::{Method, StatusCode};

const COMMITTED: &str = include_str!("../../../docs/openapi.json");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_the_committed_document() {
    let stack = TestStack::spawn().await;
    let r = stack.get("/openapi.json").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert!(
        r.text().await.unwrap() == COMMITTED,
        "GET /openapi.json differs from docs/openapi.json: run `just openapi`"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_path_refuses_other_methods_with_allow() {
    let stack = TestStack::spawn().await;
    let doc: serde_json::Value = serde_json::from_str(COMMITTED).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 13, "{} paths", paths.len());
    for (template, item) in paths {
        let path = template
            .replace("{event_id}", "contract")
            .replace("{reservation}", "x");
        let documented: Vec<String> = item
            .as_object()
            .unwrap()
            .keys()
            .map(|m| m.to_ascii_uppercase())
            .collect();
        assert_eq!(documented.len(), 1, "{template}: one method a path");
        // HEAD is GET without the body.
        let allow = match documented[0].as_str() {
            "GET" => "GET, HEAD",
            m => m,
        };
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"] {
            if allow.split(", ").any(|m| m == method) {
                continue;
            }
            let r = stack
                .http
                .request(
                    Method::from_bytes(method.as_bytes()).unwrap(),
                    format!("{}{path}", stack.url),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(
                r.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            assert_eq!(r.headers()["allow"], allow, "{method} {path}");
            if method != "HEAD" {
                let e: ErrorBody = r.json().await.unwrap();
                assert_eq!(e.error, "method_not_allowed");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_is_get_without_the_body() {
    let stack = TestStack::spawn().await;
    let r = stack
        .http
        .head(format!("{}/healthz", stack.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert!(r.bytes().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_json_objects_whole_numbers_may_end_in_zero_and_null_is_no_body() {
    let stack = TestStack::spawn().await;
    stack.create_event("contract", 5).await;
    let post = |path: &str, body: &'static str, admin: bool| {
        let mut req = stack
            .http
            .post(format!("{}{path}", stack.url))
            .header("content-type", "application/json")
            .body(body);
        if admin {
            req = req.bearer_auth(TOKEN);
        }
        req.send()
    };
    // serde would read each of these arrays as the struct, field by field.
    for (path, body, admin) in [
        ("/reserve", r#"["contract","u",1]"#, false),
        ("/admin/events", r#"["named",3]"#, true),
        ("/admin/events/contract/reset", "[]", true),
        ("/reserve", r#""contract""#, false),
        ("/reserve", "\u{feff}{}", false),
    ] {
        let r = post(path, body, admin).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path} {body}");
        let e: ErrorBody = r.json().await.unwrap();
        assert!(
            e.message.contains("must be a JSON object") || e.message.contains("byte order mark"),
            "{}",
            e.message
        );
    }
    assert_eq!(stack.event("contract").await.confirmed, 0);
    assert_eq!(
        stack.db_counts("contract").await.0,
        0,
        "no reservation came of the array"
    );

    let r = post(
        "/reserve",
        r#"{"event_id":"contract","user_id":"u","quantity":2.0}"#,
        false,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let won: Accepted = r.json().await.unwrap();
    let decided = stack.decided(&won).await;
    assert_eq!(
        (decided.status, decided.quantity.get()),
        (Status::Confirmed, 2)
    );
    for refused in [
        r#"{"event_id":"contract","user_id":"u","quantity":1.5}"#,
        // A misspelt field would otherwise reserve one seat.
        r#"{"event_id":"contract","user_id":"u","quantiy":2}"#,
    ] {
        let r = post("/reserve", refused, false).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{refused}");
    }

    // `null` is no body: a reset with the defaults (here refused for the
    // confirmed seats, as an empty body would be).
    let r = post("/admin/events/contract/reset", "null", true)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let e: ErrorBody = r.json().await.unwrap();
    assert_eq!(e.error, "confirmation_required");
}
