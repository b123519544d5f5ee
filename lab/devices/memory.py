"""Guest memory as a device model sees it: the VMM's one bounds-checked type.

A device model only ever touches guest memory through
:class:`~lab.kvm.memory.GuestMemory`, the same object the VMM backs a KVM
memory slot with (``vm.memory()``), or one over a ``bytearray`` in tests and
simulations. Every access is checked against the guest-physical range first,
so an address or a length handed over by the guest (a descriptor, a PV
request) can never make the host read or write outside the guest's memory:
it is a :class:`GuestMemoryError` instead.
"""

from __future__ import annotations

from typing import Any

from lab.kvm.errors import Coded, GuestMemoryError
from lab.kvm.memory import GuestMemory


class DeviceError(Coded, Exception):
    """The guest handed a device model something it cannot accept; ``code`` and ``params`` say what."""

    code = "device.error"

    def __init__(self, message: str, **params: Any) -> None:
        super().__init__(message)
        self.params = params or {"detail": message}


__all__ = ["DeviceError", "GuestMemory", "GuestMemoryError"]
