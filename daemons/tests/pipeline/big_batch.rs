//! A batch bigger than one decide call takes (`DECIDE_CHUNK`: a script
//! blocks Redis while it runs, so a worker decides a big batch in several
//! calls) is decided in the order it was taken and sells exactly the stock:
//! the first buyers win, a buyer's second purchase in a later call is
//! refused by what an earlier call counted, and PostgreSQL holds the
//! winners and nobody else.

use crate::helpers::TestStack;
use flashgrid::inventory::Inventory;
use flashgrid::queue::Queued;
use flashgrid::worker::Decider;
use flashgrid::worker::batch::DECIDE_CHUNK;
use flashgrid_wire::{EventId, Quantity, ReservationId, UserId};

const EVENT: &str = "big-batch";

/// Where buyer 0's second purchase is in the batch: in the second call.
const AGAIN: usize = DECIDE_CHUNK + 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_several_decide_calls_sells_the_first_buyers_and_no_more() {
    let stack = TestStack::empty().await;
    stack.start_gateway().await;
    // More seats than one call decides, fewer than the batch asks for.
    let capacity = DECIDE_CHUNK + DECIDE_CHUNK / 2;
    stack
        .create_event_json(serde_json::json!({
            "event_id": EVENT, "name": EVENT, "capacity": capacity, "per_user_limit": 1,
        }))
        .await;
    let (_, redis) = flashgrid::services::redis(&stack.services()).await.unwrap();
    let decider = Decider::new(stack.pool.clone(), Inventory::new(redis, stack.namespace()));

    let buy = |user: &str| Queued {
        id: ReservationId::random(),
        event: EventId::parse(EVENT).unwrap(),
        user: UserId::parse(user).unwrap(),
        qty: Quantity::ONE,
        at: chrono::Utc::now(),
        sale: 1,
    };
    // Buyer 0 comes back in the second call, while seats are still left:
    // refused only if the first call's confirmation is counted.
    let mut items: Vec<Queued> = (0..DECIDE_CHUNK * 2)
        .map(|i| buy(&format!("buyer-{i}")))
        .collect();
    items.insert(AGAIN, buy("buyer-0"));
    items.extend((DECIDE_CHUNK * 2..DECIDE_CHUNK * 3).map(|i| buy(&format!("buyer-{i}"))));

    let report = decider.process(&items).await.unwrap();
    assert_eq!(report.confirmed as usize, capacity, "{report:?}");
    assert_eq!(report.rejected as usize, items.len() - capacity);

    let mut held: Vec<uuid::Uuid> = sqlx::query_scalar(
        "SELECT reservation_id FROM reservations WHERE event_id = $1 ORDER BY reservation_id",
    )
    .bind(EVENT)
    .fetch_all(&stack.pool)
    .await
    .unwrap();
    // The first `capacity` distinct buyers in the order taken, the second
    // purchase of buyer 0 skipped.
    let mut first: Vec<uuid::Uuid> = items
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != AGAIN)
        .take(capacity)
        .map(|(_, q)| q.id.0)
        .collect();
    held.sort();
    first.sort();
    assert_eq!(held, first, "the winners are the first buyers taken");
    let counts = stack.db_counts(EVENT).await;
    assert_eq!(counts, (capacity as i64, capacity as i64, capacity as i32));
}
