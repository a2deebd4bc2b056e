#!/usr/bin/env bash
# `just soak`: every fault scenario 10 times (SOAK_RUNS) in each topology
# (SOAK_INSTANCES, default 1,2: one gateway and one worker, then two of
# each), one line per run, then the counts per scenario and topology written
# into docs/RELIABILITY.md between its soak markers. Extra arguments go to
# flashgrid-faults (e.g. scenario names).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${SOAK_RUNS:-10}
INSTANCES=${SOAK_INSTANCES:-1,2}
DOC=docs/RELIABILITY.md
TABLE=$(mktemp)
trap 'rm -f "$TABLE"' EXIT

scripts/services.sh check
cargo build --release --locked --workspace --bins
# The cluster drills' counts go to a section of their own.
MARK=soak
for a in "$@"; do [ "$a" = --cluster ] && MARK=soak-cluster; done
status=0
scripts/faults.sh --runs "$RUNS" --instances "$INSTANCES" --table "$TABLE" "$@" || status=$?
if [ ! -s "$TABLE" ]; then
  echo "no counts written (exit $status): docs/RELIABILITY.md left as it was" >&2
  exit "$status"
fi

{
  echo "<!-- $MARK:begin (written by \`just soak$( [ "$MARK" = soak-cluster ] && echo ' --cluster')\`; edit outside the markers) -->"
  echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores, everything co-located, release build:"
  echo "\`just soak$( [ $# -gt 0 ] && printf ' %s' "$@")\` ($RUNS runs of each scenario in each topology, instances $INSTANCES: \`×2\` is two gateways and two workers; 3,000 buyers for 300 seats per run)."
  echo
  cat "$TABLE"
  echo "<!-- $MARK:end -->"
} > "$TABLE.section"
python3 - "$DOC" "$TABLE.section" "$MARK" <<'PY'
import re, sys
doc, section, mark = sys.argv[1], open(sys.argv[2]).read(), sys.argv[3]
text = open(doc).read()
new = re.sub(rf"<!-- {mark}:begin.*?<!-- {mark}:end -->\n", lambda _: section, text, flags=re.S)
if new == text and f"<!-- {mark}:begin" not in text:
    new = text.rstrip("\n") + "\n\n" + section
open(doc, "w").write(new)
PY
rm -f "$TABLE.section"
echo "counts written to $DOC"
exit $status
