//! The attack's own HTTP/1.1 connection: the engine writes each request's
//! bytes straight to the socket and parses the answer in place (httparse),
//! with no connection task, no channel and no allocation per request — what
//! lets one core of client drive a server at wrk's pace. Everything else
//! (admin calls, following decisions, checkout) uses [`crate::client`].

use crate::client::{self, ClientError};
use crate::spec::Target;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Headers an answer may carry (the gateway sends about five).
const MAX_HEADERS: usize = 32;

/// Bytes read at a time.
const READ_CHUNK: usize = 4096;

/// One kept-alive connection and its buffers, reused request after request.
#[derive(Debug)]
pub struct Wire {
    stream: TcpStream,
    /// What was read and not consumed yet.
    inbox: Vec<u8>,
    /// The body of the last answer, at `inbox[body.0..body.1]`.
    body: (usize, usize),
    /// The server said it closes the connection after its answer, or an
    /// exchange failed (what is left on it is not to be trusted).
    closing: bool,
    /// Answers read on it so far.
    answered: u64,
}

/// One answer, borrowed from the connection's buffer.
#[derive(Debug)]
pub struct Answer<'a> {
    pub status: u16,
    pub body: &'a [u8],
}

impl Wire {
    pub async fn open(target: &Target) -> Result<Self, ClientError> {
        Ok(Self {
            stream: client::connect(target).await?,
            inbox: Vec::with_capacity(READ_CHUNK),
            body: (0, 0),
            closing: false,
            answered: 0,
        })
    }

    /// Whether another request may be sent on it.
    pub fn is_open(&self) -> bool {
        !self.closing
    }

    /// Writes `request` (one whole HTTP/1.1 request) and reads its answer,
    /// within `timeout`.
    pub async fn send(
        &mut self,
        request: &[u8],
        timeout: Duration,
    ) -> Result<Answer<'_>, ClientError> {
        let status = match tokio::time::timeout(timeout, self.exchange(request)).await {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => {
                self.closing = true;
                return Err(e);
            }
            Err(_) => {
                self.closing = true;
                return Err(ClientError::Timeout(timeout));
            }
        };
        self.answered += 1;
        Ok(Answer {
            status,
            body: &self.inbox[self.body.0..self.body.1],
        })
    }

    async fn exchange(&mut self, request: &[u8]) -> Result<u16, ClientError> {
        // The last answer is consumed: its bytes go.
        self.inbox.drain(..self.body.1);
        self.body = (0, 0);
        if let Err(e) = self.stream.write_all(request).await {
            return Err(self.ended(Some(e)));
        }
        loop {
            match parse(&self.inbox)? {
                // An interim answer (100 Continue): the real one follows.
                Some((100..=199, head, _, _)) => {
                    self.inbox.drain(..head);
                    continue;
                }
                Some((status, head, length, close)) if self.inbox.len() >= head + length => {
                    self.body = (head, head + length);
                    self.closing = close;
                    return Ok(status);
                }
                _ => {}
            }
            self.inbox.reserve(READ_CHUNK);
            let n = match self.stream.read_buf(&mut self.inbox).await {
                Ok(n) => n,
                Err(e) => return Err(self.ended(Some(e))),
            };
            if n == 0 {
                return Err(self.ended(None));
            }
        }
    }

    /// Why the connection ended before the answer. One kept alive that
    /// ends before a byte of its next answer came was closed by the server
    /// while idle (`Stale`: the request may go again on a new one).
    fn ended(&self, e: Option<std::io::Error>) -> ClientError {
        let closed = e.as_ref().is_none_or(|e| {
            matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
            )
        });
        match e {
            _ if closed && self.answered > 0 && self.inbox.is_empty() => ClientError::Stale,
            _ if closed => ClientError::Closed,
            Some(e) => ClientError::Io(e),
            None => ClientError::Closed,
        }
    }
}

/// The head of an answer, once it is all in `buf`: status, head length,
/// body length, and whether the server closes the connection after it.
fn parse(buf: &[u8]) -> Result<Option<(u16, usize, usize, bool)>, ClientError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(ClientError::Malformed(e.to_string())),
    };
    let status = resp.code.unwrap_or(0);
    let mut length = None;
    let mut close = resp.version == Some(0);
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            length = Some(
                std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .ok_or_else(|| {
                        ClientError::Malformed("a Content-Length that is no number".into())
                    })?,
            );
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(ClientError::Malformed(
                "a chunked answer (the attack reads Content-Length bodies only)".into(),
            ));
        } else if h.name.eq_ignore_ascii_case("connection") {
            close = h
                .value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        }
    }
    let length = match (status, length) {
        // No body, whatever the headers say.
        (100..=199 | 204 | 304, _) => 0,
        (_, Some(n)) => n,
        (_, None) => {
            return Err(ClientError::Malformed(
                "an answer without Content-Length (the attack reads those only)".into(),
            ));
        }
    };
    Ok(Some((status, head, length, close)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_parsed_once_its_head_is_in() {
        let head =
            b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n";
        assert!(parse(&head[..20]).unwrap().is_none());
        let (status, len, body, close) = parse(head).unwrap().unwrap();
        assert_eq!((status, len, body, close), (202, head.len(), 2, false));
    }

    #[test]
    fn the_server_closing_after_its_answer_is_seen() {
        let head =
            b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        assert!(parse(head).unwrap().unwrap().3);
        let old = b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert!(parse(old).unwrap().unwrap().3);
        let listed =
            b"HTTP/1.1 200 OK\r\nconnection: keep-alive, Close\r\ncontent-length: 0\r\n\r\n";
        assert!(parse(listed).unwrap().unwrap().3);
        let kept = b"HTTP/1.1 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n";
        assert!(!parse(kept).unwrap().unwrap().3);
    }

    #[test]
    fn what_it_cannot_read_is_an_error_not_a_hang() {
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        assert!(matches!(parse(chunked), Err(ClientError::Malformed(_))));
        assert!(matches!(
            parse(b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n"),
            Err(ClientError::Malformed(_))
        ));
        assert!(matches!(
            parse(b"garbage\r\n\r\n"),
            Err(ClientError::Malformed(_))
        ));
        // A body that would run until the close: no way to tell where it ends.
        assert!(matches!(
            parse(b"HTTP/1.1 200 OK\r\n\r\n"),
            Err(ClientError::Malformed(_))
        ));
    }

    #[test]
    fn answers_without_a_body_have_none_whatever_their_headers_say() {
        let not_modified = b"HTTP/1.1 304 Not Modified\r\ncontent-length: 12\r\n\r\n";
        assert_eq!(parse(not_modified).unwrap().unwrap().2, 0);
        assert_eq!(
            parse(b"HTTP/1.1 204 No Content\r\n\r\n")
                .unwrap()
                .unwrap()
                .2,
            0
        );
        assert_eq!(
            parse(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap().unwrap().0,
            100
        );
    }

    /// A server on loopback that takes one connection, answers each of its
    /// requests with the next of `answers`, then closes it.
    async fn server(answers: Vec<&'static [u8]>) -> Target {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            for a in answers {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await.unwrap();
                s.write_all(a).await.unwrap();
            }
            // Wait for the next request, then close without answering.
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
        });
        Target {
            base: format!("http://{addr}"),
            authority: addr.to_string(),
            addr,
        }
    }

    const REQUEST: &[u8] = b"POST / HTTP/1.1\r\nhost: x\r\n\r\n";
    const PATIENCE: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn an_interim_answer_is_skipped_and_the_body_read_whole() {
        let target = server(vec![
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}",
        ])
        .await;
        let mut w = Wire::open(&target).await.unwrap();
        let a = w.send(REQUEST, PATIENCE).await.unwrap();
        assert_eq!((a.status, a.body), (202, &b"{}"[..]));
    }

    #[tokio::test]
    async fn a_connection_closed_while_idle_is_stale_not_a_failed_answer() {
        let target = server(vec![b"HTTP/1.1 409 Conflict\r\ncontent-length: 0\r\n\r\n"]).await;
        let mut w = Wire::open(&target).await.unwrap();
        assert_eq!(w.send(REQUEST, PATIENCE).await.unwrap().status, 409);
        let again = w.send(REQUEST, PATIENCE).await;
        assert!(matches!(again, Err(ClientError::Stale)), "{again:?}");
        assert!(!w.is_open());
        // A first request that gets no answer is no stale connection.
        let target = server(vec![]).await;
        let mut w = Wire::open(&target).await.unwrap();
        let first = w.send(REQUEST, PATIENCE).await;
        assert!(matches!(first, Err(ClientError::Closed)), "{first:?}");
    }

    #[tokio::test]
    async fn a_timed_out_exchange_leaves_the_connection_unusable() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _held = tokio::spawn(async move { listener.accept().await });
        let target = Target {
            base: format!("http://{addr}"),
            authority: addr.to_string(),
            addr,
        };
        let mut w = Wire::open(&target).await.unwrap();
        let late = w.send(REQUEST, Duration::from_millis(50)).await;
        assert!(matches!(late, Err(ClientError::Timeout(_))), "{late:?}");
        assert!(!w.is_open());
    }
}
