"""Devices on a bus: how the run loop answers port I/O and MMIO exits.

A device implements two methods, one per access kind, with no overloaded
return value (the shape of Firecracker's and rust-vmm's ``BusDevice``):

* ``read(offset, data)`` fills ``data`` (a writable buffer of the access
  size) with what the guest reads at ``offset`` from the device's base;
* ``write(offset, data)`` takes the bytes the guest wrote.

A :class:`Bus` maps address ranges (ports for the I/O bus, guest-physical
addresses for the MMIO bus) to devices. ``Vcpu.run(pio=bus, mmio=bus)``
gives every exit inside a registered range to its device and resumes the
guest; an exit outside every range is returned to the caller.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Protocol

from lab.kvm.errors import InvalidSetup


class BusDevice(Protocol):
    """What a device on a :class:`Bus` implements."""

    def read(self, offset: int, data: memoryview) -> None:
        """Fill ``data`` with the bytes the guest reads at ``offset`` (relative to the device's base)."""

    def write(self, offset: int, data: bytes) -> None:
        """Take the bytes the guest wrote at ``offset`` (relative to the device's base)."""


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
