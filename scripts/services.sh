#!/usr/bin/env bash
# Checks that PostgreSQL, Redis and RabbitMQ answer on the addresses FlashGrid
# uses, and says how to start the ones that do not.
#   services.sh check          fail with instructions if one is down
#   services.sh start-local    start the local (non-Docker) ones that are down
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

check() {
  local missing=0
  port_open 127.0.0.1 5432 || { echo "PostgreSQL is not answering on 127.0.0.1:5432: start it with 'pg_ctlcluster --skip-systemctl-redirect 15 main start' (or 'docker compose up -d postgres')" >&2; missing=1; }
  port_open 127.0.0.1 6379 || { echo "Redis is not answering on 127.0.0.1:6379: start it with 'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save \"\" --appendonly no' (or 'docker compose up -d redis')" >&2; missing=1; }
  port_open 127.0.0.1 5672 || { echo "RabbitMQ is not answering on 127.0.0.1:5672: start it with 'rabbitmq-server -detached' (or 'docker compose up -d rabbitmq')" >&2; missing=1; }
  return $missing
}

wait_port() {
  local name=$1 port=$2
  for _ in $(seq 1 60); do port_open 127.0.0.1 "$port" && return 0; sleep 1; done
  echo "$name did not come up on 127.0.0.1:$port" >&2
  return 1
}

start_local() {
  if ! port_open 127.0.0.1 5432 && command -v pg_ctlcluster >/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start || true
    wait_port PostgreSQL 5432
  fi
  if ! port_open 127.0.0.1 6379 && command -v redis-server >/dev/null; then
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no || true
    wait_port Redis 6379
  fi
  if ! port_open 127.0.0.1 5672 && command -v rabbitmq-server >/dev/null; then
    rabbitmq-server -detached || true
    wait_port RabbitMQ 5672
  fi
  check
}

case "${1:-check}" in
  check) check ;;
  start-local) start_local ;;
  *) echo "usage: $0 check|start-local" >&2; exit 2 ;;
esac
