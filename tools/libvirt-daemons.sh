#!/bin/sh
# Start libvirt's daemons (virtlogd, libvirtd) when they are not running, and
# wait until qemu:///system answers. Idempotent: running it again while the
# daemons are up only checks them. For machines without systemd (CI
# microVMs, containers); on a host where systemd runs libvirtd it only checks.
#
# It never starts a network: libvirt's 'default' network (a bridge on a
# private address range) must stay off on the book's CI machines, so this
# script refuses to start libvirtd while that network is marked autostart
# (set LAB_ALLOW_NETWORK_AUTOSTART=1 on a machine where that is fine).
#
# Usage: tools/libvirt-daemons.sh [start|stop|status]
#   start   (default) make /dev/kvm usable by group kvm (Debian's udev rule, as
#           root) when it is not, start what is not running, wait for qemu:///system;
#   stop    stop only the daemons an earlier 'start' of this script started
#           (recorded in /run/lab-libvirt-daemons.started), never others;
#   status  say whether qemu:///system answers (exit 0) or not (exit 1).
# Environment: LAB_LIBVIRTD_TIMEOUT seconds to wait for an answer (default 30).
set -eu

URI=qemu:///system
TIMEOUT=${LAB_LIBVIRTD_TIMEOUT:-30}
RUN_DIR=/run/libvirt
AUTOSTART_DIR=/etc/libvirt/qemu/networks/autostart
STARTED=/run/lab-libvirt-daemons.started

say() { printf 'libvirt-daemons: %s\n' "$*"; }
die() { printf 'libvirt-daemons: error: %s\n' "$*" >&2; exit 1; }

# pid of a running daemon named $1 according to its pid file, or nothing.
running_pid() {
    pidfile="/run/$1.pid"
    [ -r "$pidfile" ] || return 1
    pid=$(cat "$pidfile" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$1" ] || return 1
    echo "$pid"
}

answers() { virsh -c "$URI" version >/dev/null 2>&1; }

# QEMU started by libvirtd runs as libvirt-qemu, group kvm. Debian's udev rule
# (KERNEL=="kvm", GROUP="kvm", MODE="0660") opens /dev/kvm to that group; where
# no udev runs, the device keeps the kernel's crw------- root root and QEMU
# fails with "Could not access KVM kernel module: Permission denied".
KVM_DEVICE=${LAB_KVM_DEVICE:-/dev/kvm}
kvm_group_can_open() {
    [ "$(stat -c %G "$KVM_DEVICE")" = kvm ] || return 1
    # the group digit of the octal mode must allow read and write (6 or 7)
    case "$(stat -c %a "$KVM_DEVICE")" in *[67]?) return 0 ;; *) return 1 ;; esac
}
ensure_kvm_device() {
    [ -e "$KVM_DEVICE" ] || return 0
    getent group kvm >/dev/null || { say "no group 'kvm' on this machine (install libvirt-daemon-system); leaving $KVM_DEVICE as it is"; return 0; }
    kvm_group_can_open && return 0
    was=$(stat -c '%A %U:%G' "$KVM_DEVICE")
    if [ "$(id -u)" != 0 ]; then
        say "$KVM_DEVICE is $was: QEMU (group kvm) cannot open it; as root run: chgrp kvm $KVM_DEVICE && chmod 0660 $KVM_DEVICE"
        return 0
    fi
    # Where udevd runs its rule would already have done this at boot; the same
    # two commands are what the rule says, so apply them directly.
    chgrp kvm "$KVM_DEVICE" && chmod 0660 "$KVM_DEVICE"
    say "$KVM_DEVICE was $was, which QEMU (group kvm) cannot open: applied Debian's udev rule, now $(stat -c '%A %U:%G' "$KVM_DEVICE")"
}

action=${1:-start}
case "$action" in
  start|--start) ;;
  stop|--stop)
    if [ ! -s "$STARTED" ]; then
        say "nothing to stop: this script started no daemon (no $STARTED)"
        exit 0
    fi
    # libvirtd first: it talks to virtlogd while it shuts down.
    for d in libvirtd virtlogd; do
        pid=$(awk -v d="$d" '$1 == d {print $2}' "$STARTED")
        [ -n "$pid" ] || continue
        if [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$d" ]; then
            kill "$pid" && say "stopped $d (pid $pid, started by this script)"
        else
            say "$d (pid $pid) is no longer running"
        fi
    done
    rm -f "$STARTED"
    exit 0 ;;
  status)
    if answers; then say "qemu:///system answers"; exit 0; fi
    say "qemu:///system does not answer"; exit 1 ;;
  *) die "unknown action '$action' (use start, stop or status)" ;;
esac

command -v virsh >/dev/null 2>&1 || die "virsh not found: install libvirt-clients (apt-get install libvirt-clients)"
ensure_kvm_device

if answers; then
    say "$URI already answers; nothing to start"
    virsh -c "$URI" version
    exit 0
fi

[ "$(id -u)" = 0 ] || die "$URI does not answer and only root can start the system daemons: run 'sudo $0', or start the libvirtd service (systemctl start libvirtd) and join the 'libvirt' group"

for bin in virtlogd libvirtd; do
    command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || \
        die "$bin not found: install libvirt-daemon-system and qemu-system-x86 (apt-get install libvirt-daemon-system qemu-system-x86)"
done
PATH="$PATH:/usr/sbin:/sbin"

if [ -z "${LAB_ALLOW_NETWORK_AUTOSTART:-}" ] && [ -d "$AUTOSTART_DIR" ] && \
   [ -n "$(ls -A "$AUTOSTART_DIR" 2>/dev/null)" ]; then
    die "libvirtd would autostart these networks: $(ls "$AUTOSTART_DIR" | tr '\n' ' ')(a bridge on a private range must not be started here); run 'virsh net-autostart --disable <name>' or remove the links in $AUTOSTART_DIR, or set LAB_ALLOW_NETWORK_AUTOSTART=1 where that is fine"
fi

mkdir -p "$RUN_DIR"

# Start daemon $1 (virtlogd or libvirtd) unless it runs; $2 says where to look when it fails.
start_daemon() {
    if pid=$(running_pid "$1"); then
        say "$1 already running (pid $pid)"
        return
    fi
    "$1" -d || die "$1 -d failed (see the message above; $2)"
    sleep 0.2
    pid=$(running_pid "$1") || die "$1 started but wrote no live pid file /run/$1.pid"
    echo "$1 $pid" >> "$STARTED"
    say "started $1 (pid $pid)"
}

start_daemon virtlogd "logs: journalctl or /var/log/libvirt"
start_daemon libvirtd "/var/log/libvirt/libvirtd.log may say more"
say "waiting for $URI to answer"

waited=0
until answers; do
    if [ "$waited" -ge "$TIMEOUT" ]; then
        detail=$(virsh -c "$URI" version 2>&1 | tail -n 3 || true)
        die "$URI did not answer within ${TIMEOUT}s: $detail
(is another libvirtd or virtqemud holding /run/libvirt? check 'ps -e | grep -E \"libvirtd|virtqemud\"' and /var/log/libvirt/)"
    fi
    sleep 1
    waited=$((waited + 1))
done
say "$URI answers after ${waited}s"
virsh -c "$URI" version
