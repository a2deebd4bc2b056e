//! Every name FlashGrid uses on shared servers, derived from one namespace so
//! that several stacks (and parallel tests) never touch each other.
//!
//! Redis keys of one event share the hash tag `{<ns>:evt:<id>}`, so each Lua
//! script touches one slot and runs unchanged on Redis Cluster.

use flashgrid_wire::{EventId, ReservationId};

/// A validated namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace(String);

impl Namespace {
    pub fn new(raw: &str) -> Result<Self, String> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(format!(
                "FLASHGRID_NAMESPACE must be 1-64 characters [A-Za-z0-9._-], got {raw:?}"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The Redis keys of one event.
    pub fn event_keys(&self, event: &EventId) -> EventKeys {
        let tag = format!("{{{}:evt:{}}}", self.0, event);
        EventKeys {
            stock: format!("{tag}:stock"),
            users: format!("{tag}:users"),
            won: format!("{tag}:won"),
            outcome_prefix: format!("{tag}:o:"),
            tag,
        }
    }

    /// Pattern matching every Redis key of this namespace (for cleanup).
    pub fn key_pattern(&self) -> String {
        format!("{{{}:*", self.0)
    }

    /// The pub/sub channel between workers and gateways.
    pub fn notify_channel(&self) -> String {
        format!("{}:notify", self.0)
    }

    /// The durable queue of reservation groups.
    pub fn queue(&self) -> String {
        format!("{}.reservations", self.0)
    }

    /// Where messages that cannot be parsed go, instead of looping.
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dead-letter", self.0)
    }

    pub fn dead_letter_queue(&self) -> String {
        format!("{}.reservations.dead", self.0)
    }

    /// The routing key of the gateway's link probe: no queue is bound to
    /// it, so the broker confirms the empty message and drops it.
    pub fn link_probe(&self) -> String {
        format!("{}.link-probe", self.0)
    }
}

impl std::str::FromStr for Namespace {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::new(s)
    }
}

impl std::fmt::Display for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The Redis keys of one event; all in one hash slot.
///
/// Memory is bounded by the winners: confirmations live in one hash (at most
/// one entry per seat sold), everything else a buyer can read — a pending
/// marker, a rejection — in a key of its own that expires
/// (`FLASHGRID_OUTCOME_TTL`), so a million rejected requests cost nothing
/// a day later. Redis 7.0 has no per-field expiry, hence a key each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventKeys {
    /// The hash tag `{<ns>:evt:<id>}` every key below starts with.
    pub tag: String,
    /// Seats left (an integer); missing means "rebuild from PostgreSQL".
    pub stock: String,
    /// Hash user id -> confirmed quantity, for `per_user_limit`.
    pub users: String,
    /// Hash reservation id -> confirmation (see `inventory::record`),
    /// uncommitted or committed: the winners only.
    pub won: String,
    /// Prefix of the per-reservation outcome keys ([`EventKeys::outcome`]).
    pub outcome_prefix: String,
}

impl EventKeys {
    /// The key of one reservation's pending marker or rejection (a string
    /// with a time to live), in the event's sale generation `sale`: a reset
    /// starts a new sale, in which nothing recorded in the old one is read
    /// (a retried idempotency key gives the same reservation id again).
    pub fn outcome(&self, sale: u32, id: &ReservationId) -> String {
        use std::fmt::Write;
        let mut k = String::with_capacity(self.outcome_prefix.len() + 48);
        k.push_str(&self.outcome_prefix);
        let _ = write!(k, "{sale}:{id}");
        k
    }

    /// Pattern of every per-reservation outcome key of the event.
    pub fn outcome_pattern(&self) -> String {
        format!("{}*", self.outcome_prefix)
    }

    /// Where a rebuild from the snapshot of `epoch` stages the confirmations
    /// and the users' counts, in chunks, before one short script swaps them
    /// in (see `restock.lua`).
    pub fn staging(&self, epoch: i32) -> (String, String) {
        (
            format!("{}:rebuild:{epoch}:won", self.tag),
            format!("{}:rebuild:{epoch}:users", self.tag),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_one_event_share_a_hash_tag() {
        let ns = Namespace::new("t1").unwrap();
        let k = ns.event_keys(&EventId::parse("e").unwrap());
        let id = ReservationId(uuid::Uuid::nil());
        let (staged_won, staged_users) = k.staging(7);
        for key in [
            &k.stock,
            &k.users,
            &k.won,
            &k.outcome(1, &id),
            &staged_won,
            &staged_users,
        ] {
            assert!(key.starts_with("{t1:evt:e}:"), "{key}");
        }
        assert_eq!(
            k.outcome(3, &id),
            "{t1:evt:e}:o:3:00000000-0000-0000-0000-000000000000"
        );
        assert!(k.outcome_pattern().starts_with("{t1:evt:e}:o:"));
        assert!(Namespace::new("a b").is_err());
        assert!(Namespace::new("").is_err());
    }
}
