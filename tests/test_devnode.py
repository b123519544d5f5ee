"""Who may open /dev/kvm: the device's mode against libvirt's QEMU user."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from lab import devnode
from lab.paths import REPO_ROOT


def fake_stat(mode: int, uid: int, gid: int) -> os.stat_result:
    return os.stat_result((stat.S_IFCHR | mode, 0, 0, 1, uid, gid, 0, 0, 0, 0))


@pytest.mark.parametrize("mode, uid, gid, who, groups, expected", [
    (0o600, 0, 0, 0, set(), True),            # root opens anything
    (0o600, 0, 0, 64055, {107}, False),       # the kernel's default: only root
    (0o660, 0, 107, 64055, {107}, True),      # Debian's udev rule, QEMU in group kvm
    (0o640, 0, 107, 64055, {107}, False),     # group may read but not write
    (0o660, 0, 107, 1000, {1000}, False),     # a reader outside the group
    (0o606, 0, 107, 1000, {1000}, True),      # world read-write
    (0o066, 1000, 107, 1000, {107}, False),   # the owner's own bits decide for the owner
])
def test_may_open_rw(mode, uid, gid, who, groups, expected):
    assert devnode.may_open_rw(fake_stat(mode, uid, gid), who, groups) is expected


def test_qemu_identity_reads_qemu_conf(tmp_path):
    conf = tmp_path / "qemu.conf"
    conf.write_text('# user = "nobody"\n#group = "root"\n')
    assert devnode.qemu_identity(conf) == ("libvirt-qemu", "kvm")   # commented out: the defaults
    conf.write_text('user = "qemu"\ngroup = "+0"\n')
    assert devnode.qemu_identity(conf) == ("qemu", "0")
    assert devnode.qemu_identity(tmp_path / "missing.conf") is None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file away")
def test_device_access_names_the_fix(tmp_path):
    node = tmp_path / "kvm"
    node.touch()
    conf = tmp_path / "qemu.conf"
    conf.write_text('user = "nobody"\ngroup = "nogroup"\n')
    os.chown(node, 0, 0)
    node.chmod(0o600)
    access = devnode.device_access(str(node), conf)
    assert (access.owner, access.group, access.mode[1:]) == ("root", "root", "rw-------")
    assert access.qemu_can_open is False and access.fix == f"chgrp kvm {node} && chmod 0660 {node}"
    os.chown(node, 0, devnode.grp.getgrnam("nogroup").gr_gid)
    node.chmod(0o660)
    access = devnode.device_access(str(node), conf)
    assert access.qemu_can_open is True and access.fix is None
    assert devnode.device_access(str(tmp_path / "none")) is None


@pytest.mark.root
@pytest.mark.libvirtd
def test_libvirt_daemons_script_applies_the_udev_rule(tmp_path):
    node = tmp_path / "kvm"
    node.touch()
    os.chown(node, 0, 0)
    node.chmod(0o600)
    env = {**os.environ, "LAB_KVM_DEVICE": str(node)}
    out = subprocess.run([str(REPO_ROOT / "tools" / "libvirt-daemons.sh"), "start"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"{node} was -rw------- root:root" in out.stdout and "applied Debian's udev rule" in out.stdout
    st = Path(node).stat()
    assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == devnode.grp.getgrnam("kvm").gr_gid
    again = subprocess.run([str(REPO_ROOT / "tools" / "libvirt-daemons.sh"), "start"], env=env,
                           capture_output=True, text=True, timeout=120)
    assert "applied" not in again.stdout   # nothing to do the second time
