#!/usr/bin/env bash
# The README main-job command: `bash scripts/main.sh`.
#
# Sets graphpack up (editable install) and runs the example project (examples/shop): train
# the model, test the graph in-process, build + deploy it locally (root and child joined by
# a durable file queue), invoke it, print the answer, tear it down.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PYTHON="${PYTHON:-python3}"
# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"

step() { printf '\n== %s\n' "$*"; }

# the test extra brings scikit-learn, which the example's model needs
step "setup: pip install -e '.[test]'"
start=$SECONDS
pip_editable test
echo "setup took $((SECONDS - start))s"

SHOP="${GRAPHPACK_EXAMPLE:-examples/shop}"  # the README test runs this script on a copy

step "example: define the shop project and train its model"
"$PYTHON" "$SHOP/project.py"

step "test it in-process (mock server: root and child, queue hop included)"
"$PYTHON" "$SHOP/run_mock.py"

trap 'graphpack down -C "$SHOP" >/dev/null 2>&1 || true' EXIT
step "graphpack deploy -f $SHOP   (build, then start the child and the root locally)"
graphpack deploy -f "$SHOP"

AUDIT="$SHOP/audit.jsonl"   # the child appends every answer it reads from the queue (the mock run did too)
audited() { if [ -f "$AUDIT" ]; then wc -l < "$AUDIT"; else echo 0; fi; }
before="$(audited)"
step "graphpack invoke recommender /v2/models/iris/infer"
answer="$(graphpack invoke -C "$SHOP" recommender /v2/models/iris/infer \
  -d '{"inputs": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}')"
echo "$answer"

step "the auditor child received the answer through the queue"
for _ in $(seq 100); do [ "$(audited)" -gt "$before" ] && break; sleep 0.1; done
[ "$(audited)" -gt "$before" ] || { echo "the auditor wrote nothing in 10 s"; exit 1; }
tail -n 1 "$AUDIT"

step "graphpack down"
graphpack down -C "$SHOP"
trap - EXIT
printf '\nanswer: %s\n' "$answer"
