//! Services going away while the worker runs never kill it: it pauses
//! without acking and reconnects by itself, and the sale ends exact.

use crate::helpers::{Proxy, TestStack, eventually};
use flashgrid_wire::{Accepted, Status};
use std::sync::Mutex;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_survives_each_service_cut_in_turn() {
    let stack = TestStack::empty().await;
    stack.start_gateway().await;
    stack.create_event("cuts", 1_000).await;
    let (amqp, redis, pg) = (
        Proxy::start(5672).await,
        Proxy::start(6379).await,
        Proxy::start(5432).await,
    );
    let mut cfg = stack.worker_config();
    cfg.services.amqp_url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", amqp.port);
    cfg.services.redis_url = format!("redis://127.0.0.1:{}", redis.port);
    cfg.services.database_url = stack.db_url.replace(":5432/", &format!(":{}/", pg.port));
    stack.start_worker_with(cfg).await;

    let accepted = Mutex::new(Vec::<Accepted>::new());
    let buyers = async {
        // 100 buyers a second for 12 s: the sale is still selling through
        // all three cuts.
        let futs = (0..1_200u64).map(|i| {
            let (stack, accepted) = (&stack, &accepted);
            async move {
                tokio::time::sleep(Duration::from_millis(10 * i)).await;
                let r = stack
                    .reserve("cuts", &format!("b{i}"), 1, None)
                    .await
                    .unwrap();
                match r.status().as_u16() {
                    202 => {
                        let a: Accepted = r.json().await.unwrap();
                        accepted.lock().unwrap().push(a);
                    }
                    409 => {} // sold out
                    s => panic!("the gateway's services were never cut, yet it answered {s}"),
                }
            }
        });
        futures::future::join_all(futs).await;
    };
    let sold = || async { stack.db_counts("cuts").await.2 };
    let faults = async {
        let mut at_cut = 0;
        for (name, proxy) in [("RabbitMQ", &amqp), ("Redis", &redis), ("PostgreSQL", &pg)] {
            // Cut only a worker that is committing: after the last cut it
            // must have come back, and the sale must still be open.
            let before = at_cut;
            at_cut = eventually(
                &format!("the worker to commit again before the {name} cut"),
                Duration::from_secs(30),
                || async { Some(sold().await).filter(|&n| n > before) },
            )
            .await;
            assert!(at_cut < 1_000, "the {name} cut came after the sell-out");
            proxy.cut();
            tokio::time::sleep(Duration::from_millis(1200)).await;
            proxy.restore();
        }
        // And it works after the last restore too.
        eventually(
            "the worker to commit after the last restore",
            Duration::from_secs(30),
            || async { Some(sold().await).filter(|&n| n > at_cut) },
        )
        .await;
    };
    tokio::join!(buyers, faults);
    let accepted = accepted.into_inner().unwrap();
    let decisions = futures::future::join_all(accepted.iter().map(|a| stack.decided(a))).await;
    let confirmed = decisions
        .iter()
        .filter(|d| d.status == Status::Confirmed)
        .count();
    assert_eq!(confirmed, 1_000);
    eventually(
        "the database to hold exactly the capacity",
        Duration::from_secs(30),
        || async { (stack.db_counts("cuts").await == (1_000, 1_000, 1_000)).then_some(()) },
    )
    .await;
}
