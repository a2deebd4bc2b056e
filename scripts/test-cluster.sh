#!/usr/bin/env bash
# `just test-cluster`: the cluster suite (daemons/tests/cluster) on the
# test clusters (scripts/with-test-cluster.sh starts and stops them). Its
# tests run one at a time: the drills kill and cut nodes the others use.
# Extra arguments go to the test binary (a test name, --nocapture).
set -euo pipefail
cd "$(dirname "$0")/.."

exec scripts/with-test-cluster.sh \
  cargo test --release --locked --workspace --test cluster -- --include-ignored --test-threads=1 "$@"
