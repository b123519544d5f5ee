#!/usr/bin/env bash
# Set up what the book needs on Debian 12: Debian packages (as root, with
# apt-get; otherwise the exact command to run is printed) and a virtual
# environment .venv with the pinned Python packages and the `lab` package.
#
#   tools/setup.sh book   packages to build and read the book
#   tools/setup.sh test   also what the test suite needs (browser, binutils)
#   tools/setup.sh system only the Debian packages of `test`, no virtual environment
set -euo pipefail
cd "$(dirname "$0")/.."

PURPOSE=${1:-book}
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

# Debian packages. Book: libvirt-python compiles against libvirt-dev with
# pkg-config; Japanese figures need Noto Sans CJK JP; the KVM struct check uses
# gcc and the kernel headers. Live chapters: a real libvirtd with QEMU/KVM.
BOOK_PACKAGES="pkg-config libvirt-dev gcc linux-libc-dev fonts-noto-cjk python3-venv"
LIVE_PACKAGES="libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils"
TEST_PACKAGES="chromium fonts-noto-color-emoji binutils"

step() { printf '==> %s\n' "$*"; }

missing_packages() {
  local p out=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || out+=("$p")
  done
  echo "${out[@]:-}"
}

wanted="$BOOK_PACKAGES $LIVE_PACKAGES"
case "$PURPOSE" in
  book) ;;
  test|system) wanted="$wanted $TEST_PACKAGES" ;;
  *) echo "usage: $0 [book|test|system]" >&2; exit 2 ;;
esac

if command -v dpkg-query >/dev/null; then
  step "checking Debian packages: $wanted"
  # shellcheck disable=SC2086
  missing=$(missing_packages $wanted)
  if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ]; then
      step "installing Debian packages: $missing"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      # shellcheck disable=SC2086
      apt-get install -y -qq --no-install-recommends $missing >/dev/null
    else
      # shellcheck disable=SC2086
      book_missing=$(missing_packages $BOOK_PACKAGES)
      echo "These Debian packages are missing; install them as root, then run make again:" >&2
      echo "  sudo apt-get install -y $missing" >&2
      if [ -n "$book_missing" ]; then exit 1; fi
      echo "(only live-chapter or test packages are missing: continuing; those cells fall back to recorded data)" >&2
    fi
  fi
else
  echo "warning: not a Debian system; make sure these are installed: $wanted" >&2
fi

[ "$PURPOSE" = system ] && exit 0

stamp="$VENV/.installed-$(sha256sum requirements.txt pyproject.toml | sha256sum | cut -c1-12)"
if [ -f "$stamp" ]; then
  step "virtual environment $VENV is up to date"
  exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
  step "creating the virtual environment $VENV with $($PYTHON --version 2>&1)"
  "$PYTHON" -m venv "$VENV"
fi
step "installing the pinned Python packages (requirements.txt) into $VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt
step "installing the lab package (editable) into $VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e .
rm -f "$VENV"/.installed-*
touch "$stamp"
step "set-up done"
