//! Every name FlashGrid uses on shared servers, derived from one namespace so
//! that several stacks (and parallel tests) never touch each other.
//!
//! Redis keys of one event share the hash tag `{<ns>:evt:<id>}`, so each Lua
//! script touches one slot and runs unchanged on Redis Cluster.

use flashgrid_wire::EventId;

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
            outcomes: format!("{tag}:outcomes"),
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventKeys {
    /// Seats left (an integer); missing means "rebuild from PostgreSQL".
    pub stock: String,
    /// Hash user id -> confirmed quantity, for `per_user_limit`.
    pub users: String,
    /// Hash reservation id -> outcome (see `inventory::record`).
    pub outcomes: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_one_event_share_a_hash_tag() {
        let ns = Namespace::new("t1").unwrap();
        let k = ns.event_keys(&EventId::parse("e").unwrap());
        for key in [&k.stock, &k.users, &k.outcomes] {
            assert!(key.starts_with("{t1:evt:e}:"), "{key}");
        }
        assert!(Namespace::new("a b").is_err());
        assert!(Namespace::new("").is_err());
    }
}
