#!/usr/bin/env bash
# `just bench --cluster`: the sale on the local clusters (2 gateways and
# 2 workers, `just up --cluster`), through one gateway and through both,
# beside the same sale on the single-node stack in the same run; then the
# per-unit ceilings of docs/SCALING.md's capacity model (decide-script
# calls per Redis shard, confirmed publishes per quorum queue, winners
# committed per second). Writes docs/BENCHMARKS-CLUSTER.md. A benchmark,
# not a test: it asserts nothing, it reports figures and ratios.
#
# The clusters are `just cluster up`'s (started here if not running, and
# then stopped at the end).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${BENCH_REQUESTS:-50000}
C=${BENCH_CONNECTIONS:-256}
OUT=$(mktemp -d)
started_cluster=
cleanup() {
  scripts/stack.sh down >/dev/null 2>&1 || true
  if [ -n "$started_cluster" ]; then scripts/cluster.sh down >/dev/null 2>&1 || true; fi
  rm -rf "$OUT"
}
trap cleanup EXIT

echo "== building (release)"
cargo build --release --locked --workspace --bins
LOAD=target/release/flashgrid-load
BENCH=target/release/flashgrid-bench

# sale LABEL URLS: the seed scenario, an open sale and a sold-out burst
# through URLS (one gateway, or several comma-separated).
sale() {
  local label=$1 urls=$2
  echo "== $label: seed scenario, open sale, sold out (through $urls)"
  $LOAD --url "$urls" --event "seed-$label" --capacity 20 -n 10000 -c 10000 --json >"$OUT/$label-seed.json"
  sleep 2
  $LOAD --url "$urls" --event "open-$label" --capacity 100000000 -n "$N" -c "$C" --no-verify --json >"$OUT/$label-open.json"
  sleep 2
  $LOAD --url "$urls" --event "sold-$label" --capacity 1 -n 50 -c 5 --json >/dev/null
  # Every gateway answers sold out before the burst.
  local u
  for u in ${urls//,/ }; do
    for _ in $(seq 1 100); do
      [ "$(curl -s "$u/reserve" -H 'Content-Type: application/json' -d "{\"event_id\":\"sold-$label\",\"user_id\":\"probe\"}" -o /dev/null -w '%{http_code}')" = 409 ] && break
      sleep 0.1
    done
  done
  $LOAD --url "$urls" --event "sold-$label" -n "$N" -c "$C" --no-verify --json >"$OUT/$label-soldout.json"
  sleep 2
}

# --- single node -------------------------------------------------------------
scripts/stack.sh up >/dev/null
export FLASHGRID_ADMIN_TOKEN; FLASHGRID_ADMIN_TOKEN=$(cat .run/admin-token)
sale single http://127.0.0.1:8080
scripts/stack.sh down >/dev/null
echo "== single node: ceilings"
$BENCH shard --redis-url redis://127.0.0.1:6379 --batch 1 --concurrency 64 --reservations 200000 >"$OUT/shard-single-1.json"
$BENCH shard --redis-url redis://127.0.0.1:6379 --batch 256 --concurrency 8 --reservations 1000000 >"$OUT/shard-single-256.json"
$BENCH broker --queue-type quorum --messages $((N / 10)) --per-message 10 >"$OUT/broker-single.json"
$BENCH winners --rows 500000 --batch 256 --concurrency 4 >"$OUT/winners.json"

# --- clusters ----------------------------------------------------------------
if ! scripts/cluster.sh healthy >/dev/null 2>&1; then
  scripts/cluster.sh down >/dev/null 2>&1 || true
  scripts/cluster.sh up >/dev/null
  started_cluster=1
fi
set -a; source .run/cluster.env; set +a
scripts/stack.sh up --cluster >/dev/null
sale cluster-1gw http://127.0.0.1:8080
sale cluster-2gw "$(cat .run/gateways)"
scripts/stack.sh down >/dev/null
echo "== clusters: ceilings"
$BENCH shard --redis-url "$REDIS_URL" --batch 1 --concurrency 64 --reservations 200000 >"$OUT/shard-cluster-1.json"
$BENCH shard --redis-url "$REDIS_URL" --batch 256 --concurrency 8 --reservations 1000000 >"$OUT/shard-cluster-256.json"
$BENCH shard --redis-url "$REDIS_URL" --batch 256 --concurrency 8 --reservations 1000000 --events 6 >"$OUT/shard-cluster-256x6.json"
$BENCH broker --amqp-url "$AMQP_URL" --queue-type quorum --messages $((N / 10)) --per-message 10 >"$OUT/broker-cluster-1.json"
$BENCH broker --amqp-url "$AMQP_URL" --queue-type quorum --queues 3 --messages $((N / 10)) --per-message 10 >"$OUT/broker-cluster-3.json"

echo "== writing docs/BENCHMARKS-CLUSTER.md"
MACHINE="$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB"
python3 - "$OUT" "$MACHINE" "$N" "$C" >docs/BENCHMARKS-CLUSTER.md <<'PY'
import json, sys, datetime
out, machine, n, c = sys.argv[1:5]
j = lambda name: json.load(open(f"{out}/{name}.json"))
def r(x, y): return f"{x / y:.2f}" if y else "n/a"
rows = []
base = {}
for label, what in [("single", "single node, 1 gateway + 1 worker"),
                    ("cluster-1gw", "clusters, through 1 of 2 gateways"),
                    ("cluster-2gw", "clusters, through both gateways")]:
    seed, open_, sold = j(f"{label}-seed"), j(f"{label}-open"), j(f"{label}-soldout")
    accept = open_["statuses"].get("202", 0) / open_["duration_s"]
    reject = sold["statuses"].get("409", 0) / sold["duration_s"]
    if label == "single":
        base = dict(seed=seed["duration_s"], accept=accept, reject=reject)
    rows.append(f"| {what} | {seed['duration_s']:.3f} s ({seed['verdict']}, {seed['confirmed']}/20) | {r(base['seed'], seed['duration_s'])} "
                f"| {accept:.0f} (p99 {open_['latency_ms']['p99']:.1f} ms) | {r(accept, base['accept'])} "
                f"| {reject:.0f} (p99 {sold['latency_ms']['p99']:.1f} ms) | {r(reject, base['reject'])} |")
s1, s256 = j("shard-single-1"), j("shard-single-256")
c1, c256, c256x6 = j("shard-cluster-1"), j("shard-cluster-256"), j("shard-cluster-256x6")
bs, bc1, bc3 = j("broker-single"), j("broker-cluster-1"), j("broker-cluster-3")
w = j("winners")
print(f"""# Benchmarks on clusters

Written by `just bench --cluster` on {datetime.date.today()}, on {machine},
everything co-located: the single-node services, a Redis Cluster of 3
masters and 3 replicas, a 3-node RabbitMQ cluster, the daemons and the
load generator share the cores. With 2 cores more processes cannot be
faster here: what this shows is that nothing breaks and what the cluster
costs, as ratios to the single-node stack measured in the same run.
Throughput bursts: `-n {n} -c {c}`, closed model.

## The sale

Seed scenario (10,000 buyers at once for 20 seats), open sale (stock that
never runs out: accepted reservations per second) and sold out (`409`s
per second), each through `flashgrid-load --url` one gateway or both
(connections spread over them). On the clusters two gateways and two
workers run (`just up --cluster`) in both rows; the reservation queues
are three quorum-queue partitions, as on the single node.

| stack | seed: last answer | ratio to single | 202/s | ratio | 409/s | ratio |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}

## Per-unit ceilings (the capacity model's inputs)

| unit | figure |
|---|---|
| Redis, one node: decide-script calls/s, 1 reservation a call (64 in flight) | {s1['calls_per_s']:.0f} |
| Redis, one node: decisions/s, 256 a call (8 in flight) | {s256['decisions_per_s']:.0f} ({s256['calls_per_s']:.0f} calls/s) |
| Redis Cluster, one event (one shard): calls/s, 1 a call | {c1['calls_per_s']:.0f} |
| Redis Cluster, one event (one shard): decisions/s, 256 a call | {c256['decisions_per_s']:.0f} |
| Redis Cluster, six events over the shards: decisions/s, 256 a call | {c256x6['decisions_per_s']:.0f} |
| RabbitMQ, one node, one quorum queue: reservations/s confirmed, 10 a message | {bs['reservations_per_s']:.0f} ({bs['msgs_per_s']:.0f} msg/s) |
| RabbitMQ cluster, one quorum queue: reservations/s, 10 a message | {bc1['reservations_per_s']:.0f} ({bc1['msgs_per_s']:.0f} msg/s) |
| RabbitMQ cluster, three quorum queues: reservations/s, 10 a message | {bc3['reservations_per_s']:.0f} ({bc3['msgs_per_s']:.0f} msg/s) |
| PostgreSQL: winners committed/s (the worker's statement, 256 a commit, 4 in flight) | {w['rows_per_s']:.0f} ({w['commits_per_s']:.0f} commits/s) |

Commands: `flashgrid-bench shard --batch 1|256 [--events 6]`,
`flashgrid-bench broker --queue-type quorum --per-message 10 [--queues 3]`,
`flashgrid-bench winners` (each prints one JSON line; `--help` for the
flags). The gateway's sold-out figure per gateway is the `409/s` column
above; [SCALING.md](SCALING.md) builds the capacity model on these.
""")
PY
cat docs/BENCHMARKS-CLUSTER.md
