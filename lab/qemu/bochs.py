"""Run the VMM's live tests against ``kvm_intel``: a Linux guest on VT-x as Bochs emulates it.

QEMU's TCG emulates AMD-V but not VMX (:mod:`lab.qemu.hwvirt` runs
``kvm_amd`` there). Bochs emulates VMX: with the CPU model
``corei7_haswell_4770`` the guest sees ``vmx`` with EPT, VPID and
unrestricted guest, and Debian's kernel loads ``kvm_intel``. Newer models
report CPUID leaf 0x15, so Linux trusts a TSC frequency Bochs does not keep
(its TSC counts emulated instructions) and every timer runs late; Haswell
has no such leaf and the kernel calibrates the TSC against the PIT.

One run, the same steps as :mod:`lab.qemu.hwvirt` with the same payload:

1. the ``hwvirt-intel`` guest kit (the kernel of ``hwvirt-amd`` with
   ``kvm_intel``, module signatures stripped) is found in its cache;
2. the payload is appended to its initramfs
   (:func:`lab.qemu.hwvirt.initrd_with_payload`), and both go with ISOLINUX
   onto a CD image (``genisoimage``): Bochs has no direct kernel boot;
3. Debian's ``bochs-bin`` boots the CD with its own BIOS. It has no
   headless display, so it runs with ``display_library: term`` on a
   pseudo-terminal this module drains; it is built with its debugger, so it
   starts with ``-rc`` on a file holding ``c`` (continue); it ignores
   SIGTERM, so it is stopped with SIGKILL: as soon as the results are
   complete, or at the deadline. The console goes to one file (COM1), the
   JUnit XML to another (COM2);
4. the results are read as for QEMU (:func:`lab.qemu.hwvirt.collect`).

Bochs runs on one core, so it can run beside the QEMU guest on the other.
Nothing here is timed for the book: under Bochs every instruction is
emulated, and the guest's clock follows the emulated instruction count.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import shutil
import signal
import struct
import subprocess
import tempfile
import termios
import threading
import time
from pathlib import Path

from lab import backends
from lab.kit import Kit
from lab.qemu import hwvirt
from lab.qemu.hwvirt import GUEST_TESTS, HwvirtFailed, HwvirtRun

EMULATOR = "bochs"
#: The back end this guest offers (``kvm_intel``), as :data:`lab.backends.TABLE` says.
BACKEND = backends.emulated_by(EMULATOR).name
PROFILE = "hwvirt-intel"
BOCHS = "bochs-bin"
GENISOIMAGE = "genisoimage"
CPU_MODEL = "corei7_haswell_4770"
#: Emulated instructions per emulated second (also the guest's TSC rate); 50 million was no faster.
IPS = 100_000_000
MEMORY_MIB = 1024
#: Boot alone takes 91-124 s on an idle 2-core machine, the tests 180-210 s; twice that beside the QEMU run.
DEFAULT_DEADLINE_S = 1200.0
#: Files Bochs and ISOLINUX need, with the Debian package of each.
FILES = {
    Path("/usr/share/bochs/BIOS-bochs-latest"): "bochsbios",
    Path("/usr/share/vgabios/vgabios.bin"): "vgabios",
    Path("/usr/lib/x86_64-linux-gnu/bochs/plugins/libbx_term_gui.so"): "bochs-term",
    Path("/usr/lib/ISOLINUX/isolinux.bin"): "isolinux",
    Path("/usr/lib/syslinux/modules/bios/ldlinux.c32"): "syslinux-common",
}
BIOS, VGABIOS, _TERM, ISOLINUX, LDLINUX = FILES
PROGRAMS = {BOCHS: "bochs", GENISOIMAGE: "genisoimage"}
INSTALL = "as root: tools/setup.sh system (it installs every package tools/programs.tsv names)"


def missing() -> str | None:
    """None when Bochs and everything it boots from are installed, else what is missing and how to fix it."""
    gone = [f"{p} ({pkg})" for p, pkg in PROGRAMS.items() if shutil.which(p) is None]
    gone += [f"{f} ({pkg})" for f, pkg in FILES.items() if not f.exists()]
    if not gone:
        return None
    packages = sorted({*PROGRAMS.values(), *FILES.values()})
    return (f"did not run, because Bochs or its boot files are not installed (missing: {', '.join(gone)}); "
            f"install them {INSTALL}, or: apt-get install {' '.join(packages)}")


def emulator() -> str:
    """Bochs' Debian version and the emulated CPU: the VT-x ``kvm_intel`` ran on is Bochs' emulation."""
    version = hwvirt.first_line(["dpkg-query", "-W", "-f", "${Version}\n", PROGRAMS[BOCHS]])
    return f"Bochs {version}, cpu model={CPU_MODEL}"


def bochsrc(iso: Path, console: Path, results: Path, log: Path) -> str:
    """The Bochs configuration: one Haswell CPU with VMX, the CD as ``ata0-master``, two serial files."""
    return "\n".join([
        "config_interface: textconfig",
        "display_library: term",
        f'romimage: file="{BIOS}"',
        f'vgaromimage: file="{VGABIOS}"',
        f"cpu: model={CPU_MODEL}, count=1, ips={IPS}, ignore_bad_msrs=1",
        f"memory: guest={MEMORY_MIB}, host={MEMORY_MIB}",
        "clock: sync=none",  # the guest's time follows the emulated instructions, never the host's clock
        "ata0: enabled=1, ioaddr1=0x1f0, ioaddr2=0x3f0, irq=14",
        f'ata0-master: type=cdrom, path="{iso}", status=inserted',
        "boot: cdrom",
        f'com1: enabled=1, mode=file, dev="{console}"',
        f'com2: enabled=1, mode=file, dev="{results}"',
        "mouse: enabled=0",
        "panic: action=fatal",  # the guest's poweroff is a "soft power off" panic: the normal end
        "error: action=report",
        "info: action=report",
        "debug: action=ignore",
        f'log: "{log}"',
        "",
    ])


def make_iso(kit: Kit, initrd: Path, folder: Path) -> Path:
    """An El Torito CD image: ISOLINUX, the kit's kernel, ``initrd`` and the kit's command line."""
    tree = folder / "cd"
    (tree / "isolinux").mkdir(parents=True)
    shutil.copyfile(ISOLINUX, tree / "isolinux/isolinux.bin")  # a copy: genisoimage writes the boot table into it
    shutil.copyfile(LDLINUX, tree / "isolinux/ldlinux.c32")
    shutil.copyfile(kit.kernel, tree / "vmlinuz")
    shutil.move(initrd, tree / "initrd.img")
    (tree / "isolinux/isolinux.cfg").write_text(
        f"DEFAULT lab\nPROMPT 0\nTIMEOUT 0\nLABEL lab\n  KERNEL /vmlinuz\n  INITRD /initrd.img\n"
        f"  APPEND {kit.cmdline}\n", encoding="utf-8")
    iso = folder / "cd.iso"
    proc = subprocess.run([GENISOIMAGE, "-quiet", "-o", str(iso), "-b", "isolinux/isolinux.bin",
                           "-c", "isolinux/boot.cat", "-no-emul-boot", "-boot-load-size", "4",
                           "-boot-info-table", "-R", "-J", str(tree)],
                          capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise HwvirtFailed(f"{GENISOIMAGE} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    shutil.rmtree(tree)
    return iso


def _drain(fd: int) -> None:
    """Read the terminal display's output until Bochs closes the pseudo-terminal (a full one would stop it)."""
    while True:
        try:
            if not os.read(fd, 65536):
                return
        except OSError:  # EIO: the last holder of the other end is gone
            return


def _results_complete(results: Path) -> bool:
    """The end marker and pytest's status have arrived (Bochs writes the serial port a byte at a time)."""
    return re.search(re.escape(hwvirt.END) + r" rc=\d+\s", hwvirt.read_file(results)) is not None


def run(kit: Kit, tests: tuple[str, ...] = GUEST_TESTS, *, deadline_s: float = DEFAULT_DEADLINE_S,
        pytest_args: str = "") -> HwvirtRun:
    """Boot ``kit`` in Bochs with a fresh payload, run ``tests`` in the guest, return what ran there.

    Bochs is killed (SIGKILL) once the results are complete, at the deadline,
    or on any error here; its temporary folder goes with it.
    """
    if (reason := missing()) is not None:
        raise HwvirtFailed(reason)
    with tempfile.TemporaryDirectory(prefix="labbochs-") as tmp:
        folder = Path(tmp)
        console, results, log = folder / "console.log", folder / "results.txt", folder / "bochs.log"
        iso = make_iso(kit, hwvirt.initrd_with_payload(kit, folder, tests, pytest_args), folder)
        (folder / "bochsrc").write_text(bochsrc(iso, console, results, log), encoding="utf-8")
        (folder / "continue").write_text("c\n", encoding="utf-8")  # the debugger's first command
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 25, 80, 0, 0))
        drain = threading.Thread(target=_drain, args=(master,), daemon=True)
        started = time.monotonic()
        proc = None
        try:
            proc = subprocess.Popen([BOCHS, "-q", "-f", "bochsrc", "-rc", "continue"], cwd=folder,
                                    stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                                    env={**os.environ, "TERM": "vt100"})
            os.close(slave)
            slave = -1
            drain.start()
            while proc.poll() is None and not _results_complete(results):
                if time.monotonic() - started > deadline_s:
                    raise HwvirtFailed(
                        f"the guest did not finish within {deadline_s:.0f} s and Bochs was killed; its console "
                        f"ends with:\n{hwvirt.console_tail(hwvirt.read_file(console))}")
                time.sleep(0.5)
            seconds = time.monotonic() - started
            try:
                return hwvirt.collect(console, results, seconds)
            except HwvirtFailed as exc:
                raise HwvirtFailed(f"{exc}\nBochs (exit status {proc.poll()}) logged last:\n"
                                   f"{hwvirt.console_tail(hwvirt.read_file(log), 10)}") from None
        finally:
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # Bochs ignores SIGTERM
            if proc is not None:
                proc.wait()
            if slave >= 0:
                os.close(slave)
            if drain.is_alive():
                drain.join(timeout=5)
            os.close(master)
