# FlashGrid: `just up` starts a stack, `just test` runs every test.
# Run `just --list` for the rest.

set shell := ["bash", "-euo", "pipefail", "-c"]

export FLASHGRID_URL := env("FLASHGRID_URL", "http://127.0.0.1:8080")

# list the recipes
default:
    @just --list

# start the stack: services (Docker if it runs, else the local ones), both daemons, a demo event; `--cluster`: 2 gateways and 2 workers on `just cluster up`'s clusters
up *ARGS:
    scripts/stack.sh up {{ARGS}}

# stop the daemons `just up` started (and the compose services, if it started them)
down:
    scripts/stack.sh down

# show the state of the stack and the last log lines
status:
    scripts/stack.sh status

# attack the demo sale: 10,000 concurrent buyers for 20 seats, over every gateway `just up` started, then verify (extra flags pass through)
attack *ARGS:
    cargo build --release --locked --workspace --bins
    FLASHGRID_ADMIN_TOKEN="${FLASHGRID_ADMIN_TOKEN:-$(cat .run/admin-token 2>/dev/null)}" \
      FLASHGRID_URL="$(cat .run/gateways 2>/dev/null || echo "$FLASHGRID_URL")" \
      target/release/flashgrid-load --event demo --capacity 20 -n 10000 -c 10000 {{ARGS}}

# measure throughput and latency beside same-run ceilings; writes docs/BENCHMARKS.md (`--cluster`: on the local clusters with 1 and 2 gateways beside the single node, and the capacity model's per-unit ceilings; writes docs/BENCHMARKS-CLUSTER.md)
bench *ARGS:
    scripts/bench.sh {{ARGS}}

# Redis memory per accepted request for a sale of 1,000,000 requests, after it and once outcomes expired (one JSON line)
bench-memory *ARGS:
    scripts/services.sh check
    cargo build --release --locked --workspace --bins
    target/release/flashgrid-bench memory {{ARGS}}

# local clusters from this machine's binaries: `just cluster up` (Redis Cluster 3+3 on 7000–7005, RabbitMQ 3 nodes on 5673–5675; URLs to .run/cluster.env), `down`, `status`
cluster CMD:
    scripts/cluster.sh {{CMD}}

# run the fault matrix: one line per scenario with its verdicts (`just faults redis-cut` runs one; `--instances 2` two gateways and two workers; `--cluster` the cluster drills on test clusters of its own)
faults *ARGS:
    scripts/services.sh check
    cargo build --release --locked --workspace --bins
    scripts/faults.sh {{ARGS}}

# run every fault scenario 10 times (SOAK_RUNS), one and two instances (SOAK_INSTANCES), and write the counts to docs/RELIABILITY.md (`--cluster`: the cluster drills)
soak *ARGS:
    scripts/soak.sh {{ARGS}}

# mutation testing (cargo-mutants, installed if missing): verdicts, loadgen, wire, worker; counts in .run/mutants
mutants *GROUPS:
    scripts/mutants.sh {{GROUPS}}

# open the operator console on the stack `just up` started
tui:
    cargo build --release --locked --workspace --bins
    FLASHGRID_FEED_TOKEN="${FLASHGRID_FEED_TOKEN:-$(cat .run/feed-token 2>/dev/null)}" \
      FLASHGRID_ADMIN_TOKEN="${FLASHGRID_ADMIN_TOKEN:-$(cat .run/admin-token 2>/dev/null)}" target/release/flashgrid

# run every test (needs PostgreSQL, Redis and RabbitMQ on their standard ports);
# the release profile, so it reuses what `just up` built (line tables kept for backtraces)
test:
    scripts/services.sh check
    cargo test --workspace --locked --release

# the cluster suite, node kills included: FlashGrid on a Redis Cluster and a 3-node RabbitMQ cluster of its own (7100–7105, 5683–5685; started and stopped around the run, KEEP_CLUSTER=1 keeps them)
test-cluster *ARGS:
    scripts/services.sh check
    scripts/test-cluster.sh {{ARGS}}

# write the HTTP API's OpenAPI document (what `GET /openapi.json` answers) to docs/openapi.json
openapi:
    cargo build --release --locked -p flashgrid-daemons --bin flashgrid-gateway
    target/release/flashgrid-gateway --openapi > docs/openapi.json

# check the HTTP API against its OpenAPI document with schemathesis (installed into .run/ when missing) and a probe of every documented status
api-check:
    scripts/services.sh check
    scripts/api-check.sh

# format, lint and test, as CI would
check:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --locked -- -D warnings
    just test
