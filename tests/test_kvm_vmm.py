"""The mini VMM on a real /dev/kvm: modes, exits, ioeventfd, the watchdog, bad input, no leaks."""

from __future__ import annotations

import errno
import os

import pytest

from lab import guests, kvm
from lab.bench import exits as bench_exits
from lab.guests import asm

kvm_live = pytest.mark.kvm


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def kvm_mappings() -> int:
    """Mappings of KVM objects (the vCPUs' kvm_run pages) plus guest memory still mapped."""
    from lab.kvm.memory import LIVE_MAPPINGS

    with open("/proc/self/maps") as f:
        return sum(1 for line in f if "kvm" in line) + len(LIVE_MAPPINGS)


@pytest.fixture
def no_leaks():
    """Fails the test if it leaves file descriptors or mappings behind."""
    import gc

    gc.collect()
    fds, maps = open_fds(), kvm_mappings()
    yield
    gc.collect()
    assert open_fds() == fds, "file descriptors leaked"
    assert kvm_mappings() == maps, "mappings leaked"


def run_program(program, mode=None, memory_kib=64, **run_kw):
    with kvm.open() as system, system.create_vm(memory_kib=memory_kib) as vm:
        vm.load(program)
        vcpu = vm.create_vcpu(mode=mode or program.mode, entry=program.origin)
        return vcpu.run(**run_kw), vcpu


# --------------------------------------------------------------------------- system


@kvm_live
def test_system_queries(no_leaks):
    from lab.kvm.constants import KVM_CAP_IOEVENTFD, KVM_CAP_USER_MEMORY

    with kvm.open() as system:
        assert system.api_version() == 12
        assert system.check_extension(KVM_CAP_USER_MEMORY) > 0
        assert system.check_extension(KVM_CAP_IOEVENTFD) > 0
        assert system.vcpu_mmap_size() >= 4096
    assert system.closed


def test_missing_device_is_a_clear_error(no_leaks, tmp_path):
    with pytest.raises(kvm.KvmUnavailable, match="does not exist"):
        kvm.open(str(tmp_path / "no-kvm"))


def test_permission_denied_is_a_clear_error(no_leaks, monkeypatch):
    def refuse(path, flags, *a):
        raise PermissionError(errno.EACCES, "Permission denied", path)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(kvm.KvmUnavailable, match="permission denied.*kvm"):
        kvm.open("/dev/kvm")


def test_not_a_kvm_device_is_a_clear_error(no_leaks):
    with pytest.raises(kvm.KvmUnavailable, match="not a KVM device"):
        kvm.open("/dev/null")


# --------------------------------------------------------------------------- guests and exits


@kvm_live
def test_real_mode_hello_prints_through_port_io(no_leaks):
    out = b""
    with kvm.open() as system, system.create_vm(memory_kib=64) as vm:
        vm.load(guests.HELLO)
        vcpu = vm.create_vcpu(mode="real", entry=guests.HELLO.origin)
        while True:
            ex = vcpu.run(timeout_s=5)
            if isinstance(ex.exit, kvm.exits.Hlt):
                break
            assert isinstance(ex.exit, kvm.exits.IoOut) and ex.reason == "io"
            assert (ex.exit.port, ex.exit.size, ex.exit.count) == (guests.SERIAL_PORT, 1, 1)
            out += ex.exit.data
    assert out == b"Hi\n"
    assert ex.rip == guests.HELLO.origin + len(guests.HELLO.code)


@kvm_live
@pytest.mark.parametrize("mode", ["protected32", "long64"])
def test_cpuid_is_handled_in_the_kernel(no_leaks, mode):
    ex, _ = run_program(guests.CPUID_ONCE, mode=mode, timeout_s=5)
    assert ex.reason == "hlt" and ex.resumed == 0


@kvm_live
def test_mmio_exit_reports_address_and_data(no_leaks):
    ex, _ = run_program(guests.MMIO_STORE, timeout_s=5)
    assert ex.exit == kvm.exits.MmioWrite(address=guests.MMIO_ADDR, data=b"*") and ex.reason == "mmio"


@kvm_live
@pytest.mark.parametrize("mode", ["protected32", "long64"])
@pytest.mark.parametrize("kind", ["loop", "cpuid", "pio_user", "mmio_user"])
def test_exit_loop_runs_to_hlt(no_leaks, mode, kind):
    n = 50
    program = guests.exit_loop(kind, n, mode=mode)
    pio, mmio = bench_exits.dropping_bus(kind)
    with kvm.open() as system, system.create_vm(memory_kib=64) as vm:
        vm.load(program)
        vcpu = vm.create_vcpu(mode=mode, entry=program.origin)
        ex = vcpu.run_until(timeout_s=10, pio=pio, mmio=mmio)
        start, end = vm.read_u64(guests.RESULT_ADDR), vm.read_u64(guests.RESULT_ADDR + 8)
    assert ex.reason == "hlt"
    assert ex.resumed == (n if kind in ("pio_user", "mmio_user") else 0)
    assert end > start


@kvm_live
@pytest.mark.parametrize("kind", ["loop", "pio_user", "mmio_user"])
def test_the_benchmark_fast_path_ends_as_run_until_does(no_leaks, kind):
    n = 50
    program = guests.exit_loop(kind, n)
    with kvm.open() as system, system.create_vm(memory_kib=64) as vm:
        vm.load(program)
        vcpu = vm.create_vcpu(mode=program.mode, entry=program.origin)
        ex = bench_exits.run_resuming(vcpu, kind, 10)
    assert ex.reason == "hlt" and ex.resumed == (0 if kind == "loop" else n)


@kvm_live
def test_run_once_is_one_kvm_run_and_run_until_holds_one_guard(no_leaks, monkeypatch):
    from lab.kvm import kick

    armed = []
    enter = kick.Guard.__enter__
    monkeypatch.setattr(kick.Guard, "__enter__", lambda self: armed.append(self) or enter(self))
    program = guests.exit_loop("pio_user", 3)
    with kvm.open() as system, system.create_vm(memory_kib=64) as vm:
        vm.load(program)
        vcpu = vm.create_vcpu(mode=program.mode, entry=program.origin)
        with vcpu.running(timeout_s=5):
            exits_seen = [vcpu.run_once() for _ in range(3)]
            assert vcpu.run_once() == kvm.exits.Hlt()
        assert len(armed) == 1
        assert all(isinstance(e, kvm.exits.IoOut) and e.port == guests.EXIT_PORT for e in exits_seen)
        vcpu.jump(program.origin)
        pio, _ = bench_exits.dropping_bus("pio_user")
        assert vcpu.run_until(5, pio=pio).resumed == 3
        assert len(armed) == 2  # one guard for the whole run

@kvm_live
def test_ioeventfd_completes_out_in_the_kernel(no_leaks):
    n = 200
    program = guests.exit_loop("pio_ioeventfd", n)
    with kvm.open() as system, system.create_vm(memory_kib=64) as vm:
        vm.load(program)
        efd = vm.ioeventfd(guests.EXIT_PORT)
        vcpu = vm.create_vcpu(mode="protected32", entry=program.origin)
        ex = vcpu.run(timeout_s=10)
        assert ex.reason == "hlt" and ex.resumed == 0  # no out came back to us...
        assert efd.take() == n  # ...the kernel counted them all
        assert efd.take() == 0


@kvm_live
def test_unhandled_out_returns_to_the_caller(no_leaks):
    ex, _ = run_program(guests.exit_loop("pio_user", 3), timeout_s=5)
    assert isinstance(ex.exit, kvm.exits.IoOut) and ex.exit.port == guests.EXIT_PORT


def echo_program(port_in: int = 0x60) -> guests.Program:
    """Real mode: read a byte from ``port_in`` and write it to the serial port, twice, then halt."""
    once = [asm.mov_dx_imm16(port_in, "real"), asm.simple("in al, dx", b"\xec"),
            asm.mov_dx_imm16(guests.SERIAL_PORT, "real"), asm.simple("out dx, al", b"\xee")]
    code, listing = asm.assemble(once + once + [asm.simple("hlt", b"\xf4")], guests.CODE_ADDR)
    return guests.Program("echo", "real", guests.CODE_ADDR, code, tuple(listing), "in, then out")


@kvm_live
def test_resumed_ports_resume_every_size_and_nothing_else(no_leaks):
    """A device that drops writes on one port takes every size of out there, and nothing else."""
    out_al, out_eax = asm.simple("out dx, al", b"\xee"), asm.simple("out dx, eax", b"\xef")
    items = [asm.mov_dx_imm16(guests.EXIT_PORT, "protected32"), out_al, out_al, out_eax, out_al,
             asm.mov_dx_imm16(guests.SERIAL_PORT, "protected32"), out_al, asm.simple("hlt", b"\xf4")]
    code, listing = asm.assemble(items, guests.CODE_ADDR)
    program = guests.Program("outs", "protected32", guests.CODE_ADDR, code, tuple(listing), "outs")
    bus = kvm.Bus()
    bus.insert(guests.EXIT_PORT, 4, kvm.bus.DropWrites())
    ex, _ = run_program(program, timeout_s=5, pio=bus)
    assert isinstance(ex.exit, kvm.exits.IoOut) and ex.exit.port == guests.SERIAL_PORT
    assert ex.resumed == 4


class Keyboard:
    """A device on the I/O bus: each read answers the next byte; writes are collected."""

    def __init__(self, answers: bytes) -> None:
        self.answers, self.written, self.reads = list(answers), [], []

    def read(self, offset: int, data: memoryview) -> None:
        self.reads.append((offset, len(data)))
        data[:] = bytes([self.answers.pop(0)])

    def write(self, offset: int, data: bytes) -> None:
        self.written.append((offset, data))


@kvm_live
def test_a_bus_device_answers_in_and_takes_out_within_one_run(no_leaks):
    keyboard, serial = Keyboard(b"OK"), Keyboard(b"")
    bus = kvm.Bus()
    bus.insert(0x60, 1, keyboard)
    bus.insert(guests.SERIAL_PORT, 8, serial)
    ex, _ = run_program(echo_program(), timeout_s=5, pio=bus)
    assert isinstance(ex.exit, kvm.exits.Hlt) and ex.resumed == 4
    assert keyboard.reads == [(0, 1), (0, 1)]
    assert serial.written == [(0, b"O"), (0, b"K")]


@kvm_live
def test_an_exit_outside_every_bus_range_returns_to_the_caller(no_leaks):
    bus = kvm.Bus()
    bus.insert(guests.SERIAL_PORT, 8, Keyboard(b""))
    ex, _ = run_program(echo_program(), timeout_s=5, pio=bus)
    assert ex.exit == kvm.exits.IoIn(port=0x60, size=1, count=1, data_offset=ex.exit.data_offset)


def mmio_load_program() -> guests.Program:
    """32-bit: load a dword from MMIO_ADDR + 8, store it in RAM at 0x3000, store it back to MMIO_ADDR, halt."""
    items = [asm.mov_imm32("ebx", guests.MMIO_ADDR + 8), asm.simple("mov eax, [ebx]", b"\x8b\x03"),
             asm.store(0x3000, "eax"), asm.simple("mov [ebx], eax", b"\x89\x03"), asm.simple("hlt", b"\xf4")]
    code, listing = asm.assemble(items, guests.CODE_ADDR)
    return guests.Program("mmio_load", "protected32", guests.CODE_ADDR, code, tuple(listing), "MMIO load")


class Mailbox:
    def __init__(self) -> None:
        self.log = []

    def read(self, offset: int, data: memoryview) -> None:
        self.log.append(("read", offset, len(data)))
        data[:] = (0x12345678).to_bytes(len(data), "little")

    def write(self, offset: int, data: bytes) -> None:
        self.log.append(("write", offset, data))


@kvm_live
def test_an_mmio_read_is_answered_by_a_device(no_leaks):
    mailbox, bus = Mailbox(), kvm.Bus()
    bus.insert(guests.MMIO_ADDR, 0x1000, mailbox)
    program = mmio_load_program()
    with kvm.open() as system, system.create_vm(memory_kib=64) as vm:
        vm.load(program)
        ex = vm.create_vcpu(mode="protected32", entry=program.origin).run(timeout_s=5, mmio=bus)
        stored = vm.read_u32(0x3000)
    assert isinstance(ex.exit, kvm.exits.Hlt) and ex.resumed == 2
    assert stored == 0x12345678  # the guest's register got the device's answer
    assert mailbox.log == [("read", 8, 4), ("write", 8, (0x12345678).to_bytes(4, "little"))]


@kvm_live
def test_without_a_device_an_mmio_read_returns_to_the_caller(no_leaks):
    ex, _ = run_program(mmio_load_program(), timeout_s=5)
    assert ex.exit == kvm.exits.MmioRead(address=guests.MMIO_ADDR + 8, size=4)


@kvm_live
def test_a_device_error_ends_the_run_and_leaks_nothing(no_leaks):
    class Broken:
        def read(self, offset, data):
            raise RuntimeError("device on fire")

        def write(self, offset, data):
            raise RuntimeError("device on fire")

    bus = kvm.Bus()
    bus.insert(0x60, 1, Broken())
    with pytest.raises(RuntimeError, match="on fire"):
        run_program(echo_program(), timeout_s=5, pio=bus)


# --------------------------------------------------------------------------- bad guests


@kvm_live
def test_triple_fault_is_guest_shutdown(no_leaks):
    with pytest.raises(kvm.GuestShutdown, match="triple-fault"):
        run_program(guests.TRIPLE_FAULT, timeout_s=5)


@kvm_live
def test_jump_to_unmapped_memory_is_a_clear_error(no_leaks):
    # KVM reports it as an emulation failure (or, on some hosts, a triple fault or an MMIO fetch).
    with pytest.raises(kvm.GuestError) as info:
        ex, _ = run_program(guests.JUMP_UNMAPPED, timeout_s=5)
        raise AssertionError(f"expected an error, got {ex}")
    assert f"{guests.MMIO_ADDR:#x}" in str(info.value) or isinstance(info.value, kvm.GuestShutdown)


@kvm_live
def test_guest_that_never_exits_is_stopped_by_the_watchdog(no_leaks):
    import time

    t0 = time.monotonic()
    with pytest.raises(kvm.RunTimeout, match="watchdog"):
        run_program(guests.SPIN, timeout_s=0.5)
    assert time.monotonic() - t0 < 5


@kvm_live
def test_vcpu_survives_a_timeout_and_signal_state_is_restored(no_leaks):
    import signal

    from lab.kvm.vcpu import WATCHDOG_SIGNAL

    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    with kvm.open() as system, system.create_vm(memory_kib=64) as vm:
        vm.load(guests.SPIN)
        vcpu = vm.create_vcpu(mode="protected32", entry=guests.SPIN.origin)
        for _ in range(2):
            with pytest.raises(kvm.RunTimeout):
                vcpu.run(timeout_s=0.2)
        vm.load(guests.CPUID_ONCE)
        vcpu.jump(guests.CPUID_ONCE.origin)
        assert vcpu.run(timeout_s=5).reason == "hlt"
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before
    assert WATCHDOG_SIGNAL not in signal.sigpending()


@kvm_live
def test_watchdog_works_from_another_thread(no_leaks):
    import threading

    errors = []

    def body():
        try:
            run_program(guests.SPIN, timeout_s=0.3)
        except kvm.RunTimeout as exc:
            errors.append(exc)

    t = threading.Thread(target=body)
    t.start()
    t.join(10)
    assert not t.is_alive() and len(errors) == 1


# --------------------------------------------------------------------------- bad memory and lifetimes


@kvm_live
@pytest.mark.parametrize("addr,size,match", [
    (0x0800, 0x1000, "not page-aligned"),
    (0x1000, 0x0800, "multiple of the page size"),
    (0x1000, 0, "multiple of the page size"),
    (0x8000, 0x10000, "overlaps slot 0"),
])
def test_bad_memory_slots_are_rejected(no_leaks, addr, size, match):
    with kvm.open() as system, system.create_vm(memory_kib=64) as vm:
        with pytest.raises(kvm.MemoryLayoutError, match=match):
            vm.add_memory(addr, size)
        assert len(vm.slots) == 1


@kvm_live
def test_access_outside_memory_is_rejected(no_leaks):
    with kvm.open() as system, system.create_vm(memory_kib=64) as vm:
        with pytest.raises(kvm.MemoryLayoutError, match="not inside one memory slot"):
            vm.write(0xFFFF, b"ab")


@kvm_live
def test_vcpu_after_its_vm_is_closed(no_leaks):
    with kvm.open() as system:
        vm = system.create_vm(memory_kib=64)
        vm.load(guests.CPUID_ONCE)
        vcpu = vm.create_vcpu(mode="protected32", entry=guests.CPUID_ONCE.origin)
        vm.close()
        with pytest.raises(kvm.ClosedError, match="VM that was closed"):
            vcpu.run(timeout_s=1)
        with pytest.raises(kvm.ClosedError):
            vm.load(guests.CPUID_ONCE)


@kvm_live
def test_vcpu_and_ioeventfd_are_context_managers(no_leaks):
    with kvm.open() as system, system.create_vm(memory_kib=64) as vm:
        with vm.ioeventfd(guests.EXIT_PORT) as efd, vm.create_vcpu() as vcpu:
            assert efd.take() == 0
        assert vcpu.closed and efd.fd is None


@kvm_live
def test_a_view_of_guest_memory_outliving_the_vm_stays_valid(no_leaks):
    with kvm.open() as system:
        vm = system.create_vm(memory_kib=64)
        vm.write(0x2000, b"data")
        view = vm.memory(0).view(0x2000, 4)
        with pytest.raises(kvm.MemoryInUse):
            vm.close()
        assert vm.closed and bytes(view) == b"data"  # still mapped: no read of unmapped memory
        view.release()


@kvm_live
def test_closing_the_system_closes_everything(no_leaks):
    system = kvm.open()
    vm = system.create_vm(memory_kib=64)
    vm.ioeventfd(guests.EXIT_PORT)
    vcpu = vm.create_vcpu(mode="protected32")
    system.close()
    assert vm.closed and vcpu.closed
    system.close()  # idempotent


@kvm_live
@pytest.mark.parametrize("memory_kib, mode, match", [(16, "long64", "page tables"), (64, "v86", "unknown mode")])
def test_bad_vcpu_setup_is_refused_before_kvm_create_vcpu(no_leaks, monkeypatch, memory_kib, mode, match):
    from lab.kvm import _libc

    calls = []
    real_ioctl = _libc.ioctl
    monkeypatch.setattr(_libc, "ioctl", lambda *a, **kw: calls.append(kw.get("what")) or real_ioctl(*a, **kw))
    with kvm.open() as system, system.create_vm(memory_kib=memory_kib) as vm:
        calls.clear()
        with pytest.raises(kvm.InvalidSetup, match=match):
            vm.create_vcpu(mode=mode)
        assert vm._vcpus == [] and calls == []


@kvm_live
def test_every_failing_ioctl_is_a_kvm_error(no_leaks):
    with kvm.open() as system, system.create_vm(memory_kib=64) as vm:
        with vm.ioeventfd(guests.EXIT_PORT), pytest.raises(kvm.KvmError) as twice:
            vm.ioeventfd(guests.EXIT_PORT)  # the same port twice: KVM says EEXIST
        with pytest.raises(kvm.KvmError) as slot:
            vm.add_memory(1 << 62, 0x1000)  # beyond any guest-physical address width
    for info, name in ((twice, "KVM_IOEVENTFD"), (slot, "KVM_SET_USER_MEMORY_REGION")):
        assert isinstance(info.value, kvm.IoctlError) and isinstance(info.value, OSError)
        assert info.value.ioctl == name and info.value.errno in (errno.EEXIST, errno.EINVAL)


@kvm_live
def test_error_paths_leave_nothing_behind(no_leaks):
    for program in (guests.TRIPLE_FAULT, guests.JUMP_UNMAPPED, guests.SPIN):
        with pytest.raises(kvm.GuestError):
            run_program(program, timeout_s=0.2)


@kvm_live
def test_exit_renders_as_a_table():
    ex, _ = run_program(guests.MMIO_STORE, timeout_s=5)
    html = ex._repr_html_()
    assert "mmio" in html and "0xd0000000" in html


def test_a_far_jump_takes_the_near_form():
    """As GNU as relaxes it: a jump out of 8-bit reach takes the near form (0F 8x or E9, 32-bit displacement)."""
    items = [asm.Label("a")] + [asm.simple("nop", b"\x90")] * 200 + [asm.jnz("a")]
    code, _ = asm.assemble(items, 0x1000)
    assert code[200:202] == b"\x0f\x85" and int.from_bytes(code[202:], "little", signed=True) == -206
    code, listing = asm.assemble([asm.jump("jz", "far"), *items[1:-1], asm.Label("far"), asm.jump("jmp", "far")],
                                 0x1000)
    assert code[:2] == b"\x0f\x84" and int.from_bytes(code[2:6], "little") == 200
    assert listing[-1][1] == b"\xeb\xfe"  # a jump within reach stays short
