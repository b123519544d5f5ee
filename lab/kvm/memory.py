"""Guest memory: one type for the VMM and the device models, bounds-checked.

Like rust-vmm's vm-memory, every access goes through one object that knows
the guest-physical range it covers: an address or a length handed over by
the guest (a descriptor, a PV request) can never make the host read or write
outside guest memory; it is a :class:`~lab.kvm.errors.GuestMemoryError`.

:meth:`GuestMemory.anonymous` maps fresh zeroed host memory with Python's
:class:`mmap.mmap` (what a KVM memory slot is backed by). Views handed out
by :meth:`GuestMemory.view` hold the mapping: ``mmap`` refuses to unmap while
any view is alive, so a view can never read memory that was unmapped under
it (:meth:`GuestMemory.close` raises :class:`~lab.kvm.errors.MemoryInUse`
instead, and the mapping lives on until the last view goes). Any other
writable buffer (a ``bytearray`` in tests and simulations) works as well.
"""

from __future__ import annotations

import ctypes
import mmap
import struct
import weakref

from lab.kvm.errors import ClosedError, GuestMemoryError, MemoryInUse, SyscallError

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000)  # Python < 3.13 lacks the name; the value is Linux's

#: host address -> size of every anonymous mapping made here and not yet unmapped (tests check it drains).
LIVE_MAPPINGS: dict[int, int] = {}

Buffer = bytearray | memoryview | mmap.mmap


class GuestMemory:
    """``size`` bytes of guest-physical memory starting at ``base``.

    ``buffer`` may be a ``bytearray``, an ``mmap`` or a writable
    ``memoryview``; it is not copied. Use :meth:`anonymous` for memory a KVM
    slot can be backed by.
    """

    def __init__(self, buffer: Buffer, base: int = 0) -> None:
        view = memoryview(buffer)
        if view.readonly:
            raise ValueError("guest memory must be writable")
        self._view = view.cast("B")
        self._mmap: mmap.mmap | None = None
        self.base = base
        self.size = len(self._view)
        self.host_address: int | None = None  #: host virtual address (anonymous memory only)
        self._closed = False

    @classmethod
    def anonymous(cls, size: int, base: int = 0) -> GuestMemory:
        """Fresh zero-filled private host memory of ``size`` bytes, mapped with ``mmap``."""
        try:
            mapping = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE,
                                prot=mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as exc:
            raise SyscallError("mmap", exc.errno or 0, f"{size:#x} bytes of guest memory") from None
        mem = cls(mapping, base)
        mem._mmap = mapping
        # The address KVM needs: a ctypes object over the buffer tells it; it is
        # dropped at once so that it does not hold the mapping open.
        anchor = ctypes.c_char.from_buffer(mapping)
        mem.host_address = ctypes.addressof(anchor)
        del anchor
        LIVE_MAPPINGS[mem.host_address] = size
        # Forgotten when the mapping really goes: at close(), or later with the last view.
        weakref.finalize(mapping, LIVE_MAPPINGS.pop, mem.host_address, None)
        return mem

    # -- lifetime
    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Drop this object's view and unmap memory it owns. Idempotent.

        Raises :class:`~lab.kvm.errors.MemoryInUse` when views from
        :meth:`view` are still alive: the memory then stays mapped (so they
        stay valid) until the last of them is released or collected.
        """
        if self._closed:
            return
        self._closed = True
        self.size = 0
        self._view.release()
        if self._mmap is None:
            return
        mapping, self._mmap = self._mmap, None
        try:
            mapping.close()
        except BufferError:
            raise MemoryInUse(
                f"guest memory at {self.base:#x} still has views (from GuestMemory.view or a device model): "
                f"it stays mapped until they are released; release them before closing the VM") from None
        LIVE_MAPPINGS.pop(self.host_address or 0, None)

    #: the name the device models use for :meth:`close`
    release = close

    def __enter__(self) -> GuestMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"size={self.size:#x}"
        return f"GuestMemory(base={self.base:#x}, {state})"

    # -- the one gate every access goes through
    def contains(self, gpa: int, length: int) -> bool:
        """True when ``[gpa, gpa + length)`` lies entirely inside guest memory."""
        return length >= 0 and gpa >= self.base and gpa + length <= self.base + self.size

    def _offset(self, gpa: int, length: int, what: str) -> int:
        if not self.contains(gpa, length):
            if self._closed:
                raise ClosedError(f"{what}: guest memory at {self.base:#x} was closed (with its VM)")
            raise GuestMemoryError(
                f"{what}: guest-physical range [{gpa:#x}, {gpa + length:#x}) is outside guest memory "
                f"[{self.base:#x}, {self.base + self.size:#x})"
            )
        return gpa - self.base

    # -- access
    def read(self, gpa: int, length: int, what: str = "read") -> bytes:
        off = self._offset(gpa, length, what)
        return bytes(self._view[off:off + length])

    def view(self, gpa: int, length: int, what: str = "read") -> memoryview:
        """A zero-copy view of a checked range; the memory stays mapped while the view lives."""
        off = self._offset(gpa, length, what)
        return self._view[off:off + length]

    def write(self, gpa: int, data: bytes | bytearray | memoryview, what: str = "write") -> None:
        off = self._offset(gpa, len(data), what)
        self._view[off:off + len(data)] = data

    def fill(self, gpa: int, length: int, value: int = 0) -> None:
        off = self._offset(gpa, length, "fill")
        self._view[off:off + length] = bytes([value]) * length

    def u16(self, gpa: int, what: str = "read u16") -> int:
        return int(_U16.unpack_from(self._view, self._offset(gpa, 2, what))[0])

    def u32(self, gpa: int, what: str = "read u32") -> int:
        return int(_U32.unpack_from(self._view, self._offset(gpa, 4, what))[0])

    def u64(self, gpa: int, what: str = "read u64") -> int:
        return int(_U64.unpack_from(self._view, self._offset(gpa, 8, what))[0])

    def unpack(self, layout: struct.Struct, gpa: int, what: str = "read") -> tuple[int, ...]:
        """The fields of a little structure at ``gpa`` (checked like every access, read without a copy)."""
        return layout.unpack_from(self._view, self._offset(gpa, layout.size, what))

    def pack(self, layout: struct.Struct, gpa: int, *values: int, what: str = "write") -> None:
        """Write the fields of a little structure at ``gpa`` (checked like every access)."""
        layout.pack_into(self._view, self._offset(gpa, layout.size, what), *values)

    def set_u16(self, gpa: int, value: int, what: str = "write u16") -> None:
        _U16.pack_into(self._view, self._offset(gpa, 2, what), value & 0xFFFF)

    def set_u32(self, gpa: int, value: int, what: str = "write u32") -> None:
        _U32.pack_into(self._view, self._offset(gpa, 4, what), value & 0xFFFFFFFF)

    def set_u64(self, gpa: int, value: int, what: str = "write u64") -> None:
        _U64.pack_into(self._view, self._offset(gpa, 8, what), value & 0xFFFFFFFFFFFFFFFF)
