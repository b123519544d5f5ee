#!/usr/bin/env bash
# The fresh-machine check: clone the committed repository into a temporary
# folder and run the README's commands there (make book, then make test, then
# the long suites that make test-all adds), printing how long each took.
# Extra arguments are passed to `make test` (e.g. PYTEST_ARGS=-x).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/book-fresh.XXXXXX")
keep=${KEEP_FRESH_CLONE:-}
cleanup() { [ -n "$keep" ] || rm -rf "$work"; }
trap cleanup EXIT

echo "==> fresh clone of $(git -C "$src" rev-parse --short HEAD) into $work"
git clone --quiet "$src" "$work/book"
cd "$work/book"

echo "==> README command 1: make book (clean: set-up and every chapter executed)"
t0=$(date +%s)
make book
t1=$(date +%s)
echo "==> README command 1 again: make book (execution cache warm)"
make book
t2=$(date +%s)
echo "==> README command 2: make test"
make test "$@"
t3=$(date +%s)
echo "==> make test-all, the part after make test: the long suites (marked 'full')"
tools/run-tests.sh full
t4=$(date +%s)

cat <<REPORT
==> fresh-machine check passed on $(nproc) cores
    make book, clean (set-up + build):  $((t1 - t0)) s
    make book, warm cache:              $((t2 - t1)) s
    make test:                          $((t3 - t2)) s
    make test-all, after make test:     $((t4 - t3)) s
REPORT
