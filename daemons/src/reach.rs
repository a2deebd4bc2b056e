//! Which nodes of each service this daemon reaches, probed once a second
//! for the feed: each Redis node of `REDIS_URL` answers `ROLE` (so the
//! console shows masters and replicas; a user the ACL denies `ROLE` is
//! answered `PING`), each RabbitMQ node of `AMQP_URL` accepts a TCP
//! connection, PostgreSQL answers `SELECT 1`. Each probe has a connection of
//! its own: a busy pool neither delays the probe nor is delayed by it.

use crate::config::ServicesConfig;
use crate::store::RedisTarget;
use flashgrid_wire::NodeView;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often every node is probed.
const EVERY: Duration = Duration::from_secs(1);
/// A node that does not answer within this long is shown as unreached.
const PROBE_TIMEOUT: Duration = Duration::from_millis(700);

/// The latest probe of every node, in configuration order.
pub type Nodes = watch::Receiver<Arc<Vec<NodeView>>>;

/// One configured node and how to probe it.
enum Probe {
    Postgres {
        url: String,
        conn: Option<Box<sqlx::PgConnection>>,
    },
    Redis {
        client: Option<Box<redis::Client>>,
        conn: Option<redis::aio::MultiplexedConnection>,
    },
    Rabbit {
        index: usize,
    },
}

struct Node {
    view: NodeView,
    probe: Probe,
}

/// `host:port` of a service URL, without credentials; `default_port` where
/// the URL names none.
fn host_port(url: &str, default_port: u16) -> String {
    match url::Url::parse(url.trim()) {
        Ok(u) => format!(
            "{}:{}",
            u.host_str().unwrap_or("?"),
            u.port().unwrap_or(default_port)
        ),
        Err(_) => "?".to_owned(),
    }
}

fn nodes_of(cfg: &ServicesConfig) -> Vec<Node> {
    let node = |service: &str, addr: String, probe| Node {
        view: NodeView {
            service: service.to_owned(),
            addr,
            up: false,
            role: None,
            connected: false,
        },
        probe,
    };
    let mut nodes = vec![node(
        "postgres",
        host_port(&cfg.database_url, 5432),
        Probe::Postgres {
            url: cfg.database_url.clone(),
            conn: None,
        },
    )];
    if let Ok(target) = RedisTarget::parse(&cfg.redis_url) {
        for url in target.nodes() {
            nodes.push(node(
                "redis",
                host_port(url, 6379),
                Probe::Redis {
                    client: redis::Client::open(url.as_str()).ok().map(Box::new),
                    conn: None,
                },
            ));
        }
    }
    for (index, url) in cfg.amqp_url.split(',').enumerate() {
        let default = if url.trim().starts_with("amqps:") {
            5671
        } else {
            5672
        };
        nodes.push(node(
            "rabbitmq",
            host_port(url, default),
            Probe::Rabbit { index },
        ));
    }
    nodes
}

/// Starts probing the nodes of `cfg` until `stop`; `amqp_name` is the name
/// of the daemon's own AMQP connection (whose node is marked connected).
pub fn spawn(
    cfg: &ServicesConfig,
    amqp_name: &'static str,
    stop: CancellationToken,
) -> (Nodes, tokio::task::JoinHandle<()>) {
    let mut nodes = nodes_of(cfg);
    let (tx, rx) = watch::channel(Arc::new(
        nodes.iter().map(|n| n.view.clone()).collect::<Vec<_>>(),
    ));
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let connected = crate::queue::connected_node(amqp_name);
            futures::future::join_all(nodes.iter_mut().map(|n| probe(n, connected))).await;
            tx.send_replace(Arc::new(nodes.iter().map(|n| n.view.clone()).collect()));
        }
    });
    (rx, task)
}

async fn probe(node: &mut Node, amqp_connected: Option<usize>) {
    let view = &mut node.view;
    match &mut node.probe {
        Probe::Postgres { url, conn } => {
            let answered = tokio::time::timeout(PROBE_TIMEOUT, select_one(url, conn)).await;
            view.up = matches!(answered, Ok(Ok(())));
            if !view.up {
                *conn = None;
            }
            view.connected = view.up;
        }
        Probe::Redis { client, conn } => {
            let role = tokio::time::timeout(PROBE_TIMEOUT, role(client.as_deref(), conn)).await;
            match role {
                Ok(Ok(r)) => {
                    view.up = true;
                    view.role = Some(r);
                }
                _ => {
                    // Reconnect on the next probe.
                    *conn = None;
                    view.up = false;
                    view.role = None;
                }
            }
        }
        Probe::Rabbit { index } => {
            let addr = view.addr.clone();
            let tcp = tokio::net::TcpStream::connect(addr);
            view.up = matches!(tokio::time::timeout(PROBE_TIMEOUT, tcp).await, Ok(Ok(_)));
            view.connected = view.up && amqp_connected == Some(*index);
        }
    }
}

/// `SELECT 1` on the probe's own connection, opened if need be.
async fn select_one(url: &str, conn: &mut Option<Box<sqlx::PgConnection>>) -> sqlx::Result<()> {
    use sqlx::Connection;
    let c = match conn {
        Some(c) => c,
        None => conn.insert(Box::new(sqlx::PgConnection::connect(url).await?)),
    };
    sqlx::query("SELECT 1").execute(&mut **c).await?;
    Ok(())
}

/// The node's `ROLE`: `master` or `replica`; `?` when the ACL denies
/// `ROLE` (an `-@dangerous` user) but the node answers `PING`.
async fn role(
    client: Option<&redis::Client>,
    conn: &mut Option<redis::aio::MultiplexedConnection>,
) -> redis::RedisResult<String> {
    let c = match conn {
        Some(c) => c,
        None => {
            let client = client.ok_or_else(|| {
                redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "bad URL"))
            })?;
            conn.insert(client.get_multiplexed_async_connection().await?)
        }
    };
    let v: redis::Value = match redis::cmd("ROLE").query_async(c).await {
        Ok(v) => v,
        Err(e) if e.code() == Some("NOPERM") => {
            redis::cmd("PING").query_async::<()>(c).await?;
            return Ok("?".to_owned());
        }
        Err(e) => return Err(e),
    };
    let first = match v {
        redis::Value::Array(items) => items.into_iter().next(),
        _ => None,
    };
    Ok(match first {
        Some(redis::Value::BulkString(b)) if b == b"slave" => "replica".to_owned(),
        Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(&b).into_owned(),
        _ => "?".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_never_show_credentials() {
        assert_eq!(
            host_port("amqp://guest:secret@10.0.0.1:5673/%2f", 5672),
            "10.0.0.1:5673"
        );
        assert_eq!(host_port("amqp://h/%2f", 5672), "h:5672");
        assert_eq!(
            host_port("postgres://u:p@db.example/flashgrid", 5432),
            "db.example:5432"
        );
        assert_eq!(
            host_port("redis://:pw@127.0.0.1:7001", 6379),
            "127.0.0.1:7001"
        );
        assert_eq!(host_port("not a url", 1), "?");
    }
}
