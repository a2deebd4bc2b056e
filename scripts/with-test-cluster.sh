#!/usr/bin/env bash
# Runs a command (its arguments) on the test clusters: a Redis Cluster on
# 7100–7105 and a 3-node RabbitMQ cluster on 5683–5685, apart from the
# ones `just cluster up` starts for development (7000–7005, 5673–5675),
# because the cluster suite and `just faults --cluster` kill and cut their
# nodes. They are started if not running and stopped at the end
# (KEEP_CLUSTER=1 keeps them up for the next run: ~25 s saved). The
# command finds them through FLASHGRID_TEST_CLUSTER_ENV, the file their
# URLs are written to.
set -euo pipefail
cd "$(dirname "$0")/.."

export CLUSTER_REDIS_PORT=${TEST_CLUSTER_REDIS_PORT:-7100}
export CLUSTER_AMQP_PORT=${TEST_CLUSTER_AMQP_PORT:-5683}
export CLUSTER_DIR=.run/test-cluster
export CLUSTER_NODE_PREFIX=fgt
export CLUSTER_ENV_FILE=.run/test-cluster.env

started=
if ! scripts/cluster.sh healthy >/dev/null 2>&1 || ! grep -q '^CLUSTER_DIR=' "$CLUSTER_ENV_FILE" 2>/dev/null; then
  scripts/cluster.sh down >/dev/null 2>&1 || true
  scripts/cluster.sh up
  started=1
fi
stop() {
  if [ -n "$started" ] && [ -z "${KEEP_CLUSTER:-}" ]; then
    scripts/cluster.sh down
  fi
}
trap stop EXIT

FLASHGRID_TEST_CLUSTER_ENV=$(realpath "$CLUSTER_ENV_FILE") "$@"
