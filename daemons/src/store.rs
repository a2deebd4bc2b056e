//! Redis as the daemons reach it: one node or a Redis Cluster, chosen by
//! `REDIS_URL` ([`RedisTarget`]), behind one cloneable handle ([`Store`])
//! that every caller uses the same way, and the nodes a subscriber may
//! listen on ([`RedisTarget::subscribe_clients`]).
//!
//! On a cluster every event's keys share one hash slot (`names`), so each
//! script runs on one shard; what spans events (a pipeline over several
//! events' keys) is split per slot by the caller ([`Store::is_cluster`]).
//!
//! The cluster client (redis 1.8) can wedge for good when a master dies
//! under load: seen here with a few hundred requests in flight, every
//! request then timed out, even once the cluster was whole again. A
//! watchdog ([`ClusterStore`]) pings through it and replaces it with a new
//! one when it stops answering.

use arc_swap::ArcSwap;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Pipeline, RedisFuture, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How long a Redis command may wait for its reply, on one node or a
/// cluster: long enough that a burst queued behind one multiplexed
/// connection does not time out, short enough that a cut connection is
/// noticed within seconds.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);

/// Where Redis is, parsed from `REDIS_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server (`redis://h:p`).
    Single(String),
    /// The seed nodes of a cluster, each as a `redis://` URL: a
    /// `redis+cluster://h1:p1,h2:p2` URL, or several comma-separated URLs.
    Cluster(Vec<String>),
}

impl RedisTarget {
    /// Parses `REDIS_URL`; the error names what to fix.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if let Some(rest) = raw.strip_prefix("redis+cluster://") {
            // Credentials, if any, are written once before the first host
            // and apply to every node.
            let (auth, hosts) = match rest.rsplit_once('@') {
                Some((auth, hosts)) => (format!("{auth}@"), hosts),
                None => (String::new(), rest),
            };
            let nodes: Vec<String> = hosts
                .trim_end_matches('/')
                .split(',')
                .map(str::trim)
                .map(|h| {
                    let port_ok = h.rsplit_once(':').is_some_and(|(host, port)| {
                        !host.is_empty() && port.parse::<u16>().is_ok()
                    });
                    if h.contains('/') || !port_ok {
                        Err(format!(
                            "REDIS_URL: {h:?} is not a host:port in a redis+cluster:// list"
                        ))
                    } else {
                        Ok(format!("redis://{auth}{h}"))
                    }
                })
                .collect::<Result<_, _>>()?;
            return Ok(Self::Cluster(nodes));
        }
        let urls: Vec<&str> = raw.split(',').map(str::trim).collect();
        for u in &urls {
            redis::parse_redis_url(u).ok_or_else(|| {
                format!(
                    "REDIS_URL: {:?} is not a Redis URL (redis://host:port)",
                    crate::redact::redact(u)
                )
            })?;
        }
        Ok(match urls.as_slice() {
            [one] => Self::Single((*one).to_owned()),
            many => Self::Cluster(many.iter().map(|u| (*u).to_owned()).collect()),
        })
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// The nodes as URLs (one for a single server).
    pub fn nodes(&self) -> &[String] {
        match self {
            Self::Single(u) => std::slice::from_ref(u),
            Self::Cluster(n) => n,
        }
    }

    /// One client per node, for pub/sub: a cluster forwards every PUBLISH
    /// to all its nodes, so a subscriber listens on any one and moves to
    /// the next when it fails.
    pub fn subscribe_clients(&self) -> Result<Vec<redis::Client>, redis::RedisError> {
        self.nodes()
            .iter()
            .map(|u| redis::Client::open(u.as_str()))
            .collect()
    }

    /// Connects: a connection manager to one server, or a cluster
    /// connection that follows the slots. `node_map` rewrites the
    /// addresses the cluster announces (a NAT, a container's port mapping,
    /// a test's proxy) to those this daemon reaches them at.
    pub async fn connect(&self, node_map: &NodeMap) -> redis::RedisResult<Store> {
        match self {
            Self::Single(url) => {
                let client = redis::Client::open(url.as_str())?;
                Ok(Store::Single(
                    ConnectionManager::new_with_config(
                        client,
                        crate::services::redis_manager_config(),
                    )
                    .await?,
                ))
            }
            Self::Cluster(nodes) => {
                let mut b = redis::cluster::ClusterClientBuilder::new(nodes.clone())
                    .connection_timeout(Duration::from_secs(2))
                    .response_timeout(RESPONSE_TIMEOUT)
                    // A failover takes the cluster's node timeout (2 s on
                    // `just cluster up`) plus an election: retry over about
                    // that long, in waits of milliseconds, not the
                    // client's default waits that start above a second.
                    .retries(12)
                    .min_retry_wait(10)
                    .max_retry_wait(400)
                    .retry_wait_formula(10, 2);
                if !node_map.0.is_empty() {
                    b = b.node_address_map(node_map.0.clone());
                }
                Ok(Store::Cluster(ClusterStore::connect(b.build()?).await?))
            }
        }
    }
}

/// Cluster node addresses rewritten at connection time
/// (`FLASHGRID_REDIS_NODE_MAP`, `announced=reached,…`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeMap(HashMap<redis::cluster::NodeAddress, redis::cluster::NodeAddress>);

impl std::str::FromStr for NodeMap {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        let addr = |s: &str| -> Result<redis::cluster::NodeAddress, String> {
            let (host, port) = s
                .trim()
                .rsplit_once(':')
                .ok_or_else(|| format!("{s:?} is not host:port"))?;
            let port = port
                .parse()
                .map_err(|_| format!("{s:?}: the port is not a number"))?;
            Ok(redis::cluster::NodeAddress::new(host, port))
        };
        raw.split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|pair| {
                let (from, to) = pair.split_once('=').ok_or_else(|| {
                    format!("FLASHGRID_REDIS_NODE_MAP: {pair:?} is not announced=reached")
                })?;
                Ok((addr(from)?, addr(to)?))
            })
            .collect::<Result<_, String>>()
            .map(NodeMap)
    }
}

/// A Redis connection: one server or a cluster. Cheap to clone (both
/// multiplex one connection per node); reconnects by itself.
#[derive(Clone)]
pub enum Store {
    Single(ConnectionManager),
    Cluster(ClusterStore),
}

/// A cluster connection, replaced by a new one when it stops answering.
///
/// Every clone holds the connection it uses and the generation it came
/// from; a call checks the generation (one relaxed atomic load) and picks
/// up a replacement only when there is one.
#[derive(Clone)]
pub struct ClusterStore {
    conn: ClusterConnection,
    generation: u64,
    shared: Arc<Shared>,
}

struct Shared {
    /// Bumped when `current` is replaced.
    generation: AtomicU64,
    current: ArcSwap<(u64, ClusterConnection)>,
}

/// The watchdog pings this often …
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// … of one node, waits this long for an answer (an error other than a
/// timeout is an answer: the client is alive, a node is not) …
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// … and replaces the client after this many silences in a row (~9 s:
/// a failover's slot refresh takes the cluster's node timeout, 2 s here).
const SILENCES: u32 = 3;
/// A new client must connect within this long (its own connect can hang).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl ClusterStore {
    async fn connect(client: redis::cluster::ClusterClient) -> redis::RedisResult<Self> {
        let conn = connect_within(&client).await?;
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(0),
            current: ArcSwap::from_pointee((0, conn.clone())),
        });
        tokio::spawn(watch(client, Arc::downgrade(&shared)));
        Ok(Self {
            conn,
            generation: 0,
            shared,
        })
    }

    /// The connection to use: this clone's, or the replacement.
    fn current(&mut self) -> &mut ClusterConnection {
        if self.shared.generation.load(Ordering::Relaxed) != self.generation {
            let now = self.shared.current.load();
            self.generation = now.0;
            self.conn = now.1.clone();
        }
        &mut self.conn
    }
}

/// Pings through the client while any [`ClusterStore`] uses it; replaces
/// it after [`SILENCES`] unanswered pings in a row.
async fn watch(client: redis::cluster::ClusterClient, shared: Weak<Shared>) {
    let mut silences = 0;
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        let Some(s) = shared.upgrade() else { return };
        let (generation, mut conn) = {
            let now = s.current.load();
            (now.0, now.1.clone())
        };
        drop(s);
        // One node, any: a plain PING goes to every master and would time
        // out while one of them is merely unreachable. A wedged client
        // answers nothing on any route.
        let ping = conn.route_command(
            redis::cmd("PING"),
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
        );
        let answered = match tokio::time::timeout(PROBE_TIMEOUT, ping).await {
            // The client's own timeout is no answer either.
            Ok(Err(e)) => !e.is_timeout(),
            Ok(Ok(_)) => true,
            Err(_) => false,
        };
        if answered {
            silences = 0;
            continue;
        }
        silences += 1;
        if silences < SILENCES {
            continue;
        }
        match connect_within(&client).await {
            Ok(fresh) => {
                let Some(s) = shared.upgrade() else { return };
                s.current.store(Arc::new((generation + 1, fresh)));
                s.generation.store(generation + 1, Ordering::Relaxed);
                silences = 0;
                tracing::warn!(
                    "the Redis Cluster client answered nothing for {} pings in a row: replaced by a new one",
                    SILENCES
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "the Redis Cluster client answers nothing, and a new one cannot connect yet")
            }
        }
    }
}

/// A new connection of `client`, within [`CONNECT_TIMEOUT`].
async fn connect_within(
    client: &redis::cluster::ClusterClient,
) -> redis::RedisResult<ClusterConnection> {
    tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_connection())
        .await
        .map_err(|_| {
            redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no connection to the Redis Cluster within {CONNECT_TIMEOUT:?}"),
            ))
        })?
}

impl Store {
    /// Keys of different events live in different slots: a pipeline over
    /// several must be split per event on a cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Store::Cluster(_))
    }
}

impl std::fmt::Debug for ClusterStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterStore")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Store::Single(_) => "Store::Single",
            Store::Cluster(_) => "Store::Cluster",
        })
    }
}

impl From<ConnectionManager> for Store {
    fn from(c: ConnectionManager) -> Self {
        Store::Single(c)
    }
}

impl From<ClusterStore> for Store {
    fn from(c: ClusterStore) -> Self {
        Store::Cluster(c)
    }
}

impl ConnectionLike for Store {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Store::Single(c) => c.req_packed_command(cmd),
            Store::Cluster(c) => c.current().req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Store::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Store::Cluster(c) => c.current().req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Store::Single(c) => c.get_db(),
            Store::Cluster(c) => c.conn.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_select_the_mode() {
        assert_eq!(
            RedisTarget::parse("redis://127.0.0.1:6379").unwrap(),
            RedisTarget::Single("redis://127.0.0.1:6379".into())
        );
        assert_eq!(
            RedisTarget::parse("redis+cluster://127.0.0.1:7000, 127.0.0.1:7001/").unwrap(),
            RedisTarget::Cluster(vec![
                "redis://127.0.0.1:7000".into(),
                "redis://127.0.0.1:7001".into()
            ])
        );
        assert_eq!(
            RedisTarget::parse("redis+cluster://u:p@a:1,b:2").unwrap(),
            RedisTarget::Cluster(vec!["redis://u:p@a:1".into(), "redis://u:p@b:2".into()])
        );
        assert_eq!(
            RedisTarget::parse("redis://a:1,redis://b:2").unwrap(),
            RedisTarget::Cluster(vec!["redis://a:1".into(), "redis://b:2".into()])
        );
        assert!(RedisTarget::parse("redis+cluster://a:1,,b:2").is_err());
        // Caught at start, not after the connection's retries.
        assert!(RedisTarget::parse("redis+cluster://a:1,b").is_err());
        assert!(RedisTarget::parse("redis+cluster://a:1,b:x").is_err());
        assert!(RedisTarget::parse("redis+cluster://a:1,:2").is_err());
        assert!(RedisTarget::parse("redis+cluster://a:1/0").is_err());
        let e = RedisTarget::parse("redis://a:1,http://b").unwrap_err();
        assert!(e.contains("http://b"), "{e}");
    }

    #[test]
    fn node_maps_parse() {
        let m: NodeMap = "127.0.0.1:7000=127.0.0.1:17000, 127.0.0.1:7001=h:1"
            .parse()
            .unwrap();
        assert_eq!(m.0.len(), 2);
        assert_eq!(
            m.0[&redis::cluster::NodeAddress::new("127.0.0.1", 7000)],
            redis::cluster::NodeAddress::new("127.0.0.1", 17000)
        );
        assert_eq!("".parse::<NodeMap>().unwrap(), NodeMap::default());
        assert!("a:1".parse::<NodeMap>().is_err());
        assert!("a:1=b:x".parse::<NodeMap>().is_err());
    }
}
