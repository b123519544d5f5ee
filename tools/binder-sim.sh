#!/usr/bin/env bash
# Simulate a Binder session on this machine: a fresh virtual environment made
# only from the binder/ files, then the whole book executed and built by a
# non-root user who cannot open /dev/kvm and has no libvirt daemon of its own.
# Needs root (to create that user). Prints the built HTML folder at the end.
#
#   tools/binder-sim.sh            reuse the environment when binder/ is unchanged
#   BINDER_SIM_FRESH=1 tools/binder-sim.sh   rebuild the environment
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
reader=${BINDER_SIM_USER:-labreader}
base=${BINDER_SIM_DIR:-/var/tmp/lab-binder-sim}
python=${BINDER_SIM_PYTHON:-/usr/bin/python3}

step() { printf '==> [binder] %s\n' "$*"; }
die() { printf 'binder simulation: %s\n' "$*" >&2; exit 2; }

[ "$(id -u)" = 0 ] || die "run as root: it creates the non-root reader '$reader'"
[ -x "$python" ] || die "$python is missing (Debian: apt-get install python3-venv)"

# repo2docker installs binder/apt.txt; here they must already be present.
missing=()
while read -r pkg; do
  [ -z "$pkg" ] || dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done < <(grep -v '^\s*#' "$src/binder/apt.txt")
[ ${#missing[@]} -eq 0 ] || die "packages of binder/apt.txt are missing: apt-get install ${missing[*]}"

if ! id "$reader" >/dev/null 2>&1; then
  step "creating the non-root reader '$reader'"
  /usr/sbin/useradd --no-create-home --shell /usr/sbin/nologin "$reader"
fi

# Binder has no /dev/kvm; here the reader must at least be unable to open it.
if [ -e /dev/kvm ] && /usr/sbin/runuser -u "$reader" -- test -r /dev/kvm -a -w /dev/kvm; then
  die "'$reader' can open /dev/kvm ($(stat -c '%A %U:%G' /dev/kvm)): the simulation needs a reader without KVM; remove '$reader' from the device's group"
fi

mkdir -p "$base"
chmod 755 "$base"
stamp="$base/venv/.binder-$(cat "$src"/binder/* "$src/requirements.txt" | sha256sum | cut -c1-12)"
if [ -n "${BINDER_SIM_FRESH:-}" ] || [ ! -f "$stamp" ]; then
  step "fresh virtual environment from binder/requirements.txt with $($python --version)"
  rm -rf "$base/venv"
  "$python" -m venv "$base/venv"
  "$base/venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
  (cd "$src/binder" && "$base/venv/bin/pip" install --quiet --disable-pip-version-check -r requirements.txt)
  touch "$stamp"
else
  step "virtual environment from binder/ is up to date ($base/venv)"
fi

step "copying the book (files git tracks or would track) into $base/book"
rm -rf "$base/book" "$base/home"
mkdir -p "$base/book" "$base/home"
(cd "$src" && git ls-files -z --cached --others --exclude-standard | tar --null -T - -c) | tar -x -C "$base/book"
step "postBuild, as repo2docker runs it"
(cd "$base/book" && PATH="$base/venv/bin:$PATH" HOME="$base/home" bash binder/postBuild)
chown -R "$reader:" "$base/book" "$base/home"
chmod -R a+rX "$base/venv"

step "executing every chapter as '$reader' (uid $(id -u "$reader")), without /dev/kvm access"
/usr/sbin/runuser -u "$reader" -- env -i HOME="$base/home" PATH="$base/venv/bin:/usr/bin:/bin" LANG=C.UTF-8 \
  "$base/venv/bin/jupyter-book" build "$base/book" --warningiserror --nitpick --keep-going \
  > "$base/build.log" 2>&1 || { tail -40 "$base/build.log" >&2; die "the book did not build for the Binder reader (log: $base/build.log)"; }
step "built: $base/book/_build/html"
echo "$base/book/_build/html"
