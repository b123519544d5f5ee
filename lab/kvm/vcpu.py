"""The vCPU level of the mini VMM: registers, ``KVM_RUN``, exits.

Each vCPU fd comes with a shared page, ``kvm_run``, mapped into this
process: the kernel writes there why ``KVM_RUN`` returned (the exit reason
and its details, decoded by :func:`lab.kvm.exits.decode`) and reads from it
what the VMM answers. Every run is guarded (:mod:`lab.kvm.kick`): a
watchdog deadline, Ctrl-C, and :meth:`Vcpu.kick` all get the vCPU out of
``KVM_RUN`` at once.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from lab.kvm import _libc, x86
from lab.kvm.bus import Bus
from lab.kvm.constants import KVM_CAP_GET_TSC_KHZ, KVM_EXIT_IO, KVM_EXIT_IO_OUT, KVM_EXIT_MMIO
from lab.kvm.errors import (
    ClosedError,
    InvalidSetup,
    IoctlError,
    KvmError,
    RunInterrupted,
    RunTimeout,
    SyscallError,
)
from lab.kvm.exits import Exit, Intr, IoIn, IoOut, MmioRead, MmioWrite, VcpuExit, decode, error_for
from lab.kvm.ioctl_numbers import (
    KVM_GET_REGS,
    KVM_GET_SREGS,
    KVM_GET_TSC_KHZ,
    KVM_RUN,
    KVM_SET_CPUID2,
    KVM_SET_REGS,
    KVM_SET_SIGNAL_MASK,
    KVM_SET_SREGS,
)
from lab.kvm.kick import KICK_SIGNAL, KICK_SIGNAL_NAME, Guard
from lab.kvm.structs import RUN_UNION_OFFSET, kvm_regs, kvm_run, kvm_sregs

if TYPE_CHECKING:
    from lab.kvm.vm import Vm

#: Signal used to kick a vCPU out of ``KVM_RUN`` (the watchdog's; blocked outside ``KVM_RUN``).
WATCHDOG_SIGNAL, WATCHDOG_SIGNAL_NAME = KICK_SIGNAL, KICK_SIGNAL_NAME
MODES = x86.MODES

_IMMEDIATE_EXIT = kvm_run.immediate_exit.offset
_MMIO_DATA = RUN_UNION_OFFSET + 8


class Vcpu:
    """One virtual CPU. Create with ``Vm.create_vcpu``; closed with its VM or its ``with`` block."""

    def __init__(self, vm: Vm, fd: int, index: int):
        self._vm = vm
        self._fd: int | None = fd
        self.index = index
        size = vm._system.vcpu_mmap_size()
        # The kvm_run page, shared with the kernel. The run loop reads it through
        # memoryviews (the cheapest read from Python): as 32-bit words, word 2 is
        # exit_reason and, for IO, the word at the union holds direction | size << 8
        # | port << 16; for MMIO, is_write is the low byte of the word after
        # phys_addr, data[8] and len. mmap refuses to unmap while the views live.
        try:
            self._page = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as exc:
            raise SyscallError("mmap", exc.errno or 0, f"the kvm_run page of vCPU {index}") from None
        self._bytes = memoryview(self._page)
        self._words = self._bytes.cast("I")
        self._w_reason = kvm_run.exit_reason.offset // 4
        self._w_union = RUN_UNION_OFFSET // 4
        self._b_mmio_write = RUN_UNION_OFFSET + 8 + 8 + 4  # x86 is little-endian: the low byte comes first
        self._guard: Guard | None = None
        self.mode: str | None = None

    # -- lifetime
    @property
    def closed(self) -> bool:
        return self._fd is None

    @property
    def fd(self) -> int:
        if self._fd is None:
            if self._vm.closed:
                raise ClosedError(f"vCPU {self.index} belongs to a VM that was closed: "
                                  f"create a new VM and vCPU (a vCPU cannot outlive its VM)")
            raise ClosedError(f"vCPU {self.index} was closed")
        return self._fd

    def close(self) -> None:
        """Unmap the ``kvm_run`` page and close the vCPU fd. Idempotent."""
        if self._fd is None:
            return
        self._words.release()
        self._bytes.release()
        self._page.close()
        fd, self._fd = self._fd, None
        os.close(fd)

    def __enter__(self) -> Vcpu:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<kvm.Vcpu {self.index} {'closed' if self.closed else f'fd={self._fd} mode={self.mode}'}>"

    # -- registers
    def get_regs(self) -> kvm_regs:
        regs = kvm_regs()
        _libc.ioctl(self.fd, KVM_GET_REGS, regs, what="KVM_GET_REGS")
        return regs

    def set_regs(self, regs: kvm_regs) -> None:
        _libc.ioctl(self.fd, KVM_SET_REGS, regs, what="KVM_SET_REGS")

    def get_sregs(self) -> kvm_sregs:
        sregs = kvm_sregs()
        _libc.ioctl(self.fd, KVM_GET_SREGS, sregs, what="KVM_GET_SREGS")
        return sregs

    def set_sregs(self, sregs: kvm_sregs) -> None:
        _libc.ioctl(self.fd, KVM_SET_SREGS, sregs, what="KVM_SET_SREGS")

    def tsc_khz(self) -> int | None:
        """The guest TSC frequency in kHz (``KVM_GET_TSC_KHZ``), or None when KVM cannot say."""
        if not self._vm._system.check_extension(KVM_CAP_GET_TSC_KHZ):
            return None
        try:
            return _libc.ioctl(self.fd, KVM_GET_TSC_KHZ, what="KVM_GET_TSC_KHZ") or None
        except IoctlError:
            return None

    def setup(self, mode: str, entry: int, stack: int | None = None) -> None:
        """Registers for ``mode`` (see :func:`lab.kvm.x86.set_mode`) with execution starting at ``entry``.

        Validated before any ioctl (:func:`lab.kvm.x86.check`); ``long64``
        writes its page tables into guest memory.
        """
        vm = self._vm
        x86.check(mode, entry, vm.has_memory)
        # Give the guest the CPUID leaves KVM supports (long mode needs the LM bit).
        _libc.ioctl(self.fd, KVM_SET_CPUID2, vm._system.supported_cpuid(), what="KVM_SET_CPUID2")
        sregs = self.get_sregs()
        if mode == "long64":
            for addr, table in x86.page_tables(x86.PAGE_TABLE_ADDR):
                vm.write(addr, table)
        x86.set_mode(sregs, mode, x86.PAGE_TABLE_ADDR)
        self.set_sregs(sregs)
        regs = kvm_regs()
        regs.rip = entry
        regs.rflags = 0x2  # bit 1 is always set
        regs.rsp = stack if stack is not None else 0
        self.set_regs(regs)
        self.mode = mode

    def jump(self, rip: int) -> None:
        """Continue execution at ``rip`` (other registers keep their values)."""
        regs = self.get_regs()
        regs.rip = rip
        regs.rflags = 0x2
        self.set_regs(regs)

    # -- running
    def kick(self) -> bool:
        """From another thread: make a running :meth:`run` stop with :class:`RunInterrupted`; False if idle."""
        guard = self._guard
        if guard is None:
            return False
        guard.kick("kick")
        return True

    def _set_immediate_exit(self, value: int) -> None:
        if self._fd is not None:
            self._bytes[_IMMEDIATE_EXIT] = value

    def run(self, timeout_s: float = 5.0, *, resume_out_ports: Iterable[int] = (), resume_mmio_writes: bool = False,
            pio: Bus | None = None, mmio: Bus | None = None) -> Exit:
        """Run the guest until an exit the caller must see, at most ``timeout_s`` seconds.

        ``resume_out_ports``: guest ``out`` to these ports is treated as a
        write to a port with no device behind it (as QEMU does for an empty
        port): the data is dropped and the guest resumed, without returning.
        ``resume_mmio_writes``: the same for stores to unmapped addresses.
        ``pio`` / ``mmio``: buses whose devices answer the port-I/O / MMIO
        exits inside their ranges (:mod:`lab.kvm.bus`), within this one run.
        Every exit handled on the way is counted in ``Exit.resumed``.

        Returns an :class:`~lab.kvm.exits.Exit` for HLT, port I/O and MMIO;
        raises :class:`GuestShutdown`, :class:`EntryFailed`,
        :class:`InternalError`, :class:`UnknownExit`; :class:`RunTimeout`
        when the deadline passes; ``KeyboardInterrupt`` (main thread) on
        Ctrl-C; :class:`RunInterrupted` after :meth:`kick`.
        """
        fd = self.fd
        if self.mode is None:
            raise KvmError("set the vCPU up first (vm.create_vcpu does it)")
        if self._guard is not None:
            raise KvmError(f"vCPU {self.index} is already running (on another thread)")
        if not 0 < timeout_s < 1e6:
            raise InvalidSetup(f"timeout_s must be a positive number of seconds, not {timeout_s!r}")
        ports = frozenset(resume_out_ports)
        guard = Guard(self._set_immediate_exit, timeout_s)
        with guard:
            mask = guard.vcpu_mask
            arg = (len(mask)).to_bytes(4, "little") + mask
            _libc.ioctl(fd, KVM_SET_SIGNAL_MASK, ctypes.create_string_buffer(arg, len(arg)), what="KVM_SET_SIGNAL_MASK")
            self._guard = guard
            try:
                return self._loop(fd, ports, resume_mmio_writes, pio, mmio, guard)
            finally:
                self._guard = None

    def _loop(self, fd: int, ports: frozenset[int], resume_mmio: bool, pio: Bus | None, mmio: Bus | None,
              guard: Guard) -> Exit:
        # KVM_RUN goes through fcntl.ioctl, not ctypes: with no argument it is a
        # direct C call that releases the GIL (so the watchdog thread still runs)
        # and raises OSError on failure; on EINTR it first runs Python's signal
        # handlers (Ctrl-C raises KeyboardInterrupt right there). Measured side by
        # side with the C loop of lab.bench.reference it costs ~2,500 fewer cycles
        # per userspace exit than a ctypes call. Do not pass 0 explicitly:
        # fcntl.ioctl then first tries the int as a buffer and raises and clears
        # two TypeErrors on every call.
        ioctl, request = fcntl.ioctl, KVM_RUN
        words, w_reason, w_union = self._words, self._w_reason, self._w_union
        exit_io, exit_mmio, out = KVM_EXIT_IO, KVM_EXIT_MMIO, KVM_EXIT_IO_OUT
        # The fast path: when the caller resumes one kind of exit, the inner loop
        # below recognises the exact word of such an exit with two int comparisons
        # and enters the guest again at once (measured here, an equality costs ~500
        # cycles per exit less than a set lookup). For port I/O the word,
        # direction | size << 8 | port << 16, is learnt from the last exit the
        # general checks further down resumed; anything the fast path does not
        # match falls through to them.
        fast_reason = fast_key = fast_at = -1
        fast_view = words
        if resume_mmio and not ports:
            fast_reason, fast_view, fast_at, fast_key = exit_mmio, self._bytes, self._b_mmio_write, 1
        elif ports and not resume_mmio:
            fast_reason, fast_at = exit_io, w_union
        resumed = 0
        while True:
            try:
                ioctl(fd, request)
                while fast_view[fast_at] == fast_key and words[w_reason] == fast_reason:
                    resumed += 1
                    ioctl(fd, request)
            except OSError as exc:
                self._interrupted(exc, guard, resumed)
                continue
            reason = words[w_reason]
            if reason == exit_io:
                io = words[w_union]
                if io & 0xFF == out and io >> 16 in ports:
                    resumed += 1
                    if fast_reason == exit_io:
                        fast_key = io
                    continue
                if pio is not None and self._serve(pio, decode(self._bytes)):
                    resumed += 1
                    continue
            elif reason == exit_mmio:
                if resume_mmio and self._bytes[self._b_mmio_write]:
                    resumed += 1
                    continue
                if mmio is not None and self._serve(mmio, decode(self._bytes)):
                    resumed += 1
                    continue
            return self._stop(decode(self._bytes), resumed, guard)

    def _interrupted(self, exc: OSError, guard: Guard, resumed: int) -> None:
        """``KVM_RUN`` failed: resume after a harmless signal, else raise what stopped it."""
        err = exc.errno or 0
        if err not in (errno.EINTR, errno.EAGAIN):
            raise IoctlError("KVM_RUN", err) from None
        cause = guard.after_eintr()
        if cause == "timeout":
            raise RunTimeout(
                f"the guest did not exit within {guard.timeout_s:g} s (rip={self.get_regs().rip:#x}, {resumed} "
                f"exits handled on the way); the watchdog stopped KVM_RUN. Does the guest end with hlt?",
                self._outcome(Intr(), resumed, guard)) from None
        if cause == "kick":
            raise RunInterrupted(f"vCPU {self.index} was kicked out of KVM_RUN by another thread "
                                 f"({resumed} exits handled on the way)", self._outcome(Intr(), resumed, guard))
        # A signal whose Python handler did not raise (on the main thread, fcntl.ioctl
        # has already run it): resume the guest.

    def _outcome(self, exit_: VcpuExit, resumed: int, guard: Guard) -> Exit:
        return Exit(exit_, self.get_regs().rip, resumed, time.perf_counter_ns() - guard.start_ns)

    def _stop(self, exit_: VcpuExit, resumed: int, guard: Guard) -> Exit:
        """The run ends at ``exit_``: return it, or raise it when it is not a normal outcome."""
        outcome = self._outcome(exit_, resumed, guard)
        error = error_for(outcome)
        if error is not None:
            raise error
        return outcome

    def _serve(self, bus: Bus, e: VcpuExit) -> bool:
        """Give an I/O or MMIO exit to the device on ``bus`` that covers it; False when none does."""
        if isinstance(e, IoOut | IoIn):
            r = bus.find(e.port, e.size)
            if r is None:
                return False
            offset, size = e.port - r.base, e.size
            if isinstance(e, IoOut):
                for i in range(e.count):
                    r.device.write(offset, e.data[i * size:(i + 1) * size])
                return True
            answer = bytearray(size * e.count)
            view = memoryview(answer)
            for i in range(e.count):
                r.device.read(offset, view[i * size:(i + 1) * size])
            view.release()
            self._answer(e.data_offset, answer)
            return True
        if isinstance(e, MmioWrite):
            r = bus.find(e.address, len(e.data))
            if r is not None:
                r.device.write(e.address - r.base, e.data)
            return r is not None
        if isinstance(e, MmioRead):
            r = bus.find(e.address, e.size)
            if r is None:
                return False
            answer = bytearray(e.size)
            r.device.read(e.address - r.base, memoryview(answer))
            self._answer(_MMIO_DATA, answer)
            return True
        return False

    def _answer(self, at: int, data: bytearray) -> None:
        """Write what the guest reads into the ``kvm_run`` page (KVM copies it on the next ``KVM_RUN``)."""
        if at < 0 or at + len(data) > len(self._bytes):
            raise KvmError(f"kvm_run: answer at [{at:#x}, {at + len(data):#x}) lies outside the page")
        self._bytes[at:at + len(data)] = data
