"""Who may open a device node: /dev/kvm for the reader and for libvirt's QEMU.

``/dev/kvm`` is made by the kernel as ``crw------- root root``; on Debian a
udev rule (``KERNEL=="kvm", GROUP="kvm", MODE="0660"``) opens it to the group
``kvm``. Machines without udev (microVMs, containers) keep the kernel's mode,
and then QEMU started by libvirtd as ``libvirt-qemu`` (group ``kvm``) fails
with "Could not access KVM kernel module: Permission denied". This module
reads the device's owner, group and mode and the user and group libvirt runs
QEMU as, and says whether that user can open the device and, if not, the fix.
Standard library only.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import stat
from dataclasses import dataclass
from pathlib import Path

QEMU_CONF = "/etc/libvirt/qemu.conf"
#: What Debian's libvirt runs QEMU as when qemu.conf sets nothing.
DEFAULT_QEMU_USER = "libvirt-qemu"
DEFAULT_QEMU_GROUP = "kvm"
#: Debian's udev rule for /dev/kvm, as shell commands (what tools/libvirt-daemons.sh applies).
UDEV_RULE_FIX = "chgrp kvm {device} && chmod 0660 {device}"


@dataclass(frozen=True)
class DeviceAccess:
    """Owner, group and mode of a device node, and whether libvirt's QEMU user can open it.

    ``qemu_can_open`` is ``None`` when no local libvirt is installed (no
    ``qemu.conf``) or its QEMU user does not exist; ``fix`` is the command that
    makes the device usable when it is ``False`` (to run as root: it applies
    Debian's udev rule by hand).
    """

    device: str
    owner: str
    group: str
    mode: str
    qemu_user: str | None
    qemu_group: str | None
    qemu_can_open: bool | None
    fix: str | None = None


def qemu_identity(conf: str | os.PathLike[str] = QEMU_CONF) -> tuple[str, str] | None:
    """The (user, group) that libvirtd starts QEMU as, or None without a local libvirt."""
    try:
        text = Path(conf).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    values = {"user": DEFAULT_QEMU_USER, "group": DEFAULT_QEMU_GROUP}
    for key, value in re.findall(r'^\s*(user|group)\s*=\s*"([^"]*)"', text, re.M):
        values[key] = value.lstrip("+")  # "+0" means uid/gid 0
    return values["user"], values["group"]


def _name(lookup, ident: int) -> str:
    try:
        return lookup(ident)[0]
    except KeyError:
        return str(ident)


def may_open_rw(st: os.stat_result, uid: int, gids: set[int]) -> bool:
    """Whether a process with ``uid`` and groups ``gids`` may open the node read-write (root always may)."""
    if uid == 0:
        return True
    if st.st_uid == uid:
        need = stat.S_IRUSR | stat.S_IWUSR
    elif st.st_gid in gids:
        need = stat.S_IRGRP | stat.S_IWGRP
    else:
        need = stat.S_IROTH | stat.S_IWOTH
    return st.st_mode & need == need


def _groups_of(user: str, primary: int) -> set[int]:
    return {primary} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}


def device_access(device: str = "/dev/kvm", conf: str | os.PathLike[str] = QEMU_CONF) -> DeviceAccess | None:
    """Describe who can open ``device``; None when it does not exist."""
    try:
        st = os.stat(device)
    except OSError:
        return None
    owner, group = _name(pwd.getpwuid, st.st_uid), _name(grp.getgrgid, st.st_gid)
    base = dict(device=device, owner=owner, group=group, mode=stat.filemode(st.st_mode))
    identity = qemu_identity(conf)
    if identity is None:
        return DeviceAccess(**base, qemu_user=None, qemu_group=None, qemu_can_open=None)
    user, group_name = identity
    try:
        entry = pwd.getpwnam(user) if not user.isdigit() else pwd.getpwuid(int(user))
    except KeyError:
        return DeviceAccess(**base, qemu_user=user, qemu_group=group_name, qemu_can_open=None)
    gids = _groups_of(entry.pw_name, entry.pw_gid)
    try:
        gids.add(grp.getgrnam(group_name).gr_gid if not group_name.isdigit() else int(group_name))
    except KeyError:
        pass
    ok = may_open_rw(st, entry.pw_uid, gids)
    fix = None if ok else UDEV_RULE_FIX.format(device=device)
    return DeviceAccess(**base, qemu_user=user, qemu_group=group_name, qemu_can_open=ok, fix=fix)
