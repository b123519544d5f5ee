"""lab.kit without the network: the initramfs format, module dependencies, finding a kit."""

from __future__ import annotations

import json
import stat
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from lab.kit import builder, cpio, modules, profiles


def test_cpio_round_trip_and_alignment():
    entries = [cpio.directory("dev"), cpio.char_device("dev/console", 5, 1),
               cpio.file("init", b"#!/bin/sh\n", executable=True), cpio.symlink("bin/sh", "busybox"),
               cpio.file("odd", b"x" * 5)]
    data = cpio.pack(entries)
    assert len(data) % 4 == 0 and data.startswith(b"070701")
    back = cpio.unpack(data)
    assert [(e.name, e.mode, e.data, e.rdev) for e in back] == [(e.name, e.mode, e.data, e.rdev) for e in entries]
    assert stat.S_ISCHR(back[1].mode) and back[1].rdev == (5, 1)
    assert back[2].mode & 0o111


def test_cpio_refuses_duplicates():
    with pytest.raises(ValueError, match="twice"):
        cpio.pack([cpio.file("a", b""), cpio.file("a", b"")])


def elf_with_modinfo(info: bytes) -> bytes:
    """A minimal ELF64 LE with a section-name table and a .modinfo section."""
    shstr = b"\0.shstrtab\0.modinfo\0"
    body = shstr + info
    shoff = 64 + len(body)
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 0x28, shoff)
    struct.pack_into("<HHH", header, 0x3A, 64, 3, 1)

    def sh(name: int, off: int, size: int) -> bytes:
        return struct.pack("<IIQQQQIIQQ", name, 1, 0, 0, off, size, 0, 0, 1, 0)

    return bytes(header) + body + sh(0, 0, 0) + sh(1, 64, len(shstr)) + sh(11, 64 + len(shstr), len(info))


def test_modinfo_reads_depends_and_softdeps():
    info = modules.modinfo(elf_with_modinfo(b"license=GPL\0depends=libata,scsi_mod\0softdep=pre: crc64\0"))
    assert info["depends"] == ["libata,scsi_mod"] and info["softdep"] == ["pre: crc64"]
    with pytest.raises(modules.ModuleError):
        modules.modinfo(b"not an elf at all")


def _mods(**deps):
    return {n: modules.Module(n, Path(f"/{n}.ko"), d.get("hard", []), d.get("soft", [])) for n, d in deps.items()}


def test_load_order_puts_dependencies_first_once():
    avail = _mods(sd_mod={"hard": ["scsi_mod", "t10_pi"]}, scsi_mod={"hard": ["scsi_common"]}, scsi_common={},
                  t10_pi={"hard": ["crc_t10dif"], "soft": ["crc64"]}, crc_t10dif={}, crc64={},
                  ata_piix={"hard": ["libata"]}, libata={"hard": ["scsi_mod", "scsi_common"]})
    order = [m.name for m in modules.load_order(["sd_mod", "ata_piix"], avail)]
    assert sorted(order) == sorted(avail) and len(order) == len(set(order))
    for m in avail.values():
        for d in m.depends + m.softdeps:
            assert order.index(d) < order.index(m.name)


def test_load_order_errors():
    with pytest.raises(modules.ModuleError, match="'libata' .*needed by ahci"):
        modules.load_order(["ahci"], _mods(ahci={"hard": ["libata"]}))
    with pytest.raises(modules.ModuleError, match="cycle"):
        modules.load_order(["a"], _mods(a={"hard": ["b"]}, b={"hard": ["a"]}))
    # a soft dependency on an alias (a crypto algorithm) that is no module name is skipped
    assert [m.name for m in modules.load_order(["x"], _mods(x={"soft": ["crct10dif"]}))] == ["x"]


def test_profile_digest_changes_with_the_profile():
    p = profiles.DISK_TRAP
    assert p.digest() == profiles.DISK_TRAP.digest()
    assert p.digest() != profiles.Profile(**{**p.__dict__, "modules": p.modules + ("loop",)}).digest()
    assert p.init_script().startswith("#!/bin/busybox sh\n")


def test_missing_kit_names_the_command(tmp_path):
    with pytest.raises(builder.KitMissing, match="python -m lab kit build --profile disk-trap"):
        builder.find("disk-trap", tmp_path)
    with pytest.raises(builder.KitError, match="unknown kit profile"):
        builder.find("nope", tmp_path)


def test_find_takes_a_complete_kit_of_the_current_profile(tmp_path):
    def make(name, digest, built_at, complete=True):
        d = tmp_path / name
        d.mkdir()
        (d / "vmlinuz").write_bytes(b"k")
        if complete:
            (d / "initrd.img").write_bytes(b"i")
        (d / "kit.json").write_text(json.dumps({"profile": "disk-trap", "profile_digest": digest,
                                                "built_at": built_at}))
    make("disk-trap-old", profiles.DISK_TRAP.digest(), "2026-01-01T00:00:00Z")
    make("disk-trap-new", profiles.DISK_TRAP.digest(), "2026-02-01T00:00:00Z")
    make("disk-trap-half", profiles.DISK_TRAP.digest(), "2026-03-01T00:00:00Z", complete=False)
    make("disk-trap-stale", "000000000000", "2026-04-01T00:00:00Z")
    assert builder.find("disk-trap", tmp_path).path.name == "disk-trap-new"


def test_bench_without_kit_says_how_to_build_it(tmp_path):
    env = {"LAB_GUEST_KIT_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "lab", "bench", "qemu-io"], capture_output=True, text=True,
                          env=env, timeout=60, cwd=Path(__file__).parent.parent)
    assert proc.returncode == 1
    assert "python -m lab kit build" in proc.stderr and "Traceback" not in proc.stderr
