//! The attack's own HTTP/1.1 connection: the engine writes each request's
//! bytes straight to the socket and parses the answer in place (httparse),
//! with no connection task, no channel and no allocation per request — what
//! lets one core of client drive a server at wrk's pace. Everything else
//! (admin calls, following decisions, checkout) uses [`crate::client`].

use crate::client::ClientError;
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
    /// The server said it closes the connection after its answer.
    closing: bool,
}

/// One answer, borrowed from the connection's buffer.
#[derive(Debug)]
pub struct Answer<'a> {
    pub status: u16,
    pub body: &'a [u8],
}

impl Wire {
    pub async fn open(target: &Target) -> Result<Self, ClientError> {
        let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(target.addr))
            .await
            .map_err(|_| ClientError::ConnectTimeout)?
            .map_err(ClientError::Connect)?;
        let _ = stream.set_nodelay(true);
        Ok(Self {
            stream,
            inbox: Vec::with_capacity(READ_CHUNK),
            body: (0, 0),
            closing: false,
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
        let status = tokio::time::timeout(timeout, self.exchange(request))
            .await
            .map_err(|_| ClientError::Timeout(timeout))?
            .inspect_err(|_| self.closing = true)?;
        Ok(Answer {
            status,
            body: &self.inbox[self.body.0..self.body.1],
        })
    }

    async fn exchange(&mut self, request: &[u8]) -> Result<u16, ClientError> {
        // The last answer is consumed: its bytes go.
        self.inbox.drain(..self.body.1);
        self.body = (0, 0);
        self.stream.write_all(request).await.map_err(io)?;
        loop {
            if let Some((status, head, length, close)) = parse(&self.inbox)?
                && self.inbox.len() >= head + length
            {
                self.body = (head, head + length);
                self.closing = close;
                return Ok(status);
            }
            self.inbox.reserve(READ_CHUNK);
            let n = self.stream.read_buf(&mut self.inbox).await.map_err(io)?;
            if n == 0 {
                return Err(ClientError::Closed);
            }
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
    let mut length = 0;
    let mut close = resp.version == Some(0);
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| {
                    ClientError::Malformed("a Content-Length that is no number".into())
                })?;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(ClientError::Malformed(
                "a chunked answer (the attack reads Content-Length bodies only)".into(),
            ));
        } else if h.name.eq_ignore_ascii_case("connection") {
            close = h.value.eq_ignore_ascii_case(b"close");
        }
    }
    Ok(Some((status, head, length, close)))
}

fn io(e: std::io::Error) -> ClientError {
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof
        | std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::BrokenPipe => ClientError::Closed,
        _ => ClientError::Io(e),
    }
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
    }
}
