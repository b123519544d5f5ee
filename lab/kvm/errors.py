"""Typed errors of the mini VMM. Every message says what happened and what to do."""

from __future__ import annotations

from typing import Any


class KvmError(RuntimeError):
    """Base class of every error the mini VMM raises."""


class KvmUnavailable(KvmError):
    """``/dev/kvm`` is missing, not openable, or speaks another API version."""


class ClosedError(KvmError):
    """A system, VM or vCPU object was used after it (or its owner) was closed."""


class MemoryLayoutError(KvmError, ValueError):
    """A guest memory slot is misaligned, empty, overlaps another, or an access falls outside memory."""


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

