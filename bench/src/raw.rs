//! Plain HTTP/1.1 exchanges on a kept-alive TCP stream, for the probes that
//! need neither a client library nor its per-request cost: one request
//! written whole, one answer read up to the end of its `Content-Length`.

use anyhow::{Context, bail};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long an answer may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes `request` (a whole HTTP/1.1 request) and reads its answer: the
/// status and the body.
pub async fn exchange(s: &mut TcpStream, request: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
    s.write_all(request).await?;
    let mut buf = Vec::with_capacity(1024);
    loop {
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(ANSWER_TIMEOUT, s.read(&mut chunk))
            .await
            .with_context(|| format!("no answer within {ANSWER_TIMEOUT:?}"))??;
        if n == 0 {
            bail!("the server closed the connection instead of answering");
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some((status, body)) = answered(&buf) {
            return Ok((status, buf[body..].to_vec()));
        }
    }
}

/// The status of a whole answer in `buf` (headers and `Content-Length` bytes
/// of body) and where its body starts; `None` while it is incomplete.
fn answered(buf: &[u8]) -> Option<(u16, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let status = head.get(9..12)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    (buf.len() >= end + length).then_some((status, end))
}

#[cfg(test)]
mod tests {
    use super::answered;

    #[test]
    fn an_answer_is_whole_once_its_body_is_in() {
        let head = b"HTTP/1.1 409 Conflict\r\ncontent-length: 4\r\n\r\n";
        assert_eq!(answered(head), None);
        let mut whole = head.to_vec();
        whole.extend_from_slice(b"{}{}");
        assert_eq!(answered(&whole), Some((409, head.len())));
        assert_eq!(answered(b"HTTP/1.1 200 OK\r\n\r\n"), Some((200, 19)));
    }
}
