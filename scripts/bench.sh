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
trap 'pkill -f "flashgrid-bench bare" 2>/dev/null || true; rm -rf "$OUT"' EXIT

echo "== building (release)"
cargo build --release --locked --workspace --bins
scripts/stack.sh up >/dev/null
export FLASHGRID_ADMIN_TOKEN; FLASHGRID_ADMIN_TOKEN=$(cat .run/admin-token)
URL=${FLASHGRID_URL:-http://127.0.0.1:8080}
LOAD=target/release/flashgrid-load
BENCH=target/release/flashgrid-bench

bare() { # status body: a bare hyper server on $BARE answering these bytes
  pkill -f "flashgrid-bench bare" 2>/dev/null || true
  $BENCH bare --listen "$BARE" --status "$1" --body "$2" 2>/dev/null &
  for _ in $(seq 1 50); do (exec 3<>/dev/tcp/127.0.0.1/18099) 2>/dev/null && return; sleep 0.1; done
  echo "the bare server did not start" >&2; exit 1
}
settle() { sleep 2; } # let the worker drain what a scenario queued before the next one

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

echo "== 3. sold out: rejection rate at the gateway"
$LOAD --url "$URL" --event bench-soldout --capacity 1 -n 50 -c 5 --json > "$OUT/sellout.json"
for _ in $(seq 1 50); do
  [ "$(curl -s "$URL/reserve" -H 'Content-Type: application/json' -d '{"event_id":"bench-soldout","user_id":"probe"}' -o /dev/null -w '%{http_code}')" = 409 ] && break
  sleep 0.1
done
$LOAD --url "$URL" --event bench-soldout -n "$N_OPEN" -c "$C_OPEN" --no-verify --json > "$OUT/soldout.json"
bare 409 '{"error":"sold_out","message":"event \"bench-soldout\" is sold out"}'
$LOAD --url "http://$BARE" --event bench-soldout -n "$N_OPEN" -c "$C_OPEN" --no-verify --json > "$OUT/soldout_bare.json"

echo "== 4. flashgrid-load against oha on the same target"
if command -v oha >/dev/null; then
  oha --no-tui --output-format json -n "$N_OPEN" -c "$C_OPEN" -m POST -H 'Content-Type: application/json' \
    -d '{"event_id":"bench-soldout","user_id":"oha"}' "http://$BARE/reserve" > "$OUT/oha.json" 2>/dev/null || echo '{}' > "$OUT/oha.json"
else
  echo '{}' > "$OUT/oha.json"
fi
pkill -f "flashgrid-bench bare" 2>/dev/null || true

echo "== writing docs/BENCHMARKS.md"
MACHINE_CPU="$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
MACHINE_MEM="$(free -g | awk '/Mem:/ {print $2}') GiB"
V_PG="$(psql -h 127.0.0.1 -U postgres -Atc 'SHOW server_version' 2>/dev/null || echo unknown)"
V_REDIS="$(redis-cli INFO server 2>/dev/null | awk -F: '/redis_version/ {print $2}' | tr -d '\r')"
V_RABBIT="$(rabbitmqctl version 2>/dev/null || echo unknown)"
python3 - "$OUT" "$MACHINE_CPU" "$MACHINE_MEM" "$V_PG" "$V_REDIS" "$V_RABBIT" "$N_OPEN" "$C_OPEN" > docs/BENCHMARKS.md <<'PY'
import json, sys, datetime
out, cpu, mem, pg, redis, rabbit, n, c = sys.argv[1:9]
j = lambda name: json.load(open(f"{out}/{name}.json"))
seed, seed_bare = j("seed"), j("seed_bare")
open_, open_bare, b1, b10 = j("open"), j("open_bare"), j("broker1"), j("broker10")
sold, sold_bare, oha = j("soldout"), j("soldout_bare"), j("oha")
accept = open_["statuses"].get("202", 0) / open_["duration_s"]
reject = sold["statuses"].get("409", 0) / sold["duration_s"]
bare_accept = open_bare["rps"]
bare_reject = sold_bare["rps"]
oha_rps = oha.get("summary", {}).get("requestsPerSec")
def r(x, y): return f"{x / y:.2f}" if y else "n/a"
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

## 4. flashgrid-load against oha

{"Same target (the bare server answering 409), same `-n` and `-c`." if oha_rps else "oha is not installed on this machine (`cargo install oha`); this row is skipped."}

| | requests/s |
|---|---|
| flashgrid-load | {sold_bare['rps']:.0f} |
| oha | {f"{oha_rps:.0f}" if oha_rps else "n/a"} |
| ratio | {r(sold_bare['rps'], oha_rps) if oha_rps else "n/a"} |
""")
PY
cat docs/BENCHMARKS.md
