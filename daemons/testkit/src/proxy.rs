//! A TCP proxy in front of a service, under the test's control: the one
//! place faults are injected (cut, delay, stall), never on the shared servers.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
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
    task: JoinHandle<()>,
}

/// The proxy's delay while it holds everything (see [`Proxy::stall`]).
const STALLED: u32 = u32::MAX;

/// Copies one direction of a proxied connection, holding each chunk for the
/// proxy's current delay.
async fn pump(
    mut from: impl tokio::io::AsyncRead + Unpin,
    mut to: impl tokio::io::AsyncWrite + Unpin,
    delay_ms: &AtomicU32,
    epoch: &CancellationToken,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        loop {
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
        let (st, count, delay_ms) = (state.clone(), open.clone(), delay.clone());
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
                let (count, delay) = (count.clone(), delay.clone());
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
                        _ = pump(cr, sw, &delay, &epoch) => {}
                        _ = pump(sr, cw, &delay, &epoch) => {}
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
            task,
        }
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
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}
