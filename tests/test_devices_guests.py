"""The I/O guest programs: bytes as GNU as makes them, and constants as the ABI says."""

from __future__ import annotations

import shutil
import struct
import subprocess

import pytest

from lab.devices import abi, guests

needs_binutils = pytest.mark.skipif(shutil.which("as") is None or shutil.which("objcopy") is None,
                                    reason="needs GNU binutils (as, objcopy): apt-get install binutils")


@needs_binutils
@pytest.mark.parametrize("mode", sorted(guests.PROGRAMS))
def test_listing_bytes_match_gnu_as(mode, tmp_path):
    program = guests.PROGRAMS[mode]
    src, obj, raw = tmp_path / "g.s", tmp_path / "g.o", tmp_path / "g.bin"
    src.write_text(program.source())
    subprocess.run(["as", "--32", "-o", str(obj), str(src)], check=True, capture_output=True)
    subprocess.run(["objcopy", "-O", "binary", "-j", ".text", str(obj), str(raw)], check=True, capture_output=True)
    assert raw.read_bytes() == program.code


def _port_immediates(code: bytes) -> set[int]:
    """Every ``mov dx, imm16`` (66 ba lo hi) in 32-bit code."""
    return {struct.unpack_from("<H", code, i + 2)[0] for i in range(len(code) - 3) if code[i:i + 2] == b"\x66\xba"}


def test_programs_use_the_abi_ports():
    assert _port_immediates(guests.HVM.code) == {abi.HVM_CMD, abi.HVM_DATA}
    assert _port_immediates(guests.PV.code) == {abi.PV_PORT}
    assert _port_immediates(guests.VIRTIO.code) == {abi.VIRTIO_NOTIFY}


def test_guest_layout_does_not_overlap():
    end_of_code = max(p.origin + len(p.code) for p in guests.PROGRAMS.values())
    assert end_of_code <= abi.PARAMS
    assert abi.PARAMS + abi.PARAMS_SIZE <= abi.PV_RECORD
    assert abi.PV_RECORD + abi.PV_RECORD_SIZE <= abi.VQ_DESC
    assert abi.VQ_DESC + 16 * abi.QUEUE_SIZE <= abi.VQ_AVAIL
    assert abi.VQ_AVAIL + 6 + 2 * abi.QUEUE_SIZE <= abi.VQ_USED
    assert abi.VQ_USED + 6 + 8 * abi.QUEUE_SIZE <= abi.DATA


def test_virtio_slot_mask_matches_queue_size():
    assert abi.QUEUE_SIZE & (abi.QUEUE_SIZE - 1) == 0
    assert any(text == f"and ebx, {abi.QUEUE_SIZE - 1:#x}" for _, _, _, text, _ in guests.VIRTIO.listing)


def test_expected_exits():
    assert guests.expected_exits("hvm", 10, 64, 1) == 170
    assert guests.expected_exits("pv", 10, 64, 8) == 10
    assert guests.expected_exits("virtio", 10, 64, 4) == 3
    assert guests.expected_exits("virtio_ioeventfd", 10, 64, 4) == 0
    with pytest.raises(ValueError):
        guests.expected_exits("e1000", 1, 4, 1)
