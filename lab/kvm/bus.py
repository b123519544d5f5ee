"""Devices on a bus: how the run loop answers port I/O and MMIO exits.

A device implements two methods, one per access kind, with no overloaded
return value (the shape of Firecracker's and rust-vmm's ``BusDevice``):

* ``read(offset, data)`` fills ``data`` (a writable buffer of the access
  size) with what the guest reads at ``offset`` from the device's base;
* ``write(offset, data)`` takes the bytes the guest wrote.

A :class:`Bus` maps address ranges (ports for the I/O bus, guest-physical
addresses for the MMIO bus) to devices. :func:`handle` is what a VMM does
with one exit, the way Firecracker's ``handle_kvm_exit`` is: an exit inside
a registered range goes to its device (:data:`HANDLED`: resume the guest),
anything else is a :class:`Stop` for the caller. It is pure (it touches only
the exit and the devices), so it is tested with hand-built exits, without
``/dev/kvm``. ``Vcpu.run_until(pio=bus, mmio=bus)`` loops ``run_once`` and
``handle`` until a :class:`Stop`.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Protocol

from lab.kvm.errors import InvalidSetup
from lab.kvm.exits import IoIn, IoOut, MmioRead, MmioWrite, VcpuExit


class BusDevice(Protocol):
    """What a device on a :class:`Bus` implements."""

    def read(self, offset: int, data: memoryview) -> None:
        """Fill ``data`` with the bytes the guest reads at ``offset`` (relative to the device's base)."""

    def write(self, offset: int, data: bytes) -> None:
        """Take the bytes the guest wrote at ``offset`` (relative to the device's base)."""


class DropWrites:
    """A device that ignores what the guest writes and reads all ones (an empty bus, as QEMU answers)."""

    def read(self, offset: int, data: memoryview) -> None:
        data[:] = b"\xff" * len(data)

    def write(self, offset: int, data: bytes) -> None:
        pass

    def __repr__(self) -> str:
        return "DropWrites()"


@dataclass(frozen=True)
class Range:
    """``[base, base + length)`` on a bus, served by ``device``."""

    base: int
    length: int
    device: BusDevice

    @property
    def end(self) -> int:
        return self.base + self.length


class Bus:
    """Non-overlapping address ranges, each with its device."""

    def __init__(self) -> None:
        self._bases: list[int] = []
        self._ranges: list[Range] = []

    def insert(self, base: int, length: int, device: BusDevice) -> Range:
        """Serve ``[base, base + length)`` with ``device``; raises :class:`InvalidSetup` on overlap."""
        if base < 0 or length < 1:
            raise InvalidSetup(f"a bus range needs base >= 0 and length >= 1, not {base:#x}+{length}")
        i = bisect.bisect_right(self._bases, base)
        for other in self._ranges[max(i - 1, 0):i + 1]:
            if base < other.end and other.base < base + length:
                raise InvalidSetup(f"[{base:#x}, {base + length:#x}) overlaps [{other.base:#x}, {other.end:#x}) "
                                   f"of {other.device!r}")
        r = Range(base, length, device)
        self._bases.insert(i, base)
        self._ranges.insert(i, r)
        return r

    def find(self, address: int, size: int = 1) -> Range | None:
        """The range holding ``[address, address + size)`` entirely, or None."""
        i = bisect.bisect_right(self._bases, address) - 1
        if i >= 0:
            r = self._ranges[i]
            if address + size <= r.end:
                return r
        return None

    def __len__(self) -> int:
        return len(self._ranges)

    def __repr__(self) -> str:
        return "Bus(" + ", ".join(f"{r.base:#x}+{r.length}: {type(r.device).__name__}" for r in self._ranges) + ")"


class Handled:
    """The outcome of :func:`handle` when a device took the exit: enter the guest again."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "HANDLED"


HANDLED = Handled()


@dataclass(frozen=True, slots=True)
class Stop:
    """The outcome of :func:`handle` when the exit is for the caller (``hlt``, I/O no device covers, an error)."""

    exit: VcpuExit


def handle(exit: VcpuExit, pio: Bus | None = None, mmio: Bus | None = None) -> Handled | Stop:
    """What to do with one exit: give it to the device whose range covers it, or stop.

    Port I/O goes to ``pio``, MMIO to ``mmio``; a device's ``write`` gets
    each access's bytes, its ``read`` fills the exit's writable ``data``
    (the answer the guest gets on the next ``KVM_RUN``). ``rep`` string
    I/O (``count`` > 1) is one call per access. Every other exit (``hlt``,
    the errors) is a :class:`Stop`: deciding whether it is an error is the
    caller's (:func:`lab.kvm.exits.error_for`).
    """
    if isinstance(exit, IoOut):
        r = pio.find(exit.port, exit.size) if pio is not None else None
        if r is None:
            return Stop(exit)
        offset, size, data = exit.port - r.base, exit.size, exit.data
        for i in range(0, size * exit.count, size):
            r.device.write(offset, data[i:i + size])
        return HANDLED
    if isinstance(exit, IoIn):
        r = pio.find(exit.port, exit.size) if pio is not None else None
        if r is None:
            return Stop(exit)
        offset, size = exit.port - r.base, exit.size
        for i in range(0, size * exit.count, size):
            r.device.read(offset, exit.data[i:i + size])
        return HANDLED
    if isinstance(exit, MmioWrite):
        r = mmio.find(exit.address, len(exit.data)) if mmio is not None else None
        if r is None:
            return Stop(exit)
        r.device.write(exit.address - r.base, exit.data)
        return HANDLED
    if isinstance(exit, MmioRead):
        r = mmio.find(exit.address, exit.size) if mmio is not None else None
        if r is None:
            return Stop(exit)
        r.device.read(exit.address - r.base, exit.data)
        return HANDLED
    return Stop(exit)
