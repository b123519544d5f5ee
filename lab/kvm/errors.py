"""Typed errors of the mini VMM. Every message says what happened and what to do.

One hierarchy: everything the package raises is a :class:`KvmError`, and
every error is a stable code with parameters (:class:`Coded`, :data:`CODES`):
the English message is made from them for a developer, and a recording or
the book keeps the code and the values, never the sentence. A
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
from typing import Any, ClassVar

#: Every error code, to the class that raises it (filled as the classes are defined).
CODES: dict[str, type[Coded]] = {}


class Coded:
    """An error that is a stable ``code`` and its ``params``; the English message is made from them.

    The code names the rule broken (``"guest.shutdown"``,
    ``"virtqueue.chain_loop"``); the parameters are plain JSON values. A
    recording stores the two (:meth:`record`) and the book says them in
    Japanese from a table keyed by code, never by reading the English.
    """

    code: ClassVar[str] = ""
    params: dict[str, Any]

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        code = cls.__dict__.get("code")
        if code:
            if code in CODES and CODES[code] is not cls:
                raise TypeError(f"error code {code!r} is used twice ({CODES[code].__name__}, {cls.__name__})")
            CODES[code] = cls

    def record(self) -> dict[str, Any]:
        """``{"code": ..., "params": {...}}``: what a recording keeps of this error."""
        return {"code": self.code, "params": dict(self.params)}


class KvmError(Coded, RuntimeError):
    """Base class of every error the mini VMM raises; ``code`` says which, ``params`` the values."""

    code = "kvm.error"

    def __init__(self, message: str, **params: Any) -> None:
        super().__init__(message)
        self.params = params or {"detail": message}


class SyscallError(OSError, KvmError):
    """A system call of the VMM failed; ``call`` names it, ``errno`` says why."""

    code = "kvm.syscall"

    def __init__(self, call: str, err: int, detail: str = "") -> None:
        message = f"{call} failed: {os.strerror(err)} (errno {err})"
        OSError.__init__(self, err, f"{message}: {detail}" if detail else message)
        self.call = call
        self.params = {"call": call, "errno": err, "error": _errno.errorcode.get(err, str(err))}

    def __str__(self) -> str:
        return str(self.strerror)


class IoctlError(SyscallError):
    """An ``ioctl`` on a KVM file descriptor failed; ``ioctl`` is its name (e.g. ``"KVM_RUN"``)."""

    code = "kvm.ioctl"

    @property
    def ioctl(self) -> str:
        return self.call


class KvmUnavailable(KvmError):
    """``/dev/kvm`` is missing, not openable, or speaks another API version (one subclass per cause)."""

    code = "kvm.unavailable"


class DeviceMissing(KvmUnavailable):
    code = "kvm.device_missing"

    def __init__(self, device: str) -> None:
        super().__init__(
            f"{device} does not exist: this machine (Binder, a container without --device {device}, a VM without "
            f"nested virtualization) offers no KVM. The chapters show recorded data instead; run them on a KVM "
            f"host to measure.", device=device)


class DeviceDenied(KvmUnavailable):
    code = "kvm.permission"

    def __init__(self, device: str, mode: str | None, owner_uid: int | None, owner_gid: int | None) -> None:
        owner = (f"{mode}, owner uid {owner_uid}, group gid {owner_gid}" if mode is not None else "mode unknown")
        super().__init__(
            f"permission denied opening {device} ({owner}) as uid {os.getuid()}: add this user to the device's "
            f"group (usually 'kvm': sudo usermod -aG kvm $USER, then log in again) or run as root",
            device=device, mode=mode, owner_uid=owner_uid, owner_gid=owner_gid, uid=os.getuid())


class NoDriver(KvmUnavailable):
    code = "kvm.no_driver"

    def __init__(self, device: str, err: int) -> None:
        super().__init__(
            f"{device} exists but no KVM driver answers ({os.strerror(err)}): load kvm_intel or kvm_amd "
            f"(modprobe) or enable virtualization in the firmware", device=device, errno=err,
            error=_errno.errorcode.get(err, str(err)))


class CannotOpen(KvmUnavailable):
    code = "kvm.cannot_open"

    def __init__(self, device: str, err: int) -> None:
        super().__init__(f"cannot open {device}: {os.strerror(err)} (errno {err})", device=device, errno=err,
                         error=_errno.errorcode.get(err, str(err)))


class NotKvm(KvmUnavailable):
    code = "kvm.not_kvm"

    def __init__(self, device: str, err: int) -> None:
        super().__init__(f"{device} is not a KVM device: KVM_GET_API_VERSION failed: {os.strerror(err)} "
                         f"(errno {err})", device=device, errno=err, error=_errno.errorcode.get(err, str(err)))


class ApiVersion(KvmUnavailable):
    code = "kvm.api_version"

    def __init__(self, device: str, api: int, expected: int) -> None:
        super().__init__(f"{device} speaks KVM API {api}; this mini VMM speaks {expected}",
                         device=device, api=api, expected=expected)


class ClosedError(KvmError):
    """A system, VM, vCPU or guest memory object was used after it (or its owner) was closed."""

    code = "kvm.closed"


class InvalidSetup(KvmError, ValueError):
    """An argument the VMM refused before issuing any ioctl (an unknown mode, an entry out of range)."""

    code = "kvm.invalid_setup"


class MemoryLayoutError(KvmError, ValueError):
    """A guest memory slot is misaligned, empty, overlaps another, or an access falls outside memory."""

    code = "kvm.memory_layout"


class GuestMemoryError(MemoryLayoutError):
    """A guest-physical range that is not (entirely) inside guest memory."""

    code = "kvm.guest_memory"


class MemoryInUse(KvmError):
    """Guest memory could not be unmapped because views of it are still alive (it stays mapped until they go)."""

    code = "kvm.memory_in_use"


class GuestError(KvmError):
    """The guest stopped in a way that is not a normal outcome; ``exit`` holds the details."""

    code = "guest.error"

    def __init__(self, message: str, exit: Any = None, **params: Any):
        super().__init__(message, **params)
        self.exit = exit


class GuestShutdown(GuestError):
    """KVM_EXIT_SHUTDOWN: the guest triple-faulted (an exception while delivering a double fault)."""

    code = "guest.shutdown"

    def __init__(self, rip: int, exit: Any = None) -> None:
        super().__init__(
            f"the guest triple-faulted at rip={rip:#x}: an exception could not be delivered, not even as a "
            f"double fault (this guest has no IDT). KVM reports KVM_EXIT_SHUTDOWN; check the guest code.",
            exit, rip=rip)


class EntryFailed(GuestError):
    """KVM_EXIT_FAIL_ENTRY: the hardware refused to enter the guest (bad register state)."""

    code = "guest.entry_failed"

    def __init__(self, hardware_reason: int, rip: int, exit: Any = None) -> None:
        super().__init__(
            f"the CPU refused to enter the guest (KVM_EXIT_FAIL_ENTRY, hardware reason {hardware_reason:#x}): "
            f"the segment or control register state is invalid for the chosen mode", exit,
            hardware_reason=hardware_reason, rip=rip)


#: KVM_INTERNAL_ERROR_* suberrors, in English (the book has its own words for them).
SUBERRORS = {
    1: "emulation failure (KVM could not emulate the instruction)",
    2: "simultaneous exceptions",
    3: "an exit while delivering an event",
    4: "unexpected hardware exit reason",
}


class InternalError(GuestError):
    """KVM_EXIT_INTERNAL_ERROR: KVM could not handle something, e.g. could not emulate an instruction."""

    code = "guest.internal_error"

    def __init__(self, suberror: int, data: tuple[int, ...], rip: int, exit: Any = None) -> None:
        words = " ".join(f"{d:#x}" for d in data)
        hint = (" The guest probably executed from an address with no memory behind it "
                "(a jump outside guest RAM), or an instruction KVM cannot emulate." if suberror == 1 else "")
        super().__init__(
            f"KVM internal error at rip={rip:#x}, suberror {suberror}: {SUBERRORS.get(suberror, 'unknown')}"
            f"{' data ' + words if words else ''}.{hint}", exit, suberror=suberror, data=list(data), rip=rip)


class UnknownExit(GuestError):
    """An exit reason the mini VMM does not handle; never ignored."""

    code = "guest.unknown_exit"

    def __init__(self, number: int | None, name: str, rip: int, exit: Any = None) -> None:
        what = f"{number} ({name})" if number is not None else f"{name} (a signal nobody handled)"
        super().__init__(f"unhandled exit reason {what} at rip={rip:#x}; "
                         f"the mini VMM does not ignore exits it does not understand", exit,
                         number=number, name=name, rip=rip)


class RunTimeout(GuestError):
    """The watchdog stopped a ``KVM_RUN`` that did not return before its deadline."""

    code = "run.timeout"

    def __init__(self, timeout_s: float, rip: int, handled: int, exit: Any = None) -> None:
        super().__init__(
            f"the guest did not exit within {timeout_s:g} s (rip={rip:#x}, {handled} exits handled on the way); "
            f"the watchdog stopped KVM_RUN. Does the guest end with hlt?", exit,
            timeout_s=timeout_s, rip=rip, handled=handled)


class RunInterrupted(GuestError):
    """``Vcpu.kick`` stopped a run on a thread other than the main one (the main thread gets KeyboardInterrupt)."""

    code = "run.kicked"

    def __init__(self, vcpu: int, handled: int, exit: Any = None) -> None:
        super().__init__(f"vCPU {vcpu} was kicked out of KVM_RUN by another thread "
                         f"({handled} exits handled on the way)", exit, vcpu=vcpu, handled=handled)


def unavailable(device: str, exc: OSError) -> KvmUnavailable:
    """The typed reason why ``open(device)`` failed with ``exc``, saying what to do about it."""
    err = exc.errno or 0
    if err == _errno.ENOENT:
        return DeviceMissing(device)
    if err in (_errno.EACCES, _errno.EPERM):
        try:
            st = os.stat(device)
            return DeviceDenied(device, stat.filemode(st.st_mode), st.st_uid, st.st_gid)
        except OSError:
            return DeviceDenied(device, None, None, None)
    if err in (_errno.ENXIO, _errno.ENODEV):
        return NoDriver(device, err)
    return CannotOpen(device, err)


def open_reason(device: str, exc: OSError) -> str:
    """Why ``open(device)`` failed with ``exc``, and what to do about it (one sentence, English)."""
    return str(unavailable(device, exc))
