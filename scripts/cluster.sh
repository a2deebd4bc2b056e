#!/usr/bin/env bash
# `just cluster up|down|status`: local clusters for development and the
# cluster tests, from the binaries on this machine (no Docker):
#   - a Redis Cluster of 3 masters and 3 replicas, ports 7000–7005 (cluster
#     bus on port + 10000);
#   - a 3-node RabbitMQ cluster, nodes fg1..fg3@localhost, AMQP ports
#     5673–5675 (distribution ports AMQP + 20000, no management plugin).
# Everything lives under .run/cluster (git-ignored): data, logs, configs,
# the Erlang cookie. `up` waits until both clusters report healthy, then
# prints the URLs and writes them to .run/cluster.env (ready for `source`).
# `down` stops exactly what `up` started (by pid file and node name) and
# removes the folder. The machine's own Redis (6379) and RabbitMQ (5672)
# are never touched.
#
# Ports are overridable for a second set beside the first:
# CLUSTER_REDIS_PORT (first of 6), CLUSTER_AMQP_PORT (first of 3),
# CLUSTER_DIR, CLUSTER_NODE_PREFIX, CLUSTER_ENV_FILE; the env file records
# them, so that the fault drills (`kill`, `revive`, `ctl`) find the set.
#
# For the fault drills (the cluster suite, `just faults --cluster`):
#   kill redis PORT | kill rabbit N   SIGKILL one node (N: 1..3)
#   revive redis PORT | revive rabbit N
#                                     start it again as it was; returns once
#                                     both clusters are whole again
#   ctl N ARGS…                       rabbitmqctl against node N
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=${CLUSTER_DIR:-.run/cluster}
REDIS_PORT=${CLUSTER_REDIS_PORT:-7000}
AMQP_PORT=${CLUSTER_AMQP_PORT:-5673}
PREFIX=${CLUSTER_NODE_PREFIX:-fg}
ENV_FILE=${CLUSTER_ENV_FILE:-.run/cluster.env}
RABBIT_BIN=/usr/lib/rabbitmq/bin
REDIS_PORTS=$(seq "$REDIS_PORT" $((REDIS_PORT + 5)))

die() {
  echo "cluster: $*" >&2
  exit 1
}

need() {
  command -v "$1" >/dev/null || die "$1 not found: $2"
}

# Waits for a command to succeed, up to $1 seconds, naming what it waits for.
wait_for() {
  local secs=$1 what=$2
  shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "timed out after ${secs}s waiting for $what (logs in $DIR)"
    sleep 0.2
  done
}

port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# --- Redis Cluster --------------------------------------------------------

# Starts Redis node $1 (its folder kept: a revived node reads its
# nodes.conf and rejoins as a replica of whoever took its slots).
redis_start() {
  local p=$1 d="$DIR/redis/$1"
  mkdir -p "$d"
  # Each node its own config file (the cluster writes its state there),
  # no persistence, bound to loopback.
  redis-server --port "$p" --bind 127.0.0.1 --daemonize yes \
    --dir "$(realpath "$d")" --pidfile "$(realpath "$d")/redis.pid" \
    --logfile "$(realpath "$d")/redis.log" \
    --cluster-enabled yes --cluster-config-file nodes.conf \
    --cluster-node-timeout 2000 --save "" --appendonly no
}

redis_up() {
  need redis-server "install Redis (Debian: redis-server)"
  need redis-cli "install Redis (Debian: redis-tools)"
  for p in $REDIS_PORTS; do
    redis_start "$p"
  done
  for p in $REDIS_PORTS; do
    wait_for 10 "Redis on $p" redis-cli -p "$p" ping
  done
  local nodes=()
  for p in $REDIS_PORTS; do nodes+=("127.0.0.1:$p"); done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$DIR/redis/create.log" 2>&1 ||
    die "redis-cli --cluster create failed: see $DIR/redis/create.log"
  for p in $REDIS_PORTS; do
    wait_for 20 "cluster_state:ok on Redis $p" redis_cluster_ok "$p"
  done
}

redis_cluster_ok() {
  redis-cli -p "$1" cluster info | grep -q '^cluster_state:ok'
}

redis_down() {
  # The pids are read before any is signalled: a node removes its pid file
  # as it exits.
  local pids=()
  for p in $REDIS_PORTS; do
    local pidfile="$DIR/redis/$p/redis.pid"
    if [ -f "$pidfile" ]; then pids+=("$(cat "$pidfile" 2>/dev/null || true)"); fi
  done
  for pid in "${pids[@]}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    [ -n "$pid" ] || continue
    local deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
}

# --- RabbitMQ cluster ------------------------------------------------------

nodename() { echo "${PREFIX}$1@localhost"; }

# The environment of node $1 (1..3): its own name, ports, folders, config
# and cookie (HOME holds the cookie the server and the CLI both read).
rabbit_env() {
  local i=$1 d
  d="$(realpath "$DIR/rabbitmq")/n$i"
  echo "HOME=$d/home"
  echo "RABBITMQ_NODENAME=$(nodename "$i")"
  echo "RABBITMQ_NODE_PORT=$((AMQP_PORT + i - 1))"
  echo "RABBITMQ_DIST_PORT=$((AMQP_PORT + i - 1 + 20000))"
  echo "RABBITMQ_MNESIA_BASE=$d/mnesia"
  echo "RABBITMQ_LOG_BASE=$d/log"
  echo "RABBITMQ_CONFIG_FILE=$d/rabbitmq.conf"
  echo "RABBITMQ_ENABLED_PLUGINS_FILE=$d/enabled_plugins"
  echo "RABBITMQ_CONF_ENV_FILE=$d/rabbitmq-env.conf"
  echo "RABBITMQ_PID_FILE=$d/pid"
  echo "ERL_EPMD_ADDRESS=127.0.0.1"
}

rabbit() {
  local i=$1 tool=$2
  shift 2
  env $(rabbit_env "$i") "$RABBIT_BIN/$tool" "$@"
}

rabbit_up() {
  [ -x "$RABBIT_BIN/rabbitmq-server" ] || die "RabbitMQ not found in $RABBIT_BIN (Debian: rabbitmq-server)"
  local cookie
  cookie=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  for i in 1 2 3; do
    local d="$DIR/rabbitmq/n$i"
    mkdir -p "$d/home" "$d/mnesia" "$d/log"
    printf '%s' "$cookie" >"$d/home/.erlang.cookie"
    chmod 400 "$d/home/.erlang.cookie"
    echo "[]." >"$d/enabled_plugins"
    : >"$d/rabbitmq-env.conf"
    # Nodes 2 and 3 find node 1 at their first boot and join it.
    cat >"$d/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$((AMQP_PORT + i - 1))
cluster_formation.peer_discovery_backend = classic_config
cluster_formation.classic_config.nodes.1 = $(nodename 1)
cluster_formation.classic_config.nodes.2 = $(nodename 2)
cluster_formation.classic_config.nodes.3 = $(nodename 3)
EOF
  done
  # One at a time, so each joins a running first node.
  for i in 1 2 3; do
    rabbit_start "$i"
  done
  wait_for 30 "3 running nodes in the RabbitMQ cluster" rabbit_cluster_ok
}

rabbit_start() {
  local i=$1
  rabbit "$i" rabbitmq-server -detached
  wait_for 60 "RabbitMQ node $(nodename "$i")" rabbit "$i" rabbitmqctl -n "$(nodename "$i")" await_startup --timeout 5
}

rabbit_cluster_ok() {
  local running
  running=$(rabbit 1 rabbitmqctl -n "$(nodename 1)" cluster_status --formatter json |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin)["running_nodes"]))')
  [ "$running" = 3 ]
}

rabbit_down() {
  for i in 3 2 1; do
    if [ -d "$DIR/rabbitmq/n$i" ]; then
      rabbit "$i" rabbitmqctl -n "$(nodename "$i")" stop >/dev/null 2>&1 || true
    fi
  done
  # A node that did not answer: by its pid file.
  for i in 1 2 3; do
    local pidfile="$DIR/rabbitmq/n$i/pid"
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      kill -9 "$(cat "$pidfile")" 2>/dev/null || true
    fi
  done
}

# --- commands --------------------------------------------------------------

# Every port both clusters need, checked before anything starts.
check_ports() {
  for p in $REDIS_PORTS; do
    port_free "$p" || die "port $p is taken (set CLUSTER_REDIS_PORT, or \`just cluster down\`)"
    port_free $((p + 10000)) || die "port $((p + 10000)) (cluster bus of $p) is taken"
  done
  for i in 1 2 3; do
    local p=$((AMQP_PORT + i - 1))
    port_free "$p" || die "port $p is taken (set CLUSTER_AMQP_PORT, or \`just cluster down\`)"
    port_free $((p + 20000)) || die "port $((p + 20000)) (distribution port of $p) is taken"
  done
}

urls() {
  local redis="" amqp=""
  for p in $REDIS_PORTS; do redis="${redis:+$redis,}127.0.0.1:$p"; done
  for i in 1 2 3; do
    amqp="${amqp:+$amqp,}amqp://guest:guest@127.0.0.1:$((AMQP_PORT + i - 1))/%2f"
  done
  echo "REDIS_URL=redis+cluster://$redis"
  echo "AMQP_URL=$amqp"
  # Which set this is, for `kill`, `revive` and `ctl` (and the drills).
  echo "CLUSTER_DIR=$(realpath "$DIR")"
  echo "CLUSTER_REDIS_PORT=$REDIS_PORT"
  echo "CLUSTER_AMQP_PORT=$AMQP_PORT"
  echo "CLUSTER_NODE_PREFIX=$PREFIX"
  echo "CLUSTER_ENV_FILE=$(realpath "$ENV_FILE")"
}

# The node a drill names, checked: a Redis port of this set, or 1..3.
drill_node() {
  case "$1" in
  redis)
    for p in $REDIS_PORTS; do [ "$p" = "$2" ] && return 0; done
    die "no Redis node $2 in this set ($REDIS_PORT–$((REDIS_PORT + 5)))"
    ;;
  rabbit)
    case "$2" in 1 | 2 | 3) return 0 ;; esac
    die "no RabbitMQ node $2: choose 1, 2 or 3"
    ;;
  *) die "kill/revive redis PORT | rabbit N, not $1" ;;
  esac
}

# Both clusters whole: every Redis node ok and every master replicated,
# 3 RabbitMQ nodes running.
wait_whole() {
  for p in $REDIS_PORTS; do
    wait_for 30 "cluster_state:ok on Redis $p" redis_cluster_ok "$p"
  done
  wait_for 30 "3 Redis masters with a replica each" redis_replicated
  wait_for 60 "3 running nodes in the RabbitMQ cluster" rabbit_cluster_ok
}

# Every replica's link to its master up (a revived node has synced).
redis_replicated() {
  local masters=0 up=0
  for p in $REDIS_PORTS; do
    local info
    info=$(redis-cli -p "$p" info replication | tr -d '\r')
    grep -q '^role:master' <<<"$info" && masters=$((masters + 1))
    grep -q '^master_link_status:up' <<<"$info" && up=$((up + 1))
  done
  [ "$masters" = 3 ] && [ "$up" = 3 ]
}

case "${1:-}" in
up)
  [ ! -e "$DIR" ] || die "$DIR exists: a cluster is up (\`just cluster down\` first)"
  check_ports
  mkdir -p "$DIR"
  # Whatever fails (a command, or `die`), what started is stopped; the
  # folder stays for its logs until `down`.
  trap 'if [ $? -ne 0 ]; then echo "cluster: start failed; stopped what started (logs in $DIR; \`just cluster down\` removes them)" >&2; redis_down; rabbit_down; fi' EXIT
  start=$SECONDS
  redis_up
  echo "Redis Cluster up: 3 masters, 3 replicas on $REDIS_PORT–$((REDIS_PORT + 5)) ($((SECONDS - start)) s)"
  start=$SECONDS
  rabbit_up
  echo "RabbitMQ cluster up: $(nodename 1), $(nodename 2), $(nodename 3) on $AMQP_PORT–$((AMQP_PORT + 2)) ($((SECONDS - start)) s)"
  trap - EXIT
  mkdir -p "$(dirname "$ENV_FILE")"
  urls >"$ENV_FILE"
  cat "$ENV_FILE"
  echo "written to $ENV_FILE (\`set -a; source $ENV_FILE; set +a\`)"
  ;;
down)
  if [ ! -d "$DIR" ]; then
    echo "no cluster under $DIR"
    exit 0
  fi
  redis_down
  rabbit_down
  rm -rf "$DIR" "$ENV_FILE"
  echo "clusters stopped, $DIR removed"
  ;;
status)
  [ -d "$DIR" ] || die "no cluster under $DIR (\`just cluster up\`)"
  for p in $REDIS_PORTS; do
    printf 'redis %s: %s\n' "$p" "$(redis-cli -p "$p" cluster info 2>/dev/null | grep '^cluster_state' | tr -d '\r' || echo down)"
  done
  for i in 1 2 3; do
    printf 'rabbitmq %s: %s\n' "$(nodename "$i")" \
      "$(rabbit "$i" rabbitmqctl -n "$(nodename "$i")" status >/dev/null 2>&1 && echo running || echo down)"
  done
  ;;
healthy)
  # Exit 0 only when both clusters are whole: every Redis node ok, three
  # masters each with a synced replica, three RabbitMQ nodes running.
  [ -d "$DIR" ] || exit 1
  for p in $REDIS_PORTS; do redis_cluster_ok "$p" || exit 1; done
  redis_replicated || exit 1
  rabbit_cluster_ok || exit 1
  ;;
kill)
  [ -d "$DIR" ] || die "no cluster under $DIR"
  drill_node "${2:-}" "${3:-}"
  if [ "$2" = redis ]; then
    pidfile="$DIR/redis/$3/redis.pid"
  else
    pidfile="$DIR/rabbitmq/n$3/pid"
  fi
  [ -f "$pidfile" ] || die "$2 node $3 is not running (no $pidfile)"
  kill -9 "$(cat "$pidfile")"
  # Gone once its port refuses (the kernel closed its sockets).
  if [ "$2" = redis ]; then port=$3; else port=$((AMQP_PORT + $3 - 1)); fi
  wait_for 10 "$2 node $3 to be gone" port_free "$port"
  rm -f "$pidfile"
  echo "$2 node $3 killed"
  ;;
revive)
  [ -d "$DIR" ] || die "no cluster under $DIR"
  drill_node "${2:-}" "${3:-}"
  if [ "$2" = redis ]; then
    redis_start "$3"
    wait_for 10 "Redis on $3" redis-cli -p "$3" ping
  else
    rabbit_start "$3"
  fi
  wait_whole
  echo "$2 node $3 back, both clusters whole"
  ;;
ctl)
  [ -d "$DIR" ] || die "no cluster under $DIR"
  drill_node rabbit "${2:-}"
  i=$2
  shift 2
  rabbit "$i" rabbitmqctl -n "$(nodename "$i")" "$@"
  ;;
*)
  echo "usage: $0 up|down|status|healthy|kill|revive|ctl" >&2
  exit 2
  ;;
esac
