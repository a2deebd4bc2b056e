//! One batch, start to finish, its steps defined in the order they run:
//! decide every reservation in Redis (one Lua call per event, in parts of at
//! most `DECIDE_CHUNK` reservations), commit the
//! winners to PostgreSQL (one statement), settle the confirmations in Redis,
//! announce the decisions. Each step is idempotent, so a batch can be retried, or
//! redelivered after a crash, without counting anything twice.

use super::kept::{Claim, Kept};
use crate::db::{self, CommitError, GuardedCommit, Winner};
use crate::inventory::{Ask, Decided, Expect, Floor, Inventory, InventoryError, Mark, Refused};
use crate::notify::{self, Notice};
use crate::queue::Queued;
use flashgrid_wire::sale::{Event, Outcome};
use flashgrid_wire::{EventId, Reason, ReservationId, Status};
use sqlx::PgPool;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("Redis: {0}")]
    Inventory(#[from] InventoryError),
    #[error("PostgreSQL: {0}")]
    Database(#[from] sqlx::Error),
    #[error("no answer within {0:?}")]
    TimedOut(std::time::Duration),
    /// Decided in a Redis state that was rebuilt or reset since: nothing of
    /// those events was written, and the batch is decided again.
    #[error("decided in a Redis state older than PostgreSQL's (events {0:?}): deciding again")]
    Fenced(Vec<EventId>),
}

/// How long a batch waits for its tentative rejections to become certain
/// (see `Decider::make_certain`).
const TENTATIVE_PATIENCE: std::time::Duration = std::time::Duration::from_millis(500);

/// Most reservations one decide call takes (see `decide_event`): about
/// 3 ms of Redis's time here, where a batch took up to 56 ms in one call.
pub const DECIDE_CHUNK: usize = 256;

/// The epoch each event's decisions were made under (see `db::commit_winners`).
pub type Epochs = HashMap<EventId, i32>;

impl BatchError {
    /// Whether a service refused this work for what it holds (bad data, a
    /// constraint, a script error): the only failures that can mark a
    /// reservation as one that will never go through. Anything else — a
    /// connection dropped, refused or timed out, a server loading, read-only,
    /// out of memory or out of disk, a deadlock — says the service cannot
    /// work right now, and is waited for however long it takes.
    pub fn is_refusal(&self) -> bool {
        match self {
            BatchError::Inventory(InventoryError::Redis(e)) => match e.kind() {
                redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError)
                | redis::ErrorKind::UnexpectedReturnType
                | redis::ErrorKind::Parse => true,
                // Codes the client does not name (WRONGTYPE: a key of the
                // event holds another type) refuse the work, except those
                // Redis answers while it cannot work for now.
                redis::ErrorKind::Extension => {
                    !matches!(e.code(), Some("OOM" | "BUSY" | "MISCONF" | "NOREPLICAS"))
                }
                _ => false,
            },
            BatchError::Inventory(InventoryError::Corrupt(_)) => true,
            BatchError::Inventory(InventoryError::StockMissing | InventoryError::Rebuilt) => false,
            // SQLSTATE classes 22 (data exception), 23 (integrity constraint)
            // and P0 (raised by a PL/pgSQL function or trigger).
            BatchError::Database(sqlx::Error::Database(d)) => d
                .code()
                .is_some_and(|c| c.starts_with("22") || c.starts_with("23") || c.starts_with("P0")),
            BatchError::Database(_) => false,
            BatchError::TimedOut(_) => false,
            BatchError::Fenced(_) => false,
        }
    }
}

/// What one batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    pub confirmed: u64,
    pub rejected: u64,
    /// Rows newly written (a redelivered winner is not written again).
    pub written: u64,
    /// Winners PostgreSQL's capacity guard refused (Redis was wrong).
    pub revoked: u64,
    /// The items (indices into the batch) whose rejection was still
    /// tentative when the batch was done (see `make_certain`): their
    /// messages are handed back to the queue, to be decided again.
    pub tentative: Vec<usize>,
}

/// Decides and commits batches; shared by the consumer loop and tests.
#[derive(Debug, Clone)]
pub struct Decider {
    pool: PgPool,
    inventory: Inventory,
    /// Events never change their limit or window, so they are cached forever.
    events: Arc<Mutex<HashMap<EventId, Arc<Event>>>>,
    /// The epoch of each event's last fenced decision: fenced twice under
    /// the same one, the Redis state is behind PostgreSQL for good (restored
    /// from an older copy, a reset Redis missed) and is rebuilt.
    fenced: Arc<Mutex<HashMap<EventId, i32>>>,
    /// What PostgreSQL held of each event at the last commit or snapshot
    /// this worker made or heard of (`Notice::Floor`, from every worker): a
    /// Redis state claiming more seats left is behind (a copy
    /// restored from before, a lagging replica promoted) and is rebuilt
    /// before it decides anything.
    floors: Arc<Mutex<HashMap<EventId, Floor>>>,
    /// The highest mark each event's Redis state had when a script of this
    /// worker last answered: a state below it went back in time (a copy
    /// restored from before, a lagging replica promoted), even with no more
    /// seats left than the floor allows, and is rebuilt (`decide.lua`,
    /// "Marks").
    marks: Arc<Mutex<HashMap<EventId, Mark>>>,
    /// The rejections this worker decided for reservations of batches not
    /// done yet (by id and sale generation). A rejection is public at once
    /// (its buyer may read it before the batch is settled), and may rest on
    /// confirmations not committed yet; should Redis forget it (a wipe)
    /// before a failed batch is retried, the retry, deciding in a state
    /// rebuilt from PostgreSQL, must not sell that reservation a seat: it
    /// is kept (`Ask::kept`). Dropped once the batch is done and no batch
    /// in flight claims it (`Decider::claim`).
    rejected: Kept,
}

impl Decider {
    pub fn new(pool: PgPool, inventory: Inventory) -> Self {
        Self {
            pool,
            inventory,
            events: Arc::default(),
            fenced: Arc::default(),
            floors: Arc::default(),
            marks: Arc::default(),
            rejected: Kept::default(),
        }
    }

    async fn event(&self, id: &EventId) -> Result<Option<Arc<Event>>, sqlx::Error> {
        if let Some(e) = self.events.lock().expect("event cache").get(id) {
            return Ok(Some(e.clone()));
        }
        let Some(e) = db::get_event(&self.pool, id).await? else {
            return Ok(None);
        };
        let e = Arc::new(e);
        self.events
            .lock()
            .expect("event cache")
            .insert(id.clone(), e.clone());
        Ok(Some(e))
    }

    /// Holds the rejections of `items` (of one batch) until the claim is
    /// dropped, through every attempt at the batch and its taking apart:
    /// without a claim, they are dropped as soon as one attempt at a batch
    /// holding them is done.
    pub fn claim(&self, items: &[Queued]) -> Claim {
        self.rejected
            .claim(items.iter().map(|q| (q.id, q.sale)).collect())
    }

    /// Whether PostgreSQL and Redis both answer, each within a second: tells
    /// a batch that fails because of what it holds from one that fails
    /// because a service is away.
    pub async fn services_answer(&self) -> bool {
        let limit = std::time::Duration::from_secs(1);
        let conn = self.inventory.connection();
        crate::services::answering(&self.pool, &conn, limit)
            .await
            .both()
    }

    /// Decide, commit, settle, announce.
    pub async fn process(&self, items: &[Queued]) -> Result<BatchReport, BatchError> {
        self.process_in_turn(items, &CancellationToken::new()).await
    }

    /// [`process`](Self::process), cancelling `decided` once step 1 is over
    /// (decided or failed): the consumer starts deciding the next batch
    /// then, while this one commits, so that the first attempts at batches
    /// decide in the order the batches were taken (a retry, or a tentative
    /// rejection decided again, comes after the batches taken since).
    pub async fn process_in_turn(
        &self,
        items: &[Queued],
        decided: &CancellationToken,
    ) -> Result<BatchReport, BatchError> {
        let span = tracing::debug_span!("batch", reservations = items.len());
        async {
            let first = self.decide(items).await;
            decided.cancel();
            let (mut outcomes, epochs) = first?;
            let mut report = self.commit(items, &mut outcomes, &epochs).await?;
            self.settle(items, &outcomes).await?;
            self.resolve(items, &mut outcomes).await?;
            // What is decided is announced at once; the rejections still
            // resting on another worker's commit, again once waited for.
            self.announce(items).await;
            if outcomes.iter().any(Outcome::is_tentative) {
                let waited: Vec<Queued> = items
                    .iter()
                    .zip(&outcomes)
                    .filter(|(_, o)| o.is_tentative())
                    .map(|(q, _)| q.clone())
                    .collect();
                self.make_certain(items, &mut outcomes, &mut report).await?;
                self.announce(&waited).await;
            }
            self.forget_rejections(items);
            log_decisions(items, &outcomes);
            Ok(report)
        }
        .instrument(span)
        .await
    }

    /// Step 1: atomic Lua calls per event, of at most [`DECIDE_CHUNK`]
    /// reservations each, in the order taken (the events' calls all in
    /// flight at once on the multiplexed connection). A reservation decided
    /// before keeps its outcome. Rebuilds a missing stock from PostgreSQL.
    pub async fn decide(&self, items: &[Queued]) -> Result<(Vec<Outcome>, Epochs), BatchError> {
        let mut by_event: HashMap<&EventId, Vec<usize>> = HashMap::new();
        for (i, q) in items.iter().enumerate() {
            by_event.entry(&q.event).or_default().push(i);
        }
        let calls = by_event.into_iter().map(|(event, idx)| {
            let span = tracing::debug_span!("decide", event_id = %event, reservations = idx.len());
            async move {
                let decided = self.decide_event(event, items, &idx).await?;
                Ok::<_, BatchError>((event, idx, decided))
            }
            .instrument(span)
        });
        let mut outcomes: Vec<Option<Outcome>> = vec![None; items.len()];
        let mut epochs = Epochs::new();
        for r in futures::future::join_all(calls).await {
            let (event, idx, decided) = r?;
            epochs.insert(event.clone(), decided.epoch());
            for (i, o) in idx.into_iter().zip(decided.outcomes) {
                outcomes[i] = Some(o);
            }
        }
        let outcomes = outcomes
            .into_iter()
            .map(|o| o.expect("every item decided"))
            .collect();
        Ok((outcomes, epochs))
    }

    async fn decide_event(
        &self,
        event: &EventId,
        items: &[Queued],
        idx: &[usize],
    ) -> Result<Decided, BatchError> {
        let Some(info) = self.event(event).await? else {
            // The gateway only accepts known events; a message naming another
            // one was not written by it. Reject, and record it so that its
            // status answers.
            tracing::warn!(event_id = %event, "reservations for an unknown event rejected");
            let outcomes: Vec<Outcome> = idx
                .iter()
                .map(|&i| {
                    Outcome::rejected(Reason::SaleClosed, items[i].qty, items[i].user.clone())
                })
                .collect();
            let ids: Vec<(u32, ReservationId)> =
                idx.iter().map(|&i| (items[i].sale, items[i].id)).collect();
            self.inventory.record(event, &ids, &outcomes).await?;
            // No winner to commit: the epoch is never read.
            return Ok(Decided {
                mark: Mark::default(),
                outcomes,
            });
        };
        // In calls of at most DECIDE_CHUNK reservations, one after the
        // other (first attempts still decide in the order taken): a script
        // blocks Redis while it runs, and a batch of thousands would hold
        // every gateway's markers and every other sale's decisions for tens
        // of milliseconds.
        let mut rounds = 0;
        'decide: loop {
            let mut outcomes = Vec::with_capacity(idx.len());
            let mut first: Option<Mark> = None;
            for part in idx.chunks(DECIDE_CHUNK) {
                let epoch = first.map(|m| m.epoch);
                let decided = match self.decide_part(event, &info, items, part, epoch).await {
                    Ok(Some(d)) => d,
                    // The stock was missing, or the state behind what this
                    // worker knows, and is rebuilt from PostgreSQL; or
                    // another worker rebuilt it since the first part. Nothing
                    // of this part was decided, and the state now holds
                    // committed seats only, not what the parts before
                    // decided: the event is decided again from its first
                    // part, so that first attempts keep the order taken. A
                    // stock can go missing again right after a rebuild
                    // (Redis flushed twice); three rounds then give up and
                    // let the batch be retried.
                    Ok(None) | Err(BatchError::Inventory(InventoryError::Rebuilt))
                        if rounds < 2 =>
                    {
                        rounds += 1;
                        continue 'decide;
                    }
                    Ok(None) => return Err(InventoryError::StockMissing.into()),
                    Err(e) => return Err(e),
                };
                // Kept at once: a buyer may read them before the next part
                // is decided, and a retry must not flip them.
                self.keep_rejections(part.iter().map(|&i| &items[i]), &decided.outcomes);
                // Every part after the first was decided under its epoch
                // (`Expect::epoch`), so its winners are committed under it.
                first.get_or_insert(decided.mark);
                outcomes.extend(decided.outcomes);
            }
            return Ok(Decided {
                mark: first.unwrap_or_default(),
                outcomes,
            });
        }
    }

    /// One decide call for `idx` (of `items`, all of `event`), in a state
    /// of `epoch` if given (the batch's earlier parts'; else `Rebuilt`);
    /// `None` when the event's stock was missing or its state behind what
    /// this worker knows (nothing decided), rebuilt since from PostgreSQL.
    async fn decide_part(
        &self,
        event: &EventId,
        info: &Event,
        items: &[Queued],
        idx: &[usize],
        epoch: Option<i32>,
    ) -> Result<Option<Decided>, BatchError> {
        let asks: Vec<Ask<'_>> = idx
            .iter()
            .map(|&i| {
                let q = &items[i];
                Ask {
                    id: q.id,
                    user: &q.user,
                    quantity: q.qty,
                    closed: !info.is_open_at(q.at),
                    sale: q.sale,
                    kept: self.rejected.get(&(q.id, q.sale)),
                }
            })
            .collect();
        let expect = Expect {
            floor: self.floor(event),
            mark: self.mark(event),
            epoch,
        };
        match self
            .inventory
            .decide(event, info.per_user_limit, expect, &asks)
            .await
        {
            Err(InventoryError::StockMissing) => {
                self.restock(event).await?;
                Ok(None)
            }
            other => {
                let decided = other?;
                self.raise_mark(event, decided.mark);
                Ok(Some(decided))
            }
        }
    }

    /// Remembers the certain rejections among `outcomes` (of `items`, in
    /// order) until their batch is done (see `rejected`); the first
    /// decision of a reservation is the one its buyer may have read. A
    /// tentative one is no decision yet: its buyer reads pending.
    fn keep_rejections<'a>(&self, items: impl Iterator<Item = &'a Queued>, outcomes: &[Outcome]) {
        self.rejected
            .keep_first(items.zip(outcomes).filter_map(|(q, o)| {
                match (o.status, o.reason, o.certain_at) {
                    (Status::Rejected, Some(reason), None) => Some(((q.id, q.sale), reason)),
                    _ => None,
                }
            }));
    }

    /// Step 3b: waits, for at most [`TENTATIVE_PATIENCE`], until every
    /// tentative rejection of the batch is certain (see `decide.lua`): most
    /// are once the batch's own confirmations are settled; the rest rest on
    /// another worker's confirmations, committed within milliseconds as a
    /// rule. Those still tentative are decided again between waits: should
    /// what they rest on be gone (revoked, fenced out, lost with Redis),
    /// they are decided afresh and may be sold a seat, which is committed
    /// here. Past the patience the batch is done anyway, and those still
    /// tentative are named in the report: their messages go back to the
    /// queue rather than being acked (`consume.rs`), so that they are
    /// decided again until certain — acked, nothing would decide them
    /// again should what they rest on be lost.
    async fn make_certain(
        &self,
        items: &[Queued],
        outcomes: &mut [Outcome],
        report: &mut BatchReport,
    ) -> Result<(), BatchError> {
        let deadline = tokio::time::Instant::now() + TENTATIVE_PATIENCE;
        let mut nap = std::time::Duration::from_millis(2);
        // `outcomes` were resolved against the counts by the caller, and
        // are again after each round.
        loop {
            let open: Vec<usize> = (0..items.len())
                .filter(|&i| outcomes[i].is_tentative())
                .collect();
            if open.is_empty() {
                break;
            }
            if tokio::time::Instant::now() + nap > deadline {
                tracing::info!(
                    tentative = open.len(),
                    "rejections still resting on confirmations not committed: their messages go back to the queue"
                );
                break;
            }
            tokio::time::sleep(nap).await;
            nap = (nap * 2).min(std::time::Duration::from_millis(50));
            let again: Vec<Queued> = open.iter().map(|&i| items[i].clone()).collect();
            let (mut decided, epochs) = self.decide(&again).await?;
            let more = self.commit(&again, &mut decided, &epochs).await?;
            self.settle(&again, &decided).await?;
            report.written += more.written;
            report.revoked += more.revoked;
            for (&i, o) in open.iter().zip(decided) {
                outcomes[i] = o;
            }
            self.resolve(items, outcomes).await?;
        }
        report.confirmed = outcomes
            .iter()
            .filter(|o| o.status == Status::Confirmed)
            .count() as u64;
        report.rejected = outcomes.len() as u64 - report.confirmed;
        report.tentative = (0..outcomes.len())
            .filter(|&i| outcomes[i].is_tentative())
            .collect();
        Ok(())
    }

    /// Makes certain, event by event, the tentative rejections among
    /// `outcomes` whose committed counts have reached their mark.
    async fn resolve(&self, items: &[Queued], outcomes: &mut [Outcome]) -> Result<(), BatchError> {
        let mut by_event: HashMap<&EventId, Vec<usize>> = HashMap::new();
        for (i, (q, o)) in items.iter().zip(outcomes.iter()).enumerate() {
            if o.is_tentative() {
                by_event.entry(&q.event).or_default().push(i);
            }
        }
        for (event, idx) in by_event {
            let mut some: Vec<Outcome> = idx.iter().map(|&i| outcomes[i].clone()).collect();
            self.inventory.resolve(event, &mut some).await?;
            for (&i, o) in idx.iter().zip(some) {
                outcomes[i] = o;
            }
        }
        Ok(())
    }

    /// The batch of `items` is done: nothing of it is decided again by it.
    /// What a batch in flight claims stays, until its claim is dropped.
    fn forget_rejections(&self, items: &[Queued]) {
        self.rejected.forget(items.iter().map(|q| (q.id, q.sale)));
    }

    async fn restock(&self, event: &EventId) -> Result<(), BatchError> {
        let Some(snap) = db::snapshot(&self.pool, event).await? else {
            return Ok(());
        };
        self.held([(
            event.clone(),
            Floor::of(snap.sale, snap.seats(), snap.released_seats),
        )]);
        if let Some(stock) = self.inventory.restock(event, &snap).await? {
            // Above whatever was seen before (a snapshot moves the epoch on).
            let rebuilt = Mark {
                sale: snap.sale,
                epoch: snap.epoch,
                seq: 0,
            };
            self.raise_mark(event, rebuilt);
            tracing::warn!(event_id = %event, stock, confirmed_in_db = snap.confirmed.len(), "the event's Redis state was missing, partial or behind PostgreSQL: rebuilt from PostgreSQL");
        }
        Ok(())
    }

    /// Rebuilds each event whose Redis state claims more seats left than
    /// PostgreSQL allows, is behind the mark this worker saw of it
    /// (`decide.lua`'s floor and mark checks: a copy restored from before,
    /// a lagging replica promoted), or is lost in all or part (a wipe, a
    /// deleted hash), without waiting for a purchase to run into it: after
    /// a sell-out none comes, and the state would keep its stale entries
    /// (or miss its confirmations) for good. Returns how many were rebuilt.
    pub async fn audit(&self) -> usize {
        let mut known: HashSet<EventId> = self
            .floors
            .lock()
            .expect("floors")
            .keys()
            .cloned()
            .collect();
        known.extend(self.marks.lock().expect("marks").keys().cloned());
        let mut rebuilt = 0;
        for event in known {
            // Redis away: the next audit looks again.
            let Ok((stock, sale, now)) = self.inventory.state_of(&event).await else {
                continue;
            };
            // Read after the state: a floor or mark raised meanwhile (a
            // release heard, a rebuild) is the one to compare with.
            let (floor, mark) = (self.floor(&event), self.mark(&event));
            let behind = floor
                .zip(stock)
                .is_some_and(|(f, stock)| sale == Some(f.sale) && stock > f.max_stock)
                || mark.zip(now).is_some_and(|(m, now)| now < m);
            // All or part of the state lost (the stock, or a sentinel of
            // the won or users hash: no mark). The next decision would
            // rebuild it, but once the sale sold out none may come, and
            // every status read and keyed retry would ask PostgreSQL.
            let lost = stock.is_none() || now.is_none();
            if behind || lost {
                match self.restock(&event).await {
                    Ok(()) => rebuilt += 1,
                    Err(e) => {
                        tracing::warn!(event_id = %event, error = %e, "could not rebuild a state behind PostgreSQL; the next decision will")
                    }
                }
            }
        }
        rebuilt
    }

    /// Follows the floors other workers publish after their commits
    /// (`Notice::Floor`) until `stop`: a worker's own commits tell it only
    /// of PostgreSQL up to its last one, and one that committed little of
    /// an event since a copy was taken would decide in the copy restored.
    /// A notice missed (Redis away, resubscribing) leaves PostgreSQL's
    /// guard as the last line, as before.
    pub async fn follow_floors(&self, nodes: Vec<redis::Client>, stop: CancellationToken) {
        let ns = self.inventory.namespace().clone();
        notify::listen(nodes, ns, stop, |received| {
            if let notify::Received::Notice(Notice::Floor(event, floor)) = received {
                self.raise_floor(&event, floor);
            }
        })
        .await;
    }

    /// Raises the floors of `held` (what a commit or a snapshot read) here,
    /// and tells the other workers, without waiting on Redis.
    fn held(&self, held: impl IntoIterator<Item = (EventId, Floor)>) {
        let mut told = Vec::new();
        for (event, floor) in held {
            self.raise_floor(&event, floor);
            told.push(Notice::Floor(event, floor));
        }
        if told.is_empty() {
            return;
        }
        let (conn, ns) = (
            self.inventory.connection(),
            self.inventory.namespace().clone(),
        );
        tokio::spawn(async move {
            for notice in told {
                notify::publish(&conn, &ns, &notice).await;
            }
        });
    }

    /// The floor this worker decides `event` against (its own commits and
    /// snapshots, and the other workers' it heard of).
    pub fn floor(&self, event: &EventId) -> Option<Floor> {
        self.floors.lock().expect("floors").get(event).copied()
    }

    fn mark(&self, event: &EventId) -> Option<Mark> {
        self.marks.lock().expect("marks").get(event).copied()
    }

    /// Records a mark a script answered, if it is above the one recorded
    /// (answers to calls in flight at once can arrive out of order).
    fn raise_mark(&self, event: &EventId, new: Mark) {
        let mut marks = self.marks.lock().expect("marks");
        let keep = marks.get(event).is_none_or(|old| new > *old);
        if keep {
            marks.insert(event.clone(), new);
        }
    }

    /// Records what PostgreSQL held of `event`, if it is newer than what
    /// was recorded (`Floor::supersedes`: readings can arrive out of order).
    fn raise_floor(&self, event: &EventId, new: Floor) {
        let mut floors = self.floors.lock().expect("floors");
        let keep = floors.get(event).is_none_or(|old| new.supersedes(old));
        if keep {
            floors.insert(event.clone(), new);
        }
    }

    /// Step 2: write the winners. If PostgreSQL's capacity guard refuses the
    /// batch, Redis confirmed more than the database allows: settle event by
    /// event under a row lock, and turn what does not fit into `sold_out`
    /// rejections (in `outcomes` and in Redis).
    pub async fn commit(
        &self,
        items: &[Queued],
        outcomes: &mut [Outcome],
        epochs: &Epochs,
    ) -> Result<BatchReport, BatchError> {
        let mut seen = HashSet::new();
        let winners: Vec<Winner> = items
            .iter()
            .zip(outcomes.iter())
            .filter(|(q, o)| o.status == Status::Confirmed && seen.insert(q.id))
            .map(|(q, o)| Winner {
                id: q.id,
                event: q.event.clone(),
                user: q.user.clone(),
                quantity: o.quantity,
                accepted_at: q.at,
                epoch: epochs.get(&q.event).copied().unwrap_or_default(),
                sale: q.sale,
            })
            .collect();
        let mut report = BatchReport::default();
        let committed = db::commit_winners(&self.pool, &winners).await;
        if let Ok(done) = &committed {
            self.held(
                done.held
                    .iter()
                    .map(|(e, h)| (e.clone(), Floor::of(h.sale, h.seats, h.released))),
            );
        }
        match committed {
            // What the other events wrote is kept (idempotent): the retry
            // decides the batch again and skips it.
            Ok(done) if !done.fenced.is_empty() => {
                return Err(self.fenced(&done.fenced, epochs).await);
            }
            Ok(done) => report.written = done.written,
            Err(CommitError::Guard(rule)) => {
                tracing::warn!(
                    rule,
                    "PostgreSQL's guard refused the batch: committing event by event"
                );
                let refused = self.commit_guarded(&winners, &mut report).await?;
                for (q, o) in items.iter().zip(outcomes.iter_mut()) {
                    if let Some(&reason) = refused.get(&q.id) {
                        o.status = Status::Rejected;
                        o.reason = Some(reason);
                    }
                }
            }
            Err(CommitError::Database(e)) => return Err(e.into()),
        }
        for o in outcomes.iter() {
            match o.status {
                Status::Confirmed => report.confirmed += 1,
                _ => report.rejected += 1,
            }
        }
        Ok(report)
    }

    async fn commit_guarded(
        &self,
        winners: &[Winner],
        report: &mut BatchReport,
    ) -> Result<HashMap<ReservationId, Reason>, BatchError> {
        let mut by_event: HashMap<&EventId, Vec<Winner>> = HashMap::new();
        for w in winners {
            by_event.entry(&w.event).or_default().push(w.clone());
        }
        let mut refused = HashMap::new();
        let mut fenced = Vec::new();
        for (event, ws) in by_event {
            let before = ws.len();
            let GuardedCommit {
                overflow,
                seats,
                fenced: fence,
            } = db::commit_event_guarded(&self.pool, event, &ws).await?;
            if let Some(epoch) = fence {
                fenced.push((event.clone(), epoch));
                continue;
            }
            if overflow.is_empty() {
                continue; // this event fitted: its Redis state is right
            }
            tracing::error!(
                event_id = %event, capacity = seats.capacity, confirmed = seats.confirmed, refused = overflow.len(), of = before,
                "PostgreSQL's guards refused confirmations Redis had made (over the capacity or a user's limit); they are rejected and the event's Redis state is rebuilt"
            );
            let list: Vec<_> = overflow
                .iter()
                .map(|(w, reason)| Refused {
                    sale: w.sale,
                    id: w.id,
                    user: &w.user,
                    quantity: w.quantity,
                    reason: *reason,
                })
                .collect();
            self.inventory.revoke(event, &list).await?;
            // Public now: kept, should the batch be retried.
            self.rejected
                .keep(overflow.iter().map(|(w, reason)| ((w.id, w.sale), *reason)));
            report.revoked += overflow.len() as u64;
            refused.extend(overflow.iter().map(|(w, reason)| (w.id, *reason)));
        }
        if !fenced.is_empty() {
            let epochs: Epochs = winners.iter().map(|w| (w.event.clone(), w.epoch)).collect();
            return Err(self.fenced(&fenced, &epochs).await);
        }
        Ok(refused)
    }

    /// PostgreSQL fenced out decisions of `fenced` (event, PostgreSQL's
    /// epoch): they are decided again. A state ahead of PostgreSQL, or behind
    /// it twice under the same epoch and still behind, is not being rebuilt
    /// by anyone: its stock is dropped so the next decision rebuilds it.
    async fn fenced(&self, fenced: &[(EventId, i32)], decided: &Epochs) -> BatchError {
        for (event, pg) in fenced {
            let ours = decided.get(event).copied().unwrap_or_default();
            let twice = {
                let mut last = self.fenced.lock().expect("fenced epochs");
                last.insert(event.clone(), ours) == Some(ours)
            };
            // Fenced twice may also be two batches in flight decided under
            // the same epoch before one rebuild: the state rebuilt since is
            // PostgreSQL's, and dropping it would fence every batch decided
            // in it (a rebuild storm).
            let stale = ours > *pg
                || (twice
                    && match self.inventory.state_epoch(event).await {
                        // No epoch: no whole state (dropping it costs nothing).
                        Ok(now) => now.is_none_or(|e| e < i64::from(*pg)),
                        Err(e) => return e.into(),
                    });
            tracing::warn!(event_id = %event, decided_under = ours, postgresql = pg, rebuild = stale, "decisions made in an older Redis state: deciding them again");
            if stale && let Err(e) = self.inventory.drop_stock(event).await {
                return e.into();
            }
        }
        BatchError::Fenced(fenced.iter().map(|(e, _)| e.clone()).collect())
    }

    /// Step 3: tell Redis the confirmations are committed, so status lookups
    /// answer "confirmed" (until then they say "pending"). A state behind
    /// what this worker saw of it is rebuilt from PostgreSQL instead, which
    /// holds them now.
    pub async fn settle(&self, items: &[Queued], outcomes: &[Outcome]) -> Result<(), BatchError> {
        let mut by_event: HashMap<&EventId, Vec<ReservationId>> = HashMap::new();
        for (q, o) in items.iter().zip(outcomes) {
            if o.awaits_commit() {
                by_event.entry(&q.event).or_default().push(q.id);
            }
        }
        let calls = by_event.into_iter().map(|(event, ids)| async move {
            match self.inventory.settle(event, self.mark(event), &ids).await {
                Ok(mark) => {
                    if let Some(m) = mark {
                        self.raise_mark(event, m);
                    }
                    Ok(())
                }
                Err(InventoryError::StockMissing) => {
                    tracing::warn!(event_id = %event, "the event's Redis state is behind what this worker saw of it (restored from before?): rebuilding it from PostgreSQL");
                    self.restock(event).await
                }
                Err(e) => Err(e.into()),
            }
        });
        for r in futures::future::join_all(calls).await {
            r?;
        }
        Ok(())
    }

    /// Step 4: wake long-polls on every gateway, one message per event.
    pub async fn announce(&self, items: &[Queued]) {
        let mut by_event: HashMap<&EventId, Vec<ReservationId>> = HashMap::new();
        for q in items {
            by_event.entry(&q.event).or_default().push(q.id);
        }
        let conn = self.inventory.connection();
        for (event, ids) in by_event {
            notify::publish(
                &conn,
                self.inventory.namespace(),
                &Notice::Decided(event.clone(), ids),
            )
            .await;
        }
    }
}

/// One line per reservation at debug level, so that the log of one
/// purchase can be followed from the gateway to its commit.
fn log_decisions(items: &[Queued], outcomes: &[Outcome]) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    for (q, o) in items.iter().zip(outcomes) {
        tracing::debug!(
            event_id = %q.event, reservation_id = %q.id, status = ?o.status, reason = ?o.reason,
            "settled"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refusals_of_the_work_itself_count() {
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let redis_down = BatchError::Inventory(InventoryError::Redis(reset.into()));
        assert!(!redis_down.is_refusal());
        assert!(!BatchError::Database(sqlx::Error::PoolTimedOut).is_refusal());
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(!BatchError::Database(sqlx::Error::Io(io)).is_refusal());
        assert!(!BatchError::TimedOut(std::time::Duration::from_secs(10)).is_refusal());
        assert!(!BatchError::Inventory(InventoryError::StockMissing).is_refusal());
        let loading = redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading),
            "loading",
        ));
        assert!(!BatchError::Inventory(InventoryError::Redis(loading)).is_refusal());
        let read_only = redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly),
            "read only",
        ));
        assert!(!BatchError::Inventory(InventoryError::Redis(read_only)).is_refusal());

        let script = redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError),
            "user_script:1: bad",
        ));
        assert!(BatchError::Inventory(InventoryError::Redis(script)).is_refusal());
        assert!(BatchError::Inventory(InventoryError::Corrupt("x".into())).is_refusal());

        let wrong_type = redis::make_extension_error(
            "WRONGTYPE".into(),
            Some("Operation against a key holding the wrong kind of value".into()),
        );
        assert!(BatchError::Inventory(InventoryError::Redis(wrong_type)).is_refusal());
        for busy in ["OOM", "BUSY", "MISCONF", "NOREPLICAS"] {
            let e = redis::make_extension_error(busy.into(), None);
            assert!(
                !BatchError::Inventory(InventoryError::Redis(e)).is_refusal(),
                "{busy} is a Redis that cannot work for now"
            );
        }
    }
}
