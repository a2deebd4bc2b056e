#!/usr/bin/env bash
# `just faults`: flashgrid-faults (built), on this machine's services, or
# with --cluster on the test clusters (scripts/with-test-cluster.sh starts
# them, and stops them at the end unless KEEP_CLUSTER=1).
set -euo pipefail
cd "$(dirname "$0")/.."

for a in "$@"; do
  if [ "$a" = --cluster ]; then
    exec scripts/with-test-cluster.sh target/release/flashgrid-faults "$@"
  fi
done
exec target/release/flashgrid-faults "$@"
