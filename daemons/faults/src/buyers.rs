//! Buyers that behave as real clients do: one `Idempotency-Key` per purchase,
//! retried with that same key on `503`, `429` and transport errors (honouring
//! `Retry-After`), then the status URL followed until the sale is decided.
//! With several gateways, buyer `i` buys through gateway `i % n` and reads
//! its status through the next one ([`Plan::read_through`]): a decision must
//! be readable through any gateway.

use bytes::Bytes;
use flashgrid::backoff::Backoff;
use flashgrid_wire::{
    Accepted, EventId, IDEMPOTENCY_KEY_HEADER, ReservationId, ReservationView, Status, UserId,
};
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A pooled HTTP/1.1 client, as a buyer's app would hold.
pub type Http = Client<HttpConnector, Full<Bytes>>;

/// No answer within this long counts as a transport error (and is retried).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest `Retry-After` a buyer honours.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);

pub fn client() -> Http {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// How the crowd buys.
#[derive(Debug, Clone)]
pub struct Plan {
    /// `http://host:port` of each gateway.
    pub gateways: Vec<String>,
    pub event: EventId,
    /// Copies of each purchase sent at once with the same key (a retry storm: 3).
    pub copies: usize,
    /// Whether one purchase in ten is a buyer's second try ([`user_of`]).
    pub second_tries: bool,
    /// Buyers stop retrying a purchase after this.
    pub purchase_deadline: Instant,
    /// Buyers stop following a status URL after this: a `202` still pending
    /// then is lost.
    pub decide_deadline: Instant,
}

impl Plan {
    /// The gateway buyer `i` buys through (and keeps retrying on, as a
    /// client with a fixed URL would).
    pub fn buy_through(&self, i: usize) -> &str {
        &self.gateways[i % self.gateways.len()]
    }

    /// The gateway buyer `i` reads its status URL through: the next one,
    /// another than it bought through whenever there are two or more.
    pub fn read_through(&self, i: usize) -> &str {
        &self.gateways[(i + 1) % self.gateways.len()]
    }
}

/// The last answer a purchase got to its `POST /reserve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Accepted,
    SoldOut,
    Closed,
    /// A 4xx other than 409 and 429: the buyer gives up (a bug in the buyer
    /// or the gateway; reported).
    Refused(u16),
    /// Still 503/429/transport errors at the purchase deadline.
    GaveUp,
}

/// What the buyer met on the way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attempts {
    pub attempts: u64,
    pub unavailable: u64,
    pub rate_limited: u64,
    pub transport: u64,
    /// 5xx other than 503: never allowed.
    pub server_errors: u64,
    /// Reads of a status URL answered `404` (after a `202`, the reservation
    /// must be known: counted, and a purchase still unknown at the end is lost).
    pub status_not_found: u64,
    /// Reads of a status URL answered a 4xx other than 404, or a `200`
    /// whose body is no reservation: never allowed.
    pub status_refused: u64,
}

impl Attempts {
    pub fn add(&mut self, o: &Attempts) {
        self.attempts += o.attempts;
        self.unavailable += o.unavailable;
        self.rate_limited += o.rate_limited;
        self.transport += o.transport;
        self.server_errors += o.server_errors;
        self.status_not_found += o.status_not_found;
        self.status_refused += o.status_refused;
    }
}

/// One purchase, start to end.
#[derive(Debug, Clone)]
pub struct Journey {
    pub user: UserId,
    pub key: String,
    /// The most informative of `answers`: a 202 over a 409 over giving up.
    pub answer: Answer,
    /// The last answer of each copy sent (three in a retry storm): copies of
    /// one purchase must all be told the same.
    pub answers: Vec<Answer>,
    /// Every reservation id a `202` gave for this key (more than one is a bug).
    pub ids: BTreeSet<ReservationId>,
    /// The status URL (a signed receipt) each of `ids` came with.
    pub status_urls: BTreeMap<ReservationId, String>,
    /// The decision the status URL gave, if one came before the deadline.
    pub decided: Option<ReservationView>,
    pub tally: Attempts,
}

impl Journey {
    /// The id the gateway must give this purchase.
    pub fn expected_id(&self, event: &EventId) -> ReservationId {
        ReservationId::idempotent(event, &self.user, &self.key)
    }
}

/// One purchase in ten is a buyer's second try (with a new key), a
/// millisecond or so after the first: with a limit of one seat a user, a
/// decide that ignores the limit sells them two.
pub fn user_of(i: usize) -> UserId {
    let buyer = if i % 10 == 9 { i - 1 } else { i };
    UserId::parse(&format!("buyer-{buyer}")).expect("a valid user id")
}

/// `n` purchases arriving evenly over `spread`, each on a task of its own.
pub async fn crowd(http: &Http, plan: Arc<Plan>, n: usize, spread: Duration) -> Vec<Journey> {
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (http, plan) = (http.clone(), plan.clone());
        let at = start + spread.mul_f64(i as f64 / n.max(1) as f64);
        tasks.spawn(async move {
            tokio::time::sleep_until(at).await;
            let user = if plan.second_tries {
                user_of(i)
            } else {
                UserId::parse(&format!("buyer-{i}")).expect("a valid user id")
            };
            let key = uuid::Uuid::new_v4().to_string();
            (i, buy(&http, &plan, i, user, key).await)
        });
    }
    let mut journeys: Vec<Option<Journey>> = vec![None; n];
    while let Some(r) = tasks.join_next().await {
        let (i, j) = r.expect("a buyer task panicked");
        journeys[i] = Some(j);
    }
    journeys
        .into_iter()
        .map(|j| j.expect("every buyer"))
        .collect()
}

/// Buyer `i`'s purchase: `plan.copies` request loops at once with the same
/// key, then the status URL of each id they were given.
pub async fn buy(http: &Http, plan: &Plan, i: usize, user: UserId, key: String) -> Journey {
    let body = Bytes::from(
        serde_json::to_vec(&serde_json::json!({
            "event_id": plan.event, "user_id": user, "quantity": 1
        }))
        .expect("a JSON body"),
    );
    let via = plan.buy_through(i);
    let loops = (0..plan.copies.max(1)).map(|_| purchase(http, plan, via, &key, body.clone()));
    let mut tally = Attempts::default();
    let mut answer = Answer::GaveUp;
    let mut answers = Vec::with_capacity(plan.copies);
    let mut accepted = Vec::new();
    for (a, acc, t) in futures::future::join_all(loops).await {
        tally.add(&t);
        answers.push(a);
        // The most informative answer wins: a 202 over a 409 over giving up.
        answer = match (answer, a) {
            (Answer::Accepted, _) | (_, Answer::Accepted) => Answer::Accepted,
            (Answer::GaveUp, other) => other,
            (kept, _) => kept,
        };
        accepted.extend(acc);
    }
    let ids: BTreeSet<ReservationId> = accepted.iter().map(|a| a.reservation_id).collect();
    let mut decided = None;
    let mut status_urls = BTreeMap::new();
    for a in accepted {
        if let Entry::Vacant(slot) = status_urls.entry(a.reservation_id) {
            let url = format!("{}{}", plan.read_through(i), a.status_url);
            let d = follow(http, plan, &url, &mut tally).await;
            decided = decided.or(d);
            slot.insert(a.status_url);
        }
    }
    Journey {
        user,
        key,
        answer,
        answers,
        ids,
        status_urls,
        decided,
        tally,
    }
}

/// Posts the purchase until it gets an answer that is not "try again".
async fn purchase(
    http: &Http,
    plan: &Plan,
    gateway: &str,
    key: &str,
    body: Bytes,
) -> (Answer, Option<Accepted>, Attempts) {
    let mut tally = Attempts::default();
    let mut backoff = buyer_backoff();
    let uri = format!("{gateway}/reserve");
    while Instant::now() < plan.purchase_deadline {
        tally.attempts += 1;
        let req = Request::post(&uri)
            .header(header::CONTENT_TYPE, "application/json")
            .header(IDEMPOTENCY_KEY_HEADER, key)
            .body(Full::new(body.clone()))
            .expect("a well-formed request");
        let wait = match send(http, req).await {
            Ok((StatusCode::ACCEPTED, _, bytes)) => match serde_json::from_slice(&bytes) {
                Ok(a) => return (Answer::Accepted, Some(a), tally),
                Err(_) => {
                    tally.server_errors += 1;
                    backoff.next_delay()
                }
            },
            Ok((StatusCode::CONFLICT, _, bytes)) => {
                let code = serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_owned));
                let answer = match code.as_deref() {
                    Some("sold_out") => Answer::SoldOut,
                    Some("sale_closed") => Answer::Closed,
                    _ => Answer::Refused(409),
                };
                return (answer, None, tally);
            }
            Ok((s, retry_after, _))
                if s == StatusCode::SERVICE_UNAVAILABLE || s == StatusCode::TOO_MANY_REQUESTS =>
            {
                if s == StatusCode::TOO_MANY_REQUESTS {
                    tally.rate_limited += 1;
                } else {
                    tally.unavailable += 1;
                }
                retry_after.unwrap_or_else(|| backoff.next_delay())
            }
            Ok((s, _, _)) if s.is_server_error() => {
                tally.server_errors += 1;
                backoff.next_delay()
            }
            Ok((s, _, _)) => return (Answer::Refused(s.as_u16()), None, tally),
            Err(_) => {
                tally.transport += 1;
                backoff.next_delay()
            }
        };
        tokio::time::sleep(jitter(wait)).await;
    }
    (Answer::GaveUp, None, tally)
}

/// Long-polls a status URL (`http://host:port/events/…`) until it says
/// confirmed or rejected.
async fn follow(
    http: &Http,
    plan: &Plan,
    status_url: &str,
    tally: &mut Attempts,
) -> Option<ReservationView> {
    let uri = format!("{status_url}?wait_ms=2000");
    let mut backoff = buyer_backoff();
    while Instant::now() < plan.decide_deadline {
        let req = Request::get(&uri)
            .body(Full::default())
            .expect("a well-formed request");
        match send(http, req).await {
            Ok((StatusCode::OK, _, bytes)) => {
                match serde_json::from_slice::<ReservationView>(&bytes) {
                    Ok(v) if v.status != Status::Pending => return Some(v),
                    Ok(_) => {
                        backoff.reset();
                        continue; // still pending: the long-poll already waited
                    }
                    // Counted, and waited on like an error: never a busy loop.
                    Err(_) => tally.status_refused += 1,
                }
            }
            Ok((StatusCode::NOT_FOUND, _, _)) => tally.status_not_found += 1,
            Ok((s, _, _)) if s.is_client_error() => tally.status_refused += 1,
            Ok((s, _, _)) if s.is_server_error() && s != StatusCode::SERVICE_UNAVAILABLE => {
                tally.server_errors += 1;
            }
            // 503: try again shortly.
            Ok(_) => {}
            Err(_) => tally.transport += 1,
        }
        tokio::time::sleep(jitter(backoff.next_delay().min(Duration::from_millis(500)))).await;
    }
    None
}

/// Sends a request; the status, `Retry-After` and body, or what went wrong
/// on a transport error or timeout.
pub(crate) async fn send(
    http: &Http,
    req: Request<Full<Bytes>>,
) -> Result<(StatusCode, Option<Duration>, Bytes), String> {
    let exchange = async {
        let resp = http.request(req).await.map_err(|e| format!("{e:?}"))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the body: {e}"))?
            .to_bytes();
        Ok((status, retry_after, body))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {REQUEST_TIMEOUT:?}")))
}

/// A buyer's app waits 50 ms, doubling up to 1 s, between retries (the
/// daemons' own backoff; [`jitter`] spreads a crowd's retries).
fn buyer_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(50), Duration::from_secs(1))
}

/// Up to a quarter more, so that retries of a crowd spread out.
fn jitter(d: Duration) -> Duration {
    d + d.mul_f64(fastrand::f64() / 4.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_purchase_in_ten_is_a_second_try() {
        let users: Vec<String> = (0..20).map(|i| user_of(i).as_str().to_owned()).collect();
        let distinct: std::collections::HashSet<&String> = users.iter().collect();
        assert_eq!(distinct.len(), 18);
        assert_eq!(users[8], users[9]);
        assert_eq!(users[18], users[19]);
        assert_ne!(users[9], users[10]);
    }

    #[test]
    fn with_two_gateways_each_buyer_reads_through_the_other() {
        let plan = |n: usize| Plan {
            gateways: (0..n).map(|g| format!("http://g{g}")).collect(),
            event: EventId::parse("e").unwrap(),
            copies: 1,
            second_tries: true,
            purchase_deadline: Instant::now(),
            decide_deadline: Instant::now(),
        };
        let two = plan(2);
        for i in 0..10 {
            assert_ne!(two.buy_through(i), two.read_through(i), "buyer {i}");
        }
        assert_eq!(
            (two.buy_through(0), two.buy_through(1)),
            ("http://g0", "http://g1")
        );
        let one = plan(1);
        assert_eq!(one.buy_through(3), one.read_through(3));
    }

    #[test]
    fn backoff_doubles_up_to_a_second() {
        let mut b = buyer_backoff();
        let seq: Vec<u64> = (0..7).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(seq, [50, 100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn jitter_adds_at_most_a_quarter() {
        for _ in 0..1000 {
            let j = jitter(Duration::from_millis(400));
            assert!(j >= Duration::from_millis(400) && j <= Duration::from_millis(500));
        }
    }
}
