//! The daemons broken on purpose, to prove the matrix catches each defect
//! it exists for: a run with a sabotage must **fail**, with the verdict the
//! defect breaks. Nothing here is in the real daemons: a sabotaged worker is
//! a binary of this crate built from the daemons' public steps
//! ([`worker`]), and a sabotaged status route is an HTTP proxy in front of
//! the real gateway ([`status`]).

pub mod status;
pub mod worker;

use crate::Scenario;

/// The environment variable that tells the sabotaged worker which defect
/// to have.
pub const ENV: &str = "FLASHGRID_SABOTAGE";

/// One defect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sabotage {
    /// The worker acks a batch before PostgreSQL committed it: a crash
    /// mid-commit loses what was acked.
    AckBeforeCommit,
    /// A stock missing from Redis is rebuilt from the capacity, forgetting
    /// the seats PostgreSQL already holds.
    RestockFromCapacity,
    /// The decide ignores the event's per-user limit: PostgreSQL's
    /// per-user guard refuses the extra seats, and counts them revoked.
    IgnoreLimit,
    /// The same, in a database without the per-user guard (the worker drops
    /// the CHECK of its own test database): users end over the limit.
    IgnoreLimitUnguarded,
    /// The status route answers `rejected` for a reservation it does not
    /// know (instead of `404`).
    UnknownIsRejected,
}

impl Sabotage {
    pub const ALL: [Sabotage; 5] = [
        Sabotage::AckBeforeCommit,
        Sabotage::RestockFromCapacity,
        Sabotage::IgnoreLimit,
        Sabotage::IgnoreLimitUnguarded,
        Sabotage::UnknownIsRejected,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Sabotage::AckBeforeCommit => "ack-before-commit",
            Sabotage::RestockFromCapacity => "restock-from-capacity",
            Sabotage::IgnoreLimit => "ignore-limit",
            Sabotage::IgnoreLimitUnguarded => "ignore-limit-unguarded",
            Sabotage::UnknownIsRejected => "unknown-is-rejected",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether the defect is the worker's (else the gateway's status route).
    pub fn in_worker(self) -> bool {
        self != Sabotage::UnknownIsRejected
    }

    /// The scenario that exposes the defect.
    pub fn scenario(self) -> Scenario {
        match self {
            Sabotage::AckBeforeCommit => Scenario::WorkerKill,
            Sabotage::RestockFromCapacity => Scenario::RedisWipe,
            // No fault needed: the buyers' second tries are enough.
            Sabotage::IgnoreLimit | Sabotage::IgnoreLimitUnguarded => Scenario::RetryStorm,
            Sabotage::UnknownIsRejected => Scenario::RedisWipe,
        }
    }

    /// The verdict (a name of [`crate::Verdicts::pairs`]) the defect must
    /// break.
    pub fn breaks(self) -> &'static str {
        match self {
            // Acked, then killed mid-commit: those buyers never hear.
            Sabotage::AckBeforeCommit => "lost",
            // Redis sells the seats again; PostgreSQL's guard refuses them.
            Sabotage::RestockFromCapacity => "revoked",
            Sabotage::IgnoreLimit => "revoked",
            Sabotage::IgnoreLimitUnguarded => "over_limit",
            // Told rejected while the purchase was still queued, then sold
            // a seat.
            Sabotage::UnknownIsRejected => "drift",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sabotage_names_a_verdict_and_parses_back() {
        let verdicts = crate::Verdicts::default().pairs().map(|(k, _)| k);
        for s in Sabotage::ALL {
            assert_eq!(Sabotage::parse(s.name()), Some(s));
            assert!(verdicts.contains(&s.breaks()), "{s:?}");
        }
        assert_eq!(Sabotage::parse("nothing"), None);
    }
}
