"""A small virtual machine monitor on the Linux KVM API, in pure Python.

Layered like rust-vmm's kvm-ioctls, one object per file descriptor:

* :class:`~lab.kvm.system.System` - ``/dev/kvm``: API version, capabilities,
  the vCPU mmap size; creates VMs (:func:`open`).
* :class:`~lab.kvm.vm.Vm` - guest memory slots, ioeventfds; creates vCPUs.
* :class:`~lab.kvm.vcpu.Vcpu` - registers, ``KVM_RUN``, exits, the watchdog.

Everything is a context manager; closing an owner closes what it created::

    from lab import kvm, guests
    with kvm.open() as system, system.create_vm(memory_kib=64) as vm:
        vm.load(guests.HELLO)                       # real-mode code at HELLO.origin
        vcpu = vm.create_vcpu(mode="real", entry=guests.HELLO.origin)
        exit = vcpu.run(timeout_s=5)                # -> Exit(reason="io", port=0x3f8, data=b"H", ...)
"""

from lab.kvm.errors import (  # noqa: F401
    ClosedError,
    EntryFailed,
    GuestError,
    GuestShutdown,
    InternalError,
    KvmError,
    KvmUnavailable,
    MemoryLayoutError,
    RunTimeout,
    UnknownExit,
)
from lab.kvm.exits import Exit  # noqa: F401
from lab.kvm.system import DEVICE, System, open  # noqa: F401
from lab.kvm.vcpu import Vcpu  # noqa: F401
from lab.kvm.vm import IoEventFd, MemorySlot, Vm  # noqa: F401
