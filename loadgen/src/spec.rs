//! What an attack does: the target, how many requests, how (closed model: a
//! fixed number of connections as fast as they go; open model: a fixed rate),
//! and which buyers.

use flashgrid_wire::{EventId, Quantity};
use std::net::SocketAddr;
use std::time::Duration;

/// The gateway, resolved once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `http://host:port`, without a trailing slash.
    pub base: String,
    /// The `Host` header.
    pub authority: String,
    pub addr: SocketAddr,
}

impl Target {
    /// Parses and resolves an `http://host[:port]` URL.
    pub async fn resolve(url: &str) -> Result<Self, String> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("--url {url:?} is not a URL: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!(
                "--url {url:?}: only http:// gateways are supported"
            ));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("--url {url:?} has no host"))?
            .clone();
        let port = authority.port_u16().unwrap_or(80);
        let addr = tokio::net::lookup_host((authority.host(), port))
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", authority.host()))?
            .next()
            .ok_or_else(|| format!("{} resolves to no address", authority.host()))?;
        Ok(Self {
            base: format!("http://{authority}"),
            authority: authority.to_string(),
            addr,
        })
    }
}

/// One attack.
#[derive(Debug, Clone)]
pub struct AttackSpec {
    /// The gateway the event is set up and the decisions followed through.
    pub target: Target,
    /// Every gateway the crowd's connections spread over, in turn (empty:
    /// `target` alone); the decisions of one are followed through another.
    pub spread: Vec<Target>,
    pub event: EventId,
    /// Total requests (`-n`); with a duration, whichever ends first.
    pub requests: Option<u64>,
    /// Connections (`-c`).
    pub concurrency: usize,
    /// Open model: requests per second (`-q`).
    pub rate: Option<f64>,
    /// Stop sending after this long (`-z`).
    pub duration: Option<Duration>,
    /// Draw buyers from this many users instead of one per request.
    pub users: Option<u64>,
    pub quantity: Quantity,
    /// Distinguishes the buyers and idempotency keys of this run from others.
    pub run_id: String,
}

impl AttackSpec {
    /// The gateway connection `n` of the crowd sends to.
    pub fn gateway(&self, n: usize) -> &Target {
        match self.spread.len() {
            0 => &self.target,
            len => &self.spread[n % len],
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.concurrency == 0 {
            return Err("-c must be at least 1".into());
        }
        if self.requests == Some(0) {
            return Err("-n must be at least 1".into());
        }
        if self.requests.is_none() && self.duration.is_none() {
            return Err("give -n REQUESTS or -z DURATION".into());
        }
        if let Some(q) = self.rate
            && !(q > 0.0 && q.is_finite())
        {
            return Err("-q must be a positive rate".into());
        }
        if self.users == Some(0) {
            return Err("--users must be at least 1".into());
        }
        Ok(())
    }

    /// The buyer of request `i`.
    pub fn user(&self, i: u64) -> String {
        Buyer { spec: self, i }.to_string()
    }

    /// The idempotency key of request `i` (one purchase per request).
    pub fn key(&self, i: u64) -> String {
        format!("{}-{i}", self.run_id)
    }

    /// Request body of request `i`.
    pub fn body(&self, i: u64) -> String {
        let mut out = Vec::new();
        self.write_body(&mut out, i);
        String::from_utf8(out).expect("a body is ASCII")
    }
}

impl AttackSpec {
    /// Writes request `i` of connection `n` — `POST /reserve` with its
    /// idempotency key and body, the same as [`AttackSpec::key`] and
    /// [`AttackSpec::body`] — into `out`, whole, without allocating.
    pub fn write_request(&self, n: usize, i: u64, out: &mut Vec<u8>) {
        use std::io::Write;
        out.clear();
        let body_len = {
            let mut count = Counter(0);
            self.write_body(&mut count, i);
            count.0
        };
        // Writing to a Vec cannot fail.
        let _ = write!(
            out,
            "POST /reserve HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\nidempotency-key: {}-{i}\r\ncontent-length: {body_len}\r\n\r\n",
            self.gateway(n).authority,
            self.run_id,
        );
        self.write_body(out, i);
    }

    fn write_body(&self, out: &mut impl std::io::Write, i: u64) {
        // The ids are slugs and generated user ids: nothing to escape.
        // Writing to a Vec or a counter cannot fail.
        let _ = write!(
            out,
            r#"{{"event_id":"{}","user_id":"{}","quantity":{}}}"#,
            self.event,
            Buyer { spec: self, i },
            self.quantity
        );
    }
}

/// The buyer of request `i`, written where it goes without a `String`.
struct Buyer<'a> {
    spec: &'a AttackSpec,
    i: u64,
}

impl std::fmt::Display for Buyer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.spec.users {
            Some(n) => write!(f, "user-{}-{}", self.spec.run_id, self.i % n),
            None => write!(f, "buyer-{}-{}", self.spec.run_id, self.i),
        }
    }
}

/// Counts the bytes written to it.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A short random id for a run.
pub fn new_run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> AttackSpec {
        AttackSpec {
            target: Target {
                base: "http://x".into(),
                authority: "x".into(),
                addr: "127.0.0.1:1".parse().unwrap(),
            },
            spread: Vec::new(),
            event: EventId::parse("e").unwrap(),
            requests: Some(10),
            concurrency: 2,
            rate: None,
            duration: None,
            users: None,
            quantity: Quantity::ONE,
            run_id: "r".into(),
        }
    }

    #[test]
    fn users_are_distinct_unless_drawn_from_a_pool() {
        let mut s = spec();
        assert_ne!(s.user(1), s.user(2));
        s.users = Some(2);
        assert_eq!(s.user(1), s.user(3));
        let body: serde_json::Value = serde_json::from_str(&s.body(3)).unwrap();
        assert_eq!(body["user_id"], "user-r-1");
        assert_eq!(body["quantity"], 1);
    }

    #[test]
    fn the_written_request_carries_the_same_key_and_body() {
        for users in [None, Some(2)] {
            let mut s = spec();
            s.users = users;
            let mut out = Vec::new();
            s.write_request(0, 3, &mut out);
            let text = String::from_utf8(out).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert_eq!(body, s.body(3));
            assert!(head.starts_with("POST /reserve HTTP/1.1\r\nhost: x\r\n"));
            assert!(head.contains(&format!("idempotency-key: {}\r\n", s.key(3))));
            assert!(head.ends_with(&format!("content-length: {}", body.len())));
        }
    }

    #[test]
    fn connections_spread_over_the_gateways_in_turn() {
        let mut s = spec();
        assert_eq!(s.gateway(5), &s.target);
        let other = Target {
            base: "http://y".into(),
            authority: "y".into(),
            addr: "127.0.0.1:2".parse().unwrap(),
        };
        s.spread = vec![s.target.clone(), other.clone()];
        assert_eq!(s.gateway(0), &s.target);
        assert_eq!(s.gateway(1), &other);
        assert_eq!(s.gateway(4), &s.target);
    }

    #[test]
    fn validation_names_the_flag() {
        let mut s = spec();
        assert!(s.validate().is_ok());
        s.requests = None;
        assert!(s.validate().unwrap_err().contains("-n"));
        s.requests = Some(1);
        s.rate = Some(0.0);
        assert!(s.validate().unwrap_err().contains("-q"));
    }
}
