#!/usr/bin/env bash
# `just bench`: FlashGrid's figures beside ceilings measured in the same run,
# on this machine, everything co-located. Writes docs/BENCHMARKS.md.
# A benchmark, not a test: it asserts nothing, it reports ratios.
set -euo pipefail
cd "$(dirname "$0")/.."

# `just bench --cluster`: the clusters' figures beside the single node's.
if [ "${1:-}" = --cluster ]; then
  exec scripts/bench-cluster.sh
fi

N_OPEN=${BENCH_REQUESTS:-50000}   # requests of the throughput scenarios
C_OPEN=${BENCH_CONNECTIONS:-256}  # connections of the throughput scenarios
BARE=127.0.0.1:18099
OUT=$(mktemp -d)
URL=${FLASHGRID_URL:-http://127.0.0.1:8080}
# What this run starts, it stops, by pid: the bare server, and the stack
# unless one was already answering (that one is left running).
BARE_PID=""
STARTED_STACK=0
stop_bare() {
  if [ -n "$BARE_PID" ]; then
    kill "$BARE_PID" 2>/dev/null || true
    wait "$BARE_PID" 2>/dev/null || true
    BARE_PID=""
  fi
}
# The bench's own events: each run sells hundreds of thousands of seats,
# whose rows and Redis keys (a pending marker each, kept a day) would pile
# up run after run and slow everything that shares those servers.
BENCH_EVENTS="bench-idle bench-open bench-soldout bench-drain"
TOKEN_READY=0
forget_bench_events() {
  [ "$TOKEN_READY" = 1 ] || return 0
  local e ns=${FLASHGRID_NAMESPACE:-flashgrid} redis=${REDIS_URL:-redis://127.0.0.1:6379}
  for e in $BENCH_EVENTS; do
    curl -s -o /dev/null -X POST "$URL/admin/events/$e/reset" -H "Authorization: Bearer $FLASHGRID_ADMIN_TOKEN" \
      -H 'Content-Type: application/json' -d '{"discard_confirmed":true}' || true
    # SCAN, not KEYS: Redis is never blocked for the whole keyspace.
    redis-cli -u "$redis" --scan --pattern "{$ns:evt:$e}:o:*" | xargs -r -n 1000 redis-cli -u "$redis" unlink >/dev/null || true
  done
}
# The rows the bench's resets delete stay behind as dead tuples until a
# VACUUM; where autovacuum is off (it is on this machine class's
# PostgreSQL), run after run every insert walks more of them (the drain fell
# from 57k to 38k/s over a few runs). Vacuumed before measuring and after.
vacuum() {
  psql "${DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/flashgrid}" -qc \
    'VACUUM (ANALYZE) reservations, holdings, events' >/dev/null 2>&1 ||
    echo "could not VACUUM the stack's tables: figures may carry earlier runs' dead rows" >&2
}
cleanup() {
  stop_bare
  forget_bench_events
  [ "$TOKEN_READY" = 1 ] && vacuum
  [ "$STARTED_STACK" = 1 ] && scripts/stack.sh down >/dev/null
  rm -rf "$OUT"
}
trap cleanup EXIT

# wrk and oha measure the ceilings, so that no figure is capped by our own client.
if ! command -v wrk >/dev/null; then
  echo "== installing wrk (Debian package)"
  apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
fi
# Installed for good (like wrk above): a tool, not something this run started.
export PATH=$HOME/.cargo/bin:$PATH
if ! command -v oha >/dev/null; then
  echo "== installing oha (cargo install, a few minutes once)"
  cargo install oha --locked >/dev/null 2>&1 || echo "could not install oha: its rows are skipped" >&2
fi

echo "== building (release)"
cargo build --release --locked --workspace --bins
if curl -fsS "$URL/readyz" >/dev/null 2>&1 && [ -s .run/admin-token ]; then
  echo "== using the stack already running at $URL"
else
  scripts/stack.sh up >/dev/null
  STARTED_STACK=1
fi
export FLASHGRID_ADMIN_TOKEN; FLASHGRID_ADMIN_TOKEN=$(cat .run/admin-token)
TOKEN_READY=1
vacuum
LOAD=target/release/flashgrid-load
BENCH=target/release/flashgrid-bench

bare() { # status body: a bare hyper server on $BARE answering these bytes
  stop_bare
  $BENCH bare --listen "$BARE" --status "$1" --body "$2" 2>/dev/null &
  BARE_PID=$!
  for _ in $(seq 1 50); do (exec 3<>/dev/tcp/127.0.0.1/18099) 2>/dev/null && return; sleep 0.1; done
  echo "the bare server did not start" >&2; exit 1
}
wrk_reserve() { # name url event: wrk's figures of POST /reserve, each request a new buyer
  BENCH_EVENT=$3 wrk -t2 -c"$C_OPEN" -d"${BENCH_WRK_SECONDS:-8}s" --latency \
    -s scripts/bench/reserve.lua "$2" > "$OUT/$1.wrk"
}
wrk_cpu() { # name url event: wrk_reserve, and the CPU each process spent meanwhile ($OUT/name.cpu.json)
  BENCH_EVENT=$3 python3 scripts/bench/cpu.py "$OUT/$1.cpu.json" -- wrk -t2 -c"$C_OPEN" \
    -d"${BENCH_WRK_SECONDS:-8}s" --latency -s scripts/bench/reserve.lua "$2" > "$OUT/$1.wrk"
}
perf_ok() { # perf may sample the gateway (linux-perf installed; attaching allowed)
  command -v perf >/dev/null &&
    perf record -q -o /dev/null -p "$(cat .run/flashgrid-gateway.pid)" -- sleep 0.1 >/dev/null 2>&1
}
profile_gateway() { # name url event: wrk_reserve once more, perf sampling the gateway's stacks ($OUT/name.perf.data)
  local rec
  perf record -q -F 499 --call-graph dwarf,16384 -p "$(cat .run/flashgrid-gateway.pid)" \
    -o "$OUT/$1.perf.data" -- sleep "${BENCH_WRK_SECONDS:-8}" >/dev/null 2>&1 &
  rec=$!
  BENCH_EVENT=$3 wrk -t2 -c"$C_OPEN" -d"${BENCH_WRK_SECONDS:-8}s" -s scripts/bench/reserve.lua "$2" > /dev/null
  wait "$rec" || true
}
perf_report() { # name: each symbol's share of the samples, its callees' included ($OUT/name.perf.txt)
  [ -f "$OUT/$1.perf.data" ] || return 0
  perf report -i "$OUT/$1.perf.data" --children --sort symbol -g none --stdio > "$OUT/$1.perf.txt" 2>/dev/null || true
  rm -f "$OUT/$1.perf.data"
}
commandstats() { # Redis's per-command counters, to diff around a scenario
  redis-cli -u "${REDIS_URL:-redis://127.0.0.1:6379}" INFO commandstats 2>/dev/null || true
}
lone_worker() { # the pid of the one worker `just up` started, or nothing (none, or two: --cluster)
  local pid; pid=$(cat .run/flashgrid-worker.pid 2>/dev/null || true)
  if [ -f .run/flashgrid-worker-1.pid ] && kill -0 "$(cat .run/flashgrid-worker-1.pid)" 2>/dev/null; then return; fi
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = flashgrid-worke ] && echo "$pid"
}
settle() { # let the worker drain what a scenario queued before the next one
  # (at most a minute: rejections are acked too, and change no count)
  local ns=${FLASHGRID_NAMESPACE:-flashgrid}
  for _ in $(seq 1 120); do
    [ "$(rabbitmqctl -q list_queues name messages 2>/dev/null |
      awk -v q="$ns.reservations" '$1 == q || (index($1, q ".") == 1 && substr($1, length(q) + 2) ~ /^[0-9]+$/) { n += $2 } END { print n + 0 }')" = 0 ] && break
    sleep 0.5
  done
  sleep 1
}
confirmed() { # event: its confirmed seats (PostgreSQL's), x when unreadable
  curl -s "$URL/events/$1" | python3 -c "import json,sys; print(json.load(sys.stdin)['confirmed'])" 2>/dev/null || echo x
}
committed() { # event: wait (at most a minute) until the worker stopped committing its winners
  local last now; last=$(confirmed "$1")
  for _ in $(seq 1 60); do sleep 1; now=$(confirmed "$1"); [ "$now" = "$last" ] && return; last=$now; done
}
sold_out() { # event: wait (at most 5 s) until the gateway answers it 409
  for _ in $(seq 1 50); do
    [ "$(curl -s "$URL/reserve" -H 'Content-Type: application/json' -d "{\"event_id\":\"$1\",\"user_id\":\"probe\"}" -o /dev/null -w '%{http_code}')" = 409 ] && return
    sleep 0.1
  done
  echo "the gateway does not answer $1 sold out after 5 s" >&2; exit 1
}

# Before anything else loads the gateway: its memory holding idle
# keep-alive connections, beside the bare server's (each fresh, each
# connection after one sold-out answer).
echo "== 0. memory: 10,000 idle keep-alive connections"
CONNS=${BENCH_IDLE_CONNECTIONS:-10000}
curl -s -o /dev/null -X POST "$URL/admin/events" -H "Authorization: Bearer $FLASHGRID_ADMIN_TOKEN" \
  -H 'Content-Type: application/json' -d '{"event_id":"bench-idle","name":"idle","capacity":1}'
$LOAD --url "$URL" --event bench-idle -n 20 -c 2 --no-verify --json > /dev/null
sold_out bench-idle
$BENCH idle --addr "${URL#http://}" --pid "$(cat .run/flashgrid-gateway.pid)" --connections "$CONNS" --event bench-idle > "$OUT/idle.json"
bare 409 '{"error":"sold_out","message":"event \"bench-idle\" is sold out"}'
$BENCH idle --addr "$BARE" --pid "$BARE_PID" --connections "$CONNS" --event bench-idle > "$OUT/idle_bare.json"
stop_bare

echo "== 1. seed scenario: 10,000 concurrent buyers, 20 seats"
$LOAD --url "$URL" --event demo --capacity 20 -n 10000 -c 10000 --json > "$OUT/seed.json"
bare 409 '{"error":"sold_out","message":"event \"demo\" is sold out"}'
$LOAD --url "http://$BARE" --event demo -n 10000 -c 10000 --no-verify --json > "$OUT/seed_bare.json"
settle

echo "== 2. open sale: accept rate with stock that never runs out"
$LOAD --url "$URL" --event bench-open --capacity 100000000 -n "$N_OPEN" -c "$C_OPEN" --no-verify --json > "$OUT/open.json"
settle
# The ceiling on the queue the daemons use: one quorum queue (one event is
# on one partition).
$BENCH broker --queue-type quorum --messages "$N_OPEN" --per-message 1 > "$OUT/broker1.json"
$BENCH broker --queue-type quorum --messages $((N_OPEN / 10)) --per-message 10 > "$OUT/broker10.json"
bare 202 '{"reservation_id":"1b4e28ba-2fa1-11d2-883f-0016d3cca427","status":"pending","status_url":"/events/bench-open/reservations/1b4e28ba-2fa1-11d2-883f-0016d3cca427"}'
$LOAD --url "http://$BARE" --event bench-open -n "$N_OPEN" -c "$C_OPEN" --no-verify --json > "$OUT/open_bare.json"
wrk_reserve open_bare "http://$BARE" bench-open
stop_bare
settle
wrk_cpu open "$URL" bench-open
committed bench-open
# The same with the worker paused: what the gateway and the broker take
# alone (the worker commits that backlog afterwards).
LONE=$(lone_worker || true)
if [ -n "$LONE" ]; then
  # The trap first: no moment where the worker is paused and nothing resumes it.
  trap 'kill -CONT "$LONE" 2>/dev/null; cleanup' EXIT
  kill -STOP "$LONE"
  wrk_cpu open_alone "$URL" bench-open
  # Where the gateway's share goes, by its stacks: a run of its own, as
  # sampling slows what it samples.
  if perf_ok; then
    echo "== the accept path once more, under perf"
    profile_gateway open_alone "$URL" bench-open
  else
    echo "perf is not installed or may not attach to the gateway here: its profile is skipped" >&2
  fi
  kill -CONT "$LONE"
  trap cleanup EXIT
  # The unwinding takes a while: not with the worker paused.
  perf_report open_alone
  committed bench-open
else
  echo "not one worker at .run/flashgrid-worker.pid: the accept path without it is skipped" >&2
fi
settle

echo "== 3. sold out: rejection rate at the gateway"
$LOAD --url "$URL" --event bench-soldout --capacity 1 -n 50 -c 5 --json > "$OUT/sellout.json"
sold_out bench-soldout
$LOAD --url "$URL" --event bench-soldout -n "$N_OPEN" -c "$C_OPEN" --no-verify --json > "$OUT/soldout.json"
bare 409 '{"error":"sold_out","message":"event \"bench-soldout\" is sold out"}'
$LOAD --url "http://$BARE" --event bench-soldout -n "$N_OPEN" -c "$C_OPEN" --no-verify --json > "$OUT/soldout_bare.json"
wrk_reserve soldout_bare "http://$BARE" bench-soldout
stop_bare
wrk_reserve soldout "$URL" bench-soldout
bare 409 '{"error":"sold_out","message":"event \"bench-soldout\" is sold out"}'

echo "== 4. flashgrid-load against oha on the same target, in turn, three times each"
for k in 1 2 3; do
  $LOAD --url "http://$BARE" --event bench-soldout -n 60000 -c 128 --no-verify --json > "$OUT/vs_load$k.json"
  if command -v oha >/dev/null; then
    oha --no-tui --output-format json -n 60000 -c 128 -m POST -H 'Content-Type: application/json' \
      -d '{"event_id":"bench-soldout","user_id":"oha"}' "http://$BARE/reserve" > "$OUT/vs_oha$k.json" 2>/dev/null || echo '{}' > "$OUT/vs_oha$k.json"
  else
    echo '{}' > "$OUT/vs_oha$k.json"
  fi
done
stop_bare
settle

echo "== 5. open model: p99 of 202s at 5,000 requests/s (latency corrected)"
# Not while the worker still commits the winners of scenario 2 (every one a
# seat).
committed bench-open
if command -v oha >/dev/null; then
  oha --no-tui --output-format json -z 10s -q 5000 --latency-correction -c 64 -m POST \
    -H 'Content-Type: application/json' -d '{"event_id":"bench-open","user_id":"oha"}' \
    "$URL/reserve" > "$OUT/open5k_oha.json" 2>/dev/null || echo '{}' > "$OUT/open5k_oha.json"
else
  echo '{}' > "$OUT/open5k_oha.json"
fi
settle
# With the CPU each process spent, and the messages the gateway published
# (the broker's work is per message).
published() {
  curl -sf -H "Authorization: Bearer $FLASHGRID_ADMIN_TOKEN" "$URL/metrics" |
    awk '/^flashgrid_publish_messages_total /{print $2}'
}
P0=$(published || true)
python3 scripts/bench/cpu.py "$OUT/open5k.cpu.json" -- \
  $LOAD --url "$URL" --event bench-open -z 10s -q 5000 -c 64 --no-verify --json > "$OUT/open5k.json"
P1=$(published || true)
echo "{\"before\": ${P0:-null}, \"after\": ${P1:-null}}" > "$OUT/open5k.published.json"
settle
# The floor: the gateway answers once the broker confirmed; the broker's own
# confirm latency, one reservation a message, on a queue of the stack's type.
python3 scripts/bench/cpu.py "$OUT/confirm5k.cpu.json" -- \
  $BENCH confirm --rate 5000 --seconds 10 --queue-type "${FLASHGRID_QUEUE_TYPE:-quorum}" > "$OUT/confirm5k.json"

echo "== 6. worker drain: a backlog queued while the worker is paused"
committed bench-open
WORKER_PID=$(lone_worker || true)
DRAIN_N=${BENCH_DRAIN_REQUESTS:-200000}
if [ -z "$WORKER_PID" ]; then
  echo "not one flashgrid-worker at the pid in .run/flashgrid-worker.pid (none, or a second one: just up --cluster): the drain scenario is skipped" >&2
  echo '{}' > "$OUT/drain.json"
else
  curl -s -o /dev/null -X POST "$URL/admin/events" -H "Authorization: Bearer $FLASHGRID_ADMIN_TOKEN" \
    -H 'Content-Type: application/json' -d '{"event_id":"bench-drain","name":"drain","capacity":100000000}'
  # Resumed by `flashgrid-bench drain`, or here whatever happens.
  trap 'kill -CONT "$WORKER_PID" 2>/dev/null; cleanup' EXIT
  kill -STOP "$WORKER_PID"
  $LOAD --url "$URL" --event bench-drain -n "$DRAIN_N" -c "$C_OPEN" --no-verify --json > "$OUT/drain_fill.json"
  BACKLOG=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['statuses'].get('202', 0))" "$OUT/drain_fill.json")
  commandstats > "$OUT/drain.redis0"
  python3 scripts/bench/cpu.py "$OUT/drain.cpu.json" -- \
    $BENCH drain --addr "${URL#http://}" --event bench-drain --worker-pid "$WORKER_PID" --backlog "$BACKLOG" > "$OUT/drain.json"
  commandstats > "$OUT/drain.redis1"
  trap cleanup EXIT
fi
# Its parts' ceilings: the decide script alone (Redis), the commit statement
# alone (PostgreSQL, one event: its row lock serialises the commits).
$BENCH shard --reservations 200000 --batch 256 --concurrency 4 > "$OUT/drain_shard.json"
$BENCH winners --rows 100000 --batch 256 --concurrency 1 > "$OUT/drain_winners.json"

echo "== writing docs/BENCHMARKS.md"
MACHINE_CPU="$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
MACHINE_MEM="$(free -g | awk '/Mem:/ {print $2}') GiB"
V_PG="$(psql -h 127.0.0.1 -U postgres -Atc 'SHOW server_version' 2>/dev/null || echo unknown)"
V_REDIS="$(redis-cli INFO server 2>/dev/null | awk -F: '/redis_version/ {print $2}' | tr -d '\r')"
V_RABBIT="$(rabbitmqctl version 2>/dev/null || echo unknown)"
python3 - "$OUT" "$MACHINE_CPU" "$MACHINE_MEM" "$V_PG" "$V_REDIS" "$V_RABBIT" "$N_OPEN" "$C_OPEN" "$STARTED_STACK" > "$OUT/BENCHMARKS.md" <<'PY'
import json, os, re, sys, datetime
out, cpu, mem, pg, redis, rabbit, n, c, started_stack = sys.argv[1:10]
j = lambda name: json.load(open(f"{out}/{name}.json"))
def wrk(name):
    """wrk's requests per second, its non-2xx count and p99 (ms)."""
    text = open(f"{out}/{name}.wrk").read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    total = int(re.search(r"(\d+) requests in", text).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", text)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return {"rps": rps, "total": total, "non2xx": int(bad.group(1)) if bad else 0,
            "p99_ms": float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")}
w_open, w_open_bare = wrk("open"), wrk("open_bare")
have = lambda f: os.path.exists(f"{out}/{f}")
w_alone = wrk("open_alone") if have("open_alone.wrk") else None
def cpu_per(name, count):
    """µs of CPU per unit of `count` (requests, reservations), by process,
    over a run that cpu.py measured."""
    if not count or not have(f"{name}.cpu.json"):
        return {}
    return {k: v / count * 1e6 for k, v in json.load(open(f"{out}/{name}.cpu.json")).items()}
cpu_with = cpu_per("open", w_open["total"])
cpu_alone = cpu_per("open_alone", w_alone and w_alone["total"])
# Processes by the names /proc gives them (cut at 15 characters).
PROCESS_NAMES = {"postgres": "PostgreSQL", "redis-server": "Redis", "beam.smp": "RabbitMQ",
                 "flashgrid-gatew": "flashgrid-gateway", "flashgrid-worke": "flashgrid-worker"}
def process_table(a, b, client, digits, least):
    """Rows of two by-process figures side by side, biggest first: those
    of at least `least` in either, then the sums."""
    names = sorted(set(a) | set(b), key=lambda k: -max(a.get(k, 0), b.get(k, 0)))
    shown = [k for k in names if max(a.get(k, 0), b.get(k, 0)) >= least]
    label = {**PROCESS_NAMES, "client": client}
    rows = [f"| {label.get(k, k)} | {a.get(k, 0):.{digits}f} | {b.get(k, 0):.{digits}f} |" for k in shown]
    rows.append(f"| **all** | **{sum(a.values()):.{digits}f}** | **{sum(b.values()):.{digits}f}** |")
    return "\n".join(rows)
def perf_shares(name):
    """Each symbol's share of a perf report's samples, its callees'
    included: the largest where a name repeats (inlined at several sites)."""
    shares = {}
    if have(f"{name}.perf.txt"):
        for line in open(f"{out}/{name}.perf.txt", errors="replace"):
            # Written to a file, perf adds two columns of "-" after the name.
            m = re.match(r"\s*([\d.]+)%\s+[\d.]+%\s+\[[.k]\]\s+(.*?)(?:\s+-\s+-)?\s*$", line)
            if m:
                sym = m.group(2).removesuffix("(inlined)").strip()
                shares[sym] = max(shares.get(sym, 0.0), float(m.group(1)))
    return shares
# The gateway's parts by their frames; an indented part runs within the one above it.
GATEWAY_PARTS = [
    ("HTTP: each connection's requests, read to written", r"hyper::proto::h1::dispatch::Dispatcher<.*>::poll_catch"),
    ("&emsp;the answer's write (a writev: the kernel's loopback to the client)", r"hyper::proto::h1::io::Buffered<.*>::poll_flush"),
    ("&emsp;`/reserve`'s handler", r"flashgrid::gateway::routes::reserve::<impl .*>::reserve::\{\{closure\}\}"),
    ("&emsp;&emsp;the request read (headers, JSON body)", r".*::parse_purchase::\{\{closure\}\}"),
    ("&emsp;&emsp;the signed status URL (HMAC)", r"flashgrid::gateway::receipt::Receipts::status_url"),
    ("&emsp;&emsp;the `202`'s body (JSON)", r"flashgrid::gateway::routes::reserve::accepted"),
    ("the batcher: each group's message encoded and published", r"flashgrid::gateway::publisher::batcher::\{\{closure\}\}"),
    ("the confirm waiters: each group's buyers answered", r"flashgrid::gateway::publisher::batcher::\{\{closure\}\}::\{\{closure\}\}::\{\{closure\}\}"),
    ("the pending markers (Redis)", r"flashgrid::inventory::Inventory::mark_pending::\{\{closure\}\}"),
    ("lapin's I/O thread (AMQP frames both ways)", r"lapin::io_loop::IoLoop<.*>::run"),
    ("the kernel: system calls (of all the above)", r"entry_SYSCALL_64_after_hwframe"),
    ("the kernel: threads put to sleep and woken", r"__schedule"),
]
gw_shares = perf_shares("open_alone")
gw_us = cpu_alone.get("flashgrid-gatew", 0)
def gateway_parts():
    rows = []
    for label, pattern in GATEWAY_PARTS:
        share = max((v for k, v in gw_shares.items() if re.fullmatch(pattern, k)), default=None)
        if share is None:
            rows.append(f"| {label} | not sampled | |")
        else:
            rows.append(f"| {label} | {share:.1f}% | {share / 100 * gw_us:.1f} |")
    return "\n".join(rows)
def commandstats(name):
    stats = {}
    if have(name):
        for line in open(f"{out}/{name}"):
            m = re.match(r"cmdstat_([^:]+):calls=(\d+),usec=(\d+)", line)
            if m:
                stats[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return stats
def redis_rows(backlog):
    """Redis's commands during the drain, per reservation, most first."""
    if not backlog:
        return "| (no backlog was queued) | | |"
    before, after = commandstats("drain.redis0"), commandstats("drain.redis1")
    diff = {k: (c - before.get(k, (0, 0))[0], u - before.get(k, (0, 0))[1]) for k, (c, u) in after.items()}
    # EVALSHA: the scripts, a call for hundreds of reservations; the bulk
    # reads and writes (HMGET, MGET, HSET) also take hundreds a call: shown
    # by the time they take, not by how often they are called.
    shown = sorted((k for k, (c, u) in diff.items()
                    if c >= 0.05 * backlog or u >= 0.1 * backlog or k == "evalsha"),
                   key=lambda k: -diff[k][1])
    name = lambda k: "EVALSHA (the scripts; their commands below)" if k == "evalsha" else k.upper()
    rows = [f"| {name(k)} | {diff[k][0] / backlog:.3f} | {diff[k][1] / backlog:.2f} |" for k in shown]
    return "\n".join(rows) or "| (no commandstats: redis-cli could not read them) | | |"
w_sold, w_sold_bare = wrk("soldout"), wrk("soldout_bare")
# The accept rate counts 202s only (wrk counts other answers as non-2xx).
w_accept = w_open["rps"] * (w_open["total"] - w_open["non2xx"]) / max(w_open["total"], 1)
seed, seed_bare = j("seed"), j("seed_bare")
open_, open_bare, b1, b10 = j("open"), j("open_bare"), j("broker1"), j("broker10")
sold, sold_bare = j("soldout"), j("soldout_bare")
idle, idle_bare, drain = j("idle"), j("idle_bare"), j("drain")
drain_names = {**PROCESS_NAMES, "client": "flashgrid-bench drain"}
drain_per = cpu_per("drain", drain.get("backlog"))
drain_all = sum(drain_per.values())
drain_cpu = sorted(((drain_names.get(k, k), v) for k, v in drain_per.items() if v >= 0.1), key=lambda kv: -kv[1])
d_shard, d_winners = j("drain_shard"), j("drain_winners")
o5, l5, c5 = j("open5k_oha"), j("open5k"), j("confirm5k")
def busy(name, seconds):
    """Cores each process kept busy over a run of `seconds`."""
    if not have(f"{name}.cpu.json") or not seconds:
        return {}
    return {k: v / seconds for k, v in json.load(open(f"{out}/{name}.cpu.json")).items()}
busy_load, busy_broker = busy("open5k", l5.get("duration_s")), busy("confirm5k", c5.get("seconds"))
pub = j("open5k.published") if have("open5k.published.json") else {}
open5k_messages = (pub["after"] - pub["before"]) if pub.get("after") is not None and pub.get("before") is not None else None
open5k_group = f"{l5['statuses'].get('202', 0) / open5k_messages:.1f}" if open5k_messages else "n/a"
open5k_messages = f"{open5k_messages:.0f}" if open5k_messages else "n/a"
def median(xs):
    xs = sorted(x for x in xs if x)
    return xs[len(xs) // 2] if xs else None
vs_load = median([j(f"vs_load{k}")["rps"] for k in (1, 2, 3)])
oha_rps = median([j(f"vs_oha{k}").get("summary", {}).get("requestsPerSec") for k in (1, 2, 3)])
o5_p99 = o5.get("latencyPercentiles", {}).get("p99")
accept = open_["statuses"].get("202", 0) / open_["duration_s"]
reject = sold["statuses"].get("409", 0) / sold["duration_s"]
bare_accept = open_bare["rps"]
bare_reject = sold_bare["rps"]
def r(x, y): return f"{x / y:.2f}" if y else "n/a"
gateway_section = f"""`perf record --call-graph dwarf` of the gateway during one more
accept-path run with the worker paused ({len(gw_shares)} frames
sampled). Each part's share of the gateway's samples, its callees
included (an indented part is within the one above it, and the kernel's
rows overlap the others), and that share of the gateway's
{gw_us:.1f} µs per `202` with the worker paused (the table above).

| part of the gateway | share of its CPU | µs per `202` |
|---|---|---|
{gateway_parts()}""" if gw_shares else """Skipped: perf is not installed or may not attach to the gateway here
(`apt-get install linux-perf`), or the worker was not paused (see the
run's output)."""
drain_processes = "\n".join(f"| {k} | {v:.1f} |" for k, v in drain_cpu)
drain_section = f"""
### Where the drain's CPU goes

CPU (user + system) of each process over the drain, per reservation
committed (`scripts/bench/cpu.py`; the client is `flashgrid-bench drain`
following the count), and the commands Redis ran meanwhile, per
reservation (`INFO commandstats` before and after; the commands the
scripts call are counted on their own rows, and EVALSHA's time includes
theirs).

| process | µs per reservation |
|---|---|
{drain_processes}
| **all** | **{drain_all:.1f}** |

At {drain_all:.1f} µs of CPU a reservation, the machine's {os.cpu_count()} cores
allow at most {os.cpu_count() * 1e6 / max(drain_all, 1e-9):.0f} reservations a second, every core busy
with the drain alone; it ran at {drain.get('confirmed_per_s', 0):.0f}.

| Redis command | calls per reservation | µs per reservation, Redis's own clock |
|---|---|---|
{redis_rows(drain['backlog'])}""" if drain and drain_cpu else ""
print(f"""# Benchmarks

Written by `just bench` on {datetime.date.today()}: FlashGrid's figures beside
ceilings measured in the same run, on the same machine, everything co-located
(services, daemons and the load generator share the cores). Ratios, not
absolute numbers, are what carry over to another machine.

**Machine**: {cpu}, {mem}; PostgreSQL {pg}, Redis {redis}, RabbitMQ {rabbit}.
Daemons in release builds as `just up` starts them. Throughput scenarios use
`-n {n} -c {c}` (closed model: each connection sends its next request as soon
as the last one was answered).

## 1. The seed scenario: 10,000 concurrent buyers, 20 seats

`flashgrid-load --event demo --capacity 20 -n 10000 -c 10000`

| | FlashGrid | bare hyper, same client | ratio |
|---|---|---|---|
| wall time to the last response | {seed['duration_s']:.3f} s | {seed_bare['duration_s']:.3f} s | {r(seed_bare['duration_s'], seed['duration_s'])} |
| requests/s | {seed['rps']:.0f} | {seed_bare['rps']:.0f} | {r(seed['rps'], seed_bare['rps'])} |
| p99 latency | {seed['latency_ms']['p99']:.1f} ms | {seed_bare['latency_ms']['p99']:.1f} ms | |
| confirmed | {seed['confirmed']} of 20 | | |
| verdict | {seed['verdict']} (oversold {seed['oversold']}, lost {seed['lost']}) | | |

Target: under 1 s. Latency is measured from the moment a buyer's client starts
(connect included): 10,000 TCP handshakes on loopback, client and server on the
same two cores, dominate both columns.

## 2. Open sale: accepted reservations per second

`flashgrid-load --event bench-open --capacity 100000000 -n {n} -c {c} --no-verify`
against `flashgrid-bench broker` (persistent publishes with confirms to one
quorum queue of the same RabbitMQ, as the daemons declare by default, 512 in
flight) and `flashgrid-bench bare` (the gateway's HTTP stack
answering the same 202 bytes, no FlashGrid logic).

| | per second | FlashGrid's ratio to it |
|---|---|---|
| **FlashGrid 202s** | **{accept:.0f}** (p99 {open_['latency_ms']['p99']:.1f} ms) | |
| broker, 1 reservation a message | {b1['reservations_per_s']:.0f} | {r(accept, b1['reservations_per_s'])} |
| broker, 10 reservations a message | {b10['reservations_per_s']:.0f} | {r(accept, b10['reservations_per_s'])} |
| bare hyper answering the same bytes | {bare_accept:.0f} | {r(accept, bare_accept)} |

Target: at least 0.75 of the per-message broker rate.

## 3. Sold out: rejections per second at the gateway

`flashgrid-load --event bench-soldout -n {n} -c {c} --no-verify` once the event sold out.

| | per second | ratio |
|---|---|---|
| **FlashGrid 409 sold_out** | **{reject:.0f}** (p99 {sold['latency_ms']['p99']:.1f} ms) | |
| bare hyper answering the same bytes | {bare_reject:.0f} | {r(reject, bare_reject)} |

Target: at least 0.6.

## Ceilings by an external client (wrk)

`wrk -t2 -c{c} -d8s --latency -s scripts/bench/reserve.lua`: every request
a new buyer. wrk's own cost is far below flashgrid-load's, so these are the
figures to hold against the machine's ceiling (bare hyper answering the
same bytes, measured by the same wrk in the same run).

| | FlashGrid, per second | bare hyper, per second | ratio |
|---|---|---|---|
| accept path: `202`s, open event, distinct buyers | {w_accept:.0f} (p99 {w_open['p99_ms']:.1f} ms; {w_open['non2xx']} not 202) | {w_open_bare['rps']:.0f} | {r(w_accept, w_open_bare['rps'])} |
| accept path, the worker paused: the gateway and the broker alone | {f"{w_alone['rps'] * (w_alone['total'] - w_alone['non2xx']) / max(w_alone['total'], 1):.0f} (p99 {w_alone['p99_ms']:.1f} ms)" if w_alone else "n/a (not one worker)"} | {w_open_bare['rps']:.0f} | {r(w_alone['rps'] * (w_alone['total'] - w_alone['non2xx']) / max(w_alone['total'], 1), w_open_bare['rps']) if w_alone else "n/a"} |
| sold-out path: `409`s | {w_sold['rps']:.0f} (p99 {w_sold['p99_ms']:.1f} ms) | {w_sold_bare['rps']:.0f} | {r(w_sold['rps'], w_sold_bare['rps'])} |

Target for the accept path: at least 0.4.

### Where a `202`'s CPU goes

CPU time (user + system) each process spent during the accept path's wrk
runs (`scripts/bench/cpu.py`, from `/proc`), divided by the requests
answered: µs per request. The machine's {os.cpu_count()} cores give {os.cpu_count() * 1e6 / max(w_open_bare['rps'], 1):.1f} µs
of CPU per request at the bare server's rate. With the worker running,
every `202` is also a winner decided in Redis and committed to
PostgreSQL on the same cores.

| process | µs per request, worker running | worker paused |
|---|---|---|
{process_table(cpu_with, cpu_alone, 'wrk (the client)', 1, 0.5)}

#### The gateway's share, by its stacks

{gateway_section}

## 4. flashgrid-load against oha

{"Same target (the bare server answering 409), `-n 60000 -c 128`, the two in turn three times; the median of each." if oha_rps else "oha could not be installed (`cargo install oha`); this row is skipped."}

| | requests/s |
|---|---|
| flashgrid-load | {vs_load:.0f} |
| oha | {f"{oha_rps:.0f}" if oha_rps else "n/a"} |
| ratio | {r(vs_load, oha_rps) if oha_rps else "n/a"} |

Target: at least 1.0.

## 5. Open model: latency at 5,000 requests/s, open event

Latency from each request's scheduled time (coordinated omission
corrected), 10 s, 64 connections, of every answer (statuses: oha
{o5.get('statusCodeDistribution', {})}, flashgrid-load {l5['statuses']});
the worker commits every winner meanwhile on the same cores.

| client | p50 | p99 | p99.9 |
|---|---|---|---|
| oha `-q 5000 --latency-correction` (one buyer) | {f"{o5['latencyPercentiles']['p50'] * 1000:.2f} ms" if o5_p99 else "n/a"} | {f"{o5_p99 * 1000:.2f} ms" if o5_p99 else "n/a"} | {f"{o5['latencyPercentiles']['p99.9'] * 1000:.2f} ms" if o5_p99 else "n/a"} |
| flashgrid-load `-q 5000` (distinct buyers) | {l5['latency_ms']['p50']:.2f} ms | {l5['latency_ms']['p99']:.2f} ms | {l5['latency_ms']['p99_9']:.2f} ms |
| the floor: the broker alone, one persistent message a publish at 5,000/s, timed from its schedule to its confirm (`flashgrid-bench confirm`, a {c5['queue_type']} queue) | {c5['latency_ms']['p50']:.2f} ms | {c5['latency_ms']['p99']:.2f} ms | {c5['latency_ms']['p99_9']:.2f} ms |

The gateway answers `202` once RabbitMQ confirmed the message that holds
the reservation: a `202`'s latency is the broker's row plus the gateway's
own work and its wait for a core, and the broker's row is measured on the
same machine in the same run. flashgrid-load's run published
{open5k_messages} messages for its {l5['statuses'].get('202', 0)} reservations ({open5k_group} a message).

### Where the open model's CPU goes

Cores each process kept busy during flashgrid-load's run and during the
broker's alone (`scripts/bench/cpu.py`: CPU seconds over the run's
seconds). The machine has {os.cpu_count()}; a queue of work waiting for
a core is what a `202`'s tail is made of once they are this busy.

| process | cores busy, FlashGrid at 5,000/s | the broker alone at 5,000/s |
|---|---|---|
{process_table(busy_load, busy_broker, 'the client (flashgrid-load; flashgrid-bench)', 2, 0.01)}

Target: p99 under 5 ms.

## 6. Worker drain
{"" if drain else '''
Skipped: it needs the one worker `just up` starts (see the run's output).
'''}
A backlog of {drain.get('backlog', 'n/a')} reservations (every one a winner, one seat
each) queued through the gateway while the worker was paused (SIGSTOP),
then the worker resumed; the event's `confirmed` count followed until the
whole backlog was committed.

| | per second | FlashGrid's ratio to it |
|---|---|---|
| **confirmations committed** | **{drain.get('confirmed_per_s', 0):.0f}** ({drain.get('seconds', 0):.2f} s) | |
| the decide script alone, 256 a call (`flashgrid-bench shard`) | {d_shard['decisions_per_s']:.0f} | {r(drain.get('confirmed_per_s', 0), d_shard['decisions_per_s'])} |
| the commit statement alone, 256 a call, one event (`flashgrid-bench winners`) | {d_winners['rows_per_s']:.0f} | {r(drain.get('confirmed_per_s', 0), d_winners['rows_per_s'])} |

Target: at least 50,000 a second.
{drain_section}

## 7. Memory of {idle['connections']} idle keep-alive connections

Each connection sent one request to a sold-out event (answers: gateway
{idle['statuses']}, bare {idle_bare['statuses']}) and stays open; resident
memory from `/proc`, the gateway beside the bare server (the same HTTP stack
answering fixed bytes, on the system's malloc; the gateway runs on jemalloc,
whose size classes do not fragment under a connection burst as glibc's
arenas did: 1.4 KiB more a connection than the bare server, the same once
on jemalloc), first thing in the run ({"the stack was started by this run" if started_stack == "1" else "the stack was already running: the gateway may have served load before"}).

| | before | holding them | per connection |
|---|---|---|---|
| gateway | {idle['rss_before_mib']:.1f} MiB | **{idle['rss_mib']:.1f} MiB** | {idle['per_connection_kib']:.1f} KiB |
| bare hyper | {idle_bare['rss_before_mib']:.1f} MiB | {idle_bare['rss_mib']:.1f} MiB | {idle_bare['per_connection_kib']:.1f} KiB |
| ratio | | {r(idle['rss_mib'], idle_bare['rss_mib'])} | |

Target: at most 1.2.
""")
PY
# Only once whole: a run that fails leaves the last one in place.
mv "$OUT/BENCHMARKS.md" docs/BENCHMARKS.md
cat docs/BENCHMARKS.md
