"""Every guest listing re-assembled with GNU as: the bytes the book shows are the bytes as makes."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from lab import guests
from lab.book.core.listing import listing

pytestmark = pytest.mark.skipif(shutil.which("as") is None or shutil.which("objcopy") is None,
                                reason="needs GNU binutils (as, objcopy): apt-get install binutils")


def _programs():
    progs = dict(guests.ALL)
    for mode in ("protected32", "long64"):
        for kind in guests.KINDS:
            for vendor in ("intel", "amd"):
                if kind != "hypercall" and vendor == "amd":
                    continue
                p = guests.exit_loop(kind, 1000, vendor=vendor, mode=mode)
                progs[f"{p.name}-{mode}-{vendor}"] = p
        for vendor in ("intel", "amd"):
            progs[f"hypercall_once-{mode}-{vendor}"] = guests.hypercall_once(vendor, mode)
    return progs


PROGRAMS = _programs()


def _assemble(program, tmp_path) -> bytes:
    src, obj, raw = tmp_path / "g.s", tmp_path / "g.o", tmp_path / "g.bin"
    src.write_text(program.source())
    flag = "--64" if program.mode == "long64" else "--32"
    subprocess.run(["as", flag, "-o", str(obj), str(src)], check=True, capture_output=True)
    subprocess.run(["objcopy", "-O", "binary", "-j", ".text", str(obj), str(raw)], check=True, capture_output=True)
    return raw.read_bytes()


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_listing_bytes_match_gnu_as(name, tmp_path):
    program = PROGRAMS[name]
    assert _assemble(program, tmp_path) == program.code


def test_listing_is_contiguous():
    for program in PROGRAMS.values():
        addr = program.origin
        for a, b, *_ in program.listing:
            assert a == addr
            addr += len(b)
        assert addr - program.origin == len(program.code)


def test_hypercall_instruction_follows_vendor():
    assert b"\x0f\x01\xc1" in guests.hypercall_once("intel").code  # vmcall
    assert b"\x0f\x01\xd9" in guests.hypercall_once("amd").code  # vmmcall


def test_exit_loop_rejects_bad_arguments():
    with pytest.raises(ValueError):
        guests.exit_loop("cpuid", 0)
    with pytest.raises(ValueError):
        guests.exit_loop("nonsense", 10)
    with pytest.raises(ValueError):
        guests.exit_loop("cpuid", 10, mode="real")


def test_listing_and_text_show_bytes():
    frame = listing(guests.HELLO)
    assert list(frame.columns) == ["番地", "バイト列", "ラベル", "アセンブリ", "説明"]
    assert "ee" in frame["バイト列"].tolist() and "COM1 のデータポート" in frame["説明"].tolist()
    assert "out dx, al" in guests.HELLO.text()
