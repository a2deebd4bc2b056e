#!/usr/bin/env bash
# `just api-check`: the HTTP API against its OpenAPI document, by schemathesis
# and openapi-spec-validator (pinned in scripts/api-check/requirements.txt,
# installed into .run/api-check-venv when missing or changed) and by the probe
# in scripts/api-check/check.py. The `api_check` test starts the stack they
# run against (its own database, namespace and ports) and removes it after.
# API_CHECK_SEED picks schemathesis's seed (1 by default, so CI is repeatable).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.run/api-check-venv
want=scripts/api-check/requirements.txt
if ! cmp -s "$want" "$venv/requirements.txt" 2>/dev/null; then
  echo "Installing schemathesis and openapi-spec-validator into $venv…"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$want"
  cp "$want" "$venv/requirements.txt"
fi

API_CHECK_PYTHON="$PWD/$venv/bin/python" \
  cargo test --release --locked -p flashgrid-daemons --test api_check -- --ignored --nocapture
