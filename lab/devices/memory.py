"""Guest memory as a device model sees it: bounds-checked reads and writes.

A device model only ever touches guest memory through :class:`GuestMemory`.
Every access is checked against the guest-physical range first, so an address
or a length handed over by the guest (a descriptor, a PV request) can never
make the host read or write outside the guest's memory: it is a
:class:`GuestMemoryError` instead.

The backing store is anything that exposes a writable buffer: a ``bytearray``
in the tests, the ``mmap`` of a KVM memory slot in a live run.
"""

from __future__ import annotations

import struct


class DeviceError(Exception):
    """The guest handed a device model something it cannot accept."""


class GuestMemoryError(DeviceError):
    """A guest-physical range that is not (entirely) inside guest memory."""


_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class GuestMemory:
    """``size`` bytes of guest-physical memory starting at ``base``.

    ``buffer`` may be a ``bytearray``, an ``mmap`` or a writable
    ``memoryview``; it is not copied.
    """

    def __init__(self, buffer, base: int = 0) -> None:
        view = memoryview(buffer)
        if view.readonly:
            raise ValueError("guest memory must be writable")
        self._view = view.cast("B")
        self.base = base
        self.size = len(self._view)

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return f"GuestMemory(base={self.base:#x}, size={self.size:#x})"

    def contains(self, gpa: int, length: int) -> bool:
        """True when ``[gpa, gpa + length)`` lies entirely inside guest memory."""
        return length >= 0 and gpa >= self.base and gpa + length <= self.base + self.size

    def _offset(self, gpa: int, length: int, what: str) -> int:
        # The one gate every access goes through: nothing outside the range is touched.
        if not self.contains(gpa, length):
            raise GuestMemoryError(
                f"{what}: guest-physical range [{gpa:#x}, {gpa + length:#x}) is outside guest memory "
                f"[{self.base:#x}, {self.base + self.size:#x})"
            )
        return gpa - self.base

    def read(self, gpa: int, length: int, what: str = "read") -> bytes:
        off = self._offset(gpa, length, what)
        return bytes(self._view[off:off + length])

    def view(self, gpa: int, length: int, what: str = "read") -> memoryview:
        """A zero-copy view of a checked range (valid while the memory is mapped)."""
        off = self._offset(gpa, length, what)
        return self._view[off:off + length]

    def write(self, gpa: int, data: bytes | bytearray | memoryview, what: str = "write") -> None:
        off = self._offset(gpa, len(data), what)
        self._view[off:off + len(data)] = data

    def fill(self, gpa: int, length: int, value: int = 0) -> None:
        off = self._offset(gpa, length, "fill")
        self._view[off:off + length] = bytes([value]) * length

    def u16(self, gpa: int, what: str = "read u16") -> int:
        return _U16.unpack_from(self._view, self._offset(gpa, 2, what))[0]

    def u32(self, gpa: int, what: str = "read u32") -> int:
        return _U32.unpack_from(self._view, self._offset(gpa, 4, what))[0]

    def u64(self, gpa: int, what: str = "read u64") -> int:
        return _U64.unpack_from(self._view, self._offset(gpa, 8, what))[0]

    def set_u16(self, gpa: int, value: int, what: str = "write u16") -> None:
        _U16.pack_into(self._view, self._offset(gpa, 2, what), value & 0xFFFF)

    def set_u32(self, gpa: int, value: int, what: str = "write u32") -> None:
        _U32.pack_into(self._view, self._offset(gpa, 4, what), value & 0xFFFFFFFF)

    def set_u64(self, gpa: int, value: int, what: str = "write u64") -> None:
        _U64.pack_into(self._view, self._offset(gpa, 8, what), value & 0xFFFFFFFFFFFFFFFF)

    def release(self) -> None:
        """Drop the view so the backing mmap can be closed."""
        self._view.release()
