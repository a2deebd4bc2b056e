//! The sale window: outside `opens_at`..`closes_at` a reserve is `409 sale_closed`.

use crate::helpers::TestStack;
use chrono::{Duration, Utc};
use flashgrid_wire::ErrorBody;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserves_outside_the_window_are_sale_closed() {
    let stack = TestStack::spawn().await;
    let now = Utc::now();
    stack
        .create_event_json(serde_json::json!({
            "event_id": "later", "name": "later", "capacity": 5,
            "opens_at": (now + Duration::hours(1)).to_rfc3339(),
        }))
        .await;
    stack
        .create_event_json(serde_json::json!({
            "event_id": "over", "name": "over", "capacity": 5,
            "opens_at": (now - Duration::hours(2)).to_rfc3339(),
            "closes_at": (now - Duration::hours(1)).to_rfc3339(),
        }))
        .await;
    stack
        .create_event_json(serde_json::json!({
            "event_id": "now", "name": "now", "capacity": 5,
            "opens_at": (now - Duration::hours(1)).to_rfc3339(),
            "closes_at": (now + Duration::hours(1)).to_rfc3339(),
        }))
        .await;
    for event in ["later", "over"] {
        let r = stack.reserve(event, "u", 1, None).await.unwrap();
        assert_eq!(r.status(), 409, "{event}");
        let e: ErrorBody = r.json().await.unwrap();
        assert_eq!(e.error, "sale_closed", "{event}: {}", e.message);
    }
    assert_eq!(
        stack.reserve("now", "u", 1, None).await.unwrap().status(),
        202
    );
    let v = stack.event("later").await;
    assert!(v.opens_at.is_some() && v.closes_at.is_none());
}
