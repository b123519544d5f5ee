"""The VM level of the mini VMM: guest memory slots, ioeventfds, vCPUs.

Guest "physical" memory is ordinary anonymous host memory, handed to KVM
with ``KVM_SET_USER_MEMORY_REGION``: the guest's address ``guest_addr`` is
the host's ``host_addr``. Any guest address not covered by a slot is not
memory at all: an access there leaves the guest as an MMIO exit, which is how
emulated devices get their registers.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

from lab.kvm import _libc
from lab.kvm.constants import (
    KVM_CAP_IOEVENTFD,
    KVM_IOEVENTFD_FLAG_DATAMATCH,
    KVM_IOEVENTFD_FLAG_DEASSIGN,
    KVM_IOEVENTFD_FLAG_PIO,
)
from lab.kvm.errors import ClosedError, KvmError, MemoryLayoutError
from lab.kvm.ioctl_numbers import (
    KVM_CREATE_VCPU,
    KVM_IOEVENTFD,
    KVM_SET_TSS_ADDR,
    KVM_SET_USER_MEMORY_REGION,
)
from lab.kvm.structs import kvm_ioeventfd, kvm_userspace_memory_region

PAGE = _libc.PAGE_SIZE
#: Where Intel's real-mode helper TSS goes (three pages just below 4 GiB, as QEMU does).
TSS_ADDR = 0xFFFB_D000


@dataclass
class MemorySlot:
    """One guest memory slot: guest addresses [guest_addr, guest_addr + size)."""

    slot: int
    guest_addr: int
    size: int
    host_addr: int

    @property
    def end(self) -> int:
        return self.guest_addr + self.size

    def contains(self, addr: int, length: int = 1) -> bool:
        return self.guest_addr <= addr and addr + length <= self.end


class IoEventFd:
    """A guest port bound to an eventfd with ``KVM_IOEVENTFD``.

    A guest ``out`` to the port is completed inside the kernel: KVM adds one
    to the eventfd's counter and resumes the guest, without ``KVM_RUN``
    returning to this process (the path vhost and virtio notifications use).
    """

    def __init__(self, vm: Vm, port: int, length: int, datamatch: int | None):
        self._vm = vm
        self.port, self.length, self.datamatch = port, length, datamatch
        self.fd: int | None = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        try:
            self._ioctl(0)
        except OSError as exc:
            os.close(self.fd)
            self.fd = None
            raise KvmError(f"KVM_IOEVENTFD on port {port:#x} failed: {exc.strerror}") from None

    def _ioctl(self, extra_flags: int) -> None:
        arg = kvm_ioeventfd(addr=self.port, len=self.length, fd=self.fd,
                            flags=KVM_IOEVENTFD_FLAG_PIO | extra_flags)
        if self.datamatch is not None:
            arg.flags |= KVM_IOEVENTFD_FLAG_DATAMATCH
            arg.datamatch = self.datamatch
        _libc.ioctl(self._vm.fd, KVM_IOEVENTFD, arg, what="KVM_IOEVENTFD")

    def take(self) -> int:
        """The number of guest writes since the last call (reads and resets the counter)."""
        if self.fd is None:
            raise ClosedError(f"ioeventfd on port {self.port:#x} was closed")
        try:
            return os.eventfd_read(self.fd)
        except BlockingIOError:
            return 0

    def close(self) -> None:
        if self.fd is None:
            return
        try:
            if not self._vm.closed:
                self._ioctl(KVM_IOEVENTFD_FLAG_DEASSIGN)
        except OSError:
            pass  # the VM is going away; closing its fd releases the binding anyway
        finally:
            fd, self.fd = self.fd, None
            os.close(fd)


class Vm:
    """A virtual machine: memory slots, ioeventfds and vCPUs. Create with ``System.create_vm``."""

    def __init__(self, system, fd: int):
        self._system = system
        self._fd: int | None = fd
        self.slots: list[MemorySlot] = []
        self._vcpus: list = []
        self._eventfds: list[IoEventFd] = []
        try:
            _libc.ioctl(fd, KVM_SET_TSS_ADDR, TSS_ADDR, what="KVM_SET_TSS_ADDR")
        except OSError:
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
        """Close vCPUs, ioeventfds, the VM fd, then unmap guest memory. Idempotent."""
        if self._fd is None:
            return
        for vcpu in reversed(self._vcpus):
            vcpu.close()
        for efd in reversed(self._eventfds):
            efd.close()
        fd, self._fd = self._fd, None
        os.close(fd)  # the kernel drops the memory slots with the VM
        for slot in self.slots:
            _libc.munmap(slot.host_addr, slot.size)
        self.slots.clear()
        self._system._forget(self)

    def __enter__(self) -> Vm:
        return self

    def __exit__(self, *exc) -> None:
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
        host_addr = _libc.mmap_anonymous(size)
        slot = MemorySlot(len(self.slots), guest_addr, size, host_addr)
        region = kvm_userspace_memory_region(slot=slot.slot, flags=0, guest_phys_addr=guest_addr,
                                             memory_size=size, userspace_addr=host_addr)
        try:
            _libc.ioctl(fd, KVM_SET_USER_MEMORY_REGION, region, what="KVM_SET_USER_MEMORY_REGION")
        except OSError as exc:
            _libc.munmap(host_addr, size)
            raise MemoryLayoutError(f"KVM refused memory slot [{guest_addr:#x}, {guest_addr + size:#x}): "
                                    f"{exc.strerror}") from None
        self.slots.append(slot)
        return slot

    def _slot_for(self, addr: int, length: int) -> MemorySlot:
        for s in self.slots:
            if s.contains(addr, length):
                return s
        raise MemoryLayoutError(f"guest range [{addr:#x}, {addr + length:#x}) is not inside one memory slot "
                                f"(slots: {[(hex(s.guest_addr), hex(s.end)) for s in self.slots]})")

    def write(self, addr: int, data: bytes) -> None:
        self.fd  # raises when closed
        slot = self._slot_for(addr, len(data))
        ctypes.memmove(slot.host_addr + addr - slot.guest_addr, bytes(data), len(data))

    def read(self, addr: int, length: int) -> bytes:
        self.fd
        slot = self._slot_for(addr, length)
        return ctypes.string_at(slot.host_addr + addr - slot.guest_addr, length)

    def read_u32(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 4), "little")

    def read_u64(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 8), "little")

    def load(self, program, at: int | None = None) -> int:
        """Copy a guest program (bytes or a :class:`lab.guests.Program`) into memory; returns its address."""
        code = getattr(program, "code", program)
        if at is None:
            at = getattr(program, "origin", None)
            if at is None:
                raise ValueError("say where to load the program: vm.load(code, at=0x1000)")
        self.write(at, bytes(code))
        return at

    # -- ioeventfd
    def ioeventfd(self, port: int, *, length: int = 1, datamatch: int | None = None) -> IoEventFd:
        """Complete guest ``out``s to ``port`` in the kernel, counting them in an eventfd."""
        if not self._system.check_extension(KVM_CAP_IOEVENTFD):
            raise KvmError("this KVM lacks KVM_CAP_IOEVENTFD")
        efd = IoEventFd(self, port, length, datamatch)
        self._eventfds.append(efd)
        return efd

    # -- vCPUs
    def create_vcpu(self, mode: str = "protected32", entry: int = 0x1000, stack: int | None = None):
        """A vCPU whose registers are set for ``mode`` (``"real"`` or ``"protected32"``), starting at ``entry``."""
        from lab.kvm.vcpu import Vcpu

        index = len(self._vcpus)
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
