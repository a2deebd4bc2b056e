#!/usr/bin/env bash
# `just up` / `just down` / `just status`: a local FlashGrid stack.
# Daemons run in the background; their logs and pids live in .run/ (git-ignored).
# `just up --cluster`: two gateways (8080, 8081) and two workers on the local
# clusters of `just cluster up` (their URLs from .run/cluster.env); the
# gateways' URLs go to .run/gateways, which `just attack` spreads over.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN=.run
LISTEN=${FLASHGRID_LISTEN:-127.0.0.1:8080}
URL=http://$LISTEN
mkdir -p "$RUN"

docker_up() { command -v docker >/dev/null && docker info >/dev/null 2>&1; }

alive() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

stop() {
  local name=$1
  if alive "$name"; then
    local pid; pid=$(cat "$RUN/$name.pid")
    kill -TERM "$pid"
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then echo "$name did not stop in 15 s; killing it"; kill -KILL "$pid"; fi
    echo "stopped $name (pid $pid)"
  fi
  rm -f "$RUN/$name.pid"
}

up() {
  if docker_up; then
    echo "Docker is running: starting the services from compose.yaml"
    docker compose up -d --wait
    [ -f "$RUN/compose" ] || touch "$RUN/compose"
  else
    echo "No Docker engine: using the services on their standard local ports"
    scripts/services.sh check || scripts/services.sh start-local
  fi

  echo "Building the daemons (release)…"
  cargo build --release --locked --workspace --bins

  for kind in admin feed; do
    if [ ! -s "$RUN/$kind-token" ]; then
      head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$RUN/$kind-token"
    fi
  done
  local token feed_token; token=$(cat "$RUN/admin-token"); feed_token=$(cat "$RUN/feed-token")

  local instances=1 env_file=$RUN/cluster.env
  if [ "$cluster" = 1 ]; then
    [ -f "$env_file" ] || { echo "no $env_file: start the local clusters first with \`just cluster up\`" >&2; exit 1; }
    set -a; source "$env_file"; set +a
    instances=2
    echo "On the clusters: REDIS_URL=$REDIS_URL"
    echo "                 AMQP_URL=$AMQP_URL"
  fi

  stop_all
  local host=${LISTEN%:*} port=${LISTEN##*:} gateways=""
  for i in $(seq 0 $((instances - 1))); do
    local suffix="" listen="$host:$((port + i))"
    [ "$i" = 0 ] || suffix="-$i"
    for name in flashgrid-worker flashgrid-gateway; do
      # FLASHGRID_INSTANCE: the name the console lists it under (gateway-0, worker-1).
      FLASHGRID_ADMIN_TOKEN=$token FLASHGRID_FEED_TOKEN=$feed_token FLASHGRID_LISTEN=$listen \
        FLASHGRID_INSTANCE="${name#flashgrid-}-$i" \
        nohup "target/release/$name" >>"$RUN/$name$suffix.log" 2>&1 &
      echo $! > "$RUN/$name$suffix.pid"
    done
    gateways="${gateways:+$gateways,}http://$listen"
  done
  echo "$gateways" > "$RUN/gateways"

  echo -n "Waiting for the gateway to be ready"
  for _ in $(seq 1 60); do
    if curl -fsS "$URL/readyz" >/dev/null 2>&1; then break; fi
    if ! alive flashgrid-gateway || ! alive flashgrid-worker || { [ "$instances" = 2 ] && { ! alive flashgrid-gateway-1 || ! alive flashgrid-worker-1; }; }; then
      echo; echo "A daemon exited at start; its log says why:" >&2
      tail -n 5 "$RUN"/flashgrid-*.log >&2
      exit 1
    fi
    echo -n .; sleep 0.5
  done
  echo
  curl -fsS "$URL/readyz" >/dev/null || { echo "the gateway is not ready after 30 s; see $RUN/flashgrid-gateway.log" >&2; exit 1; }
  if [ "$instances" = 2 ]; then
    local url1="http://$host:$((port + 1))"
    for _ in $(seq 1 60); do curl -fsS "$url1/readyz" >/dev/null 2>&1 && break; sleep 0.5; done
    curl -fsS "$url1/readyz" >/dev/null || { echo "gateway 1 is not ready after 30 s; see $RUN/flashgrid-gateway-1.log" >&2; exit 1; }
  fi

  # A fresh demo event of 20 seats (reset if it exists, so every `just up` starts a new drill).
  local auth="Authorization: Bearer $token" json="Content-Type: application/json"
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$URL/admin/events" -H "$auth" -H "$json" \
    -d '{"event_id":"demo","name":"Demo drop","capacity":20}')
  if [ "$code" = 409 ]; then
    curl -fsS -o /dev/null -X POST "$URL/admin/events/demo/reset" -H "$auth" -H "$json" -d '{"capacity":20,"discard_confirmed":true}'
  elif [ "$code" != 201 ]; then
    echo "could not create the demo event (HTTP $code)" >&2; exit 1
  fi

  cat <<MSG

FlashGrid is up.
  gateways     $gateways   (logs: $RUN/flashgrid-gateway*.log)
  workers      $instances   (logs: $RUN/flashgrid-worker*.log)
  admin token  $token   (create and reset events: keep it to yourself)
  feed token   $feed_token   (read-only: the console's feed and /metrics)
  demo event   "demo", 20 seats

Try:
  curl -s -X POST $URL/reserve -H 'Content-Type: application/json' -H 'Idempotency-Key: order-1' -d '{"event_id":"demo","user_id":"alice","quantity":1}'
  curl -s '$URL/events/demo/reservations/<reservation_id>?wait_ms=2000'
  curl -s $URL/events/demo
Use the tokens: export FLASHGRID_FEED_TOKEN=$feed_token FLASHGRID_ADMIN_TOKEN=$token
Stop with:      just down
MSG
}

stop_all() {
  for name in flashgrid-gateway flashgrid-gateway-1 flashgrid-worker flashgrid-worker-1; do
    stop "$name"
  done
  rm -f "$RUN/gateways"
}

down() {
  stop_all
  if [ -f "$RUN/compose" ] && docker_up; then docker compose down; rm -f "$RUN/compose"; fi
}

status() {
  for name in flashgrid-gateway flashgrid-gateway-1 flashgrid-worker flashgrid-worker-1; do
    if alive "$name"; then echo "$name: running (pid $(cat "$RUN/$name.pid"))";
    elif [ "${name%-1}" = "$name" ]; then echo "$name: stopped"; fi
  done
  curl -s "$URL/readyz" || true; echo
  for name in flashgrid-gateway flashgrid-worker; do
    [ -f "$RUN/$name.log" ] && { echo "--- $name"; tail -n 5 "$RUN/$name.log"; }
  done
}

cluster=0
case "${1:-}" in
  up)
    case "${2:-}" in
      "") ;;
      --cluster) cluster=1 ;;
      *) echo "usage: $0 up [--cluster]" >&2; exit 2 ;;
    esac
    up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
