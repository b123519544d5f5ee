"""The system level of the mini VMM: the ``/dev/kvm`` file descriptor.

``/dev/kvm`` answers global questions (API version, capabilities, the size of
the per-vCPU shared area) and creates VMs. Everything created from a
:class:`System` is closed with it.
"""

from __future__ import annotations

import ctypes
import errno
import os

from lab.kvm import _libc
from lab.kvm.errors import ApiVersion, ClosedError, IoctlError, NotKvm, unavailable
from lab.kvm.ioctl_numbers import (
    KVM_API_VERSION,
    KVM_CHECK_EXTENSION,
    KVM_CREATE_VM,
    KVM_GET_API_VERSION,
    KVM_GET_SUPPORTED_CPUID,
    KVM_GET_VCPU_MMAP_SIZE,
)
from lab.kvm.kick import sigint_deferred
from lab.kvm.structs import cpuid2_with
from lab.kvm.vm import Vm

DEVICE = "/dev/kvm"


class System:
    """An open ``/dev/kvm``. Use :func:`open` and a ``with`` block."""

    def __init__(self, fd: int, device: str):
        self._fd: int | None = fd
        self.device = device
        self._vms: list[Vm] = []

    # -- lifetime
    @property
    def closed(self) -> bool:
        return self._fd is None

    @property
    def fd(self) -> int:
        if self._fd is None:
            raise ClosedError(f"{self.device} was closed: open it again with lab.kvm.open()")
        return self._fd

    def close(self) -> None:
        """Close every VM created here, then ``/dev/kvm`` itself. Idempotent."""
        with sigint_deferred():  # a Ctrl-C while closing would leave the rest open: it waits until the end
            self._close()

    def _close(self) -> None:
        for vm in reversed(self._vms):
            vm.close()
        self._vms.clear()
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> System:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # last resort; the with block is the rule
        # A closed System (the rule) has nothing to do. One left open is closed without holding a Ctrl-C
        # back: a KeyboardInterrupt raised inside __del__ is reported and dropped by Python, and the
        # reader's Ctrl-C would be lost (the likely cause of one that never arrived, of about 1,800 under Bochs).
        if self._fd is None and not self._vms:
            return
        try:
            self._close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"<kvm.System {self.device} {'closed' if self.closed else f'fd={self._fd}'}>"

    # -- queries
    def api_version(self) -> int:
        return _libc.ioctl(self.fd, KVM_GET_API_VERSION, what="KVM_GET_API_VERSION")

    def check_extension(self, cap: int) -> int:
        """``KVM_CHECK_EXTENSION``: 0 when the capability is absent, else its value (often 1)."""
        return _libc.ioctl(self.fd, KVM_CHECK_EXTENSION, cap, what="KVM_CHECK_EXTENSION")

    def vcpu_mmap_size(self) -> int:
        """Bytes to map from each vCPU fd: the ``kvm_run`` structure and what follows it."""
        return _libc.ioctl(self.fd, KVM_GET_VCPU_MMAP_SIZE, what="KVM_GET_VCPU_MMAP_SIZE")

    def supported_cpuid(self) -> ctypes.Structure:
        """The CPUID leaves KVM can offer a guest (``KVM_GET_SUPPORTED_CPUID``), as a ctypes structure."""
        n = 64
        while True:
            arg = cpuid2_with(n)(nent=n)
            try:
                _libc.ioctl(self.fd, KVM_GET_SUPPORTED_CPUID, arg, what="KVM_GET_SUPPORTED_CPUID")
                return arg
            except IoctlError as exc:
                if exc.errno != errno.E2BIG or n >= 4096:  # the array is too small: try a larger one
                    raise
                n *= 2

    # -- children
    def create_vm(self, memory_kib: int | None = None) -> Vm:
        """A new, empty VM; with ``memory_kib``, one memory slot of that size at guest address 0."""
        with sigint_deferred():  # the fd is this System's before a Ctrl-C can strike
            vm_fd = _libc.ioctl(self.fd, KVM_CREATE_VM, 0, what="KVM_CREATE_VM")
            vm = Vm(self, vm_fd)
            self._vms.append(vm)
        try:
            if memory_kib is not None:
                vm.add_memory(0, memory_kib * 1024)
        except BaseException:
            vm.close()
            raise
        return vm

    def _forget(self, vm: Vm) -> None:
        if vm in self._vms:
            self._vms.remove(vm)


def open(device: str = DEVICE) -> System:  # noqa: A001 - mirrors os.open / the device verb
    """Open ``device`` (``/dev/kvm``) and check its API version.

    Raises :class:`KvmUnavailable` with the reason and what to do when the
    device is missing, not accessible, or speaks another API version.
    """
    system: System | None = None
    try:
        with sigint_deferred():  # the fd is a System's before a Ctrl-C can strike; the except closes it
            try:
                fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
            except OSError as exc:
                raise unavailable(device, exc) from None
            system = System(fd, device)
        try:
            api = system.api_version()
        except IoctlError as exc:
            raise NotKvm(device, exc.errno or 0) from None
        if api != KVM_API_VERSION:
            raise ApiVersion(device, api, KVM_API_VERSION)
    except BaseException:
        if system is not None:
            system.close()
        raise
    return system
