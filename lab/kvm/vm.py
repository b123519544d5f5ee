"""The VM level of the mini VMM: guest memory slots, ioeventfds, vCPUs.

Guest "physical" memory is ordinary anonymous host memory (a
:class:`~lab.kvm.memory.GuestMemory`), handed to KVM with
``KVM_SET_USER_MEMORY_REGION``: the guest's address ``guest_addr`` is the
host's ``host_addr``. Device models get the same object (``vm.memory()``).
Any guest address not covered by a slot is not memory at all: an access
there leaves the guest as an MMIO exit, which is how emulated devices get
their registers (:mod:`lab.kvm.bus`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from lab.kvm import _libc, x86
from lab.kvm.constants import (
    KVM_CAP_IOEVENTFD,
    KVM_IOEVENTFD_FLAG_DATAMATCH,
    KVM_IOEVENTFD_FLAG_DEASSIGN,
    KVM_IOEVENTFD_FLAG_PIO,
)
from lab.kvm.errors import ClosedError, InvalidSetup, IoctlError, KvmError, MemoryInUse, MemoryLayoutError
from lab.kvm.ioctl_numbers import (
    KVM_CREATE_VCPU,
    KVM_IOEVENTFD,
    KVM_SET_TSS_ADDR,
    KVM_SET_USER_MEMORY_REGION,
)
from lab.kvm.kick import sigint_deferred
from lab.kvm.memory import GuestMemory
from lab.kvm.structs import kvm_ioeventfd, kvm_userspace_memory_region
from lab.kvm.vcpu import Vcpu

if TYPE_CHECKING:
    from lab.kvm.system import System


class Program(Protocol):
    """What :meth:`Vm.load` takes besides bytes: a :class:`lab.guests.Program` (code and origin)."""

    @property
    def code(self) -> bytes: ...

    @property
    def origin(self) -> int: ...

PAGE = _libc.PAGE_SIZE
#: Where Intel's real-mode helper TSS goes (three pages just below 4 GiB, as QEMU does).
TSS_ADDR = 0xFFFB_D000


@dataclass
class MemorySlot:
    """One guest memory slot: guest addresses [guest_addr, guest_addr + size), backed by ``memory``."""

    slot: int
    guest_addr: int
    size: int
    memory: GuestMemory

    @property
    def host_addr(self) -> int:
        """Where the slot is mapped in this process (what KVM was told)."""
        assert self.memory.host_address is not None
        return self.memory.host_address

    @property
    def end(self) -> int:
        return self.guest_addr + self.size

    def contains(self, addr: int, length: int = 1) -> bool:
        return self.guest_addr <= addr and addr + length <= self.end


class IoEventFd:
    """A guest port bound to an eventfd with ``KVM_IOEVENTFD``; a context manager.

    A guest ``out`` to the port is completed inside the kernel: KVM adds one
    to the eventfd's counter and resumes the guest, without ``KVM_RUN``
    returning to this process (the path vhost and virtio notifications use).
    """

    def __init__(self, vm: Vm, port: int, length: int, datamatch: int | None):
        if not 0 <= port <= 0xFFFF or length not in (0, 1, 2, 4, 8):
            raise InvalidSetup(f"ioeventfd: port {port:#x} must be 16-bit and length one of 0, 1, 2, 4, 8")
        self._vm = vm
        self.port, self.length, self.datamatch = port, length, datamatch
        self.fd: int | None = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        try:
            self._ioctl(0)
        except BaseException:
            os.close(self.fd)
            self.fd = None
            raise

    def _ioctl(self, extra_flags: int) -> None:
        arg = kvm_ioeventfd(addr=self.port, len=self.length, fd=self.fd,
                            flags=KVM_IOEVENTFD_FLAG_PIO | extra_flags)
        if self.datamatch is not None:
            arg.flags |= KVM_IOEVENTFD_FLAG_DATAMATCH
            arg.datamatch = self.datamatch
        _libc.ioctl(self._vm.fd, KVM_IOEVENTFD, arg, what="KVM_IOEVENTFD", detail=f"port {self.port:#x}")

    def take(self) -> int:
        """The number of guest writes since the last call (reads and resets the counter)."""
        if self.fd is None:
            raise ClosedError(f"ioeventfd on port {self.port:#x} was closed")
        try:
            return os.eventfd_read(self.fd)
        except BlockingIOError:
            return 0

    def close(self) -> None:
        """Unbind the port (while the VM lives) and close the eventfd. Idempotent."""
        if self.fd is None:
            return
        try:
            if not self._vm.closed:
                self._ioctl(KVM_IOEVENTFD_FLAG_DEASSIGN)
        except IoctlError:
            pass  # the VM is going away; closing its fd releases the binding anyway
        finally:
            fd, self.fd = self.fd, None
            os.close(fd)

    def __enter__(self) -> IoEventFd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Vm:
    """A virtual machine: memory slots, ioeventfds and vCPUs. Create with ``System.create_vm``."""

    def __init__(self, system: System, fd: int):
        self._system = system
        self._fd: int | None = fd
        self.slots: list[MemorySlot] = []
        self._vcpus: list[Vcpu] = []
        self._eventfds: list[IoEventFd] = []
        try:
            _libc.ioctl(fd, KVM_SET_TSS_ADDR, TSS_ADDR, what="KVM_SET_TSS_ADDR")
        except IoctlError:
            pass  # only Intel without unrestricted guest needs it; AMD and PVM may refuse

    # -- lifetime
    @property
    def closed(self) -> bool:
        return self._fd is None

    @property
    def fd(self) -> int:
        if self._fd is None:
            raise ClosedError("this VM was closed: create a new one with system.create_vm()")
        return self._fd

    def close(self) -> None:
        """Close vCPUs, ioeventfds, the VM fd, then unmap guest memory. Idempotent.

        Raises :class:`MemoryInUse` (after closing everything else) when views
        of guest memory are still alive; that memory stays mapped until they go.
        """
        with sigint_deferred():  # a Ctrl-C while closing would leave the rest open: it waits until the end
            self._close()

    def _close(self) -> None:
        if self._fd is None:
            return
        for vcpu in reversed(self._vcpus):
            vcpu.close()
        for efd in reversed(self._eventfds):
            efd.close()
        fd, self._fd = self._fd, None
        os.close(fd)  # the kernel drops the memory slots with the VM
        in_use: list[MemoryInUse] = []
        for slot in self.slots:
            try:
                slot.memory.close()
            except MemoryInUse as exc:
                in_use.append(exc)
        self.slots.clear()
        self._system._forget(self)
        if in_use:
            raise in_use[0]

    def __enter__(self) -> Vm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mem = ", ".join(f"{s.guest_addr:#x}+{s.size // 1024}KiB" for s in self.slots)
        return f"<kvm.Vm {'closed' if self.closed else f'fd={self._fd}'} memory=[{mem}] vcpus={len(self._vcpus)}>"

    # -- memory
    def add_memory(self, guest_addr: int, size: int) -> MemorySlot:
        """Back guest addresses [guest_addr, guest_addr + size) with fresh zeroed host memory."""
        fd = self.fd
        if size <= 0 or size % PAGE:
            raise MemoryLayoutError(f"memory size {size:#x} must be a positive multiple of the page size ({PAGE:#x})")
        if guest_addr < 0 or guest_addr % PAGE:
            raise MemoryLayoutError(f"guest address {guest_addr:#x} is not page-aligned ({PAGE:#x}); round it down")
        for s in self.slots:
            if guest_addr < s.end and s.guest_addr < guest_addr + size:
                raise MemoryLayoutError(
                    f"[{guest_addr:#x}, {guest_addr + size:#x}) overlaps slot {s.slot} "
                    f"[{s.guest_addr:#x}, {s.end:#x}); choose a free range"
                )
        with sigint_deferred():  # the mapping is a slot of this VM before a Ctrl-C can strike
            memory = GuestMemory.anonymous(size, base=guest_addr)
            slot = MemorySlot(len(self.slots), guest_addr, size, memory)
            region = kvm_userspace_memory_region(slot=slot.slot, flags=0, guest_phys_addr=guest_addr,
                                                 memory_size=size, userspace_addr=slot.host_addr)
            try:
                _libc.ioctl(fd, KVM_SET_USER_MEMORY_REGION, region, what="KVM_SET_USER_MEMORY_REGION",
                            detail=f"KVM refused memory slot [{guest_addr:#x}, {guest_addr + size:#x})")
            except BaseException:
                memory.close()
                raise
            self.slots.append(slot)
        return slot

    def has_memory(self, addr: int, length: int = 1) -> bool:
        """True when one memory slot backs all of [addr, addr + length)."""
        return any(s.contains(addr, length) for s in self.slots)

    def _slot_for(self, addr: int, length: int) -> MemorySlot:
        if self._fd is None:
            raise ClosedError("this VM was closed: create a new one with system.create_vm()")
        for s in self.slots:
            if s.contains(addr, length):
                return s
        raise MemoryLayoutError(f"guest range [{addr:#x}, {addr + length:#x}) is not inside one memory slot "
                                f"(slots: {[(hex(s.guest_addr), hex(s.end)) for s in self.slots]})")

    def memory(self, addr: int = 0) -> GuestMemory:
        """The :class:`GuestMemory` of the slot holding guest address ``addr`` (shared with device models)."""
        return self._slot_for(addr, 1).memory

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        self._slot_for(addr, len(data)).memory.write(addr, data)

    def read(self, addr: int, length: int) -> bytes:
        return self._slot_for(addr, length).memory.read(addr, length)

    def read_u32(self, addr: int) -> int:
        return self._slot_for(addr, 4).memory.u32(addr)

    def read_u64(self, addr: int) -> int:
        return self._slot_for(addr, 8).memory.u64(addr)

    def load(self, program: Program | bytes, at: int | None = None) -> int:
        """Copy a guest program (bytes or a :class:`lab.guests.Program`) into memory; returns its address."""
        if isinstance(program, bytes | bytearray):
            code = bytes(program)
        else:
            code, at = program.code, program.origin if at is None else at
        if at is None:
            raise MemoryLayoutError("say where to load the program: vm.load(code, at=0x1000)")
        self.write(at, code)
        return at

    # -- ioeventfd
    def ioeventfd(self, port: int, *, length: int = 1, datamatch: int | None = None) -> IoEventFd:
        """Complete guest ``out``s to ``port`` in the kernel, counting them in an eventfd."""
        if not self._system.check_extension(KVM_CAP_IOEVENTFD):
            raise KvmError("this KVM lacks KVM_CAP_IOEVENTFD")
        with sigint_deferred():  # the eventfd is this VM's before a Ctrl-C can strike
            efd = IoEventFd(self, port, length, datamatch)
            self._eventfds.append(efd)
        return efd

    # -- vCPUs
    def create_vcpu(self, mode: str = "protected32", entry: int = 0x1000, stack: int | None = None) -> Vcpu:
        """A vCPU whose registers are set for ``mode`` (:data:`lab.kvm.x86.MODES`), starting at ``entry``.

        The mode, the entry and the memory it needs are checked before
        ``KVM_CREATE_VCPU`` (:class:`~lab.kvm.errors.InvalidSetup`).
        """
        x86.check(mode, entry, self.has_memory)
        index = len(self._vcpus)
        with sigint_deferred():  # the fd is this VM's before a Ctrl-C can strike
            fd = _libc.ioctl(self.fd, KVM_CREATE_VCPU, index, what="KVM_CREATE_VCPU")
            try:
                vcpu = Vcpu(self, fd, index)
            except BaseException:
                os.close(fd)
                raise
            self._vcpus.append(vcpu)
        try:
            vcpu.setup(mode, entry, stack)
        except BaseException:
            vcpu.close()
            self._vcpus.remove(vcpu)
            raise
        return vcpu
