"""What goes into a guest kit: a :class:`Profile` (modules, extra packages, the ``/init`` program).

Every kit has the same base: Debian's kernel (``linux-image-<abi>-amd64``),
Debian's statically linked busybox as the only userland, ``/dev/console``,
and an ``/init`` that mounts ``/proc``, ``/sys``, ``/dev``, loads the
profile's modules in dependency order (:mod:`lab.kit.modules`) and then runs
the profile's own shell script. Parameters reach the script on the kernel
command line as ``lab.<name>=<value>``; :func:`lab_param` in the script reads
them.

A new experiment adds a profile here and to :data:`PROFILES`; the builder
(:mod:`lab.kit.builder`), the cache and ``python -m lab kit build --profile
NAME`` need no change. :data:`HWVIRT_AMD` is such a profile: a guest that loads ``kvm_amd`` and runs
Python sets ``modules=("kvm_amd",)`` (its dependencies ``kvm`` and
``irqbypass`` follow from ``.modinfo``), ``packages=("python3.11-minimal",
"libpython3.11-minimal", "libc6", "zlib1g", ...)`` with ``include=`` globs for
the files it needs (``usr/bin/python3.11``, ``usr/lib/python3.11/**``,
``lib/x86_64-linux-gnu/libz.so*``; symlinks are kept as symlinks), and its
own ``init``; ``compile_python`` byte-compiles a package's Python files at build time.
The script runs under busybox ``sh`` after the common part,
with every busybox applet on ``PATH`` and three helpers: ``lab_param NAME``
(the value of ``lab.NAME=`` on the kernel command line), ``mark TEXT`` (a
``@lab TEXT`` marker line on port 0x402) and ``fail TEXT`` (print, mark
``error TEXT``, power off). It should end with ``poweroff -f`` (the domain is
``destroy`` on power-off).

Markers: the profile writes text lines ``@lab <words>`` to the ``isa-debugcon``
port 0x402, one byte per ``outb`` (``/dev/port`` writes successive bytes to
successive ports, so each byte is its own one-byte ``dd``). QEMU's trace shows
every byte as a register write, so the host sees in the trace itself where a
phase begins and ends. SeaBIOS also logs to port 0x402 before the kernel
starts; its lines never begin with ``@lab``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

#: Bump when the base layout or the common /init changes: every kit is rebuilt.
BASE_FORMAT = 1

COMMON_INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
lab_param() { sed -n "s/.*lab\.$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
mark() {
    printf '@lab %s\n' "$1" | fold -w1 | while IFS= read -r c; do
        printf '%s' "${c:- }" | dd of=/dev/port bs=1 seek=1026 count=1 2>/dev/null
    done
    printf '\n' | dd of=/dev/port bs=1 seek=1026 count=1 2>/dev/null
}
fail() { echo "lab-init: $1"; mark "error $1"; poweroff -f; }
for m in $(cat /etc/modules); do
    insmod "/lib/modules/$m.ko" || fail "insmod $m failed"
done
echo "lab-init: modules loaded: $(cat /etc/modules | tr '\n' ' ')"
"""

DISK_TRAP_INIT = r"""
counts=$(lab_param counts | tr ',' ' '); bs=$(lab_param bs)
[ -n "$counts" ] || counts="1000 2000"; [ -n "$bs" ] || bs=4096
dev=""
for i in $(seq 100); do
    for d in vda sda hda; do [ -b "/dev/$d" ] && dev=$d && break 2; done
    sleep 0.1
done
[ -n "$dev" ] || fail "no disk appeared (looked for vda, sda, hda)"
echo "lab-init: disk /dev/$dev, $bs-byte O_DIRECT requests, counts $counts"
mark "disk $dev"
sleep 1
for n in $counts; do
    mark "begin control $n"
    dd if=/dev/zero of=/dev/null bs=$bs count=$n 2>/dev/null || fail "control $n"
    mark "end control $n"
    mark "begin read $n"
    dd if=/dev/$dev of=/dev/null bs=$bs count=$n iflag=direct 2>/dev/null || fail "read $n"
    mark "end read $n"
    mark "begin write $n"
    dd if=/dev/zero of=/dev/$dev bs=$bs count=$n oflag=direct 2>/dev/null || fail "write $n"
    mark "end write $n"
done
mark "done"
echo "lab-init: done"
poweroff -f
"""


@dataclass(frozen=True)
class Profile:
    """A kind of guest kit.

    ``modules`` are loaded in this order, each after what it depends on
    (modules the kernel asks for by alias at run time, such as crypto
    algorithms, must be named explicitly, before their users).
    ``packages`` are extra Debian packages whose files matching ``include``
    (globs relative to the package root, e.g. ``usr/bin/python3*``) are copied.
    """

    name: str
    modules: tuple[str, ...]
    init: str
    description: str
    packages: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    cmdline: str = "console=ttyS0 panic=-1 quiet"
    extra_dirs: tuple[str, ...] = field(default=("proc", "sys", "dev", "tmp", "bin", "sbin", "etc", "root"))
    #: Folders (relative to a package's root) whose ``.py`` files are byte-compiled before copying,
    #: with ``unchecked-hash`` .pyc files: Debian's packages ship none (they are made at install time).
    compile_python: tuple[str, ...] = field(default=(), repr=False)
    #: Remove the modules' appended signatures: an emulator checks them with software SHA-256
    #: (about 5 s of 8 under Bochs). Debian's kernel loads unsigned modules (it is tainted, not refused).
    strip_signatures: bool = field(default=False, repr=False)

    def digest(self) -> str:
        """A hash of everything in the profile: a changed profile is a new kit."""
        text = repr((BASE_FORMAT, COMMON_INIT, self))
        if self.compile_python:  # not in repr: profiles without it keep the digest they had
            text += repr(self.compile_python)
        if self.strip_signatures:
            text += "strip_signatures"
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def init_script(self) -> str:
        return COMMON_INIT + self.init


DISK_TRAP = Profile(
    name="disk-trap",
    description="IDE, AHCI and virtio-blk drivers; /init runs O_DIRECT read and write phases "
                "between @lab markers on port 0x402, then powers off",
    # crct10dif_generic and crc64_rocksoft_generic: the crypto algorithms t10-pi (sd_mod) asks for at load
    modules=("crct10dif_generic", "crc64_rocksoft_generic", "sd_mod", "ata_piix", "ahci",
             "virtio_pci", "virtio_blk"),
    init=DISK_TRAP_INIT,
)

HWVIRT_INIT = r"""
backend=$(for m in kvm_amd kvm_intel kvm_pvm; do [ -d /sys/module/$m ] && echo $m; done)
echo "lab-init: kvm back end: ${backend:-none}"
[ -e /dev/kvm ] || mknod /dev/kvm c 10 232
[ -c /dev/kvm ] || fail "no /dev/kvm after loading the modules"
mount -t tmpfs tmpfs /tmp
[ -e /dev/ttyS1 ] || mknod /dev/ttyS1 c 4 65
export HOME=/root LANG=C.UTF-8 LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu
[ -x /payload/run ] || fail "no /payload/run: boot this kit with a payload (lab.qemu.hwvirt, lab.qemu.bochs)"
/payload/run
echo "lab-init: payload finished ($?)"
poweroff -f
"""

#: Python and the C libraries it and its ctypes/pyexpat/zlib modules link, from Debian packages, and GCC's
#: libatomic (the virtqueue's memory fences, lab.devices.ordering).
HWVIRT_PACKAGES = ("python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib",
                   "libc6", "zlib1g", "libexpat1", "libffi8", "libatomic1")
HWVIRT_INCLUDE = (
    "usr/bin/python3.11",
    "usr/lib/python3.11/**/*",
    "lib64/ld-linux-x86-64.so.2",
    "**/x86_64-linux-gnu/ld-linux-x86-64.so.2",
    "**/x86_64-linux-gnu/libc.so.6",
    "**/x86_64-linux-gnu/libm.so.6",
    "**/x86_64-linux-gnu/libz.so.1*",
    "**/x86_64-linux-gnu/libexpat.so.1*",
    "**/x86_64-linux-gnu/libffi.so.8*",
    "**/x86_64-linux-gnu/libatomic.so.1*",
)

HWVIRT_AMD = Profile(
    name="hwvirt-amd",
    description="kvm_amd (AMD-V as QEMU TCG emulates it) and Python 3.11; /init runs the payload "
                "appended to the initramfs at boot (/payload/run), then powers off",
    # irqbypass and kvm follow from kvm_amd's .modinfo; ccp is named: kvm_amd uses it for SEV
    modules=("irqbypass", "kvm", "ccp", "kvm_amd"),
    init=HWVIRT_INIT,
    packages=HWVIRT_PACKAGES,
    include=HWVIRT_INCLUDE,
    compile_python=("usr/lib/python3.11",),
)

HWVIRT_INTEL = Profile(
    name="hwvirt-intel",
    description="kvm_intel (VT-x as Bochs emulates it) and Python 3.11, the same kernel and /init as "
                "hwvirt-amd; booted from an ISOLINUX CD image (lab.qemu.bochs)",
    modules=("irqbypass", "kvm", "kvm_intel"),
    init=HWVIRT_INIT,
    packages=HWVIRT_PACKAGES,
    include=HWVIRT_INCLUDE,
    # nokaslr and mitigations=off: less work for an emulator that runs every instruction in software
    cmdline="console=ttyS0,115200 panic=-1 nokaslr mitigations=off quiet",
    compile_python=("usr/lib/python3.11",),
    strip_signatures=True,
)

PROFILES: dict[str, Profile] = {p.name: p for p in (DISK_TRAP, HWVIRT_AMD, HWVIRT_INTEL)}
