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

/// Opens a connection named after the daemon (shown in RabbitMQ's management UI).
pub async fn connect(url: &str, name: &str) -> anyhow::Result<Connection> {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    Ok(Connection::connect(url, props).await?)
}

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
pub async fn confirm_channel(conn: &Connection, ns: &Namespace) -> anyhow::Result<Channel> {
    use anyhow::Context;
    let ch = conn.create_channel().await.context("open a channel")?;
    ch.confirm_select(Default::default())
        .await
        .context("confirm mode")?;
    declare(&ch, ns).await.context("declare the queues")?;
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

/// Declares the queue, its dead-letter exchange and dead-letter queue. Both
/// daemons call it with the same arguments, in any order, any number of times.
pub async fn declare(channel: &Channel, ns: &Namespace) -> lapin::Result<()> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
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
    channel
        .queue_declare(
            ns.dead_letter_queue().as_str().into(),
            durable,
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            ns.dead_letter_queue().as_str().into(),
            ns.dead_letter_exchange().as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    declare_main(channel, ns).await?;
    Ok(())
}

/// Declares the reservation queue itself (same arguments every time, so it
/// is also a safe way to read its depth).
async fn declare_main(channel: &Channel, ns: &Namespace) -> lapin::Result<lapin::Queue> {
    let mut args = FieldTable::default();
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(ns.dead_letter_exchange().as_str().into()),
    );
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(ns.queue().as_str().into(), durable, args)
        .await
}

/// How full the reservation queue is, and whether anyone drains it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Depth {
    /// Messages ready (not yet handed to a worker).
    pub messages: u32,
    /// Workers consuming.
    pub consumers: u32,
}

/// The reservation queue's depth.
pub async fn depth(channel: &Channel, ns: &Namespace) -> lapin::Result<Depth> {
    let q = declare_main(channel, ns).await?;
    Ok(Depth {
        messages: q.message_count(),
        consumers: q.consumer_count(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
