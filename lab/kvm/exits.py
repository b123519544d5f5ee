"""Why ``KVM_RUN`` returned: a few exit types and a pure decoder.

Like kvm-ioctls' ``VcpuExit``, each kind of exit is its own small type:
:class:`IoOut`, :class:`IoIn`, :class:`MmioWrite`, :class:`MmioRead`,
:class:`Hlt`, :class:`Shutdown`, :class:`FailEntry`, :class:`Internal`,
:class:`Intr` and :class:`Unknown`. :func:`decode` turns the bytes of a
``kvm_run`` page into one of them; it reads nothing else, so it is tested on
hand-made bytes without ``/dev/kvm``.

What to do with an exit is decided above the decoder: the run loop of
:class:`~lab.kvm.vcpu.Vcpu` resumes the exits a device on a
:class:`~lab.kvm.bus.Bus` answers, returns the normal ones to the caller in
an :class:`Exit` record, and raises the abnormal ones as the typed errors of
:func:`error_for` (nothing unknown is silently ignored).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from lab.kvm import errors
from lab.kvm.constants import (
    EXIT_NAMES,
    KVM_EXIT_FAIL_ENTRY,
    KVM_EXIT_HLT,
    KVM_EXIT_INTERNAL_ERROR,
    KVM_EXIT_INTR,
    KVM_EXIT_IO,
    KVM_EXIT_IO_OUT,
    KVM_EXIT_MMIO,
    KVM_EXIT_SHUTDOWN,
)
from lab.kvm.structs import RUN_UNION_OFFSET, kvm_run

# Where decode() reads: offsets come from the ctypes mirrors, which the ABI test checks against <linux/kvm.h>.
_REASON = struct.Struct("<I")
_REASON_AT = kvm_run.exit_reason.offset
_IO = struct.Struct("<BBHIQ")          # direction, size, port, count, data_offset
_MMIO = struct.Struct("<Q8sIB")        # phys_addr, data[8], len, is_write
_FAIL_ENTRY = struct.Struct("<QI")     # hardware_entry_failure_reason, cpu
_INTERNAL = struct.Struct("<II")       # suberror, ndata; then data[16] as u64
_U64 = struct.Struct("<Q")
_AT = RUN_UNION_OFFSET
_MMIO_DATA_AT = RUN_UNION_OFFSET + 8   # kvm_run.mmio.data follows phys_addr


@dataclass(frozen=True, slots=True)
class IoOut:
    """The guest wrote ``data`` (``count`` accesses of ``size`` bytes) to ``port``."""

    reason: ClassVar[str] = "io"
    port: int
    size: int
    count: int
    data: bytes


@dataclass(frozen=True, slots=True)
class IoIn:
    """The guest reads ``count`` accesses of ``size`` bytes from ``port``.

    ``data`` is a writable view of ``size * count`` bytes: what is written
    there is what the guest reads when ``KVM_RUN`` is called again (like
    kvm-ioctls' borrowed slice of the page at ``data_offset``; ``run_once``
    copies it into the page before the next ``KVM_RUN``).
    """

    reason: ClassVar[str] = "io"
    port: int
    size: int
    count: int
    data_offset: int
    data: memoryview = field(default=memoryview(b""), compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class MmioWrite:
    """The guest stored ``data`` at ``address``, where no memory slot is."""

    reason: ClassVar[str] = "mmio"
    address: int
    data: bytes


@dataclass(frozen=True, slots=True)
class MmioRead:
    """The guest loads ``size`` bytes from ``address``, where no memory slot is.

    ``data`` is a writable view of ``size`` bytes, the answer the guest gets
    on the next ``KVM_RUN`` (in ``kvm_run.mmio.data``).
    """

    reason: ClassVar[str] = "mmio"
    address: int
    size: int
    data: memoryview = field(default=memoryview(b""), compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Hlt:
    """The guest executed ``hlt``."""

    reason: ClassVar[str] = "hlt"


@dataclass(frozen=True, slots=True)
class Shutdown:
    """KVM_EXIT_SHUTDOWN: a triple fault."""

    reason: ClassVar[str] = "shutdown"


@dataclass(frozen=True, slots=True)
class FailEntry:
    """KVM_EXIT_FAIL_ENTRY: the CPU refused to enter the guest."""

    reason: ClassVar[str] = "fail_entry"
    hardware_reason: int
    cpu: int


@dataclass(frozen=True, slots=True)
class Internal:
    """KVM_EXIT_INTERNAL_ERROR, with KVM's suberror and up to 16 words of data."""

    reason: ClassVar[str] = "internal_error"
    suberror: int
    data: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Intr:
    """KVM_EXIT_INTR: a signal (a watchdog or interrupt kick) made ``KVM_RUN`` return."""

    reason: ClassVar[str] = "intr"


@dataclass(frozen=True, slots=True)
class Unknown:
    """Any exit reason the mini VMM does not model; ``number`` is ``kvm_run.exit_reason``."""

    reason: ClassVar[str] = "unknown"
    number: int

    @property
    def name(self) -> str:
        return EXIT_NAMES.get(self.number, "unknown to this VMM")


VcpuExit = IoOut | IoIn | MmioWrite | MmioRead | Hlt | Shutdown | FailEntry | Internal | Intr | Unknown


def decode(page: bytes | bytearray | memoryview) -> VcpuExit:
    """The exit described by the bytes of a ``kvm_run`` page (pure: reads only ``page``).

    ``page`` must hold the whole mapping when the exit is port I/O (the data
    of an ``out`` lies after the structure, at ``data_offset``). The ``data``
    of an :class:`IoIn` or :class:`MmioRead` is a writable view of a copy of
    the answer's bytes, never of ``page`` itself (a view of the ``kvm_run``
    mapping kept alive by a caller, or a traceback, would keep the vCPU from
    being unmapped); ``Vcpu.run_once`` writes it into the page before the
    next ``KVM_RUN``.
    """
    reason = _REASON.unpack_from(page, _REASON_AT)[0]
    if reason == KVM_EXIT_IO:
        direction, size, port, count, offset = _IO.unpack_from(page, _AT)
        n = size * count
        if offset + n > len(page):
            raise errors.KvmError(f"kvm_run: io data [{offset:#x}, {offset + n:#x}) lies outside the page")
        if direction == KVM_EXIT_IO_OUT:
            return IoOut(port, size, count, bytes(page[offset:offset + n]))
        return IoIn(port, size, count, offset, memoryview(bytearray(page[offset:offset + n])))
    if reason == KVM_EXIT_MMIO:
        address, data, length, is_write = _MMIO.unpack_from(page, _AT)
        length = min(length, 8)
        if is_write:
            return MmioWrite(address, data[:length])
        return MmioRead(address, length, memoryview(bytearray(page[_MMIO_DATA_AT:_MMIO_DATA_AT + length])))
    if reason == KVM_EXIT_HLT:
        return Hlt()
    if reason == KVM_EXIT_SHUTDOWN:
        return Shutdown()
    if reason == KVM_EXIT_FAIL_ENTRY:
        return FailEntry(*_FAIL_ENTRY.unpack_from(page, _AT))
    if reason == KVM_EXIT_INTERNAL_ERROR:
        suberror, ndata = _INTERNAL.unpack_from(page, _AT)
        at = _AT + _INTERNAL.size
        return Internal(suberror, tuple(_U64.unpack_from(page, at + 8 * i)[0] for i in range(min(ndata, 16))))
    if reason == KVM_EXIT_INTR:
        return Intr()
    return Unknown(reason)


@dataclass(frozen=True)
class Exit:
    """How one :meth:`~lab.kvm.vcpu.Vcpu.run` ended: the exit, where, and what happened on the way.

    ``exit`` is the typed exit; ``rip`` the guest's instruction pointer then;
    ``resumed`` counts the exits the run loop handled without returning;
    ``wall_ns`` is the host time of the whole call.
    """

    exit: VcpuExit
    rip: int
    resumed: int = 0
    wall_ns: int = 0

    @property
    def reason(self) -> str:
        """``"hlt"``, ``"io"``, ``"mmio"``, ... (the same word for both directions)."""
        return self.exit.reason

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"reason": self.reason, "exit": type(self.exit).__name__, "rip": self.rip}
        d.update((f.name, getattr(self.exit, f.name)) for f in fields(self.exit) if f.compare)  # not the views
        d.update(resumed=self.resumed, wall_ns=self.wall_ns)
        return d

    def rows(self) -> list[tuple[str, str]]:
        out = []
        for key, value in self.as_dict().items():
            if key in ("rip", "port", "address", "data_offset", "hardware_reason"):
                value = f"{value:#x}"
            elif isinstance(value, bytes):
                value = value.hex(" ") or "(none)"
            out.append((key, str(value)))
        return out

    def _repr_html_(self) -> str:  # shown as a small table in notebooks
        cells = "".join(f"<tr><th style='text-align:left'>{k}</th><td><code>{v}</code></td></tr>"
                        for k, v in self.rows())
        return f"<table><caption>Exit</caption>{cells}</table>"


def error_for(outcome: Exit) -> errors.GuestError | None:
    """The typed error for an exit that is not a normal outcome of a run, or None when it is one."""
    e, rip = outcome.exit, outcome.rip
    if isinstance(e, Shutdown):
        return errors.GuestShutdown(rip, outcome)
    if isinstance(e, FailEntry):
        return errors.EntryFailed(e.hardware_reason, rip, outcome)
    if isinstance(e, Internal):
        return errors.InternalError(e.suberror, e.data, rip, outcome)
    if isinstance(e, Unknown):
        return errors.UnknownExit(e.number, e.name, rip, outcome)
    if isinstance(e, Intr):
        return errors.UnknownExit(None, "intr", rip, outcome)
    return None
