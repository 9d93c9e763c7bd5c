#!/usr/bin/env bash
# The README main-job command: `bash scripts/main.sh`.
#
# Sets graphpack up (editable install) and runs the example project. For now that is the
# shop example through the in-process mock server; later this grows into
# build + local deploy + invoke + down.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PYTHON="${PYTHON:-python3}"
# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"

step() { printf '\n== %s\n' "$*"; }

step "setup: pip install -e ."
start=$SECONDS
pip_editable
echo "setup took $((SECONDS - start))s"

EXAMPLE="examples/shop/run_mock.py"
step "example: $EXAMPLE (mock server)"
if [ -f "$EXAMPLE" ]; then
  "$PYTHON" "$EXAMPLE"
  echo "main: example finished OK"
else
  echo "main: $EXAMPLE does not exist yet - nothing to run (the example project is written in a later step)"
fi
