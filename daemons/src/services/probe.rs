//! Whether PostgreSQL and Redis answer right now: `/readyz`, and the
//! worker's test of a batch that keeps failing (a refusal, or a service away?).

use crate::store::Store;
use sqlx::PgPool;
use std::time::Duration;

/// Which of the two answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reachable {
    pub postgres: bool,
    pub redis: bool,
}

impl Reachable {
    pub fn both(self) -> bool {
        self.postgres && self.redis
    }
}

/// Asks PostgreSQL (`SELECT 1`) and Redis (`PING`) at once, each within `limit`.
pub async fn answering(pool: &PgPool, redis: &Store, limit: Duration) -> Reachable {
    let mut conn = redis.clone();
    let ping = redis::cmd("PING");
    let (pg, rd) = tokio::join!(
        tokio::time::timeout(limit, sqlx::query("SELECT 1").execute(pool)),
        tokio::time::timeout(limit, ping.query_async::<()>(&mut conn)),
    );
    Reachable {
        postgres: matches!(pg, Ok(Ok(_))),
        redis: matches!(rd, Ok(Ok(()))),
    }
}
