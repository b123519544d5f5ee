#!/usr/bin/env bash
# Run the test suite the way `make test` and `make test-all` do.
#
#   tools/run-tests.sh quick   every test except those marked `full` (make test; budget 180 s)
#   tools/run-tests.sh full    only the tests marked `full`: the Binder simulation,
#                              chapters executed on their own, guests booted under QEMU
#                              and Bochs
#                              (make test-all runs `quick`, then this; CI runs both)
#
# As root on a machine with libvirt installed, the libvirt daemons are started
# first (tools/libvirt-daemons.sh, as CI does) so that the libvirtd live suite
# runs, and stopped afterwards if this script started them. Tests run on every
# core with pytest-xdist (LAB_TEST_WORKERS overrides the count). Extra
# arguments go to pytest, e.g. PYTEST_ARGS="-x -k virt" make test.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
scope=${1:-quick}
shift || true

case "$scope" in
  quick) select=(-m "not full") ;;
  full) select=(-m full) ;;
  *) echo "usage: $0 quick|full [pytest arguments]" >&2; exit 2 ;;
esac

stop_daemons=
if [ "$(id -u)" = 0 ] && command -v virsh >/dev/null 2>&1 && [ -x /usr/sbin/libvirtd ]; then
  if ! tools/libvirt-daemons.sh status >/dev/null 2>&1; then stop_daemons=1; fi
  tools/libvirt-daemons.sh start | grep -v '^\(Compiled\|Using\|Running\)' || true
fi
if [ -n "$stop_daemons" ]; then trap 'tools/libvirt-daemons.sh stop' EXIT; fi

# The long suites boot a real Linux under QEMU from the guest kit: build it
# (once; later runs find it cached by package versions) where set-up may.
if [ "$scope" = full ] && [ "$(id -u)" = 0 ]; then
  echo "==> the guest kit for the QEMU suites (python -m lab kit build)"
  "$VENV/bin/python" -m lab kit build
  "$VENV/bin/python" -m lab kit build --profile hwvirt-amd
  "$VENV/bin/python" -m lab kit build --profile hwvirt-intel
fi

start=$(date +%s)
echo "==> running the tests (pytest, scope '$scope', ${LAB_TEST_WORKERS:-auto} workers)"
status=0
"$VENV/bin/pytest" -n "${LAB_TEST_WORKERS:-auto}" --dist loadfile "${select[@]}" --durations=10 "$@" || status=$?
if [ "$status" = 5 ]; then status=0; echo "==> no test selected"; fi
echo "==> tests ($scope) finished in $(( $(date +%s) - start )) s"
if [ "$scope" = quick ]; then
  echo "==> not run by make test: the tests marked 'full' (Binder simulation, chapters executed on their own,"
  echo "    guests booted under QEMU and Bochs); run them with: make test-all (CI runs it)"
fi
exit "$status"
