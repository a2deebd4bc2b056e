//! Signed status URLs: a `202`'s status URL is a receipt any gateway can
//! read back without asking anyone. It carries what the gateway accepted
//! (buyer, quantity, when) under a MAC keyed by a secret all gateways read
//! from PostgreSQL, so that when Redis forgot a reservation, "issued by us,
//! not decided yet" is told apart from "never issued" (`404`), and a
//! decision can be derived from what PostgreSQL makes certain.
//!
//! Layout of the last path segment: `<reservation id>.<token>`, the token
//! base64url (no padding) of `version, quantity, accepted_at (ms, i64 BE),
//! sale (u32 BE), user id bytes, tag`, the tag the first 16 bytes of
//! HMAC-SHA256 over the event id, a 0 byte, the reservation id and
//! everything before the tag. Version 1 (before sale generations) has no
//! sale field; it is still read, as of the first sale (every event's then).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use flashgrid_wire::{EventId, Quantity, ReservationId, UserId};
use hmac::{KeyInit, Mac};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

const VERSION: u8 = 2;
const TAG: usize = 16;
/// version + quantity + accepted_at + sale.
const HEADER: usize = 1 + 1 + 8 + 4;
/// The header of version 1: no sale.
const HEADER_V1: usize = 1 + 1 + 8;

/// What a gateway accepted, as its receipt says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub user: UserId,
    pub quantity: Quantity,
    pub accepted_at: DateTime<Utc>,
    /// The event's sale generation it was accepted in.
    pub sale: u32,
}

/// Writes and reads receipts under one key.
#[derive(Clone)]
pub struct Receipts {
    mac: HmacSha256,
}

impl std::fmt::Debug for Receipts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Receipts(..)")
    }
}

/// A status URL segment FlashGrid did not issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a reservation id FlashGrid issued")]
pub struct Forged;

impl Receipts {
    pub fn new(key: &[u8]) -> Self {
        Self {
            mac: HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length"),
        }
    }

    fn tagger(&self, event: &EventId, id: &ReservationId, body: &[u8]) -> HmacSha256 {
        let mut m = self.mac.clone();
        m.update(event.as_str().as_bytes());
        m.update(&[0]);
        m.update(id.0.as_bytes());
        m.update(body);
        m
    }

    /// The status URL of an accepted reservation, its receipt in it.
    pub fn status_url(
        &self,
        event: &EventId,
        id: &ReservationId,
        user: &UserId,
        quantity: Quantity,
        accepted_at: DateTime<Utc>,
        sale: u32,
    ) -> String {
        let user = user.as_str().as_bytes();
        let mut raw = Vec::with_capacity(HEADER + user.len() + TAG);
        raw.push(VERSION);
        raw.push(quantity.get());
        raw.extend_from_slice(&accepted_at.timestamp_millis().to_be_bytes());
        raw.extend_from_slice(&sale.to_be_bytes());
        raw.extend_from_slice(user);
        let tag = self.tagger(event, id, &raw).finalize().into_bytes();
        raw.extend_from_slice(&tag[..TAG]);
        let mut url = flashgrid_wire::status_path(event, id);
        url.push('.');
        URL_SAFE_NO_PAD.encode_string(&raw, &mut url);
        url
    }

    /// Reads the last segment of a status URL: the reservation id, and the
    /// receipt when there is one (a bare id is a status URL of an earlier
    /// FlashGrid, or typed by hand: answered from what Redis and PostgreSQL
    /// hold). `Err` when it is neither an id nor a receipt this key signed.
    pub fn open(
        &self,
        event: &EventId,
        segment: &str,
    ) -> Result<(ReservationId, Option<Receipt>), Forged> {
        let (id, token) = match segment.split_once('.') {
            Some((id, token)) => (id, Some(token)),
            None => (segment, None),
        };
        let id: ReservationId = id.parse().map_err(|_| Forged)?;
        let Some(token) = token else {
            return Ok((id, None));
        };
        let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| Forged)?;
        let header = match raw.first() {
            Some(&VERSION) => HEADER,
            Some(1) => HEADER_V1,
            _ => return Err(Forged),
        };
        if raw.len() < header + 1 + TAG {
            return Err(Forged);
        }
        let (body, tag) = raw.split_at(raw.len() - TAG);
        self.tagger(event, &id, body)
            .verify_truncated_left(tag)
            .map_err(|_| Forged)?;
        let quantity = Quantity::new(body[1].into()).map_err(|_| Forged)?;
        let ms = i64::from_be_bytes(body[2..HEADER_V1].try_into().map_err(|_| Forged)?);
        let accepted_at = DateTime::from_timestamp_millis(ms).ok_or(Forged)?;
        let sale = if header == HEADER {
            u32::from_be_bytes(body[HEADER_V1..HEADER].try_into().map_err(|_| Forged)?)
        } else {
            1
        };
        let user = std::str::from_utf8(&body[header..]).map_err(|_| Forged)?;
        let user = UserId::parse(user).map_err(|_| Forged)?;
        Ok((
            id,
            Some(Receipt {
                user,
                quantity,
                accepted_at,
                sale,
            }),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt() -> Receipt {
        Receipt {
            user: UserId::parse("ünïcode buyer|1").unwrap(),
            quantity: Quantity::new(3).unwrap(),
            accepted_at: DateTime::from_timestamp_millis(1_764_000_000_123).unwrap(),
            sale: 7,
        }
    }

    fn last_segment(url: &str) -> &str {
        url.rsplit('/').next().unwrap()
    }

    #[test]
    fn a_receipt_reads_back_and_a_bare_id_has_none() {
        let keys = Receipts::new(b"k");
        let event = EventId::parse("drop").unwrap();
        let id = ReservationId::random();
        let r = receipt();
        let url = keys.status_url(&event, &id, &r.user, r.quantity, r.accepted_at, 7);
        assert!(url.starts_with(&format!("/events/drop/reservations/{id}.")));
        assert_eq!(
            keys.open(&event, last_segment(&url)),
            Ok((id, Some(receipt())))
        );
        assert_eq!(keys.open(&event, &id.to_string()), Ok((id, None)));
        assert!(
            url.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/.-_".contains(&b)),
            "{url}"
        );
    }

    #[test]
    fn anything_changed_or_signed_elsewhere_is_forged() {
        let keys = Receipts::new(b"k");
        let event = EventId::parse("drop").unwrap();
        let id = ReservationId::random();
        let r = receipt();
        let url = keys.status_url(&event, &id, &r.user, r.quantity, r.accepted_at, 7);
        let seg = last_segment(&url);
        // Another event, another id, another key.
        let other = EventId::parse("other").unwrap();
        assert_eq!(keys.open(&other, seg), Err(Forged));
        let (_, token) = seg.split_once('.').unwrap();
        let moved = format!("{}.{token}", ReservationId::random());
        assert_eq!(keys.open(&event, &moved), Err(Forged));
        assert_eq!(Receipts::new(b"k2").open(&event, seg), Err(Forged));
        // Any byte flipped.
        let raw = URL_SAFE_NO_PAD.decode(token).unwrap();
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 1;
            let bad = format!("{id}.{}", URL_SAFE_NO_PAD.encode(&bad));
            assert_eq!(keys.open(&event, &bad), Err(Forged), "byte {i}");
        }
        // Cut short, not base64, not an id.
        let short = format!("{id}.{}", URL_SAFE_NO_PAD.encode(&raw[..raw.len() - 1]));
        assert_eq!(keys.open(&event, &short), Err(Forged));
        assert_eq!(keys.open(&event, &format!("{id}.***")), Err(Forged));
        assert_eq!(keys.open(&event, &format!("{id}.")), Err(Forged));
        assert_eq!(keys.open(&event, "not-an-id"), Err(Forged));
    }

    /// A receipt issued before sale generations (version 1) still reads, as
    /// of the first sale.
    #[test]
    fn a_receipt_of_version_1_reads_without_a_sale() {
        let keys = Receipts::new(b"k");
        let event = EventId::parse("drop").unwrap();
        let id = ReservationId::random();
        let r = receipt();
        let mut raw = vec![1, r.quantity.get()];
        raw.extend_from_slice(&r.accepted_at.timestamp_millis().to_be_bytes());
        raw.extend_from_slice(r.user.as_str().as_bytes());
        let tag = keys.tagger(&event, &id, &raw).finalize().into_bytes();
        raw.extend_from_slice(&tag[..TAG]);
        let seg = format!("{id}.{}", URL_SAFE_NO_PAD.encode(&raw));
        assert_eq!(
            keys.open(&event, &seg),
            Ok((id, Some(Receipt { sale: 1, ..r })))
        );
        raw[0] = 3;
        let seg = format!("{id}.{}", URL_SAFE_NO_PAD.encode(&raw));
        assert_eq!(keys.open(&event, &seg), Err(Forged), "an unknown version");
    }
}
