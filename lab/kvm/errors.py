"""Typed errors of the mini VMM. Every message says what happened and what to do.

One hierarchy: everything the package raises is a :class:`KvmError`. A
failing system call (an ``ioctl``, an ``mmap``) is a :class:`SyscallError`,
which is also an :class:`OSError` carrying ``errno`` and the name of the call,
so ``except OSError`` and ``except KvmError`` both catch it. Arguments are
validated before any ioctl is issued; invalid ones are :class:`ValueError`
subclasses as well (:class:`MemoryLayoutError`, :class:`InvalidSetup`).
"""

from __future__ import annotations

import errno as _errno
import os
import stat
from typing import Any


class KvmError(RuntimeError):
    """Base class of every error the mini VMM raises."""


class SyscallError(OSError, KvmError):
    """A system call of the VMM failed; ``call`` names it, ``errno`` says why."""

    def __init__(self, call: str, err: int, detail: str = "") -> None:
        message = f"{call} failed: {os.strerror(err)} (errno {err})"
        super().__init__(err, f"{message}: {detail}" if detail else message)
        self.call = call

    def __str__(self) -> str:
        return str(self.strerror)


class IoctlError(SyscallError):
    """An ``ioctl`` on a KVM file descriptor failed; ``ioctl`` is its name (e.g. ``"KVM_RUN"``)."""

    @property
    def ioctl(self) -> str:
        return self.call


class KvmUnavailable(KvmError):
    """``/dev/kvm`` is missing, not openable, or speaks another API version."""


class ClosedError(KvmError):
    """A system, VM, vCPU or guest memory object was used after it (or its owner) was closed."""


class InvalidSetup(KvmError, ValueError):
    """An argument the VMM refused before issuing any ioctl (an unknown mode, an entry out of range)."""


class MemoryLayoutError(KvmError, ValueError):
    """A guest memory slot is misaligned, empty, overlaps another, or an access falls outside memory."""


class GuestMemoryError(MemoryLayoutError):
    """A guest-physical range that is not (entirely) inside guest memory."""


class MemoryInUse(KvmError):
    """Guest memory could not be unmapped because views of it are still alive (it stays mapped until they go)."""


class GuestError(KvmError):
    """The guest stopped in a way that is not a normal outcome; ``exit`` holds the details."""

    def __init__(self, message: str, exit: Any = None):
        super().__init__(message)
        self.exit = exit


class GuestShutdown(GuestError):
    """KVM_EXIT_SHUTDOWN: the guest triple-faulted (an exception while delivering a double fault)."""


class EntryFailed(GuestError):
    """KVM_EXIT_FAIL_ENTRY: the hardware refused to enter the guest (bad register state)."""


class InternalError(GuestError):
    """KVM_EXIT_INTERNAL_ERROR: KVM could not handle something, e.g. could not emulate an instruction."""


class UnknownExit(GuestError):
    """An exit reason the mini VMM does not handle; never ignored."""


class RunTimeout(GuestError):
    """The watchdog stopped a ``KVM_RUN`` that did not return before its deadline."""


class RunInterrupted(GuestError):
    """``Vcpu.kick`` stopped a run on a thread other than the main one (the main thread gets KeyboardInterrupt)."""


def open_reason(device: str, exc: OSError) -> str:
    """Why ``open(device)`` failed with ``exc``, and what to do about it (one sentence for a reader)."""
    if exc.errno == _errno.ENOENT:
        return (f"{device} does not exist: this machine (Binder, a container without "
                f"--device {device}, a VM without nested virtualization) offers no KVM. "
                f"The chapters show recorded data instead; run them on a KVM host to measure.")
    if exc.errno in (_errno.EACCES, _errno.EPERM):
        try:
            st = os.stat(device)
            owner = f"{stat.filemode(st.st_mode)}, owner uid {st.st_uid}, group gid {st.st_gid}"
        except OSError:
            owner = "mode unknown"
        return (
            f"permission denied opening {device} ({owner}) as uid {os.getuid()}: "
            f"add this user to the device's group (usually 'kvm': "
            f"sudo usermod -aG kvm $USER, then log in again) or run as root"
        )
    if exc.errno in (_errno.ENXIO, _errno.ENODEV):
        return (
            f"{device} exists but no KVM driver answers ({exc.strerror}): "
            f"load kvm_intel or kvm_amd (modprobe) or enable virtualization in the firmware"
        )
    return f"cannot open {device}: {exc.strerror} (errno {exc.errno})"
