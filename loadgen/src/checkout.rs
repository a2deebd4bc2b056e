//! A hold sale's buyers after they won (docs/HOLDS.md): each winner of the
//! crowd purchases after a think time or abandons (lets the hold expire, or
//! cancels it), and late buyers keep coming until every seat given back is
//! sold again. What each of them was told is kept, so that the verdict can
//! hold the event's counts against it.

use crate::client::{self, Connection};
use crate::spec::Target;
use crate::verify::{self, Decisions};
use chrono::{DateTime, Utc};
use flashgrid_wire::{Accepted, EventId, EventView, Quantity, ReservationView, Status};
use http::Method;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

/// Connections that follow the crowd's `202`s to their decisions.
const FOLLOWERS: usize = 256;
/// Winners purchasing, cancelling or watching their hold at once, each on a
/// connection of its own.
const SETTLERS: usize = 512;
/// Connections the late buyers share.
const LATE_CONNECTIONS: usize = 16;
/// How often a watcher reads a hold that should have expired.
const EXPIRY_POLL: Duration = Duration::from_millis(100);

/// What the winners of a hold sale do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// The share of the winners that purchase (`--checkout`, 0 to 1).
    pub share: f64,
    /// What the others do (`--abandon`).
    pub abandon: Abandon,
    /// How long a winner thinks before purchasing or cancelling.
    pub think: Duration,
    /// Late buyers per second once the crowd is done (`--resale-rate`).
    pub late_rate: f64,
}

/// How a winner who does not purchase walks away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Abandon {
    /// Lets the hold run out.
    Expire,
    /// Gives it back with `POST …/cancel`.
    Cancel,
}

impl Plan {
    /// Whether the `k`-th winner (from 0) purchases: exactly `share` of
    /// any prefix of the winners, rounded down, do.
    pub fn buys(&self, k: u64) -> bool {
        let share = self.share.clamp(0.0, 1.0);
        ((k + 1) as f64 * share).floor() > (k as f64 * share).floor()
    }
}

/// What the winners and the late buyers did, in seats unless named.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Checkout {
    /// Holds the crowd won.
    pub won: u64,
    /// Seats the crowd's winners purchased (answered `200` and read
    /// `purchased` afterwards).
    pub purchased: u64,
    /// Purchases refused because the hold had expired first (`409
    /// hold_expired`): their seats went back on sale.
    pub too_late: u64,
    /// Seats of the winners who walked away.
    pub abandoned: u64,
    /// Of those and the late purchases, seats given back by expiry.
    pub expired: u64,
    /// Seats given back by a cancel.
    pub cancelled: u64,
    /// The last `expires_at` of the holds that expired.
    pub last_expiry: Option<DateTime<Utc>>,
    /// When the last late buyer's purchase was answered.
    pub last_resale: Option<DateTime<Utc>>,
    /// Late buyers' requests, and what they won and purchased.
    pub late_requests: u64,
    pub late_won: u64,
    pub resold: u64,
    /// Late buyers' `202`s never decided.
    pub late_lost: u64,
    /// Holds still live when the run gave up on them.
    pub unsettled: u64,
    /// The late buyers stopped at the deadline with seats left or holds
    /// live.
    pub resale_timed_out: bool,
    /// Answers that contradict each other (a purchase answered `200` that
    /// does not read `purchased`, an abandoned hold that reads purchased…).
    pub anomalies: Vec<String>,
    /// When each hold took its seats and (at the earliest) gave them back.
    #[serde(skip)]
    pub holdings: Vec<Holding>,
}

/// The seats one hold took, from its commit until it gave them back (at
/// the earliest: `expires_at`, or when the cancel was sent) or for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holding {
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
    pub seats: u64,
}

/// The most seats the holds took at once. A hold's interval starts at its
/// commit (`expires_at` less the hold time) and ends no later than the
/// release: a seat sold again is decided after the release committed, so
/// two holds of one seat never overlap in a correct sale.
pub fn peak(holdings: &[Holding]) -> u64 {
    let mut steps: Vec<(DateTime<Utc>, i64)> = Vec::with_capacity(holdings.len() * 2);
    for h in holdings {
        steps.push((h.start, h.seats as i64));
        if let Some(end) = h.end {
            steps.push((end, -(h.seats as i64)));
        }
    }
    // At one instant, give back before taking.
    steps.sort_by_key(|&(t, d)| (t, d));
    let (mut now, mut most) = (0i64, 0i64);
    for (_, d) in steps {
        now += d;
        most = most.max(now);
    }
    most.max(0) as u64
}

impl Checkout {
    /// Adds what other buyers did.
    pub fn merge(&mut self, o: Checkout) {
        self.won += o.won;
        self.purchased += o.purchased;
        self.too_late += o.too_late;
        self.abandoned += o.abandoned;
        self.expired += o.expired;
        self.cancelled += o.cancelled;
        self.last_expiry = self.last_expiry.max(o.last_expiry);
        self.last_resale = self.last_resale.max(o.last_resale);
        self.late_requests += o.late_requests;
        self.late_won += o.late_won;
        self.resold += o.resold;
        self.late_lost += o.late_lost;
        self.unsettled += o.unsettled;
        self.resale_timed_out |= o.resale_timed_out;
        self.anomalies.extend(o.anomalies);
        self.holdings.extend(o.holdings);
    }

    /// Seats given back, by expiry or cancel.
    pub fn released(&self) -> u64 {
        self.expired + self.cancelled
    }

    /// A hold's seats, taken at `start` (none known: nothing recorded) and
    /// given back at `end` at the earliest (`None`: for good).
    fn held(&mut self, start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>, seats: u64) {
        if let Some(start) = start {
            self.holdings.push(Holding { start, end, seats });
        }
    }

    /// A purchase or cancel answered neither as asked nor `hold_expired`.
    fn unexpected(&mut self, a: &Accepted, what: &str, answer: Result<(u16, String), String>) {
        self.anomalies.push(match answer {
            Ok((status, code)) => {
                format!("{}: the {what} answered {status} {code}", a.reservation_id)
            }
            Err(e) => format!("{}: the {what} failed: {e}", a.reservation_id),
        });
    }

    /// How long after the last hold expired its seats were sold again.
    pub fn resold_after(&self) -> Option<Duration> {
        let (e, r) = (self.last_expiry?, self.last_resale?);
        Some(r.signed_duration_since(e).to_std().unwrap_or_default())
    }

    /// Seats purchased, by the crowd and the late buyers.
    pub fn all_purchased(&self) -> u64 {
        self.purchased + self.resold
    }
}

/// The crowd's winners at work: feed it every `202` as it comes.
#[derive(Debug)]
pub struct Buyers {
    tx: mpsc::UnboundedSender<Accepted>,
    tasks: JoinSet<(Decisions, Checkout)>,
    ctx: Arc<Ctx>,
}

/// Shared by the followers and the settlers.
#[derive(Debug)]
struct Ctx {
    target: Target,
    plan: Plan,
    run_id: String,
    /// When every reservation is given up on: unknown while the crowd is
    /// still coming, so kept as milliseconds after `base`.
    base: Instant,
    end_ms: AtomicU64,
    winners: AtomicU64,
    /// Settlers calling the gateway at once, and their idle connections.
    settlers: Semaphore,
    idle: std::sync::Mutex<Vec<Connection>>,
    /// The event's hold time.
    hold: chrono::TimeDelta,
}

impl Ctx {
    fn new(
        target: Target,
        plan: Plan,
        hold: Duration,
        run_id: String,
        end: Option<Instant>,
    ) -> Self {
        let ctx = Self {
            target,
            plan,
            run_id,
            base: Instant::now(),
            end_ms: AtomicU64::new(u64::MAX),
            winners: AtomicU64::new(0),
            settlers: Semaphore::new(SETTLERS),
            idle: std::sync::Mutex::new(Vec::new()),
            hold: chrono::TimeDelta::from_std(hold).unwrap_or_default(),
        };
        if let Some(end) = end {
            ctx.set_end(end);
        }
        ctx
    }

    /// When a hold took its seats: its commit, `expires_at` less the hold
    /// (PostgreSQL's clock, as `expires_at`).
    fn taken_at(&self, v: &ReservationView) -> Option<DateTime<Utc>> {
        v.expires_at.map(|at| at - self.hold)
    }

    /// An open connection of a settler done with it, if any.
    fn idle_connection(&self) -> Option<Connection> {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        idle.pop().filter(Connection::is_open)
    }

    fn give_back(&self, conn: Option<Connection>) {
        if let Some(c) = conn.filter(Connection::is_open) {
            let mut idle = self
                .idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if idle.len() < SETTLERS {
                idle.push(c);
            }
        }
    }

    fn set_end(&self, end: Instant) {
        let ms = end.saturating_duration_since(self.base).as_millis() as u64;
        self.end_ms.store(ms, Ordering::Relaxed);
    }

    /// The deadline; a day ahead while it is not set.
    fn end(&self) -> Instant {
        let ms = self.end_ms.load(Ordering::Relaxed);
        match ms {
            u64::MAX => Instant::now() + Duration::from_secs(86_400),
            ms => self.base + Duration::from_millis(ms),
        }
    }

    fn over(&self) -> bool {
        Instant::now() >= self.end()
    }

    /// Follows a reservation to its decision, until the deadline (which
    /// may be set while it waits).
    async fn decide(&self, conn: &mut Option<Connection>, a: &Accepted) -> Option<ReservationView> {
        loop {
            let step = self.end().min(Instant::now() + Duration::from_secs(10));
            let v = verify::decide(&self.target, conn, a, step).await;
            if v.as_ref().is_some_and(|v| v.status != Status::Pending) || self.over() {
                return v;
            }
        }
    }
}

impl Buyers {
    /// Starts the followers; the deadline is set by [`Buyers::give_up_at`].
    pub fn start(target: Target, plan: Plan, hold: Duration, run_id: String) -> Self {
        let (tx, rx) = mpsc::unbounded_channel::<Accepted>();
        let rx = Arc::new(Mutex::new(rx));
        let ctx = Arc::new(Ctx::new(target, plan, hold, run_id, None));
        let mut tasks = JoinSet::new();
        for _ in 0..FOLLOWERS {
            let (ctx, rx) = (ctx.clone(), rx.clone());
            tasks.spawn(follower(ctx, rx));
        }
        Self { tx, tasks, ctx }
    }

    pub fn accepted(&self, a: Accepted) {
        let _ = self.tx.send(a);
    }

    /// Every reservation not decided or hold not settled by `end` is given
    /// up on.
    pub fn give_up_at(&self, end: Instant) {
        self.ctx.set_end(end);
    }

    /// Waits for every winner to purchase or walk away, and every abandoned
    /// hold to be given back (or the deadline).
    pub async fn finish(self) -> (Decisions, Checkout) {
        let Self { tx, mut tasks, .. } = self;
        drop(tx);
        let mut d = Decisions::default();
        let mut c = Checkout::default();
        while let Some(r) = tasks.join_next().await {
            if let Ok((dd, cc)) = r {
                d.merge(dd);
                c.merge(cc);
            }
        }
        (d, c)
    }
}

/// Takes `202`s off the channel, follows each to its decision, and hands
/// each hold won to a settler of its own.
async fn follower(
    ctx: Arc<Ctx>,
    rx: Arc<Mutex<mpsc::UnboundedReceiver<Accepted>>>,
) -> (Decisions, Checkout) {
    let mut conn: Option<Connection> = None;
    let mut decisions = Decisions::default();
    let mut settlers = JoinSet::new();
    loop {
        let next = rx.lock().await.recv().await;
        let Some(a) = next else { break };
        let view = ctx.decide(&mut conn, &a).await;
        decisions.record(view.as_ref());
        if let Some(v) = view.filter(|v| v.status == Status::Held) {
            let k = ctx.winners.fetch_add(1, Ordering::Relaxed);
            let buys = ctx.plan.buys(k);
            let ctx = ctx.clone();
            settlers.spawn(async move { settle(&ctx, &a, &v, buys, ctx.plan.think).await });
        }
    }
    let mut checkout = Checkout::default();
    while let Some(r) = settlers.join_next().await {
        if let Ok(c) = r {
            checkout.merge(c);
        }
    }
    (decisions, checkout)
}

/// One hold's end: purchased after `think`, or abandoned; checked against
/// what its status URL says afterwards.
async fn settle(
    ctx: &Ctx,
    a: &Accepted,
    v: &ReservationView,
    buys: bool,
    think: Duration,
) -> Checkout {
    let seats = u64::from(v.quantity.get());
    let mut c = Checkout {
        won: 1,
        ..Checkout::default()
    };
    let start = ctx.taken_at(v);
    tokio::time::sleep(think).await;
    if !buys && ctx.plan.abandon == Abandon::Expire {
        // Nothing to call before the hold runs out: no connection held.
        if let Some(at) = v.expires_at {
            let left = at
                .signed_duration_since(Utc::now())
                .to_std()
                .unwrap_or_default();
            tokio::time::sleep_until((Instant::now() + left).min(ctx.end()).into()).await;
        }
    }
    let _slot = ctx.settlers.acquire().await;
    let mut conn = ctx.idle_connection();
    settle_now(ctx, a, v, buys, seats, start, &mut conn, &mut c).await;
    ctx.give_back(conn);
    c
}

/// [`settle`] once the think time (and for an abandon by expiry, the hold)
/// is over.
#[allow(clippy::too_many_arguments)]
async fn settle_now(
    ctx: &Ctx,
    a: &Accepted,
    v: &ReservationView,
    buys: bool,
    seats: u64,
    start: Option<DateTime<Utc>>,
    conn: &mut Option<Connection>,
    c: &mut Checkout,
) {
    let expires_at = v.expires_at;
    if buys {
        let payment = format!("load-{}-{}", ctx.run_id, a.reservation_id);
        match call(ctx, conn, a, "purchase", Some(&payment)).await {
            Ok((200, _)) => match final_view(ctx, conn, a).await {
                Some(f) if f.status == Status::Purchased => {
                    c.purchased += seats;
                    c.held(start, None, seats);
                }
                other => c.anomalies.push(format!(
                    "{}: the purchase answered 200 but the reservation reads {}",
                    a.reservation_id,
                    shown(other.as_ref())
                )),
            },
            Ok((409, code)) if code == "hold_expired" => {
                c.too_late += seats;
                c.held(start, expires_at, seats);
                expect_released(ctx, conn, a, Status::Expired, seats, c).await;
            }
            other => c.unexpected(a, "purchase", other),
        }
        return;
    }
    c.abandoned += seats;
    match ctx.plan.abandon {
        Abandon::Cancel => {
            let sent = Utc::now();
            match call(ctx, conn, a, "cancel", None).await {
                Ok((200, _)) => {
                    c.held(start, Some(sent), seats);
                    expect_released(ctx, conn, a, Status::Cancelled, seats, c).await;
                }
                Ok((409, code)) if code == "hold_expired" => {
                    c.held(start, expires_at, seats);
                    expect_released(ctx, conn, a, Status::Expired, seats, c).await;
                }
                other => c.unexpected(a, "cancel", other),
            }
        }
        Abandon::Expire => {
            c.held(start, expires_at, seats);
            expect_released(ctx, conn, a, Status::Expired, seats, c).await;
        }
    }
}

/// Reads the hold until it is no longer held (or `end`) and checks that it
/// was given back as `want` says.
async fn expect_released(
    ctx: &Ctx,
    conn: &mut Option<Connection>,
    a: &Accepted,
    want: Status,
    seats: u64,
    c: &mut Checkout,
) {
    let f = final_view(ctx, conn, a).await;
    match f {
        Some(f) if f.status == want => {
            if want == Status::Expired {
                c.expired += seats;
                c.last_expiry = c.last_expiry.max(f.expires_at);
            } else {
                c.cancelled += seats;
            }
        }
        Some(f) if f.status == Status::Held => c.unsettled += seats,
        other => c.anomalies.push(format!(
            "{}: expected {want:?} but the reservation reads {}",
            a.reservation_id,
            shown(other.as_ref())
        )),
    }
}

/// Reads the reservation until it is final (or `end`).
async fn final_view(
    ctx: &Ctx,
    conn: &mut Option<Connection>,
    a: &Accepted,
) -> Option<ReservationView> {
    loop {
        let v = get(&ctx.target, conn, &a.status_url).await;
        if v.as_ref().is_some_and(|v| v.status.is_final()) || ctx.over() {
            return v;
        }
        tokio::time::sleep(EXPIRY_POLL).await;
    }
}

fn shown(v: Option<&ReservationView>) -> String {
    v.map_or_else(
        || "nothing (no answer)".into(),
        |v| format!("{:?}", v.status),
    )
}

async fn get(
    target: &Target,
    conn: &mut Option<Connection>,
    path: &str,
) -> Option<ReservationView> {
    let c = Connection::reuse(target, conn).await.ok()?;
    let req = client::request(target, Method::GET, path, &[], None);
    match c.send(req, Duration::from_secs(10)).await {
        Ok(r) if r.status() == 200 => serde_json::from_slice(r.body()).ok(),
        Ok(_) => None,
        Err(_) => {
            *conn = None;
            None
        }
    }
}

/// `POST <status_url>/purchase|cancel`: the status and the error code (empty
/// for a success). Both calls are idempotent, so a `503` or `429` (the
/// gateway shedding load) or a lost connection is tried again, after
/// `Retry-After` when given, until the deadline.
async fn call(
    ctx: &Ctx,
    conn: &mut Option<Connection>,
    a: &Accepted,
    what: &str,
    payment: Option<&str>,
) -> Result<(u16, String), String> {
    let body = match payment {
        Some(p) => serde_json::json!({ "payment_ref": p }).to_string(),
        None => String::new(),
    };
    let path = format!("{}/{what}", a.status_url);
    loop {
        let wait = match Connection::reuse(&ctx.target, conn).await {
            Ok(c) => {
                let req =
                    client::request(&ctx.target, Method::POST, &path, &[], Some(body.clone()));
                match c.send(req, Duration::from_secs(10)).await {
                    Ok(resp) if matches!(resp.status().as_u16(), 503 | 429) => resp
                        .headers()
                        .get(http::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                        .map_or(Duration::from_millis(100), Duration::from_secs),
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let code = if status == 200 {
                            String::new()
                        } else {
                            serde_json::from_slice::<flashgrid_wire::ErrorBody>(resp.body())
                                .map(|e| e.error)
                                .unwrap_or_default()
                        };
                        return Ok((status, code));
                    }
                    Err(e) => {
                        *conn = None;
                        if ctx.over() {
                            return Err(e.to_string());
                        }
                        Duration::from_millis(100)
                    }
                }
            }
            Err(e) if ctx.over() => return Err(e.to_string()),
            Err(_) => Duration::from_millis(100),
        };
        if ctx.over() {
            return Err(format!("still refused (503/429) at the deadline: {what}"));
        }
        tokio::time::sleep(wait.min(ctx.end().saturating_duration_since(Instant::now()))).await;
    }
}

/// Where and how the late buyers buy.
#[derive(Debug, Clone)]
pub struct Late {
    pub target: Target,
    pub event: EventId,
    pub quantity: Quantity,
    pub plan: Plan,
    /// The event's hold time.
    pub hold: Duration,
    pub run_id: String,
    /// When they stop, whatever is left.
    pub end: Instant,
}

/// Late buyers: after the crowd, new buyers arrive at `plan.late_rate` a
/// second and purchase at once whatever they win, until the crowd's winners
/// are done (`crowd_released`: the seats they gave back) and the late
/// buyers bought as many seats as were given back, or `end`. Seats are
/// alike: whichever the late buyers win, as many went back on sale as
/// were sold again.
pub async fn late_buyers(sale: Late, mut crowd_released: watch::Receiver<Option<u64>>) -> Checkout {
    let Late {
        target,
        event,
        quantity,
        plan,
        hold,
        run_id,
        end,
    } = sale;
    let (stop_tx, stop) = watch::channel(false);
    let ctx = Arc::new(Ctx::new(target, plan, hold, run_id, Some(end)));
    let resold = Arc::new(AtomicU64::new(0));
    let mut workers = JoinSet::new();
    let period = Duration::from_secs_f64(LATE_CONNECTIONS as f64 / plan.late_rate.max(0.001));
    for k in 0..LATE_CONNECTIONS {
        let (ctx, event, mut stop, resold) =
            (ctx.clone(), event.clone(), stop.clone(), resold.clone());
        let offset = period.mul_f64(k as f64 / LATE_CONNECTIONS as f64);
        workers.spawn(async move {
            let mut c = Checkout::default();
            let mut conn = None;
            let mut tick = tokio::time::interval_at((Instant::now() + offset).into(), period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut i = 0u64;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => break,
                }
                if *stop.borrow() || ctx.over() {
                    break;
                }
                let n = i * LATE_CONNECTIONS as u64 + k as u64;
                i += 1;
                let before = c.resold;
                late_buyer(&ctx, &mut conn, &event, quantity, n, &mut c).await;
                resold.fetch_add(c.resold - before, Ordering::Relaxed);
            }
            c
        });
    }
    let mut timed_out = true;
    loop {
        let given_back = *crowd_released.borrow_and_update();
        if given_back.is_some_and(|g| resold.load(Ordering::Relaxed) >= g) {
            timed_out = false;
            break;
        }
        if Instant::now() >= end {
            break;
        }
        tokio::select! {
            _ = crowd_released.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    let _ = stop_tx.send(true);
    let mut total = Checkout {
        resale_timed_out: timed_out,
        ..Checkout::default()
    };
    while let Some(r) = workers.join_next().await {
        if let Ok(c) = r {
            total.merge(c);
        }
    }
    total
}

/// One late buyer: reserve, follow, purchase a hold at once.
async fn late_buyer(
    ctx: &Ctx,
    conn: &mut Option<Connection>,
    event: &EventId,
    quantity: Quantity,
    n: u64,
    c: &mut Checkout,
) {
    c.late_requests += 1;
    let body = format!(
        r#"{{"event_id":"{event}","user_id":"late-{}-{n}","quantity":{quantity}}}"#,
        ctx.run_id
    );
    let key = format!("late-{}-{n}", ctx.run_id);
    let Ok(link) = Connection::reuse(&ctx.target, conn).await else {
        return;
    };
    let req = client::request(
        &ctx.target,
        Method::POST,
        "/reserve",
        &[("idempotency-key", &key)],
        Some(body),
    );
    let accepted: Accepted = match link.send(req, Duration::from_secs(10)).await {
        Ok(r) if r.status() == 202 => match serde_json::from_slice(r.body()) {
            Ok(a) => a,
            Err(_) => return,
        },
        Ok(_) => return, // sold out, or shed: the next buyer tries
        Err(_) => {
            *conn = None;
            return;
        }
    };
    let Some(v) = ctx.decide(conn, &accepted).await else {
        c.late_lost += 1;
        return;
    };
    match v.status {
        Status::Held => {
            c.late_won += 1;
            let seats = u64::from(v.quantity.get());
            let start = ctx.taken_at(&v);
            let payment = format!("late-{}-{n}", ctx.run_id);
            match call(ctx, conn, &accepted, "purchase", Some(&payment)).await {
                Ok((200, _)) => {
                    c.resold += seats;
                    c.last_resale = c.last_resale.max(Some(Utc::now()));
                    c.held(start, None, seats);
                }
                Ok((409, code)) if code == "hold_expired" => {
                    c.too_late += seats;
                    c.held(start, v.expires_at, seats);
                    expect_released(ctx, conn, &accepted, Status::Expired, seats, c).await;
                }
                other => c.unexpected(&accepted, "late purchase", other),
            }
        }
        Status::Pending => c.late_lost += 1,
        _ => {}
    }
}

/// Judges a hold sale on top of [`verify::judge`]: never more purchased than
/// the capacity, every purchase the buyers were told of counted once by the
/// event, every abandoned hold given back, and every seat given back sold
/// again while late buyers kept coming (or still remaining).
pub fn judge(
    crowd: &Decisions,
    c: &Checkout,
    event: &EventView,
    exclusive: bool,
) -> verify::Verdict {
    // The late buyers took seats too.
    // What the buyers hold in the end: what they purchased, and holds not
    // settled by the deadline.
    let mut all = crowd.clone();
    all.confirmed_quantity = c.all_purchased() + c.unsettled;
    let mut v = verify::judge(&all, event, exclusive);
    let cap = u64::from(event.capacity);
    let purchased = u64::from(event.purchased);
    let bought = c.all_purchased();
    if purchased > cap || bought > cap {
        v.oversold = true;
        v.problems.push(format!(
            "OVERSOLD: capacity {cap}, the event counts {purchased} purchased, the buyers {bought}"
        ));
    }
    let most = peak(&c.holdings);
    if most > cap {
        v.oversold = true;
        v.problems.push(format!(
            "OVERSOLD: capacity {cap}, the buyers held {most} seats at once"
        ));
    }
    if (exclusive && purchased != bought) || purchased < bought {
        v.counts_agree = false;
        v.problems.push(format!(
            "the event counts {purchased} seats purchased but the buyers were told of {bought}"
        ));
    }
    if c.late_lost > 0 {
        v.lost += c.late_lost;
        v.problems.push(format!(
            "LOST: {} late buyers' reservations were never decided",
            c.late_lost
        ));
    }
    if c.unsettled > 0 {
        v.problems.push(format!(
            "{} seats of holds not purchased were still held at the deadline",
            c.unsettled
        ));
    }
    if c.resale_timed_out || c.resold < c.released() {
        v.problems.push(format!(
            "the seats given back were not all sold again: {} given back, {} sold again by the deadline (the event holds {} and has {} left)",
            c.released(),
            c.resold,
            event.held,
            event.remaining
        ));
    }
    v.problems.extend(c.anomalies.iter().take(10).cloned());
    if c.anomalies.len() > 10 {
        v.problems.push(format!(
            "… and {} more such answers",
            c.anomalies.len() - 10
        ));
    }
    v.pass = v.pass && v.problems.is_empty();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(share: f64) -> Plan {
        Plan {
            share,
            abandon: Abandon::Expire,
            think: Duration::ZERO,
            late_rate: 100.0,
        }
    }

    #[test]
    fn exactly_the_share_of_the_winners_buys() {
        for share in [0.0, 0.25, 0.5, 1.0 / 3.0, 0.9, 1.0] {
            let p = plan(share);
            for n in [1u64, 7, 100, 200] {
                let buyers = (0..n).filter(|&k| p.buys(k)).count() as u64;
                assert_eq!(buyers, (n as f64 * share).floor() as u64, "{share} of {n}");
            }
        }
        // Half: every other winner, not the first half.
        let half = plan(0.5);
        assert!(!half.buys(0) && half.buys(1) && !half.buys(2) && half.buys(3));
    }

    fn event(capacity: u32, held: u32, purchased: u32) -> EventView {
        EventView {
            event_id: EventId::parse("e").unwrap(),
            name: "e".into(),
            capacity,
            remaining: capacity - held - purchased,
            confirmed: held + purchased,
            per_user_limit: flashgrid_wire::PerUserLimit::DEFAULT,
            sold_out: held + purchased == capacity,
            opens_at: None,
            closes_at: None,
            hold_seconds: Some(5),
            held,
            purchased,
            released: 0,
        }
    }

    fn crowd(won: u64) -> Decisions {
        Decisions {
            confirmed: won,
            confirmed_quantity: won,
            released: 0,
            rejected: [("sold_out".to_owned(), 50)].into(),
            pending: 0,
        }
    }

    fn resold_sale() -> Checkout {
        Checkout {
            won: 20,
            purchased: 10,
            abandoned: 10,
            expired: 10,
            late_requests: 80,
            late_won: 10,
            resold: 10,
            ..Checkout::default()
        }
    }

    #[test]
    fn holds_of_one_seat_one_after_the_other_never_overlap() {
        let t = |s: i64| DateTime::<Utc>::from_timestamp(1_800_000_000 + s, 0).unwrap();
        let h = |start, end: Option<i64>| Holding {
            start: t(start),
            end: end.map(t),
            seats: 1,
        };
        // Two seats: a hold expires at 5 and its seat is won again at 5.
        let fine = [h(0, Some(5)), h(0, None), h(5, None)];
        assert_eq!(peak(&fine), 2);
        // A third hold while both seats are taken is one too many.
        let over = [h(0, Some(5)), h(0, None), h(4, None)];
        assert_eq!(peak(&over), 3);
        let mut c = resold_sale();
        c.holdings = over.to_vec();
        let v = judge(&crowd(20), &c, &event(2, 0, 2), false);
        assert!(
            v.oversold
                && v.problems
                    .iter()
                    .any(|p| p.contains("held 3 seats at once")),
            "{v:?}"
        );
    }

    #[test]
    fn a_sale_whose_given_back_seats_were_sold_again_passes() {
        let v = judge(&crowd(20), &resold_sale(), &event(20, 0, 20), true);
        assert!(v.pass, "{v:?}");
        assert_eq!(resold_sale().released(), 10);
    }

    #[test]
    fn a_seat_purchased_twice_fails() {
        // The buyers were told of 21 purchases of 20 seats.
        let mut c = resold_sale();
        c.resold = 11;
        let v = judge(&crowd(20), &c, &event(20, 0, 20), true);
        assert!(v.oversold && !v.pass, "{v:?}");
        // The event counts a purchase nobody was told of.
        let mut c = resold_sale();
        c.resold = 9;
        let v = judge(&crowd(20), &c, &event(20, 0, 20), true);
        assert!(!v.counts_agree && !v.pass, "{v:?}");
    }

    #[test]
    fn seats_not_given_back_or_not_resold_fail() {
        let mut c = resold_sale();
        c.unsettled = 2;
        assert!(!judge(&crowd(20), &c, &event(20, 0, 20), true).pass);
        let mut c = resold_sale();
        c.resale_timed_out = true;
        c.resold = 8;
        let v = judge(&crowd(20), &c, &event(20, 0, 18), true);
        assert!(
            !v.pass && v.problems.iter().any(|p| p.contains("not all sold again")),
            "{v:?}"
        );
        let mut c = resold_sale();
        c.anomalies
            .push("r: the purchase answered 200 but the reservation reads Expired".into());
        assert!(!judge(&crowd(20), &c, &event(20, 0, 20), true).pass);
    }
}
