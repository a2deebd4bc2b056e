//! The local clusters a cluster drill runs on, and the hands on their
//! nodes: which Redis master holds a slot, which RabbitMQ node leads a
//! queue, a node killed and revived (through `scripts/cluster.sh`, which
//! started them and knows how they run).

use anyhow::{Context, bail};
use flashgrid_testkit::Services;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One set of local clusters, as `scripts/cluster.sh up` recorded it in its
/// env file (`REDIS_URL=…`, `AMQP_URL=…`, `CLUSTER_DIR=…`, …).
#[derive(Debug, Clone)]
pub struct Clusters {
    pub services: Services,
    /// `scripts/cluster.sh`, which runs the drills.
    script: PathBuf,
    /// The `CLUSTER_*` lines, passed to the script so it acts on this set.
    vars: Vec<(String, String)>,
    /// The first of the six Redis ports.
    redis_port: u16,
    /// The first of the three AMQP ports.
    amqp_port: u16,
}

/// A node of the clusters a drill acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    /// The Redis node on this port.
    Redis(u16),
    /// RabbitMQ node 1..=3.
    Rabbit(usize),
}

/// The env file `just test-cluster` and `just faults --cluster` name.
pub const ENV: &str = "FLASHGRID_TEST_CLUSTER_ENV";

impl Clusters {
    /// The set the file `FLASHGRID_TEST_CLUSTER_ENV` names.
    pub fn from_env() -> anyhow::Result<Self> {
        let path = std::env::var(ENV).with_context(|| {
            format!("{ENV} is not set: run the cluster drills with `just test-cluster` or `just faults --cluster`")
        })?;
        Self::from_file(Path::new(&path))
    }

    /// The set `env_file` describes.
    pub fn from_file(env_file: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(env_file).with_context(|| {
            format!("read {} (written by `just cluster up`)", env_file.display())
        })?;
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
                .map(|v| v.trim().to_owned())
                .with_context(|| {
                    format!(
                        "{} has no {name}= line: start the clusters again (`just cluster down`, `just cluster up`)",
                        env_file.display()
                    )
                })
        };
        let names = [
            "CLUSTER_DIR",
            "CLUSTER_REDIS_PORT",
            "CLUSTER_AMQP_PORT",
            "CLUSTER_NODE_PREFIX",
            "CLUSTER_ENV_FILE",
        ];
        let vars = names
            .iter()
            .map(|n| Ok(((*n).to_owned(), value(n)?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let port = |n: &str| -> anyhow::Result<u16> {
            value(n)?
                .parse()
                .with_context(|| format!("{n} in {} is no port", env_file.display()))
        };
        // The script beside the cluster's folder's checkout: `<repo>/.run/…`.
        let dir = PathBuf::from(value("CLUSTER_DIR")?);
        let script = dir
            .ancestors()
            .map(|a| a.join("scripts/cluster.sh"))
            .find(|s| s.is_file())
            .with_context(|| format!("no scripts/cluster.sh above {}", dir.display()))?;
        Ok(Self {
            services: Services {
                redis_url: value("REDIS_URL")?,
                amqp_url: value("AMQP_URL")?,
            },
            script,
            vars,
            redis_port: port("CLUSTER_REDIS_PORT")?,
            amqp_port: port("CLUSTER_AMQP_PORT")?,
        })
    }

    /// The six Redis nodes' ports.
    pub fn redis_ports(&self) -> Vec<u16> {
        (self.redis_port..self.redis_port + 6).collect()
    }

    /// The three RabbitMQ nodes' AMQP ports, node 1 first.
    pub fn amqp_ports(&self) -> Vec<u16> {
        (self.amqp_port..self.amqp_port + 3).collect()
    }

    /// Runs `scripts/cluster.sh args…` on this set; its output.
    async fn script(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = tokio::process::Command::new(&self.script)
            .args(args)
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .output()
            .await
            .with_context(|| format!("run {} {}", self.script.display(), args.join(" ")))?;
        if !out.status.success() {
            bail!(
                "cluster.sh {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// SIGKILLs `node`; returns once its port refuses.
    pub async fn kill(&self, node: Node) -> anyhow::Result<()> {
        self.drill("kill", node).await
    }

    /// Starts `node` again as it ran; returns once both clusters are whole
    /// (a Redis node has rejoined as a replica and synced).
    pub async fn revive(&self, node: Node) -> anyhow::Result<()> {
        self.drill("revive", node).await
    }

    async fn drill(&self, verb: &str, node: Node) -> anyhow::Result<()> {
        let (kind, id) = match node {
            Node::Redis(port) => ("redis", port.to_string()),
            Node::Rabbit(n) => ("rabbit", n.to_string()),
        };
        self.script(&[verb, kind, &id]).await.map(drop)
    }

    /// `rabbitmqctl <command> -q --no-table-headers <columns>` against the
    /// first node that answers.
    pub async fn rabbitmqctl(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut last = None;
        for n in 1..=3 {
            let mut full = vec!["ctl", ["1", "2", "3"][n - 1], args[0]];
            full.extend(["-q", "--no-table-headers"]);
            full.extend(&args[1..]);
            match self.script(&full).await {
                Ok(out) => return Ok(out),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("three nodes tried"))
    }

    /// The RabbitMQ node (1..=3) leading quorum queue `queue`.
    pub async fn leader_of(&self, queue: &str) -> anyhow::Result<usize> {
        let text = self.rabbitmqctl(&["list_queues", "name", "leader"]).await?;
        let leader = text
            .lines()
            .find_map(|l| {
                let mut cols = l.split_whitespace();
                (cols.next() == Some(queue)).then(|| cols.next())?
            })
            .with_context(|| format!("no leader listed for the queue {queue}"))?;
        self.node_number(leader)
    }

    /// `fgt2@localhost` → 2.
    fn node_number(&self, node: &str) -> anyhow::Result<usize> {
        let prefix = self
            .vars
            .iter()
            .find(|(k, _)| k == "CLUSTER_NODE_PREFIX")
            .map(|(_, v)| v.as_str())
            .unwrap_or("fg");
        node.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix("@localhost"))
            .and_then(|n| n.parse().ok())
            .filter(|n| (1..=3).contains(n))
            .with_context(|| format!("{node} is no node of this cluster ({prefix}1..3@localhost)"))
    }

    /// Waits until some node other than `old` leads `queue`, at most
    /// `limit`; the new leader.
    pub async fn await_new_leader(
        &self,
        queue: &str,
        old: usize,
        limit: Duration,
    ) -> anyhow::Result<usize> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(n) = self.leader_of(queue).await
                && n != old
            {
                return Ok(n);
            }
            if Instant::now() > deadline {
                bail!("no node took over the lead of {queue} from node {old} within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The port of the Redis master serving `key`'s slot, as the first
    /// node other than `not` that answers tells it (`CLUSTER SLOTS`).
    pub async fn master_of(&self, key: &str, not: Option<u16>) -> anyhow::Result<u16> {
        let mut last = None;
        for port in self.redis_ports().into_iter().filter(|&p| Some(p) != not) {
            match master_via(port, key).await {
                Ok(m) => return Ok(m),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("five nodes tried"))
    }

    /// Waits until a master other than `old` serves `key`'s slot (its
    /// replica promoted), at most `limit`; the new master's port.
    pub async fn await_new_master(
        &self,
        key: &str,
        old: u16,
        limit: Duration,
    ) -> anyhow::Result<u16> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(m) = self.master_of(key, Some(old)).await
                && m != old
            {
                return Ok(m);
            }
            if Instant::now() > deadline {
                bail!("no replica took over the slot of {key} from {old} within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The master of `key`'s slot as node `port` sees it.
async fn master_via(port: u16, key: &str) -> anyhow::Result<u16> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(2)));
    let mut c = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let slot: u16 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query_async(&mut c)
        .await?;
    // [[start, end, [host, port, id, …], replicas…], …]
    let ranges: Vec<(u16, u16, (String, u16))> = {
        let raw: Vec<redis::Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut c)
            .await?;
        raw.into_iter()
            .filter_map(|r| {
                let redis::Value::Array(parts) = r else {
                    return None;
                };
                let start: u16 = redis::from_redis_value(parts.first()?.clone()).ok()?;
                let end: u16 = redis::from_redis_value(parts.get(1)?.clone()).ok()?;
                let redis::Value::Array(master) = parts.get(2)? else {
                    return None;
                };
                let host: String = redis::from_redis_value(master.first()?.clone()).ok()?;
                let port: u16 = redis::from_redis_value(master.get(1)?.clone()).ok()?;
                Some((start, end, (host, port)))
            })
            .collect()
    };
    ranges
        .into_iter()
        .find(|(s, e, _)| (*s..=*e).contains(&slot))
        .map(|(_, _, (_, p))| p)
        .with_context(|| format!("node {port} knows no master for slot {slot}"))
}
