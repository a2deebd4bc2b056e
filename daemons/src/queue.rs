//! The durable queue between gateways and workers: the message format (a
//! group of reservations per message) and the AMQP topology.
//!
//! One persistent message carries every reservation a gateway gathered within
//! about a millisecond: RabbitMQ confirms a few tens of thousands of messages
//! a second, so one reservation per message would cap the whole system there.

use crate::names::Namespace;
use chrono::{DateTime, Utc};
use flashgrid_wire::{EventId, Quantity, ReservationId, UserId};
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use serde::{Deserialize, Serialize};

/// Version of the message format; a worker dead-letters versions it does not know.
pub const FORMAT_VERSION: u8 = 1;

/// One queue message: a group of accepted reservations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub v: u8,
    pub items: Vec<Queued>,
}

/// One accepted reservation in a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queued {
    pub id: ReservationId,
    pub event: EventId,
    pub user: UserId,
    pub qty: Quantity,
    /// When the gateway accepted it (judged against the sale window).
    pub at: DateTime<Utc>,
    /// The event's sale generation it was accepted in (`Event::sale`): a
    /// reservation still queued when its event is reset is rejected, not
    /// sold in the new sale. Absent from messages of gateways older than
    /// generations: 1, the generation every event had then.
    #[serde(default = "first_sale")]
    pub sale: u32,
}

fn first_sale() -> u32 {
    1
}

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("not a reservation group: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unknown message format version {0}")]
    Version(u8),
    #[error("empty group")]
    Empty,
}

impl Group {
    /// Encodes a group from the reservations (owned or borrowed).
    pub fn encode<T: Serialize>(items: &[T]) -> Vec<u8> {
        #[derive(Serialize)]
        struct Out<'a, T> {
            v: u8,
            items: &'a [T],
        }
        // Serialising plain structs into a Vec cannot fail.
        serde_json::to_vec(&Out {
            v: FORMAT_VERSION,
            items,
        })
        .unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let g: Group = serde_json::from_slice(bytes)?;
        if g.v != FORMAT_VERSION {
            return Err(FormatError::Version(g.v));
        }
        if g.items.is_empty() {
            return Err(FormatError::Empty);
        }
        Ok(g)
    }
}

/// Opens a connection named after the daemon (shown in RabbitMQ's
/// management UI) to one node of `urls` (`AMQP_URL`: one URL, or the
/// comma-separated nodes of a cluster). Nodes are tried in turn, each
/// within [`NODE_CONNECT_TIMEOUT`], starting after the node this process
/// connected to last: a reconnect after a node died goes to another.
pub async fn connect(urls: &str, name: &str) -> anyhow::Result<Connection> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nodes: Vec<&str> = urls.split(',').map(str::trim).collect();
    let start = NEXT.load(Ordering::Relaxed);
    let mut failures = Vec::new();
    for i in 0..nodes.len() {
        let at = (start + i) % nodes.len();
        let props = ConnectionProperties::default().with_connection_name(name.into());
        let attempt =
            tokio::time::timeout(NODE_CONNECT_TIMEOUT, Connection::connect(nodes[at], props)).await;
        match attempt {
            Ok(Ok(c)) => {
                // The next reconnect starts with the node after this one.
                NEXT.store(at + 1, Ordering::Relaxed);
                record_connected(name, at);
                if nodes.len() > 1 {
                    tracing::info!(node = %crate::redact::redact(nodes[at]), "connected to RabbitMQ");
                }
                return Ok(c);
            }
            Ok(Err(e)) => failures.push(format!("{}: {e}", crate::redact::redact(nodes[at]))),
            Err(_) => failures.push(format!(
                "{}: no AMQP handshake within {NODE_CONNECT_TIMEOUT:?}",
                crate::redact::redact(nodes[at])
            )),
        }
    }
    NEXT.store(start + 1, Ordering::Relaxed);
    Err(anyhow::anyhow!("{}", failures.join("; ")))
}

/// The node (its index in `AMQP_URL`) each connection name of this
/// process connected to last, for the feed's view of which node a daemon
/// uses. A handful of names per process: a list, not a map.
static CONNECTED: std::sync::Mutex<Vec<(String, usize)>> = std::sync::Mutex::new(Vec::new());

fn record_connected(name: &str, node: usize) {
    let mut list = CONNECTED.lock().unwrap_or_else(|p| p.into_inner());
    match list.iter_mut().find(|(n, _)| n == name) {
        Some(entry) => entry.1 = node,
        None => list.push((name.to_owned(), node)),
    }
}

/// The node the connections named `name` connected to last.
pub fn connected_node(name: &str) -> Option<usize> {
    let list = CONNECTED.lock().unwrap_or_else(|p| p.into_inner());
    list.iter().find(|(n, _)| n == name).map(|(_, i)| *i)
}

/// How long one node may take to connect before the next is tried.
pub const NODE_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Closes a connection politely, but without waiting on a broker that is
/// gone (its close-ok would never come).
pub async fn close(conn: &Connection, code: u16, reason: &str) {
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        conn.close(code, reason.into()),
    )
    .await;
}

/// A channel in publisher-confirm mode with the queues declared (one may
/// have been deleted since start), for the few messages a worker publishes
/// itself: reservations set aside, replays.
pub async fn confirm_channel(conn: &Connection, topo: &Topology) -> anyhow::Result<Channel> {
    use anyhow::Context;
    let ch = confirm_mode(conn).await?;
    declare(&ch, topo).await.context("declare the queues")?;
    Ok(ch)
}

/// A channel in publisher-confirm mode, declaring nothing (for queues the
/// caller declared on this connection already).
pub async fn confirm_mode(conn: &Connection) -> anyhow::Result<Channel> {
    use anyhow::Context;
    let ch = conn.create_channel().await.context("open a channel")?;
    ch.confirm_select(Default::default())
        .await
        .context("confirm mode")?;
    Ok(ch)
}

/// Publishes one persistent message to `queue` and waits, at most `timeout`,
/// until the broker has kept it. Mandatory: a message that finds no queue
/// comes back inside the ack, and is an error here rather than a silent drop.
pub async fn publish_kept(
    ch: &Channel,
    queue: &str,
    body: &[u8],
    timeout: std::time::Duration,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let publish = async {
        ch.basic_publish(
            "".into(),
            queue.into(),
            lapin::options::BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            body,
            lapin::BasicProperties::default().with_delivery_mode(2),
        )
        .await?
        .await
    };
    let confirm = tokio::time::timeout(timeout, publish)
        .await
        .with_context(|| format!("the broker did not confirm a message to {queue} in time"))?
        .with_context(|| format!("publish to {queue}"))?;
    anyhow::ensure!(
        matches!(confirm, lapin::Confirmation::Ack(None)),
        "the broker did not keep a message to {queue} ({confirm:?})"
    );
    Ok(())
}

/// The kind of the reservation queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueueType {
    /// Replicated over a majority of a cluster's nodes (Raft): survives a
    /// node's loss; on one node, confirms about twice as fast as classic
    /// here (docs/BENCHMARKS.md).
    Quorum,
    /// On one node only.
    Classic,
}

impl QueueType {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Quorum => "quorum",
            QueueType::Classic => "classic",
        }
    }
}

/// The reservation queues of a namespace and how they are declared: every
/// daemon of a stack must agree on it (the same flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub ns: Namespace,
    /// Reservation queues; an event's reservations all go to one, chosen
    /// by a hash of its id ([`Topology::partition_of`]).
    pub partitions: u16,
    pub kind: QueueType,
    /// Most messages a partition holds; beyond it the broker refuses
    /// (nacks) a publish and the buyer is answered 503.
    pub max_length: u32,
    /// Quorum queues: deliveries of one message (crashes of the workers
    /// holding it) before it is dead-lettered as poison.
    pub delivery_limit: u32,
}

impl Topology {
    /// One classic queue without limits: what a namespace had before
    /// partitions, and what tests that publish by hand expect.
    pub fn single(ns: Namespace) -> Self {
        Self {
            ns,
            partitions: 1,
            kind: QueueType::Classic,
            max_length: 0,
            delivery_limit: 0,
        }
    }

    /// The queue of partition `p`: partition 0 keeps the name of the one
    /// queue a namespace had before partitions.
    pub fn queue(&self, p: u16) -> String {
        match p {
            0 => self.ns.queue(),
            p => format!("{}.{p}", self.ns.queue()),
        }
    }

    /// The empty queue whose length limit records the partition count
    /// (see [`check_partitions`]).
    pub fn partitions_marker(&self) -> String {
        format!("{}.partitions", self.ns.queue())
    }

    /// Every partition's queue, in order.
    pub fn queues(&self) -> impl Iterator<Item = String> + '_ {
        (0..self.partitions).map(|p| self.queue(p))
    }

    /// The partition of an event: FNV-1a of its id, so that every gateway,
    /// of any build, sends an event's reservations to the same queue, where
    /// they stay in order.
    pub fn partition_of(&self, event: &EventId) -> u16 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in event.as_str().bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        (h % u64::from(self.partitions.max(1))) as u16
    }

    /// The arguments every queue of the namespace is declared with: its type.
    fn type_args(&self) -> FieldTable {
        let mut args = FieldTable::default();
        if self.kind == QueueType::Quorum {
            args.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
        }
        args
    }

    fn queue_args(&self, dead_letter: bool) -> FieldTable {
        let mut args = self.type_args();
        if dead_letter {
            return args;
        }
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(self.ns.dead_letter_exchange().as_str().into()),
        );
        if self.max_length > 0 {
            args.insert(
                "x-max-length".into(),
                AMQPValue::LongLongInt(self.max_length.into()),
            );
            args.insert(
                "x-overflow".into(),
                AMQPValue::LongString("reject-publish".into()),
            );
        }
        if self.kind == QueueType::Quorum && self.delivery_limit > 0 {
            args.insert(
                "x-delivery-limit".into(),
                AMQPValue::LongLongInt(self.delivery_limit.into()),
            );
        }
        args
    }
}

/// Declares the reservation queues, their dead-letter exchange and
/// dead-letter queue. Every daemon calls it with the same arguments, in any
/// order, any number of times; a queue declared before with other arguments
/// (another type, other limits) fails with an error that says what to do.
pub async fn declare(channel: &Channel, topo: &Topology) -> anyhow::Result<()> {
    let ns = &topo.ns;
    channel
        .exchange_declare(
            ns.dead_letter_exchange().as_str().into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let dead = ns.dead_letter_queue();
    declare_queue(channel, topo, &dead, topo.queue_args(true)).await?;
    channel
        .queue_bind(
            dead.as_str().into(),
            ns.dead_letter_exchange().as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    for q in topo.queues() {
        declare_queue(channel, topo, &q, topo.queue_args(false)).await?;
    }
    Ok(())
}

async fn declare_queue(
    channel: &Channel,
    topo: &Topology,
    name: &str,
    args: FieldTable,
) -> anyhow::Result<lapin::Queue> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(name.into(), durable, args)
        .await
        .map_err(|e| {
            let inequivalent = e.to_string().contains("PRECONDITION_FAILED");
            let e = anyhow::Error::new(e);
            if inequivalent {
                e.context(format!(
                    "queue {name} exists with other arguments than this daemon's ({} queue, \
                     max length {}, delivery limit {}): set FLASHGRID_QUEUE_TYPE, \
                     FLASHGRID_QUEUE_MAX_LENGTH and FLASHGRID_DELIVERY_LIMIT as it was declared, \
                     or let it drain and delete it (`rabbitmqctl delete_queue {name}`)",
                    topo.kind.as_str(),
                    topo.max_length,
                    topo.delivery_limit
                ))
            } else {
                e.context(format!("declare queue {name}"))
            }
        })
}

/// Fails when a daemon of the namespace runs (or ran) with another number
/// of partitions: reservations it queued on a partition this one does not
/// know would wait for a worker that never comes. The count is kept in
/// the broker as the length limit of an empty marker queue, which the
/// broker refuses to declare again with another one.
pub async fn check_partitions(conn: &Connection, topo: &Topology) -> anyhow::Result<()> {
    let marker = topo.partitions_marker();
    let mut args = topo.type_args();
    args.insert(
        "x-max-length".into(),
        AMQPValue::LongLongInt(topo.partitions.into()),
    );
    // A refused declare closes its channel: one of its own.
    let ch = conn.create_channel().await?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    match ch
        .queue_declare(marker.as_str().into(), durable, args)
        .await
    {
        Ok(_) => {
            let _ = ch.close(200, "checked".into()).await;
            Ok(())
        }
        Err(e) if e.to_string().contains("PRECONDITION_FAILED") => anyhow::bail!(
            "a daemon of namespace {} uses other reservation queues than \
             FLASHGRID_QUEUE_PARTITIONS={} FLASHGRID_QUEUE_TYPE={} (queue {marker} records \
             them). Set both alike on every gateway and worker; to change them, stop them \
             all, let the queues drain, and delete {marker} and the queues \
             (`rabbitmqctl delete_queue {marker}`)",
            topo.ns,
            topo.partitions,
            topo.kind.as_str()
        ),
        Err(e) => Err(anyhow::Error::new(e).context(format!("declare {marker}"))),
    }
}

/// How full the reservation queues are, and whether anyone drains them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Depth {
    /// Messages ready (not yet handed to a worker), over every partition.
    pub messages: u32,
    /// Workers consuming the least-consumed partition: 0 when one
    /// partition is drained by nobody.
    pub consumers: u32,
}

/// The reservation queues' depth (declaring them again is a safe way to
/// read it: same arguments every time).
pub async fn depth(channel: &Channel, topo: &Topology) -> anyhow::Result<Depth> {
    let mut d = Depth {
        messages: 0,
        consumers: u32::MAX,
    };
    for q in topo.queues() {
        let q = declare_queue(channel, topo, &q, topo.queue_args(false)).await?;
        d.messages = d.messages.saturating_add(q.message_count());
        d.consumers = d.consumers.min(q.consumer_count());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_stable_and_spread() {
        let topo = |n| Topology {
            partitions: n,
            ..Topology::single(Namespace::new("fg").unwrap())
        };
        // Pinned: a change would split an event's reservations over two
        // queues while gateways of two builds run side by side.
        let e = EventId::parse("demo").unwrap();
        assert_eq!(topo(1).partition_of(&e), 0);
        assert_eq!(
            topo(7).partition_of(&e),
            (0xa5e4_1b67_4276_d396_u64 % 7) as u16
        );
        let mut seen = [0u32; 4];
        for i in 0..400 {
            seen[usize::from(topo(4).partition_of(&EventId::parse(&format!("e-{i}")).unwrap()))] +=
                1;
        }
        assert!(seen.iter().all(|&n| n > 60), "{seen:?}");
        assert_eq!(topo(3).queue(0), "fg.reservations");
        assert_eq!(topo(3).queue(2), "fg.reservations.2");
        assert_eq!(topo(3).queues().count(), 3);
    }

    #[test]
    fn groups_round_trip_and_bad_ones_are_refused() {
        let items = vec![Queued {
            id: ReservationId::random(),
            event: EventId::parse("e").unwrap(),
            user: UserId::parse("u").unwrap(),
            qty: Quantity::ONE,
            at: Utc::now(),
            sale: 3,
        }];
        let g = Group::decode(&Group::encode(&items)).unwrap();
        assert_eq!(g.items, items);
        // A message of a gateway older than sale generations: of the first
        // sale, the one every event was in then.
        let old = format!(
            r#"{{"v":1,"items":[{{"id":"{}","event":"e","user":"u","qty":1,"at":"2026-01-01T00:00:00Z"}}]}}"#,
            items[0].id
        );
        assert_eq!(Group::decode(old.as_bytes()).unwrap().items[0].sale, 1);
        assert!(matches!(Group::decode(b"nope"), Err(FormatError::Json(_))));
        assert!(matches!(
            Group::decode(br#"{"v":9,"items":[]}"#),
            Err(FormatError::Version(9))
        ));
        assert!(matches!(
            Group::decode(br#"{"v":1,"items":[]}"#),
            Err(FormatError::Empty)
        ));
        // A bad field inside an item refuses the message (it is dead-lettered).
        assert!(Group::decode(br#"{"v":1,"items":[{"id":"x"}]}"#).is_err());
    }
}
