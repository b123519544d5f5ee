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


def test_a_modules_appended_signature_is_stripped():
    body = b"\x7fELF" + bytes(60)
    signature = b"\x30\x82" + bytes(300)
    trailer = bytes([0, 0, 2, 0, 0, 0, 0, 0]) + len(signature).to_bytes(4, "big") + modules.SIGNATURE_MAGIC
    assert modules.strip_signature(body + signature + trailer) == body
    assert modules.strip_signature(body) == body  # unsigned: unchanged
    with pytest.raises(modules.ModuleError, match="signature trailer"):
        modules.strip_signature(b"x" + bytes(8) + (10**6).to_bytes(4, "big") + modules.SIGNATURE_MAGIC)


def test_the_intel_kit_is_the_amd_kit_with_kvm_intel():
    amd, intel = profiles.PROFILES["hwvirt-amd"], profiles.PROFILES["hwvirt-intel"]
    assert intel.modules == ("irqbypass", "kvm", "kvm_intel") and "kvm_amd" in amd.modules
    assert (intel.packages, intel.include, intel.init) == (amd.packages, amd.include, amd.init)
    assert intel.strip_signatures and not amd.strip_signatures and intel.digest() != amd.digest()


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


# --------------------------------------------------------------------------- building from (small, real) .deb files


def make_deb(root: Path, name: str, files: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    """A real Debian package built with dpkg-deb -b from ``files`` (path -> bytes) and ``links``."""
    tree = root / f"{name}-tree"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: 1.0\nArchitecture: amd64\nMaintainer: t <t@example.org>\nDescription: t\n")
    for rel, data in files.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(data)
    for rel, target in (links or {}).items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).symlink_to(target)
    deb = root / f"{name}_1.0_amd64.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(tree), str(deb)], check=True, capture_output=True)
    return deb


@pytest.fixture
def fake_packages(tmp_path, monkeypatch):
    ko = "lib/modules/6.1.0-t-amd64/kernel/drivers"
    debs = {
        "linux-image-t": make_deb(tmp_path, "linux-image-t", {
            "boot/vmlinuz-6.1.0-t-amd64": b"KERNEL",
            f"{ko}/libata.ko": elf_with_modinfo(b"depends=\0"),
            f"{ko}/ata_piix.ko": elf_with_modinfo(b"depends=libata\0"),
        }),
        "busybox-static": make_deb(tmp_path, "busybox-static", {"bin/busybox": b"BUSYBOX"}),
        "libz-t": make_deb(tmp_path, "libz-t", {"usr/lib/libz.so.1.2": b"LIB"}, {"usr/lib/libz.so.1": "libz.so.1.2"}),
    }
    versions = {"linux-image-t": "1.0", "busybox-static": "1.0", "libz-t": "1.0"}
    profile = profiles.Profile(name="disk-trap", modules=("ata_piix",), init="echo hi\n", description="t",
                               packages=("libz-t",), include=("usr/lib/libz*",))
    monkeypatch.setitem(profiles.PROFILES, "disk-trap", profile)
    monkeypatch.setattr(builder, "PROFILES", profiles.PROFILES)
    monkeypatch.setattr(builder, "resolve", lambda prof: ("linux-image-t", dict(versions)))
    monkeypatch.setattr(builder, "_download", lambda pk, into: {p: debs[p] for p in pk})
    return versions


def test_build_packs_kernel_modules_busybox_and_init(tmp_path, fake_packages):
    kit, now = builder.build("disk-trap", tmp_path / "kits")
    assert now and kit.kernel.read_bytes() == b"KERNEL" and kit.kernel_release == "6.1.0-t-amd64"
    import gzip

    entries = {e.name: e for e in cpio.unpack(gzip.decompress(kit.initrd.read_bytes()))}
    assert entries["etc/modules"].data == b"libata\nata_piix\n"
    assert entries["lib/modules/ata_piix.ko"].data.startswith(b"\x7fELF")
    assert entries["bin/busybox"].data == b"BUSYBOX" and entries["bin/busybox"].mode & 0o111
    assert entries["init"].data.decode().endswith("echo hi\n")
    assert stat.S_ISCHR(entries["dev/console"].mode)
    assert stat.S_ISLNK(entries["usr/lib/libz.so.1"].mode) and entries["usr/lib/libz.so.1"].data == b"libz.so.1.2"
    assert oct(kit.path.stat().st_mode & 0o777) == "0o755" and kit.initrd.stat().st_mode & 0o004
    assert builder.find("disk-trap", tmp_path / "kits").path == kit.path


def test_build_is_idempotent_and_a_new_version_replaces_the_old_kit(tmp_path, fake_packages):
    first, now = builder.build("disk-trap", tmp_path / "kits")
    again, now_again = builder.build("disk-trap", tmp_path / "kits")
    assert now and not now_again and again.path == first.path
    fake_packages["busybox-static"] = "1.1"
    newer, now = builder.build("disk-trap", tmp_path / "kits")
    assert now and newer.path != first.path and not first.path.exists()
    assert [p.name for p in (tmp_path / "kits").iterdir()] == [newer.path.name]  # no build folder left
