#!/usr/bin/env bash
# Build the HTML book into _build/html with every chapter executed (cached),
# warnings as errors, nitpicky references; the log goes to _build/build.log.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
mkdir -p _build
start=$(date +%s)
printf '==> building the book into _build/html (chapters are executed; results cached in _build/.jupyter_cache)\n'
# -W: warnings are errors; -n: every reference must resolve; --keep-going: report all of them.
if ! "$VENV/bin/jupyter-book" build . --warningiserror --nitpick --keep-going 2>&1 | tee _build/build.log; then
  printf '==> the book build FAILED after %ss; see the warnings above (also in _build/build.log)\n' "$(( $(date +%s) - start ))" >&2
  exit 1
fi
printf '==> book built in %ss: open _build/html/index.html\n' "$(( $(date +%s) - start ))"
