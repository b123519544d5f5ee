"""A virtio 1.x split virtqueue: layout, the device side, and a driver for tests.

The three parts live in guest memory, each with the alignment the virtio 1.x
specification gives it ("Split Virtqueues": descriptor table 16, available
ring 2, used ring 4 bytes)::

    struct virtq_desc  { le64 addr; le32 len; le16 flags; le16 next; };      16 bytes each
    struct virtq_avail { le16 flags; le16 idx; le16 ring[N]; le16 used_event; };
    struct virtq_used  { le16 flags; le16 idx;
                         struct { le32 id; le32 len; } ring[N]; le16 avail_event; };

The driver (the guest) writes descriptors, puts the head of each chain into
``avail.ring`` and then advances ``avail.idx`` - one store publishes a whole
batch. The device consumes entries from its private ``last_avail_idx`` up to
``avail.idx`` and returns each chain in ``used.ring``, advancing ``used.idx``.
Indices run freely modulo 2**16; the slot is ``idx % N``.

:class:`DeviceQueue` trusts nothing it reads: an index that claims more new
buffers than the queue holds, a head or ``next`` outside the table, a chain
that loops, a buffer outside guest memory, a flag it did not negotiate - each
is its own :class:`VirtqueueError` (a code and the values), raised before anything
outside guest memory could be touched (every access goes through
:class:`~lab.devices.memory.GuestMemory`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from lab.devices.memory import GuestMemory, GuestMemoryError
from lab.devices.virtqueue_errors import (
    MAX_QUEUE_SIZE,
    AvailIndexOutOfRange,
    AvailRingEntryOutOfRange,
    ChainLoop,
    DescriptorIndexOutOfRange,
    DescriptorOutsideMemory,
    IndirectNotOffered,
    PartMisaligned,
    PartOutsideMemory,
    PartsOverlap,
    QueueSizeInvalid,
    ReadableAfterWritable,
    UnknownFlags,
    VirtqueueError,
)

VIRTQ_DESC_F_NEXT = 1      #: the chain continues in ``next``
VIRTQ_DESC_F_WRITE = 2     #: the buffer is device-writable (otherwise device-readable)
VIRTQ_DESC_F_INDIRECT = 4  #: the buffer holds a table of descriptors (not negotiated here)
VIRTQ_AVAIL_F_NO_INTERRUPT = 1  #: the driver asks for no interrupt when buffers are used
VIRTQ_USED_F_NO_NOTIFY = 1      #: the device asks for no notification (kick)

DESC_SIZE = 16
DESC_ALIGN, AVAIL_ALIGN, USED_ALIGN = 16, 2, 4

_DESC = struct.Struct("<QIHH")
_USED_ELEM = struct.Struct("<II")
_U16 = struct.Struct("<H")


def _align(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


@dataclass(frozen=True)
class Layout:
    """Where the three parts of a split virtqueue of ``size`` entries are."""

    size: int
    desc: int
    avail: int
    used: int

    @staticmethod
    def sizes(size: int) -> tuple[int, int, int]:
        """Bytes of (descriptor table, available ring, used ring) for ``size`` entries."""
        return DESC_SIZE * size, 6 + 2 * size, 6 + 8 * size

    @classmethod
    def contiguous(cls, base: int, size: int) -> Layout:
        """The three parts one after another from ``base``, each aligned as the spec asks."""
        d, a, _ = cls.sizes(size)
        desc = _align(base, DESC_ALIGN)
        avail = _align(desc + d, AVAIL_ALIGN)
        used = _align(avail + a, USED_ALIGN)
        return cls(size, desc, avail, used)

    @property
    def end(self) -> int:
        return max(p + s for p, s in zip((self.desc, self.avail, self.used), self.sizes(self.size), strict=True))

    def check(self, mem: GuestMemory) -> None:
        """Raise :class:`VirtqueueError` unless this layout is valid inside ``mem``."""
        n = self.size
        if not (1 <= n <= MAX_QUEUE_SIZE) or n & (n - 1):
            raise QueueSizeInvalid(n)
        parts = list(zip(("descriptor table", "available ring", "used ring"),
                         (self.desc, self.avail, self.used), (DESC_ALIGN, AVAIL_ALIGN, USED_ALIGN),
                         self.sizes(n), strict=True))
        for name, addr, alignment, length in parts:
            if addr % alignment:
                raise PartMisaligned(name, addr, alignment)
            if not mem.contains(addr, length):
                raise PartOutsideMemory(name, addr, addr + length, mem.base, mem.base + mem.size)
        for i, (n1, a1, _, l1) in enumerate(parts):
            for n2, a2, _, l2 in parts[i + 1:]:
                if a1 < a2 + l2 and a2 < a1 + l1:
                    raise PartsOverlap(n1, n2)


class Descriptor(NamedTuple):
    """One entry of the descriptor table, as read (a NamedTuple: cheap on the hot path)."""

    index: int  # type: ignore[assignment]  # the spec's word; shadows tuple.index, which nobody calls here
    addr: int
    len: int
    flags: int
    next: int

    @property
    def writable(self) -> bool:
        return bool(self.flags & VIRTQ_DESC_F_WRITE)


class Chain(NamedTuple):
    """One request: the head descriptor index and the descriptors of its chain, in order."""

    head: int
    descriptors: tuple[Descriptor, ...]

    def readable(self) -> list[Descriptor]:
        return [d for d in self.descriptors if not d.writable]

    def writable(self) -> list[Descriptor]:
        return [d for d in self.descriptors if d.writable]


def read_descriptor(mem: GuestMemory, layout: Layout, index: int) -> Descriptor:
    """Entry ``index`` of the descriptor table as it stands in memory (bounds-checked by ``mem``)."""
    return Descriptor(index, *_DESC.unpack(mem.read(layout.desc + DESC_SIZE * index, DESC_SIZE)))


def read_used_elem(mem: GuestMemory, layout: Layout, slot: int) -> tuple[int, int]:
    """Slot ``slot`` of the used ring: ``(id, len)``, the head of a returned chain and the bytes written."""
    head, written = _USED_ELEM.unpack(mem.read(layout.used + 4 + _USED_ELEM.size * slot, _USED_ELEM.size))
    return head, written


class DeviceQueue:
    """The device's side of one split virtqueue in guest memory.

    The layout is checked once, here: the three parts lie inside guest memory,
    so reading a ring slot or a table entry with an index below the queue size
    cannot leave guest memory. Everything the guest can change afterwards
    (indices, heads, ``next``, buffer addresses and lengths) is checked on
    every use.
    """

    def __init__(self, mem: GuestMemory, layout: Layout) -> None:
        layout.check(mem)
        self.mem = mem
        self.layout = layout
        self.last_avail_idx = 0
        self.used_idx = mem.u16(layout.used + 2)
        # Offsets into the memory view of the parts (validated by layout.check above).
        self._buf = mem.view(mem.base, mem.size)
        self._desc = layout.desc - mem.base
        self._avail_ring = layout.avail + 4 - mem.base
        self._used_ring = layout.used + 4 - mem.base

    # -- reading what the driver offers -------------------------------------------------

    def avail_idx(self) -> int:
        return self.mem.u16(self.layout.avail + 2, "avail.idx")

    def pending(self) -> int:
        """How many new chains the driver has published, checked against the queue size."""
        avail = self.avail_idx()
        new = (avail - self.last_avail_idx) & 0xFFFF
        if new > self.layout.size:
            raise AvailIndexOutOfRange(self.last_avail_idx, avail, new, self.layout.size)
        return new

    def descriptor(self, index: int) -> Descriptor:
        if not 0 <= index < self.layout.size:
            raise DescriptorIndexOutOfRange(index, self.layout.size)
        # index < size: the entry lies inside the table, which lies inside guest memory.
        return Descriptor(index, *_DESC.unpack_from(self._buf, self._desc + DESC_SIZE * index))

    def chain(self, head: int) -> Chain:
        """Walk the chain from ``head``, validating every descriptor on the way."""
        descs: list[Descriptor] = []
        seen: set[int] = set()
        index = head
        mem = self.mem
        while True:
            if index in seen or len(descs) >= self.layout.size:
                raise ChainLoop(head, [d.index for d in descs] + [index])
            seen.add(index)
            d = self.descriptor(index)
            if d.flags & ~(VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE):
                if d.flags & VIRTQ_DESC_F_INDIRECT:
                    raise IndirectNotOffered(index)
                raise UnknownFlags(index, d.flags)
            if not mem.contains(d.addr, d.len):
                raise DescriptorOutsideMemory(index, d.addr, d.addr + d.len, mem.base, mem.base + mem.size)
            if descs and descs[-1].flags & VIRTQ_DESC_F_WRITE and not d.flags & VIRTQ_DESC_F_WRITE:
                raise ReadableAfterWritable(index, head)
            descs.append(d)
            if not d.flags & VIRTQ_DESC_F_NEXT:
                return Chain(head, tuple(descs))
            index = d.next

    def _pop_slot(self) -> Chain:
        slot = self.last_avail_idx % self.layout.size
        # slot < size: inside the available ring.
        head = _U16.unpack_from(self._buf, self._avail_ring + 2 * slot)[0]
        if head >= self.layout.size:
            raise AvailRingEntryOutOfRange(slot, head, self.layout.size)
        chain = self.chain(head)
        self.last_avail_idx = (self.last_avail_idx + 1) & 0xFFFF
        return chain

    def pop(self) -> Chain | None:
        """The next available chain (validated), or None when the ring is empty."""
        if not self.pending():
            return None
        return self._pop_slot()

    def pop_all(self) -> Iterator[Chain]:
        """Every chain published so far; ``avail.idx`` is read (and checked) once."""
        for _ in range(self.pending()):
            yield self._pop_slot()

    def read_chain(self, chain: Chain) -> bytes | memoryview:
        """The device-readable bytes of a chain (ranges were checked when the chain was walked)."""
        parts = [self.mem.view(d.addr, d.len, f"descriptor {d.index}")
                 for d in chain.descriptors if not d.flags & VIRTQ_DESC_F_WRITE]
        return parts[0] if len(parts) == 1 else b"".join(parts)

    # -- giving buffers back -----------------------------------------------------------------

    def push_used(self, head: int, written: int = 0) -> None:
        """Put ``head`` into the used ring; ``used.idx`` is not published yet (see :meth:`publish`)."""
        slot = self.used_idx % self.layout.size
        # slot < size: inside the used ring.
        _USED_ELEM.pack_into(self._buf, self._used_ring + 8 * slot, head, written)
        self.used_idx = (self.used_idx + 1) & 0xFFFF

    def publish(self) -> None:
        """Advance ``used.idx``: one store returns everything pushed since the last publish."""
        self.mem.set_u16(self.layout.used + 2, self.used_idx, "used.idx")

    def release(self) -> None:
        self._buf.release()


class DriverQueue:
    """The driver's side, in Python: how the guest fills a queue (tests and the KVM-free model).

    The guest programs in :mod:`lab.devices.guests` do the same in machine code.
    """

    def __init__(self, mem: GuestMemory, layout: Layout, *, no_interrupt: bool = True) -> None:
        layout.check(mem)
        self.mem = mem
        self.layout = layout
        d, a, u = Layout.sizes(layout.size)
        mem.fill(layout.desc, d)
        mem.fill(layout.avail, a)
        mem.fill(layout.used, u)
        if no_interrupt:
            mem.set_u16(layout.avail, VIRTQ_AVAIL_F_NO_INTERRUPT)
        self.free = list(range(layout.size))
        self.avail_idx = 0
        self.last_used_idx = 0

    def add(self, buffers: Iterable[tuple[int, int, bool]]) -> int:
        """Queue one chain of ``(addr, len, device_writable)`` buffers; returns its head."""
        buffers = list(buffers)
        if not buffers:
            raise ValueError("a chain needs at least one buffer")
        if len(buffers) > len(self.free):
            raise ValueError(f"queue full: {len(buffers)} descriptors wanted, {len(self.free)} free")
        indices = [self.free.pop(0) for _ in buffers]
        for i, (index, (addr, length, writable)) in enumerate(zip(indices, buffers, strict=True)):
            last = i == len(buffers) - 1
            flags = (0 if last else VIRTQ_DESC_F_NEXT) | (VIRTQ_DESC_F_WRITE if writable else 0)
            self.write_descriptor(index, addr, length, flags, 0 if last else indices[i + 1])
        slot = self.avail_idx % self.layout.size
        self.mem.set_u16(self.layout.avail + 4 + 2 * slot, indices[0])
        self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        return indices[0]

    def write_descriptor(self, index: int, addr: int, length: int, flags: int, nxt: int) -> None:
        """Raw access for tests that build malformed tables on purpose."""
        self.mem.write(self.layout.desc + DESC_SIZE * index, _DESC.pack(addr, length, flags, nxt))

    def publish(self) -> None:
        """Make everything added so far visible to the device: one store of ``avail.idx``."""
        self.mem.set_u16(self.layout.avail + 2, self.avail_idx)

    def used(self) -> Iterator[tuple[int, int]]:
        """Chains the device has returned since the last call, as ``(head, written)``; frees them."""
        used_idx = self.mem.u16(self.layout.used + 2)
        while self.last_used_idx != used_idx:
            slot = self.last_used_idx % self.layout.size
            head, written = read_used_elem(self.mem, self.layout, slot)
            index = head
            while True:  # give the chain's descriptors back to the free list
                desc = read_descriptor(self.mem, self.layout, index)
                self.free.append(index)
                if not desc.flags & VIRTQ_DESC_F_NEXT:
                    break
                index = desc.next
            self.last_used_idx = (self.last_used_idx + 1) & 0xFFFF
            yield head, written


__all__ = [
    "Chain", "Descriptor", "DeviceQueue", "DriverQueue", "GuestMemoryError", "Layout", "VirtqueueError",
    "AvailIndexOutOfRange", "AvailRingEntryOutOfRange", "ChainLoop", "DescriptorIndexOutOfRange",
    "DescriptorOutsideMemory", "IndirectNotOffered", "PartMisaligned", "PartOutsideMemory", "PartsOverlap",
    "QueueSizeInvalid", "ReadableAfterWritable", "UnknownFlags",
    "VIRTQ_DESC_F_NEXT", "VIRTQ_DESC_F_WRITE", "VIRTQ_DESC_F_INDIRECT",
    "VIRTQ_AVAIL_F_NO_INTERRUPT", "VIRTQ_USED_F_NO_NOTIFY", "read_descriptor", "read_used_elem",
]
