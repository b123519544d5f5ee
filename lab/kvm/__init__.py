"""A small virtual machine monitor on the Linux KVM API, in pure Python.

Layered like rust-vmm's kvm-ioctls, one object per file descriptor:

* :class:`~lab.kvm.system.System` - ``/dev/kvm``: API version, capabilities,
  the vCPU mmap size; creates VMs (:func:`open`).
* :class:`~lab.kvm.vm.Vm` - guest memory slots (:class:`GuestMemory`),
  ioeventfds; creates vCPUs.
* :class:`~lab.kvm.vcpu.Vcpu` - registers, one ``KVM_RUN`` (``run_once``), the
  guarded loop (``run_until``), the watchdog.

Beside them: :mod:`lab.kvm.exits` (the exit types and their pure decoder),
:mod:`lab.kvm.bus` (devices that answer I/O and MMIO exits, and the pure
:func:`handle` that gives each exit to its device or stops),
:mod:`lab.kvm.memory` (bounds-checked guest memory), :mod:`lab.kvm.x86`
(CPU modes, page tables), :mod:`lab.kvm.kick` (watchdog and Ctrl-C),
:mod:`lab.kvm.errors` (one error hierarchy under :class:`KvmError`).

Everything is a context manager; closing an owner closes what it created::

    from lab import kvm, guests
    with kvm.open() as system, system.create_vm(memory_kib=64) as vm:
        vm.load(guests.HELLO)                       # real-mode code at HELLO.origin
        vcpu = vm.create_vcpu(mode="real", entry=guests.HELLO.origin)
        vcpu.run_once()                             # one KVM_RUN -> IoOut(port=0x3f8, size=1, count=1, data=b"H")
        bus = kvm.Bus()
        bus.insert(0x3F8, 1, kvm.DropWrites())      # a device on the serial port that drops what it gets
        result = vcpu.run_until(timeout_s=5, pio=bus)  # handle() each exit until one is for the caller: hlt
"""

from lab.kvm import exits
from lab.kvm.bus import HANDLED, Bus, BusDevice, DropWrites, Handled, Stop, handle
from lab.kvm.errors import (
    ClosedError,
    EntryFailed,
    GuestError,
    GuestMemoryError,
    GuestShutdown,
    InternalError,
    InvalidSetup,
    IoctlError,
    KvmError,
    KvmUnavailable,
    MemoryInUse,
    MemoryLayoutError,
    RunInterrupted,
    RunTimeout,
    SyscallError,
    UnknownExit,
    open_reason,
    unavailable,
)
from lab.kvm.exits import Exit
from lab.kvm.memory import GuestMemory
from lab.kvm.system import DEVICE, System, open
from lab.kvm.vcpu import Vcpu
from lab.kvm.vm import IoEventFd, MemorySlot, Vm

__all__ = [
    "DEVICE", "HANDLED", "Bus", "BusDevice", "DropWrites", "Handled", "Stop", "handle",
    "ClosedError", "EntryFailed", "Exit", "GuestError", "GuestMemory",
    "GuestMemoryError", "GuestShutdown", "InternalError", "InvalidSetup", "IoEventFd", "IoctlError", "KvmError",
    "KvmUnavailable", "MemoryInUse", "MemoryLayoutError", "MemorySlot", "RunInterrupted", "RunTimeout",
    "SyscallError", "System", "UnknownExit", "Vcpu", "Vm", "exits", "open", "open_reason", "unavailable",
]
