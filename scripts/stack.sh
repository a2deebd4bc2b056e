#!/usr/bin/env bash
# `just up` / `just down` / `just status`: a local FlashGrid stack.
# Daemons run in the background; their logs and pids live in .run/ (git-ignored).
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

  stop flashgrid-gateway
  stop flashgrid-worker
  for name in flashgrid-worker flashgrid-gateway; do
    FLASHGRID_ADMIN_TOKEN=$token FLASHGRID_FEED_TOKEN=$feed_token FLASHGRID_LISTEN=$LISTEN \
      nohup "target/release/$name" >>"$RUN/$name.log" 2>&1 &
    echo $! > "$RUN/$name.pid"
  done

  echo -n "Waiting for the gateway to be ready"
  for _ in $(seq 1 60); do
    if curl -fsS "$URL/readyz" >/dev/null 2>&1; then break; fi
    if ! alive flashgrid-gateway || ! alive flashgrid-worker; then
      echo; echo "A daemon exited at start; its log says why:" >&2
      tail -n 5 "$RUN"/flashgrid-*.log >&2
      exit 1
    fi
    echo -n .; sleep 0.5
  done
  echo
  curl -fsS "$URL/readyz" >/dev/null || { echo "the gateway is not ready after 30 s; see $RUN/flashgrid-gateway.log" >&2; exit 1; }

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
  gateway      $URL   (logs: $RUN/flashgrid-gateway.log)
  worker       logs: $RUN/flashgrid-worker.log
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

down() {
  stop flashgrid-gateway
  stop flashgrid-worker
  if [ -f "$RUN/compose" ] && docker_up; then docker compose down; rm -f "$RUN/compose"; fi
}

status() {
  for name in flashgrid-gateway flashgrid-worker; do
    if alive "$name"; then echo "$name: running (pid $(cat "$RUN/$name.pid"))"; else echo "$name: stopped"; fi
  done
  curl -s "$URL/readyz" || true; echo
  for name in flashgrid-gateway flashgrid-worker; do
    [ -f "$RUN/$name.log" ] && { echo "--- $name"; tail -n 5 "$RUN/$name.log"; }
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
