//! The admin bearer token, as every binary reads it (`--token`,
//! `--admin-token`, `FLASHGRID_ADMIN_TOKEN`). Its `Debug` never shows the
//! value, so no `{:?}` of a configuration or a log line can leak it.

use std::fmt;
use std::str::FromStr;

#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    /// The secret itself: for the `Authorization` header, or the gateway's
    /// constant-time comparison.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl FromStr for AdminToken {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl From<&str> for AdminToken {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<String> for AdminToken {
    fn from(s: String) -> Self {
        Self(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_token() {
        let t: AdminToken = "s3cret-admin-token".parse().unwrap();
        assert_eq!(t.expose(), "s3cret-admin-token");
        let printed = format!("{t:?} {:?} {:#?}", Some(t.clone()), t);
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(printed.contains("<redacted>"));
    }
}
