//! One HTTP/1.1 keep-alive connection to the gateway. Each engine worker owns
//! one, so `-c` is exactly the number of connections.

use crate::spec::Target;
use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("connect timed out")]
    ConnectTimeout,
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The server closed the connection before its answer was whole.
    #[error("the connection closed before the answer")]
    Closed,
    /// The server had closed the kept-alive connection while it was idle:
    /// no byte of an answer came (the request may go again on a new one).
    #[error("the server had closed the idle connection")]
    Stale,
    #[error("i/o: {0}")]
    Io(std::io::Error),
    /// An answer the attack's own connection cannot read.
    #[error("unreadable answer: {0}")]
    Malformed(String),
}

impl ClientError {
    /// A short label for reports.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientError::Connect(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                "connection refused"
            }
            ClientError::Connect(_) => "connect error",
            ClientError::ConnectTimeout => "connect timeout",
            ClientError::Http(e) if e.is_incomplete_message() => "connection closed",
            ClientError::Http(_) | ClientError::Malformed(_) => "http error",
            ClientError::Timeout(_) => "timeout",
            ClientError::Closed | ClientError::Stale => "connection closed",
            ClientError::Io(_) => "io error",
        }
    }
}

#[derive(Debug)]
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
}

impl Connection {
    pub async fn open(target: &Target) -> Result<Self, ClientError> {
        let stream = connect(target).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self { sender })
    }

    /// The connection kept in `slot` if it is still open, else a new one
    /// put there.
    pub async fn reuse<'c>(
        target: &Target,
        slot: &'c mut Option<Connection>,
    ) -> Result<&'c mut Connection, ClientError> {
        if slot.as_ref().is_none_or(|c| !c.is_open()) {
            *slot = Some(Connection::open(target).await?);
        }
        Ok(slot.as_mut().expect("opened above"))
    }

    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Response<Bytes>, ClientError> {
        let exchange = async {
            self.sender.ready().await?;
            let resp = self.sender.send_request(req).await?;
            let (parts, body) = resp.into_parts();
            let bytes = body.collect().await?.to_bytes();
            Ok::<_, ClientError>(Response::from_parts(parts, bytes))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout(timeout))?
    }
}

/// A TCP connection to the gateway, within 5 s, without Nagle's delay.
pub async fn connect(target: &Target) -> Result<TcpStream, ClientError> {
    let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(target.addr))
        .await
        .map_err(|_| ClientError::ConnectTimeout)?
        .map_err(ClientError::Connect)?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// A request to the gateway.
pub fn request(
    target: &Target,
    method: http::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, &target.authority);
    if body.is_some() {
        b = b.header(header::CONTENT_TYPE, "application/json");
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(body.map(Bytes::from).unwrap_or_default()))
        .expect("a well-formed request")
}
