"""The parts of the mini VMM that need no /dev/kvm: exit decoding, errors, guest memory, the bus, x86 set-up.

The ``kvm_run`` pages here are made by hand from the layout in
``<linux/kvm.h>`` (exit_reason at byte 8, the exit union at byte 32), not
from the package's own ctypes mirror.
"""

from __future__ import annotations

import errno
import gc
import struct

import pytest

from lab import kvm
from lab.kvm import exits, x86
from lab.kvm.bus import Bus
from lab.kvm.memory import LIVE_MAPPINGS, GuestMemory

REASON, UNION = 8, 32


def page(reason: int, size: int = 4096) -> bytearray:
    buf = bytearray(size)
    struct.pack_into("<I", buf, REASON, reason)
    return buf


# --------------------------------------------------------------------------- decode


def test_decode_io_out_takes_the_data_after_the_structure():
    buf = page(2)  # KVM_EXIT_IO
    struct.pack_into("<BBHIQ", buf, UNION, 1, 2, 0x3F8, 3, 0x1000 - 8)  # out, 2 bytes x 3, data at 0xff8
    buf[0xFF8:0x1000] = b"abcdef\xee\xee"
    assert exits.decode(buf) == exits.IoOut(port=0x3F8, size=2, count=3, data=b"abcdef")


def test_decode_io_in_says_where_the_answer_goes():
    buf = page(2)
    struct.pack_into("<BBHIQ", buf, UNION, 0, 1, 0x60, 1, 0x200)
    assert exits.decode(buf) == exits.IoIn(port=0x60, size=1, count=1, data_offset=0x200)


def test_decode_refuses_io_data_outside_the_page():
    buf = page(2, size=256)
    struct.pack_into("<BBHIQ", buf, UNION, 1, 4, 0x10, 100, 200)
    with pytest.raises(kvm.KvmError, match="outside the page"):
        exits.decode(buf)


def test_decode_mmio_write_and_read():
    buf = page(6)  # KVM_EXIT_MMIO
    struct.pack_into("<Q8sIB", buf, UNION, 0xD000_0000, b"\x2a\x01\x02\x03\x04\x05\x06\x07", 2, 1)
    assert exits.decode(buf) == exits.MmioWrite(address=0xD000_0000, data=b"\x2a\x01")
    struct.pack_into("<Q8sIB", buf, UNION, 0xD000_0010, bytes(8), 4, 0)
    assert exits.decode(buf) == exits.MmioRead(address=0xD000_0010, size=4)


@pytest.mark.parametrize("reason, expected", [
    (5, exits.Hlt()), (8, exits.Shutdown()), (10, exits.Intr()), (4, exits.Unknown(4)), (999, exits.Unknown(999)),
])
def test_decode_simple_exits(reason, expected):
    assert exits.decode(page(reason)) == expected


def test_decode_fail_entry_and_internal_error():
    buf = page(9)  # KVM_EXIT_FAIL_ENTRY
    struct.pack_into("<QI", buf, UNION, 0x80000021, 1)
    assert exits.decode(buf) == exits.FailEntry(hardware_reason=0x80000021, cpu=1)
    buf = page(17)  # KVM_EXIT_INTERNAL_ERROR, suberror 1 (emulation), 2 words of data
    struct.pack_into("<IIQQQ", buf, UNION, 1, 2, 0xAA, 0xBB, 0xCC)
    assert exits.decode(buf) == exits.Internal(suberror=1, data=(0xAA, 0xBB))


def test_policy_raises_abnormal_exits_and_keeps_normal_ones():
    assert exits.error_for(exits.Exit(exits.Hlt(), 0x1000)) is None
    assert exits.error_for(exits.Exit(exits.MmioRead(0xD000_0000, 4), 0x1000)) is None
    shutdown = exits.error_for(exits.Exit(exits.Shutdown(), 0x1234))
    assert isinstance(shutdown, kvm.GuestShutdown) and "0x1234" in str(shutdown)
    internal = exits.error_for(exits.Exit(exits.Internal(1, (0xAA,)), 0x10))
    assert isinstance(internal, kvm.InternalError) and "emulation failure" in str(internal)
    assert internal.record() == {"code": "guest.internal_error", "params": {"suberror": 1, "data": [0xAA], "rip": 0x10}}
    assert shutdown.record() == {"code": "guest.shutdown", "params": {"rip": 0x1234}}
    unknown = exits.error_for(exits.Exit(exits.Unknown(4), 0x10))
    assert isinstance(unknown, kvm.UnknownExit) and "debug" in str(unknown)
    assert isinstance(exits.error_for(exits.Exit(exits.FailEntry(0x21, 0), 0)), kvm.EntryFailed)


def test_decoded_reads_carry_a_writable_answer_that_holds_no_view_of_the_page():
    buf = page(2)  # KVM_EXIT_IO, in, 2 accesses of 2 bytes at 0x200
    struct.pack_into("<BBHIQ", buf, UNION, 0, 2, 0x60, 2, 0x200)
    e = exits.decode(buf)
    e.data[:] = b"abcd"
    assert len(e.data) == 4 and not e.data.readonly
    buf.extend(b"x")  # a bytearray with a live view of it could not be resized
    buf = page(6)  # KVM_EXIT_MMIO, read 4 bytes
    struct.pack_into("<Q8sIB", buf, UNION, 0xD000_0010, bytes(8), 4, 0)
    e = exits.decode(buf)
    e.data[:] = b"\x01\x02\x03\x04"
    assert len(e.data) == 4
    buf.extend(b"x")


class Recorder:
    """A bus device that keeps every access and answers reads with a fixed pattern."""

    def __init__(self) -> None:
        self.log: list[tuple[str, int, bytes]] = []

    def read(self, offset: int, data: memoryview) -> None:
        self.log.append(("read", offset, bytes(len(data))))
        data[:] = bytes(range(0x41, 0x41 + len(data)))

    def write(self, offset: int, data: bytes) -> None:
        self.log.append(("write", offset, bytes(data)))


def test_handle_gives_io_inside_a_range_to_its_device_and_stops_outside():
    from lab.kvm.bus import HANDLED, Stop, handle

    dev, pio = Recorder(), Bus()
    pio.insert(0x60, 4, dev)
    assert handle(exits.IoOut(0x61, 1, 3, b"xyz"), pio) is HANDLED
    assert dev.log == [("write", 1, b"x"), ("write", 1, b"y"), ("write", 1, b"z")]  # rep outsb: one call each
    answer = bytearray(4)
    assert handle(exits.IoIn(0x62, 2, 2, 0, memoryview(answer)), pio) is HANDLED
    assert answer == b"ABAB"
    outside = exits.IoOut(0x64, 1, 1, b"!")
    assert handle(outside, pio) == Stop(outside)  # one byte past the range
    assert handle(exits.IoOut(0x63, 2, 1, b"!!"), pio) == Stop(exits.IoOut(0x63, 2, 1, b"!!"))  # straddles the end
    assert handle(outside) == Stop(outside)  # no bus at all


def test_handle_gives_mmio_to_the_mmio_bus_only():
    from lab.kvm.bus import HANDLED, Stop, handle

    dev, mmio = Recorder(), Bus()
    mmio.insert(0xD000_0000, 0x1000, dev)
    assert handle(exits.MmioWrite(0xD000_0008, b"\x2a"), mmio=mmio) is HANDLED
    answer = bytearray(4)
    assert handle(exits.MmioRead(0xD000_0010, 4, memoryview(answer)), mmio=mmio) is HANDLED
    assert dev.log[0] == ("write", 8, b"\x2a") and answer == b"ABCD"
    write = exits.MmioWrite(0xD000_0008, b"\x2a")
    assert handle(write, pio=mmio) == Stop(write)  # the port bus never sees MMIO


@pytest.mark.parametrize("exit_", [exits.Hlt(), exits.Shutdown(), exits.FailEntry(0x21, 0), exits.Internal(1, ()),
                                   exits.Intr(), exits.Unknown(4)])
def test_handle_stops_at_every_exit_that_is_not_io(exit_):
    from lab.kvm.bus import DropWrites, Stop, handle

    bus = Bus()
    bus.insert(0, 1 << 16, DropWrites())
    assert handle(exit_, bus, bus) == Stop(exit_)


def test_drop_writes_reads_all_ones():
    from lab.kvm.bus import HANDLED, DropWrites, handle

    bus, answer = Bus(), bytearray(2)
    bus.insert(0x80, 1, DropWrites())
    assert handle(exits.IoOut(0x80, 1, 1, b"\x00"), bus) is HANDLED
    bus.insert(0x90, 2, DropWrites())
    assert handle(exits.IoIn(0x90, 2, 1, 0, memoryview(answer)), bus) is HANDLED and answer == b"\xff\xff"


def test_every_error_class_has_its_own_code():
    from lab.kvm.errors import CODES

    assert len(set(CODES)) == len(CODES) and all(CODES.values())
    for code, cls in CODES.items():
        assert cls.code == code


def test_exit_record_flattens_the_typed_exit():
    ex = exits.Exit(exits.IoOut(0x3F8, 1, 1, b"H"), rip=0x1003, resumed=2, wall_ns=5)
    assert ex.reason == "io"
    assert ex.as_dict() == {"reason": "io", "exit": "IoOut", "rip": 0x1003, "port": 0x3F8, "size": 1,
                            "count": 1, "data": b"H", "resumed": 2, "wall_ns": 5}
    assert "0x3f8" in ex._repr_html_()


# --------------------------------------------------------------------------- errors


def test_ioctl_errors_are_kvm_errors_and_os_errors():
    exc = kvm.IoctlError("KVM_RUN", errno.EFAULT, "while running")
    assert isinstance(exc, kvm.KvmError) and isinstance(exc, OSError)
    assert (exc.errno, exc.ioctl) == (errno.EFAULT, "KVM_RUN")
    assert str(exc) == "KVM_RUN failed: Bad address (errno 14): while running"


def test_a_failing_ioctl_on_a_non_kvm_fd_is_an_ioctl_error(tmp_path):
    import os

    from lab.kvm import _libc
    from lab.kvm.ioctl_numbers import KVM_GET_API_VERSION

    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        with pytest.raises(kvm.IoctlError) as info:
            _libc.ioctl(fd, KVM_GET_API_VERSION, what="KVM_GET_API_VERSION")
    finally:
        os.close(fd)
    assert info.value.errno == errno.ENOTTY and info.value.ioctl == "KVM_GET_API_VERSION"


def test_open_reason_says_what_to_do():
    assert "usermod -aG kvm" in kvm.open_reason("/dev/kvm", PermissionError(errno.EACCES, "Permission denied"))
    assert "does not exist" in kvm.open_reason("/nope", FileNotFoundError(errno.ENOENT, "No such file"))
    assert "modprobe" in kvm.open_reason("/dev/kvm", OSError(errno.ENXIO, "No such device or address"))


@pytest.mark.parametrize("err, code", [
    (errno.ENOENT, "kvm.device_missing"), (errno.EACCES, "kvm.permission"), (errno.ENODEV, "kvm.no_driver"),
    (errno.EIO, "kvm.cannot_open"),
])
def test_each_reason_kvm_is_unavailable_has_its_code(err, code):
    error = kvm.unavailable("/nope", OSError(err, "x"))
    assert isinstance(error, kvm.KvmUnavailable) and error.code == code and error.params["device"] == "/nope"


# --------------------------------------------------------------------------- guest memory


def test_guest_memory_checks_every_access():
    mem = GuestMemory(bytearray(0x1000), base=0x4000)
    mem.set_u32(0x4FFC, 0xDEADBEEF)
    assert mem.u32(0x4FFC) == 0xDEADBEEF and mem.read(0x4FFC, 2) == b"\xef\xbe"
    for gpa, n in ((0x3FFF, 1), (0x4FFD, 4), (0x5000, 1), (0x4000, -1)):
        with pytest.raises(kvm.GuestMemoryError, match="outside guest memory"):
            mem.read(gpa, n)
    with pytest.raises(ValueError, match="writable"):
        GuestMemory(bytes(16))


def test_anonymous_memory_is_zeroed_and_unmapped_on_close():
    mem = GuestMemory.anonymous(0x2000, base=0x10000)
    assert mem.host_address in LIVE_MAPPINGS and mem.read(0x11FF0, 16) == bytes(16)
    mem.write(0x10000, b"hello")
    mem.close()
    assert mem.host_address not in LIVE_MAPPINGS
    with pytest.raises(kvm.ClosedError, match="closed"):
        mem.read(0x10000, 5)
    mem.close()  # idempotent


def test_a_view_keeps_the_mapping_alive_and_close_says_so():
    mem = GuestMemory.anonymous(0x1000)
    mem.write(0x10, b"still here")
    view = mem.view(0x10, 10)
    with pytest.raises(kvm.MemoryInUse, match="still has views"):
        mem.close()
    assert bytes(view) == b"still here"  # not unmapped under the view
    assert mem.host_address in LIVE_MAPPINGS
    view.release()
    gc.collect()
    assert mem.host_address not in LIVE_MAPPINGS


# --------------------------------------------------------------------------- bus and x86 set-up


class Register:
    def __init__(self) -> None:
        self.log: list[tuple[str, int, bytes]] = []

    def read(self, offset: int, data: memoryview) -> None:
        self.log.append(("read", offset, bytes(len(data))))
        data[:] = bytes(range(1, len(data) + 1))

    def write(self, offset: int, data: bytes) -> None:
        self.log.append(("write", offset, data))


def test_bus_finds_the_device_whose_range_holds_the_whole_access():
    bus, a, b = Bus(), Register(), Register()
    bus.insert(0x60, 4, a)
    bus.insert(0x3F8, 8, b)
    assert bus.find(0x63).device is a and bus.find(0x3FC, 4).device is b
    assert bus.find(0x63, 2) is None and bus.find(0x5F) is None and bus.find(0x400) is None
    with pytest.raises(kvm.InvalidSetup, match="overlaps"):
        bus.insert(0x3F0, 9, Register())
    with pytest.raises(kvm.InvalidSetup):
        bus.insert(0x10, 0, Register())


@pytest.mark.parametrize("mode, entry, memory, match", [
    ("v86", 0x1000, (0, 0x10000), "unknown mode"),
    ("real", 0x10000, (0, 0x20000), "below 64 KiB"),
    ("long64", 0x1000, (0, 0x4000), "page tables"),
])
def test_x86_setup_is_validated_before_any_ioctl(mode, entry, memory, match):
    lo, hi = memory
    with pytest.raises(kvm.InvalidSetup, match=match):
        x86.check(mode, entry, lambda a, n: lo <= a and a + n <= hi)


def test_long_mode_page_tables_map_the_first_4_gib():
    tables = dict(x86.page_tables(0x8000))
    assert int.from_bytes(tables[0x8000], "little") == 0x9000 | 3
    pds = tables[0xA000]
    assert len(pds) == 4 * 512 * 8
    last = int.from_bytes(pds[-8:], "little")
    assert last & ~0xFFF == (4 * 512 - 1) << 21 and last & 0x83 == 0x83


def test_an_ioctl_interrupted_by_a_signal_is_made_again(monkeypatch):
    import ctypes

    from lab.kvm import _libc

    calls = []

    def interrupted_once(fd, request, address):
        calls.append(fd)
        if len(calls) == 1:
            ctypes.set_errno(errno.EINTR)
            return -1
        return 7

    monkeypatch.setattr(_libc, "_ioctl", interrupted_once)
    assert _libc.ioctl(3, 0, what="KVM_TEST") == 7 and len(calls) == 2


def test_an_ioctl_that_fails_otherwise_is_an_ioctl_error_at_once(monkeypatch):
    import ctypes

    from lab.kvm import _libc

    def fails(fd, request, address):
        ctypes.set_errno(errno.EBADF)
        return -1

    monkeypatch.setattr(_libc, "_ioctl", fails)
    with pytest.raises(kvm.IoctlError) as info:
        _libc.ioctl(3, 0, what="KVM_TEST")
    assert info.value.record() == {"code": "kvm.ioctl", "params": {"call": "KVM_TEST", "errno": errno.EBADF,
                                                                   "error": "EBADF"}}
