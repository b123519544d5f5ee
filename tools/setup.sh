#!/usr/bin/env bash
# Set up what the book needs on Debian 12: Debian packages (as root, with
# apt-get; otherwise the exact command to run is printed) and a virtual
# environment .venv with the pinned Python packages and the `lab` package.
#
#   tools/setup.sh book   Debian packages (see below) and .venv
#   tools/setup.sh test   the same (kept for the Makefile's test target)
#   tools/setup.sh system only the Debian packages and the program check, no .venv
set -euo pipefail
cd "$(dirname "$0")/.."

PURPOSE=${1:-book}
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

# Debian packages: tools/programs.tsv declares every external program the book
# starts, its package and its purpose (book, live, test). As root, set-up
# installs the packages of all of them and then checks each program; without
# root a missing book program stops set-up, a missing live or test program is a
# warning with the exact apt-get line (those cells fall back to recorded data).
step() { printf '==> %s\n' "$*"; }

case "$PURPOSE" in
  book|test|system) ;;
  *) echo "usage: $0 [book|test|system]" >&2; exit 2 ;;
esac

missing_packages() {
  local p out=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || out+=("$p")
  done
  echo "${out[@]:-}"
}

if ! command -v dpkg-query >/dev/null; then
  echo "warning: not a Debian system; install the packages named in tools/programs.tsv: $(tools/programs.sh packages book live test)" >&2
elif [ "$(id -u)" = 0 ]; then
  wanted=$(tools/programs.sh packages book live test)
  # shellcheck disable=SC2086
  missing=$(missing_packages $wanted)
  if [ -n "$missing" ]; then
    step "installing Debian packages: $missing"
    t0=$(date +%s)
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
    step "Debian packages installed in $(( $(date +%s) - t0 )) s"
  fi
  step "checking the declared programs (tools/programs.tsv)"
  tools/programs.sh check base book live test \
    || { echo "set-up failed: a declared program is missing after installing its package (see above)" >&2; exit 1; }
else
  if ! out=$(tools/programs.sh check base book); then
    echo "$out" >&2
    echo "These are needed to build the book; install them as root, then run make again:" >&2
    echo "  sudo apt-get install -y $(missing_packages $(tools/programs.sh packages book))" >&2
    exit 1
  fi
  if ! out=$(tools/programs.sh check live test); then
    echo "$out" >&2
    echo "warning: the live chapters or the tests need these; as root run:" >&2
    echo "  sudo apt-get install -y $(missing_packages $(tools/programs.sh packages live test))" >&2
    echo "(continuing: the book builds, and hardware cells fall back to recorded data)" >&2
  fi
fi

[ "$PURPOSE" = system ] && exit 0

# JupyterLab settings for this project only (make lab): chapters open as
# notebooks on double-click, and no question about Jupyter news. They go into
# the environment's own config folder, never the user's home.
install_lab_settings() {
  local dir="$VENV/etc/jupyter/labconfig"
  mkdir -p "$dir"
  cp tools/jupyterlab-settings.json "$dir/default_setting_overrides.json"
}

stamp="$VENV/.installed-$(sha256sum requirements.txt pyproject.toml | sha256sum | cut -c1-12)"
if [ -f "$stamp" ]; then
  step "virtual environment $VENV is up to date"
  install_lab_settings
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
install_lab_settings
rm -f "$VENV"/.installed-*
touch "$stamp"
step "set-up done"
