//! A TCP proxy in front of a service, under the test's control: the one
//! place faults are injected (cut, delay, stall), never on the shared servers.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A TCP proxy in front of a service, under the test's control: `cut` drops
/// every connection and refuses new ones until `restore`. Faults are injected
/// here, never on the shared servers.
#[derive(Debug)]
pub struct Proxy {
    pub port: u16,
    state: std::sync::Arc<Mutex<ProxyState>>,
    open: std::sync::Arc<AtomicU32>,
    /// Milliseconds each chunk is held.
    delay: std::sync::Arc<AtomicU32>,
    /// Bytes sent toward the service, read and not yet passed on or dropped.
    held: std::sync::Arc<AtomicU64>,
    /// Whether what is sent toward the service is held (answers pass).
    requests_stalled: std::sync::Arc<AtomicBool>,
    task: JoinHandle<()>,
}

/// The proxy's delay while it holds everything (see [`Proxy::stall`]).
const STALLED: u32 = u32::MAX;

/// Copies one direction of a proxied connection, holding each chunk for the
/// proxy's current delay, and while `stalled` is set.
async fn pump(
    mut from: impl tokio::io::AsyncRead + Unpin,
    mut to: impl tokio::io::AsyncWrite + Unpin,
    delay_ms: &AtomicU32,
    stalled: &AtomicBool,
    held: &AtomicU64,
    epoch: &CancellationToken,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        held.fetch_add(n as u64, Ordering::Relaxed);
        // Counted down however this chunk ends: passed on, dropped by a cut,
        // or this pump dropped with its connection.
        let _held = HeldGuard(held, n as u64);
        loop {
            if stalled.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            match delay_ms.load(Ordering::Relaxed) {
                0 => break,
                STALLED => tokio::time::sleep(Duration::from_millis(5)).await,
                d => {
                    tokio::time::sleep(Duration::from_millis(d.into())).await;
                    break;
                }
            }
        }
        // What a cut caught in flight is dropped, never delivered late.
        if epoch.is_cancelled() || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

struct HeldGuard<'a>(&'a AtomicU64, u64);

impl Drop for HeldGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(self.1, Ordering::Relaxed);
    }
}

#[derive(Debug, Default)]
struct ProxyState {
    refusing: bool,
    /// Cancelled by `cut`: every connection of this epoch ends.
    epoch: CancellationToken,
}

impl Proxy {
    pub async fn start(target_port: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = std::sync::Arc::new(Mutex::new(ProxyState::default()));
        let open = std::sync::Arc::new(AtomicU32::new(0));
        let delay = std::sync::Arc::new(AtomicU32::new(0));
        let held = std::sync::Arc::new(AtomicU64::new(0));
        let requests_stalled = std::sync::Arc::new(AtomicBool::new(false));
        let (st, count, delay_ms, held_bytes, stalled) = (
            state.clone(),
            open.clone(),
            delay.clone(),
            held.clone(),
            requests_stalled.clone(),
        );
        let delay = delay_ms.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    // Out of file descriptors, say: do not spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let (refusing, epoch) = {
                    let g = st.lock().unwrap();
                    (g.refusing, g.epoch.clone())
                };
                if refusing {
                    drop(client);
                    continue;
                }
                let (count, delay, held, stalled) =
                    (count.clone(), delay.clone(), held.clone(), stalled.clone());
                // The service's answers are held too (but for
                // `stall_requests`), and not counted.
                let (unheld, answers_pass) = (AtomicU64::new(0), AtomicBool::new(false));
                tokio::spawn(async move {
                    let Ok(mut server) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target_port)).await
                    else {
                        return;
                    };
                    count.fetch_add(1, Ordering::Relaxed);
                    let (cr, cw) = client.split();
                    let (sr, sw) = server.split();
                    tokio::select! {
                        biased;
                        _ = epoch.cancelled() => {}
                        _ = pump(cr, sw, &delay, &stalled, &held, &epoch) => {}
                        _ = pump(sr, cw, &delay, &answers_pass, &unheld, &epoch) => {}
                    }
                    count.fetch_sub(1, Ordering::Relaxed);
                });
            }
        });
        Self {
            port,
            state,
            open,
            delay: delay_ms,
            held: held_bytes,
            requests_stalled,
            task,
        }
    }

    /// Bytes sent toward the service that the proxy holds right now (read,
    /// neither passed on nor dropped yet): during a [`stall`](Self::stall),
    /// proof that a request was sent and has not arrived. (The service's
    /// answers are held too, but not counted: a held answer means the
    /// request already arrived.)
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// Holds every chunk of data, both ways, this long before passing it on
    /// (zero: no delay): a slow network or a struggling server.
    pub fn delay(&self, by: Duration) {
        let ms = by.as_millis().min(u128::from(STALLED - 1)) as u32;
        self.delay.store(ms, Ordering::Relaxed);
    }

    /// Holds every chunk of data, both ways, until `restore` (which passes
    /// them on) or `cut` (which drops them): a request that is sent but never
    /// arrives.
    pub fn stall(&self) {
        self.delay.store(STALLED, Ordering::Relaxed);
    }

    /// Holds every chunk sent toward the service until `restore` (which
    /// passes them on) or `cut` (which drops them), while the service's
    /// answers still pass: unlike [`stall`](Self::stall), a client waiting
    /// for an answer gets it, and the next request it sends is held.
    pub fn stall_requests(&self) {
        self.requests_stalled.store(true, Ordering::Relaxed);
    }

    /// Drops every connection and refuses new ones; returns how many were
    /// open.
    pub fn cut(&self) -> u32 {
        let mut g = self.state.lock().unwrap();
        g.refusing = true;
        g.epoch.cancel();
        self.open.load(Ordering::Relaxed)
    }

    /// Accepts connections again and passes data on without delay.
    pub fn restore(&self) {
        let mut g = self.state.lock().unwrap();
        *g = ProxyState::default();
        self.delay.store(0, Ordering::Relaxed);
        self.requests_stalled.store(false, Ordering::Relaxed);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// A server that reports every byte it receives.
    async fn sink() -> (u16, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        let _ = tx.send(buf[..n].to_vec());
                    }
                });
            }
        });
        (port, rx)
    }

    async fn until(what: &str, f: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !f() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    #[tokio::test]
    async fn a_stall_holds_the_bytes_and_a_restore_passes_them_on() {
        let (port, mut got) = sink().await;
        let p = Proxy::start(port).await;
        let mut c = TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
        c.write_all(b"before").await.unwrap();
        assert_eq!(got.recv().await.unwrap(), b"before");
        p.stall();
        c.write_all(b"held").await.unwrap();
        until("the stalled bytes to be held", || p.held() == 4).await;
        assert!(got.try_recv().is_err(), "a stall let bytes through");
        p.restore();
        assert_eq!(got.recv().await.unwrap(), b"held");
        until("nothing held", || p.held() == 0).await;
    }

    #[tokio::test]
    async fn a_requests_stall_holds_what_is_sent_and_lets_answers_through() {
        // A server that reports what it receives and sends what it is told.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let (got_tx, mut got) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
        let (say, mut to_say) = tokio::sync::mpsc::unbounded_channel::<&'static [u8]>();
        tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let (mut r, mut w) = s.into_split();
            tokio::spawn(async move {
                while let Some(b) = to_say.recv().await {
                    w.write_all(b).await.unwrap();
                }
            });
            let mut buf = [0u8; 64];
            while let Ok(n @ 1..) = r.read(&mut buf).await {
                let _ = got_tx.send(buf[..n].to_vec());
            }
        });
        let p = Proxy::start(port).await;
        let mut c = TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
        c.write_all(b"q1").await.unwrap();
        assert_eq!(got.recv().await.unwrap(), b"q1");
        p.stall_requests();
        say.send(b"a1").unwrap();
        let mut buf = [0u8; 2];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"a1", "the answer passed");
        c.write_all(b"q2").await.unwrap();
        until("the request to be held", || p.held() == 2).await;
        assert!(
            got.try_recv().is_err(),
            "a requests stall let bytes through"
        );
        p.restore();
        assert_eq!(got.recv().await.unwrap(), b"q2");
        until("nothing held", || p.held() == 0).await;
    }

    #[tokio::test]
    async fn a_cut_drops_what_is_held_and_refuses_new_connections() {
        let (port, mut got) = sink().await;
        let p = Proxy::start(port).await;
        let mut c = TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
        c.write_all(b"x").await.unwrap();
        assert_eq!(got.recv().await.unwrap(), b"x");
        p.stall();
        c.write_all(b"doomed").await.unwrap();
        until("the stalled bytes to be held", || p.held() == 6).await;
        assert_eq!(p.cut(), 1, "one connection was open");
        until("nothing held", || p.held() == 0).await;
        // The client's connection is closed, and the bytes never arrive.
        let mut buf = [0u8; 8];
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .expect("the cut closes the client's side");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
        // A new connection is accepted by the OS but closed at once.
        let mut again = TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
        let _ = again.write_all(b"refused").await;
        let n = tokio::time::timeout(Duration::from_secs(5), again.read(&mut buf))
            .await
            .expect("a refused connection is closed");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
        p.restore();
        let mut fresh = TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
        fresh.write_all(b"after").await.unwrap();
        assert_eq!(
            got.recv().await.unwrap(),
            b"after",
            "what was cut arrived late"
        );
    }

    #[tokio::test]
    async fn a_delay_holds_each_chunk_that_long() {
        let (port, mut got) = sink().await;
        let p = Proxy::start(port).await;
        p.delay(Duration::from_millis(200));
        let mut c = TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
        let sent = std::time::Instant::now();
        c.write_all(b"slow").await.unwrap();
        assert_eq!(got.recv().await.unwrap(), b"slow");
        assert!(
            sent.elapsed() >= Duration::from_millis(200),
            "{:?}",
            sent.elapsed()
        );
    }
}
