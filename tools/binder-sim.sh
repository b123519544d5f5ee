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
# One simulation at a time: two at once (two test workers, two checkouts) would share the
# environment and the book copy below, and one would break the other's.
exec 9>"$base.lock"
flock 9

fresh_venv() {
  step "fresh virtual environment from binder/requirements.txt with $($python --version)"
  rm -rf "$base/venv"
  "$python" -m venv "$base/venv"
  "$base/venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
  (cd "$src/binder" && "$base/venv/bin/pip" install --quiet --disable-pip-version-check -r requirements.txt)
  touch "$stamp"
}
post_build() {
  (cd "$base/book" && PATH="$base/venv/bin:$PATH" HOME="$base/home" bash binder/postBuild)
}

stamp="$base/venv/.binder-$(cat "$src"/binder/* "$src/requirements.txt" | sha256sum | cut -c1-12)"
reused=""
if [ -n "${BINDER_SIM_FRESH:-}" ] || [ ! -f "$stamp" ]; then
  fresh_venv
else
  step "virtual environment from binder/ is up to date ($base/venv)"
  reused=1
fi

step "copying the book (files git tracks or would track) into $base/book"
rm -rf "$base/book" "$base/home"
mkdir -p "$base/book" "$base/home"
(cd "$src" && git ls-files -z --cached --others --exclude-standard | tar --null -T - -c) | tar -x -C "$base/book"
step "postBuild, as repo2docker runs it"
if ! post_build; then
  [ -n "$reused" ] || die "binder/postBuild failed in a fresh environment (output above)"
  # A reused environment can be broken (a run killed while pip was installing): start again, once.
  step "postBuild failed in the reused environment: building a fresh one"
  fresh_venv
  post_build || die "binder/postBuild failed in a fresh environment (output above)"
fi
chown -R "$reader:" "$base/book" "$base/home"
chmod -R a+rX "$base/venv"

step "executing every chapter as '$reader' (uid $(id -u "$reader")), without /dev/kvm access"
/usr/sbin/runuser -u "$reader" -- env -i HOME="$base/home" PATH="$base/venv/bin:/usr/bin:/bin" LANG=C.UTF-8 \
  "$base/venv/bin/jupyter-book" build "$base/book" --warningiserror --nitpick --keep-going \
  > "$base/build.log" 2>&1 || { tail -40 "$base/build.log" >&2; die "the book did not build for the Binder reader (log: $base/build.log)"; }
step "built: $base/book/_build/html"
echo "$base/book/_build/html"
