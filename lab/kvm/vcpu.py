"""The vCPU level of the mini VMM: registers, ``KVM_RUN``, exits, the watchdog.

Each vCPU fd comes with a shared page, ``kvm_run``, mapped into this
process: the kernel writes there why ``KVM_RUN`` returned (the exit reason
and its details) and reads from it what the VMM answers.

The watchdog. A guest that never leaves (``jmp $``), or a hypercall that KVM
keeps re-executing, would keep ``KVM_RUN`` busy forever. ``run`` blocks
:data:`WATCHDOG_SIGNAL` in the calling thread and tells KVM, with
``KVM_SET_SIGNAL_MASK``, to unblock it only while the vCPU runs. When the
deadline passes a timer thread sets ``kvm_run.immediate_exit`` and sends the
signal to the vCPU's thread: KVM leaves the guest and ``KVM_RUN`` returns
``EINTR``. The signal never reaches a handler (it is blocked again once
``KVM_RUN`` returns) and is consumed with ``sigtimedwait``. This is the way
QEMU kicks its vCPU threads, and it works from any thread.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import threading
import time
from collections.abc import Callable

from lab.kvm import _libc
from lab.kvm.constants import (
    EXIT_NAMES,
    KVM_CAP_GET_TSC_KHZ,
    KVM_EXIT_FAIL_ENTRY,
    KVM_EXIT_HLT,
    KVM_EXIT_INTERNAL_ERROR,
    KVM_EXIT_IO,
    KVM_EXIT_IO_OUT,
    KVM_EXIT_MMIO,
    KVM_EXIT_SHUTDOWN,
    KVM_INTERNAL_ERROR_DELIVERY_EV,
    KVM_INTERNAL_ERROR_EMULATION,
    KVM_INTERNAL_ERROR_SIMUL_EX,
    KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON,
)
from lab.kvm.errors import (
    ClosedError,
    EntryFailed,
    GuestShutdown,
    InternalError,
    KvmError,
    RunTimeout,
    UnknownExit,
)
from lab.kvm.exits import Exit
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
from lab.kvm.structs import RUN_UNION_OFFSET, kvm_regs, kvm_run, kvm_segment, kvm_sregs

#: ``handler(port, direction, size, data)`` for :meth:`Vcpu.run`'s ``io_handler``.
IoHandler = Callable[[int, str, int, "bytes | None"], "bytes | None | bool"]

#: Signal used to kick a vCPU out of ``KVM_RUN`` (blocked outside ``KVM_RUN``).
WATCHDOG_SIGNAL = signal.SIGRTMIN + 5
MODES = ("real", "protected32", "long64")
#: Where ``long64`` puts its identity-mapped page tables (PML4, PDPT, 4 page directories).
PAGE_TABLE_ADDR = 0x8000
PAGE_TABLE_SIZE = 6 * 0x1000

CR0_PE, CR0_ET, CR0_NE, CR0_PG = 1 << 0, 1 << 4, 1 << 5, 1 << 31
CR4_PAE = 1 << 5
EFER_LME, EFER_LMA = 1 << 8, 1 << 10

_SUBERRORS = {
    KVM_INTERNAL_ERROR_EMULATION: "emulation failure (KVM could not emulate the instruction)",
    KVM_INTERNAL_ERROR_SIMUL_EX: "simultaneous exceptions",
    KVM_INTERNAL_ERROR_DELIVERY_EV: "an exit while delivering an event",
    KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON: "unexpected hardware exit reason",
}


def _sigset_bytes(signals) -> bytes:
    """The kernel's 64-bit sigset: bit n-1 stands for signal n."""
    mask = 0
    for s in signals:
        mask |= 1 << (int(s) - 1)
    return mask.to_bytes(8, "little")


class Vcpu:
    """One virtual CPU. Create with ``Vm.create_vcpu``; closed with its VM."""

    def __init__(self, vm, fd: int, index: int):
        self._vm = vm
        self._fd: int | None = fd
        self.index = index
        self._run_size = vm._system.vcpu_mmap_size()
        # The kvm_run page is shared with the kernel; the ctypes views below read
        # and write it in place, so they must not outlive the mapping (see close()).
        self._run_addr = _libc.mmap_fd(fd, self._run_size)
        self._run = kvm_run.from_address(self._run_addr)
        # The run loop reads the page through memoryviews (the cheapest read
        # from Python): as 32-bit words, word 2 is exit_reason and, for IO, the
        # word at the union holds direction | size << 8 | port << 16; for MMIO,
        # is_write is the low byte of the word after phys_addr, data[8] and len
        # (``_bytes`` reads that byte alone).
        page = (ctypes.c_char * self._run_size).from_address(self._run_addr)
        self._bytes = memoryview(page).cast("B")
        self._words = self._bytes.cast("I")
        self._w_reason = kvm_run.exit_reason.offset // 4
        self._w_union = RUN_UNION_OFFSET // 4
        self._w_mmio_write = (RUN_UNION_OFFSET + 8 + 8 + 4) // 4
        self._b_mmio_write = self._w_mmio_write * 4  # x86 is little-endian: the low byte comes first
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
        if self._fd is None:
            return
        self._words.release()
        self._bytes.release()
        self._run = self._words = self._bytes = None
        _libc.munmap(self._run_addr, self._run_size)
        fd, self._fd = self._fd, None
        os.close(fd)

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
        except OSError:
            return None

    def setup(self, mode: str, entry: int, stack: int | None = None) -> None:
        """Registers for ``mode`` with execution starting at ``entry``.

        ``real``: 16-bit real mode, all segments based at 0 (code below 64 KiB).
        ``protected32``: flat 32-bit protected mode, paging off, every segment
        base 0 and limit 4 GiB, CPL 0, an empty IDT (so any exception ends in a
        triple fault, reported as :class:`GuestShutdown`).
        ``long64``: 64-bit long mode, the first 4 GiB identity-mapped by page
        tables the VMM writes at :data:`PAGE_TABLE_ADDR` (needs guest RAM
        there), otherwise like ``protected32``.
        """
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
        # Give the guest the CPUID leaves KVM supports (long mode needs the LM bit).
        cpuid = self._vm._system.supported_cpuid()
        _libc.ioctl(self.fd, KVM_SET_CPUID2, cpuid, what="KVM_SET_CPUID2")
        sregs = self.get_sregs()
        if mode == "real":
            for seg in (sregs.cs, sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss):
                seg.base, seg.selector = 0, 0
            if entry > 0xFFFF:
                raise ValueError(f"real-mode entry {entry:#x} must be below 64 KiB")
        else:
            long = mode == "long64"
            code = kvm_segment(base=0, limit=0xFFFFFFFF, selector=0x08, type=0xB, present=1,
                               dpl=0, db=0 if long else 1, s=1, l=1 if long else 0, g=1)
            data = kvm_segment(base=0, limit=0xFFFFFFFF, selector=0x10, type=0x3, present=1,
                               dpl=0, db=1, s=1, l=0, g=1)
            sregs.cs = code
            sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data
            sregs.cr0 |= CR0_PE  # protected mode
            sregs.idt.base, sregs.idt.limit = 0, 0
            if long:
                sregs.cr3 = self._write_page_tables()
                sregs.cr4 |= CR4_PAE
                sregs.cr0 |= CR0_PE | CR0_PG | CR0_ET | CR0_NE
                sregs.efer |= EFER_LME | EFER_LMA
        self.set_sregs(sregs)
        regs = kvm_regs()
        regs.rip = entry
        regs.rflags = 0x2  # bit 1 is always set
        regs.rsp = stack if stack is not None else 0
        self.set_regs(regs)
        self.mode = mode

    def _write_page_tables(self) -> int:
        """Identity-map the first 4 GiB with 2 MiB pages; returns CR3.

        PML4[0] -> PDPT; PDPT[i] -> page directory i (i < 4); each directory
        maps 512 x 2 MiB. Addresses with no memory slot stay unmapped for KVM
        (MMIO), but are valid for the guest's own paging.
        """
        base = PAGE_TABLE_ADDR
        present_rw = 0x3
        pml4 = (base + 0x1000 | present_rw).to_bytes(8, "little")
        pdpt = b"".join((base + 0x2000 + i * 0x1000 | present_rw).to_bytes(8, "little") for i in range(4))
        pds = b"".join(((i << 21) | present_rw | 0x80).to_bytes(8, "little") for i in range(4 * 512))
        try:
            self._vm.write(base, pml4)
            self._vm.write(base + 0x1000, pdpt)
            self._vm.write(base + 0x2000, pds)
        except KvmError as exc:
            raise KvmError(f"long mode needs guest RAM at [{base:#x}, {base + PAGE_TABLE_SIZE:#x}) "
                           f"for its page tables: {exc}") from None
        return base

    def jump(self, rip: int) -> None:
        """Continue execution at ``rip`` (other registers keep their values)."""
        regs = self.get_regs()
        regs.rip = rip
        regs.rflags = 0x2
        self.set_regs(regs)

    # -- running
    def run(self, timeout_s: float = 5.0, *, resume_out_ports=(), resume_mmio_writes: bool = False,
            io_handler: IoHandler | None = None) -> Exit:
        """Run the guest until an exit the caller must see, at most ``timeout_s`` seconds.

        ``resume_out_ports``: guest ``out`` to these ports is treated as a
        write to a port with no device behind it (as QEMU does for an empty
        port): the data is dropped and the guest resumed, without returning.
        ``resume_mmio_writes``: the same for stores to unmapped addresses.
        Those exits are counted in ``Exit.resumed``.
        ``io_handler(port, direction, size, data)``: called for every other
        port-I/O exit inside this one run (one watchdog for the whole run, so a
        device model can serve thousands of exits cheaply). For ``"out"`` it
        gets the bytes written and returns ``None`` when it handled them; for
        ``"in"`` it returns the ``size * count`` bytes the guest reads (``None``
        reads as a floating bus, all ones). Returning ``False`` means "not
        mine": the exit is returned to the caller as usual.

        Returns an :class:`Exit` for HLT, port I/O and MMIO; raises
        :class:`GuestShutdown`, :class:`EntryFailed`, :class:`InternalError`,
        :class:`UnknownExit` or, when the deadline passes, :class:`RunTimeout`.
        """
        fd = self.fd
        if self.mode is None:
            raise KvmError("set the vCPU up first (vm.create_vcpu does it)")
        ports = frozenset(resume_out_ports)
        sig = WATCHDOG_SIGNAL
        tid = threading.get_ident()
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {sig})
        fired = threading.Event()
        timer = None
        try:
            mask = _sigset_bytes(set(old_mask) - {sig})
            arg = ctypes.create_string_buffer(4 + len(mask))
            ctypes.memmove(arg, len(mask).to_bytes(4, "little") + mask, 4 + len(mask))
            _libc.ioctl(fd, KVM_SET_SIGNAL_MASK, arg, what="KVM_SET_SIGNAL_MASK")

            run = self._run

            def kick() -> None:
                run.immediate_exit = 1
                fired.set()
                signal.pthread_kill(tid, sig)

            timer = threading.Timer(timeout_s, kick)
            timer.daemon = True
            start = time.perf_counter_ns()
            timer.start()
            return self._loop(fd, ports, resume_mmio_writes, io_handler, fired, start, timeout_s)
        finally:
            if timer is not None:
                timer.cancel()
                timer.join()
            if self._run is not None:
                self._run.immediate_exit = 0
            if fired.is_set():
                signal.sigtimedwait({sig}, 0)  # consume the kick if it is still pending
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)

    def _loop(self, fd, ports, resume_mmio, io_handler, fired, start, timeout_s) -> Exit:
        # KVM_RUN goes through fcntl.ioctl, not ctypes: with no argument it is a
        # direct C call that releases the GIL (so the watchdog thread still runs)
        # and raises OSError on failure. Measured side by side with the C loop of
        # lab.bench.reference it costs ~2,500 fewer cycles per userspace exit than
        # a ctypes call (whose argument conversion, libffi call and errno swap
        # touch far more memory, and every exit leaves the caches cold here).
        # Do not pass 0 explicitly: fcntl.ioctl then first tries the int as a
        # buffer and raises and clears two TypeErrors on every call.
        ioctl, request = fcntl.ioctl, KVM_RUN
        words, w_reason, w_union, w_mmio = self._words, self._w_reason, self._w_union, self._w_mmio_write
        exit_io, exit_mmio, out = KVM_EXIT_IO, KVM_EXIT_MMIO, KVM_EXIT_IO_OUT
        # The fast path: when the caller resumes one kind of exit, the inner loop
        # below recognises it with one comparison and one set lookup and enters
        # the guest again at once. Anything it does not match (an exit with
        # another size, a write whose is_write is not exactly 1) falls through to
        # the general checks further down, which decide exactly as before.
        fast_reason = fast_view = fast_at = None
        fast_set: frozenset = frozenset()
        if ports and not resume_mmio:
            fast_reason, fast_view, fast_at = exit_io, words, w_union
            fast_set = frozenset(out | size << 8 | port << 16 for port in ports
                                 if isinstance(port, int) and 0 <= port <= 0xFFFF for size in (1, 2, 4))
        elif resume_mmio and not ports:
            fast_reason, fast_view, fast_at, fast_set = exit_mmio, self._bytes, self._b_mmio_write, frozenset({1})
        resumed = 0
        while True:
            try:
                ioctl(fd, request)
                while words[w_reason] == fast_reason and fast_view[fast_at] in fast_set:
                    resumed += 1
                    ioctl(fd, request)
            except OSError as exc:
                err = exc.errno
                if err not in (_libc.EINTR, _libc.EAGAIN):
                    raise KvmError(f"KVM_RUN failed: {os.strerror(err)} (errno {err})") from None
                if fired.is_set():
                    rip = self.get_regs().rip
                    raise RunTimeout(
                        f"the guest did not exit within {timeout_s:g} s (rip={rip:#x}, {resumed} exits "
                        f"handled on the way); the watchdog stopped KVM_RUN. Does the guest end with hlt?",
                        Exit("timeout", rip, resumed=resumed, wall_ns=time.perf_counter_ns() - start),
                    ) from None
                # Another signal (e.g. Ctrl-C): fcntl.ioctl has already run Python's
                # handler (an exception from it propagates); resume the guest.
                continue
            reason = words[w_reason]
            if reason == exit_io:
                io = words[w_union]
                if io & 0xFF == out and io >> 16 in ports:
                    resumed += 1
                    continue
                if io_handler is not None and self._dispatch_io(io_handler):
                    resumed += 1
                    continue
            elif reason == exit_mmio:
                if resume_mmio and words[w_mmio] & 0xFF:
                    resumed += 1
                    continue
            return self._decode(reason, resumed, time.perf_counter_ns() - start)

    def _dispatch_io(self, handler: IoHandler) -> bool:
        """Give the pending port-I/O exit to ``handler``; True when it was handled."""
        io = self._run.u.io
        n = io.size * io.count
        addr = self._run_addr + io.data_offset  # inside the kvm_run mapping, n bytes (kernel-provided)
        if io.direction == KVM_EXIT_IO_OUT:
            return handler(io.port, "out", io.size, ctypes.string_at(addr, n)) is not False
        answer = handler(io.port, "in", io.size, None)
        if answer is False:
            return False
        answer = b"\xff" * n if answer is None else bytes(answer)
        if len(answer) != n:
            raise KvmError(f"the handler for port {io.port:#x} answered {len(answer)} bytes to an 'in' of {n}")
        ctypes.memmove(addr, answer, n)
        return True

    def _decode(self, reason: int, resumed: int, wall_ns: int) -> Exit:
        run = self._run
        rip = self.get_regs().rip
        if reason == KVM_EXIT_HLT:
            return Exit("hlt", rip, resumed=resumed, wall_ns=wall_ns)
        if reason == KVM_EXIT_IO:
            io = run.u.io
            n = io.size * io.count
            data = ctypes.string_at(self._run_addr + io.data_offset, n)
            return Exit("io", rip, port=io.port, size=io.size, count=io.count,
                        direction="out" if io.direction == KVM_EXIT_IO_OUT else "in",
                        data=data if io.direction == KVM_EXIT_IO_OUT else None,
                        resumed=resumed, wall_ns=wall_ns)
        if reason == KVM_EXIT_MMIO:
            m = run.u.mmio
            return Exit("mmio", rip, address=m.phys_addr, size=m.len,
                        direction="write" if m.is_write else "read",
                        data=bytes(m.data[: m.len]) if m.is_write else None,
                        resumed=resumed, wall_ns=wall_ns)
        info = Exit(EXIT_NAMES.get(reason, f"exit_{reason}"), rip, resumed=resumed, wall_ns=wall_ns)
        if reason == KVM_EXIT_SHUTDOWN:
            raise GuestShutdown(
                f"the guest triple-faulted at rip={rip:#x}: an exception could not be delivered, not even as a "
                f"double fault (this guest has no IDT). KVM reports KVM_EXIT_SHUTDOWN; check the guest code.", info)
        if reason == KVM_EXIT_FAIL_ENTRY:
            hw = run.u.fail_entry.hardware_entry_failure_reason
            raise EntryFailed(
                f"the CPU refused to enter the guest (KVM_EXIT_FAIL_ENTRY, hardware reason {hw:#x}): "
                f"the segment or control register state is invalid for the chosen mode", info)
        if reason == KVM_EXIT_INTERNAL_ERROR:
            internal = run.u.internal
            sub = internal.suberror
            data = [f"{internal.data[i]:#x}" for i in range(min(internal.ndata, 16))]
            hint = ""
            if sub == KVM_INTERNAL_ERROR_EMULATION:
                hint = (" The guest probably executed from an address with no memory behind it "
                        "(a jump outside guest RAM), or an instruction KVM cannot emulate.")
            raise InternalError(
                f"KVM internal error at rip={rip:#x}, suberror {sub}: {_SUBERRORS.get(sub, 'unknown')}"
                f"{' data ' + ' '.join(data) if data else ''}.{hint}", info)
        raise UnknownExit(
            f"unhandled exit reason {reason} ({EXIT_NAMES.get(reason, 'unknown to this VMM')}) at rip={rip:#x}; "
            f"the mini VMM does not ignore exits it does not understand", info)
