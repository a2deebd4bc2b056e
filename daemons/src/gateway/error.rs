//! Every error the gateway answers, mapped to a status and a JSON body
//! `{"error","message"}` in one place. An unexpected failure is logged in full
//! and answered 503 (a dependency failed) — never 500.

use bytes::Bytes;
use flashgrid_wire::{ErrorBody, ErrorCode};
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

pub type Body = Full<Bytes>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    /// Seconds for `Retry-After` (503, 429).
    pub retry_after: Option<u32>,
    /// The methods a route takes, for `Allow` (405).
    pub allow: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            allow: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    pub fn unknown_event(event: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorCode::UnknownEvent,
            format!("no event {}: GET /events lists them", shown(event)),
        )
    }

    /// 405, with the `Allow` header HTTP requires.
    pub fn method_not_allowed(allow: &'static str) -> Self {
        Self {
            allow: Some(allow),
            ..Self::new(
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::MethodNotAllowed,
                format!("this route takes {allow}"),
            )
        }
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::RequestTimeout,
            message,
        )
    }

    pub fn sold_out(event: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            ErrorCode::SoldOut,
            format!("event {event:?} is sold out"),
        )
    }

    pub fn sale_closed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, ErrorCode::SaleClosed, message)
    }

    /// 409: a destructive call that needs an explicit confirmation in its body.
    pub fn confirmation_required(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            ErrorCode::ConfirmationRequired,
            message,
        )
    }

    /// 409 with a code of the caller's: the state forbids the call.
    pub fn conflict(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn exists(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, ErrorCode::Exists, message)
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            format!("the body is larger than {limit} bytes"),
        )
    }

    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            "send the body as JSON (Content-Type: application/json)",
        )
    }

    /// 429: this client is over its rate; `retry_after` whole seconds.
    pub fn rate_limited(message: impl Into<String>, retry_after: u32) -> Self {
        Self {
            retry_after: Some(retry_after.max(1)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                message,
            )
        }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                message,
            )
        }
    }

    /// A dependency failed unexpectedly: log the cause, tell the client to retry.
    pub fn dependency(what: &str, err: &dyn std::fmt::Display) -> Self {
        tracing::warn!(error = %err, "{what} failed");
        Self::unavailable(format!("{what} is unavailable, retry shortly"))
    }

    /// The JSON body alone.
    pub fn body(&self) -> Bytes {
        let body = ErrorBody {
            error: self.code.as_str().to_owned(),
            message: self.message.clone(),
        };
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
    }

    pub fn into_response(self) -> Response<Body> {
        let body = ErrorBody {
            error: self.code.as_str().to_owned(),
            message: self.message,
        };
        let mut resp = json(self.status, &body);
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(allow) = self.allow {
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        resp
    }
}

/// Longest piece of a client's input echoed in an error message.
const SHOWN_MAX: usize = 64;

/// A client's input as an error message shows it: quoted and escaped, cut
/// at `SHOWN_MAX` characters (a 60 KB path is not sent back at length).
pub fn shown(raw: &str) -> String {
    let mut cut: String = raw.chars().take(SHOWN_MAX).collect();
    let more = cut.len() < raw.len();
    cut = format!("{cut:?}");
    if more {
        cut.push('…');
    }
    cut
}

/// A JSON response.
pub fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    json_bytes(
        status,
        Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
    )
}

/// A response with an already serialised JSON body.
pub fn json_bytes(status: StatusCode, bytes: Bytes) -> Response<Body> {
    let mut resp = Response::new(Full::new(bytes));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_echoed_escaped_and_cut() {
        assert_eq!(shown("/a"), "\"/a\"");
        assert_eq!(shown("a\u{1b}[2J"), "\"a\\u{1b}[2J\"");
        let long = "x".repeat(60_000);
        let s = shown(&long);
        assert!(s.len() < 80, "{}", s.len());
        assert!(s.ends_with('…'));
    }
}
