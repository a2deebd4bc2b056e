#!/usr/bin/env bash
# `just mutants [GROUP...]`: mutation testing with cargo-mutants (installed
# when missing) over the code whose tests guard the promises: the fault
# matrix's verdicts, the load generator's verify and judge, the wire ids, and
# the worker's Lua-calling decide/settle steps. Each group runs the tests of
# its own package only, and writes its outcome under .run/mutants/<group>/. The counts go to docs/RELIABILITY.md
# by hand, beside what each surviving mutant means.
#
# Each run works on cargo-mutants' own copy of the tree (never in place: an
# interrupted run must not leave a mutant in the sources): the pure code
# with the `mutants` profile of Cargo.toml (nothing optimised: quickest to
# rebuild), the worker with `dev` (optimised dependencies: its tests push
# real traffic).
#
# Groups: logic (the verdicts, loadgen's verify and conclude, the wire ids:
# pure code, their unit tests; about 25 minutes here) and worker (decide,
# commit, settle, restock and revoke, judged by the pipeline tests against
# the real services: a rebuild of the daemons per mutant, about 80 minutes).
# Default: both.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

if ! command -v cargo-mutants >/dev/null; then
  echo "cargo-mutants is missing: installing it (cargo install cargo-mutants --locked)"
  cargo install cargo-mutants --locked
fi

groups=("$@")
[ ${#groups[@]} -eq 0 ] && groups=(logic worker)

run() {
  local group=$1; shift
  echo "== $group"
  # Exit 2 (mutants survived) and 3 (timeouts) are results, not failures.
  cargo mutants --no-shuffle \
    --output ".run/mutants/$group" "$@" || {
      rc=$?
      [ $rc -eq 2 ] || [ $rc -eq 3 ] || exit $rc
    }
  local out=".run/mutants/$group/mutants.out"
  printf '%s: caught %s, survived %s, timeout %s, unviable %s\n' "$group" \
    "$(wc -l <"$out/caught.txt")" "$(wc -l <"$out/missed.txt")" \
    "$(wc -l <"$out/timeout.txt")" "$(wc -l <"$out/unviable.txt")" |
    tee -a .run/mutants/summary.txt
}

mkdir -p .run/mutants
for g in "${groups[@]}"; do
  case $g in
    logic)
      run logic -p flashgrid-faults -p flashgrid-load -p flashgrid-wire \
        -f daemons/faults/src/verdict/mod.rs -f loadgen/src/verify.rs -f loadgen/src/conclude.rs \
        -f daemons/wire/src/ids.rs --profile mutants -- --lib
      ;;
    worker)
      # The steps that call the Lua scripts, judged by the pipeline tests
      # (real PostgreSQL, Redis and RabbitMQ); scripts/services.sh check first.
      scripts/services.sh check
      run worker -p flashgrid-daemons -f daemons/src/worker/batch.rs -f daemons/src/inventory/mod.rs \
        --re 'decide|settle|restock|revoke|commit' --timeout 300 --profile dev -- --test pipeline
      ;;
    *) echo "no group $g: choose among logic, worker" >&2; exit 2 ;;
  esac
done
