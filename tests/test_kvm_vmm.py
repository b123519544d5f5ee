"""The mini VMM on a real /dev/kvm: modes, exits, ioeventfd, the watchdog, bad input, no leaks."""

from __future__ import annotations

import errno
import os

import pytest

from lab import guests, kvm
from lab.guests import asm

kvm_live = pytest.mark.kvm


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def kvm_mappings() -> int:
    """Mappings of KVM objects (the vCPUs' kvm_run pages) plus guest memory still mapped."""
    from lab.kvm import _libc

    with open("/proc/self/maps") as f:
        return sum(1 for line in f if "kvm" in line) + len(_libc.LIVE_MAPPINGS)


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
            if ex.reason == "hlt":
                break
            assert (ex.reason, ex.port, ex.direction, ex.size) == ("io", guests.SERIAL_PORT, "out", 1)
            out += ex.data
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
    assert (ex.reason, ex.address, ex.size, ex.direction, ex.data) == ("mmio", guests.MMIO_ADDR, 1, "write", b"*")


@kvm_live
@pytest.mark.parametrize("mode", ["protected32", "long64"])
@pytest.mark.parametrize("kind", ["loop", "cpuid", "pio_user", "mmio_user"])
def test_exit_loop_runs_to_hlt(no_leaks, mode, kind):
    n = 50
    program = guests.exit_loop(kind, n, mode=mode)
    resume = {"resume_out_ports": {guests.EXIT_PORT}} if kind == "pio_user" else {}
    if kind == "mmio_user":
        resume = {"resume_mmio_writes": True}
    with kvm.open() as system, system.create_vm(memory_kib=64) as vm:
        vm.load(program)
        vcpu = vm.create_vcpu(mode=mode, entry=program.origin)
        ex = vcpu.run(timeout_s=10, **resume)
        start, end = vm.read_u64(guests.RESULT_ADDR), vm.read_u64(guests.RESULT_ADDR + 8)
    assert ex.reason == "hlt"
    assert ex.resumed == (n if kind in ("pio_user", "mmio_user") else 0)
    assert end > start


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
    assert (ex.reason, ex.port, ex.direction) == ("io", guests.EXIT_PORT, "out")


def echo_program(port_in: int = 0x60) -> guests.Program:
    """Real mode: read a byte from ``port_in`` and write it to the serial port, twice, then halt."""
    once = [asm.mov_dx_imm16(port_in, "real"), asm.simple("in al, dx", b"\xec"),
            asm.mov_dx_imm16(guests.SERIAL_PORT, "real"), asm.simple("out dx, al", b"\xee")]
    code, listing = asm.assemble(once + once + [asm.simple("hlt", b"\xf4")], guests.CODE_ADDR)
    return guests.Program("echo", "real", guests.CODE_ADDR, code, tuple(listing), "in, then out")


@kvm_live
def test_io_handler_serves_in_and_out_within_one_run(no_leaks):
    answers, written = iter([b"O", b"K"]), []

    def device(port, direction, size, data):
        if direction == "in":
            assert (port, size, data) == (0x60, 1, None)
            return next(answers)
        written.append(data)
        return None

    ex, _ = run_program(echo_program(), timeout_s=5, io_handler=device)
    assert ex.reason == "hlt" and ex.resumed == 4
    assert b"".join(written) == b"OK"


@kvm_live
def test_io_handler_can_decline_and_must_answer_the_right_size(no_leaks):
    ex, _ = run_program(echo_program(), timeout_s=5, io_handler=lambda *a: False)
    assert (ex.reason, ex.port, ex.direction) == ("io", 0x60, "in")
    with pytest.raises(kvm.KvmError, match="answered 2 bytes to an 'in' of 1"):
        run_program(echo_program(), timeout_s=5, io_handler=lambda *a: b"no")


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
def test_closing_the_system_closes_everything(no_leaks):
    system = kvm.open()
    vm = system.create_vm(memory_kib=64)
    vm.ioeventfd(guests.EXIT_PORT)
    vcpu = vm.create_vcpu(mode="protected32")
    system.close()
    assert vm.closed and vcpu.closed
    system.close()  # idempotent


@kvm_live
def test_long_mode_needs_memory_for_page_tables(no_leaks):
    with kvm.open() as system, system.create_vm(memory_kib=16) as vm:
        with pytest.raises(kvm.KvmError, match="page tables"):
            vm.create_vcpu(mode="long64")
        assert vm._vcpus == []


@kvm_live
def test_unknown_mode_is_rejected(no_leaks):
    with kvm.open() as system, system.create_vm(memory_kib=64) as vm:
        with pytest.raises(ValueError, match="unknown mode"):
            vm.create_vcpu(mode="v86")


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


def test_instruction_helpers_refuse_far_jumps():
    items = [asm.Label("a")] + [asm.simple("nop", b"\x90")] * 200 + [asm.jnz("a")]
    with pytest.raises(ValueError, match="8 bits"):
        asm.assemble(items, 0x1000)
