"""The vCPU level of the mini VMM: registers, ``KVM_RUN``, exits.

Each vCPU fd comes with a shared page, ``kvm_run``, mapped into this
process: the kernel writes there why ``KVM_RUN`` returned (the exit reason
and its details, decoded by :func:`lab.kvm.exits.decode`) and reads from it
what the VMM answers. The split is kvm-ioctls' and Firecracker's:

* :meth:`Vcpu.run_once` is one ``KVM_RUN``, returning the typed exit;
* :func:`lab.kvm.bus.handle` decides what to do with it (pure);
* :meth:`Vcpu.run_until` loops the two until an exit is for the caller.

Every run is guarded (:mod:`lab.kvm.kick`), once for a whole
``with vcpu.running(timeout_s):`` block: a watchdog deadline, Ctrl-C, and
:meth:`Vcpu.kick` all get the vCPU out of ``KVM_RUN`` at once.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import time
from typing import TYPE_CHECKING

from lab.kvm import _libc, x86
from lab.kvm.bus import Bus, Stop, handle
from lab.kvm.constants import KVM_CAP_GET_TSC_KHZ
from lab.kvm.errors import (
    ClosedError,
    InvalidSetup,
    IoctlError,
    KvmError,
    RunInterrupted,
    RunTimeout,
    SyscallError,
)
from lab.kvm.exits import Exit, Intr, IoIn, MmioRead, VcpuExit, decode, error_for
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
from lab.kvm.kick import KICK_SIGNAL, KICK_SIGNAL_NAME, Guard, sigint_deferred
from lab.kvm.structs import RUN_UNION_OFFSET, kvm_regs, kvm_run, kvm_sregs

if TYPE_CHECKING:
    from lab.kvm.vm import Vm

#: Signal used to kick a vCPU out of ``KVM_RUN`` (the watchdog's; blocked outside ``KVM_RUN``).
WATCHDOG_SIGNAL, WATCHDOG_SIGNAL_NAME = KICK_SIGNAL, KICK_SIGNAL_NAME
MODES = x86.MODES

_IMMEDIATE_EXIT = kvm_run.immediate_exit.offset
_MMIO_DATA = RUN_UNION_OFFSET + 8  # kvm_run.mmio.data
#: The watchdog of a run when the caller names none.
DEFAULT_TIMEOUT_S = 5.0


class Vcpu:
    """One virtual CPU. Create with ``Vm.create_vcpu``; closed with its VM or its ``with`` block."""

    def __init__(self, vm: Vm, fd: int, index: int):
        self._vm = vm
        self._fd: int | None = fd
        self.index = index
        size = vm._system.vcpu_mmap_size()
        # The kvm_run page, shared with the kernel; mmap refuses to unmap while views live.
        try:
            self._page = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as exc:
            raise SyscallError("mmap", exc.errno or 0, f"the kvm_run page of vCPU {index}") from None
        self._bytes = memoryview(self._page)
        self._session: Session | None = None
        self._answer: tuple[int, memoryview] | None = None  # (offset in kvm_run, bytes) for the next KVM_RUN
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
        with sigint_deferred():  # both or neither, whenever a Ctrl-C comes
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
    @property
    def run_page(self) -> memoryview:
        """The ``kvm_run`` page, as bytes (for a caller's own loop, e.g. the exits benchmark's fast path)."""
        if self.closed:
            raise ClosedError(f"vCPU {self.index} was closed")
        return self._bytes

    def kick(self) -> bool:
        """From another thread: make a running :meth:`run_once` stop with :class:`RunInterrupted`; False if idle."""
        session = self._session
        if session is None:
            return False
        session.guard.kick("kick")
        return True

    def _set_immediate_exit(self, value: int) -> None:
        if self._fd is not None:
            self._bytes[_IMMEDIATE_EXIT] = value

    def running(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> Session:
        """One guarded run of many ``KVM_RUN`` calls: ``with vcpu.running(5):`` then :meth:`run_once` in a loop.

        The watchdog (``timeout_s`` for the whole block), Ctrl-C and
        :meth:`kick` are armed once, when the block starts (:mod:`lab.kvm.kick`).
        """
        _ = self.fd  # raises ClosedError once closed
        if self.mode is None:
            raise InvalidSetup("set the vCPU up first (vm.create_vcpu does it)")
        if self._session is not None:
            raise KvmError(f"vCPU {self.index} is already running (on another thread)")
        if not 0 < timeout_s < 1e6:
            raise InvalidSetup(f"timeout_s must be a positive number of seconds, not {timeout_s!r}")
        return Session(self, timeout_s)

    def run_once(self) -> VcpuExit:
        """One ``KVM_RUN``: enter the guest until it exits, and say why (:mod:`lab.kvm.exits`).

        Inside ``with vcpu.running(timeout_s):`` the run's watchdog applies;
        called alone, it arms one for this call (:data:`DEFAULT_TIMEOUT_S`).
        The ``data`` of an :class:`~lab.kvm.exits.IoIn` or
        :class:`~lab.kvm.exits.MmioRead` is the writable answer for the guest,
        valid until the next call. Raises :class:`RunTimeout` when the
        deadline passes, ``KeyboardInterrupt`` (main thread) on Ctrl-C,
        :class:`RunInterrupted` after :meth:`kick`, :class:`IoctlError` when
        ``KVM_RUN`` itself fails.
        """
        session = self._session
        if session is None:
            with self.running() as session:
                return self.run_once()
        fd = self.fd
        if self._answer is not None:  # what the device wrote into the last IoIn/MmioRead, for the guest
            at, answer = self._answer
            self._bytes[at:at + len(answer)] = answer
            self._answer = None
        while True:
            try:
                # fcntl.ioctl, not ctypes: with no argument it is a direct C call that
                # releases the GIL (so the watchdog thread still runs) and, on EINTR,
                # first runs Python's signal handlers (Ctrl-C raises KeyboardInterrupt
                # right here). Do not pass 0: fcntl.ioctl would first try the int as a
                # buffer and raise and clear two TypeErrors on every call.
                fcntl.ioctl(fd, KVM_RUN)
            except OSError as exc:
                session.interrupted(exc)
                continue
            exit_ = decode(self._bytes)
            if isinstance(exit_, IoIn | MmioRead):  # its answer goes into the page before the next KVM_RUN
                self._answer = (exit_.data_offset if isinstance(exit_, IoIn) else _MMIO_DATA, exit_.data)
            return exit_

    def run_until(self, timeout_s: float = DEFAULT_TIMEOUT_S, *, pio: Bus | None = None,
                  mmio: Bus | None = None) -> Exit:
        """Run the guest until an exit no device handles, at most ``timeout_s`` seconds in all.

        ``pio`` / ``mmio``: buses whose devices answer the port-I/O / MMIO
        exits inside their ranges (:func:`lab.kvm.bus.handle`); each such exit
        is counted in ``Exit.resumed`` and the guest resumed.

        Returns an :class:`~lab.kvm.exits.Exit` for ``hlt`` and for I/O and MMIO
        outside every range; raises the errors of
        :func:`~lab.kvm.exits.error_for` (:class:`GuestShutdown`,
        :class:`EntryFailed`, :class:`InternalError`, :class:`UnknownExit`) and
        those of :meth:`run_once`.
        """
        with self.running(timeout_s) as session:
            while True:
                outcome = handle(self.run_once(), pio, mmio)
                if isinstance(outcome, Stop):
                    return session.stop(outcome.exit)
                session.handled += 1

    def run(self, timeout_s: float = DEFAULT_TIMEOUT_S, *, pio: Bus | None = None, mmio: Bus | None = None) -> Exit:
        """Compatibility name of :meth:`run_until`, which the chapters call (remove in the thin-book issue)."""
        return self.run_until(timeout_s, pio=pio, mmio=mmio)


class Session:
    """One guarded run of a vCPU (see :meth:`Vcpu.running`): the :class:`~lab.kvm.kick.Guard`,
    the exits handled so far, and what ends the run."""

    def __init__(self, vcpu: Vcpu, timeout_s: float) -> None:
        self.vcpu = vcpu
        self.guard = Guard(vcpu._set_immediate_exit, timeout_s)
        self.handled = 0  #: exits handled without ending the run (``Exit.resumed``)

    def __enter__(self) -> Session:
        # Armed whole or not at all: a Ctrl-C is held back until the guard is armed and the
        # mask set, then (raised here, where no with statement would call __exit__) disarms.
        vcpu, guard, armed = self.vcpu, self.guard, False
        try:
            with sigint_deferred():
                guard.__enter__()
                armed = True
                mask = guard.vcpu_mask
                arg = (len(mask)).to_bytes(4, "little") + mask
                _libc.ioctl(vcpu.fd, KVM_SET_SIGNAL_MASK, ctypes.create_string_buffer(arg, len(arg)),
                            what="KVM_SET_SIGNAL_MASK")
                vcpu._session = self
        except BaseException:
            vcpu._session = None
            if armed:
                guard.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.vcpu._session = None
        self.guard.__exit__()

    def interrupted(self, exc: OSError) -> None:
        """``KVM_RUN`` failed with ``exc``: return to retry after a harmless signal, else raise what stopped it."""
        err = exc.errno or 0
        if err not in (errno.EINTR, errno.EAGAIN):
            raise IoctlError("KVM_RUN", err) from None
        cause = self.guard.after_eintr()
        if cause == "timeout":
            outcome = self.outcome(Intr())
            raise RunTimeout(self.guard.timeout_s, outcome.rip, self.handled, outcome) from None
        if cause == "kick":
            raise RunInterrupted(self.vcpu.index, self.handled, self.outcome(Intr()))
        # A signal whose Python handler did not raise (on the main thread, fcntl.ioctl
        # has already run it): resume the guest.

    def outcome(self, exit_: VcpuExit) -> Exit:
        """The record of the run ending at ``exit_`` (reads ``rip``)."""
        return Exit(exit_, self.vcpu.get_regs().rip, self.handled, time.perf_counter_ns() - self.guard.start_ns)

    def stop(self, exit_: VcpuExit) -> Exit:
        """The run ends at ``exit_``: its record, or the typed error when it is not a normal outcome."""
        outcome = self.outcome(exit_)
        error = error_for(outcome)
        if error is not None:
            raise error
        return outcome
