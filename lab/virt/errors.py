"""Errors of :mod:`lab.virt`: libvirt's failures as clear messages.

libvirt reports a failure as ``libvirt.libvirtError`` carrying a numeric code
(``VIR_ERR_*``) and a message written for libvirt developers. The book turns
each into one of the small set of exceptions below, whose message says what
failed, on which URI, and what to do. The original error stays available as
``__cause__`` and in :attr:`VirtError.libvirt_code`.

:func:`classify` is a pure function of (code, message, operation) so that
every branch is testable without provoking each failure for real.
"""

from __future__ import annotations

from typing import Any

from lab import host

# libvirt's numeric error codes (virErrorNumber in libvirt's public header
# virterror.h). Copied here by name so that this module imports without
# libvirt-python; tests/test_virt.py checks them against the installed module.
VIR_ERR_NO_SUPPORT = 3
VIR_ERR_OPERATION_FAILED = 9
VIR_ERR_XML_ERROR = 27
VIR_ERR_DOM_EXIST = 28
VIR_ERR_SYSTEM_ERROR = 38
VIR_ERR_NO_DOMAIN = 42
VIR_ERR_NO_STORAGE_POOL = 49
VIR_ERR_NO_STORAGE_VOL = 50
VIR_ERR_OPERATION_INVALID = 55
VIR_ERR_CONFIG_UNSUPPORTED = 67
VIR_ERR_NO_DOMAIN_SNAPSHOT = 72
VIR_ERR_OPERATION_UNSUPPORTED = 84
VIR_ERR_STORAGE_VOL_EXIST = 90
# The codes of a failed connection and what to do about it are the probe's (lab.host): one classification.
VIR_ERR_NO_CONNECT = host.VIR_ERR_NO_CONNECT
VIR_ERR_AUTH_FAILED = host.VIR_ERR_AUTH_FAILED
VIR_ERR_ACCESS_DENIED = host.VIR_ERR_ACCESS_DENIED
VIR_ERR_AUTH_UNAVAILABLE = host.VIR_ERR_AUTH_UNAVAILABLE
DAEMON_HINT = host.LIBVIRT_DAEMON_HINT
PERMISSION_HINT = host.LIBVIRT_PERMISSION_HINT
POLKIT_HINT = host.LIBVIRT_POLKIT_HINT


class VirtError(RuntimeError):
    """A libvirt operation failed; the message says what to do."""

    def __init__(self, message: str, *, uri: str | None = None, operation: str | None = None,
                 libvirt_code: int | None = None, libvirt_message: str | None = None) -> None:
        super().__init__(message)
        self.uri = uri
        self.operation = operation
        self.libvirt_code = libvirt_code
        self.libvirt_message = libvirt_message


class LibvirtMissing(VirtError):
    """libvirt-python cannot be imported."""


class DaemonNotRunning(VirtError):
    """No libvirt daemon answers for the URI."""


class PermissionDenied(VirtError):
    """The daemon answered but refuses this user."""


class DomainExists(VirtError):
    """A domain of that name (or UUID) is already defined."""


class NoSuchDomain(VirtError):
    """No domain of that name."""


class InvalidState(VirtError):
    """The domain is not in a state that allows the operation (e.g. suspend a stopped one)."""


class NoSuchSnapshot(VirtError):
    """No snapshot of that name for the domain."""


class StorageError(VirtError):
    """A storage pool or volume is missing, exists already, or cannot be used."""


class Unsupported(VirtError):
    """The driver behind this URI does not implement the operation."""


class Rejected(VirtError):
    """libvirt refused the domain description (the spec passed our checks but not the driver's)."""


class CleanupError(VirtError):
    """Cleanup could not remove everything; the message lists what is left and how to remove it."""


class SpecError(ValueError):
    """A domain, disk or volume spec is invalid; raised before anything is sent to libvirt."""


def classify(code: int | None, message: str, operation: str) -> tuple[type[VirtError], str]:
    """The exception class for a libvirt failure and a hint saying what to do.

    ``operation`` is the book's name of what was attempted ("connect",
    "define", "start", "suspend", "volume-create", ...).
    """
    text = message or ""
    lower = text.lower()
    if operation == "connect" or code == VIR_ERR_NO_CONNECT:
        kind, hint = host.libvirt_connect_failure(code, text)
        return {"permission": PermissionDenied, "daemon": DaemonNotRunning}.get(kind, VirtError), hint
    if code == VIR_ERR_ACCESS_DENIED or "permission denied" in lower:
        return PermissionDenied, PERMISSION_HINT
    if code == VIR_ERR_NO_DOMAIN:
        return NoSuchDomain, "list the defined domains with 'virsh list --all' (or Connection.domains())"
    if code == VIR_ERR_NO_DOMAIN_SNAPSHOT:
        return NoSuchSnapshot, "list the snapshots with 'virsh snapshot-list <domain>' (or Domain.snapshots())"
    if code in (VIR_ERR_NO_STORAGE_POOL, VIR_ERR_NO_STORAGE_VOL, VIR_ERR_STORAGE_VOL_EXIST) \
            or operation.startswith(("volume", "pool")):
        if code == VIR_ERR_STORAGE_VOL_EXIST or "already exists" in lower:
            return StorageError, "choose another volume name or delete the old one (virsh vol-delete)"
        return StorageError, "list pools and volumes with 'virsh pool-list --all' and 'virsh vol-list <pool>'"
    if code == VIR_ERR_DOM_EXIST or (code == VIR_ERR_OPERATION_FAILED and "already exists" in lower):
        return DomainExists, "choose another name or undefine the old domain first (virsh undefine <name>)"
    if code == VIR_ERR_OPERATION_INVALID or "not running" in lower or "is already running" in lower \
            or "not paused" in lower or "already active" in lower:
        return InvalidState, "check the domain's state first (virsh domstate <name>): e.g. start it before suspending"
    if code in (VIR_ERR_NO_SUPPORT, VIR_ERR_OPERATION_UNSUPPORTED):
        return Unsupported, "this libvirt driver does not offer the operation; try another URI"
    if code in (VIR_ERR_XML_ERROR, VIR_ERR_CONFIG_UNSUPPORTED):
        return Rejected, "the driver rejected the domain XML; check it with 'virt-xml-validate <file> domain'"
    if "kvm" in lower and ("not available" in lower or "not supported" in lower or "/dev/kvm" in lower):
        return Rejected, "KVM is not usable here (python -m lab probe says why); use type='qemu' or test:///default"
    return VirtError, "see the libvirt message above; 'virsh' with the same URI gives the same answer"


def translate(exc: BaseException, *, operation: str, uri: str | None, subject: str | None = None) -> VirtError:
    """A :class:`VirtError` subclass for ``exc`` (a ``libvirt.libvirtError``), ready to raise ``from exc``."""
    code: int | None
    get_code: Any = getattr(exc, "get_error_code", None)
    try:
        code = get_code() if callable(get_code) else None
    except Exception:  # libvirtError without a recorded virError
        code = None
    get_msg: Any = getattr(exc, "get_error_message", None)
    try:
        message = (get_msg() if callable(get_msg) else None) or str(exc)
    except Exception:
        message = str(exc)
    cls, hint = classify(code, message, operation)
    what = f"{operation} {subject!r}" if subject else operation
    where = f" on {uri}" if uri else ""
    return cls(f"{what} failed{where}: {message.strip()} -> {hint}",
               uri=uri, operation=operation, libvirt_code=code, libvirt_message=message)


# --------------------------------------------------------------------------- the libvirt module

_libvirt_module: Any = None


def libvirt_module() -> Any:
    """The ``libvirt`` module with its stderr error printer silenced, or :class:`LibvirtMissing`."""
    global _libvirt_module
    if _libvirt_module is not None:
        return _libvirt_module
    try:
        libvirt = host.import_libvirt()
    except ImportError as exc:
        raise LibvirtMissing(f"libvirt-python is not installed ({exc}): {host.LIBVIRT_INSTALL_HINT}") from exc
    _libvirt_module = libvirt
    return libvirt


def _reset_module_cache() -> None:
    """Forget the imported module (tests simulate a missing libvirt-python)."""
    global _libvirt_module
    _libvirt_module = None


