"""A virtio 1.x split virtqueue: its layout in guest memory and the device's side.

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

Notification suppression ("Driver Notifications" and "Used Buffer
Notifications" in the specification) lets a busy device stop being kicked:
without ``VIRTIO_F_EVENT_IDX`` the device sets ``VIRTQ_USED_F_NO_NOTIFY`` in
``used.flags`` while it polls the ring; with it, the device writes into
``avail_event`` the index after which it wants the next kick, and the driver
kicks only when its new ``avail.idx`` passed it (:func:`vring_need_event`,
the same test in both directions: ``used_event`` tells the device when the
driver wants an interrupt). The device re-enables notifications and then
looks at the ring once more (:meth:`DeviceQueue.enable_notification`): what
the driver published in between would otherwise wait for a kick that never
comes. Which memory ordering each index access needs is written where it
happens (:mod:`lab.devices.ordering`).

:class:`DeviceQueue` trusts nothing it reads: an index that claims more new
buffers than the queue holds, a head or ``next`` outside the table, a chain
that loops, a buffer outside guest memory, a flag it did not negotiate - each
is its own :class:`VirtqueueError` (a code and the values), raised before anything
outside guest memory could be touched (every access goes through
:class:`~lab.devices.memory.GuestMemory`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from lab.devices import ordering
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
VIRTIO_F_EVENT_IDX = 29  #: feature bit: the used_event / avail_event fields are used instead of the flags

DESC_SIZE = 16
DESC_ALIGN, AVAIL_ALIGN, USED_ALIGN = 16, 2, 4

_DESC = struct.Struct("<QIHH")
_USED_ELEM = struct.Struct("<II")


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
    def used_event(self) -> int:
        """Where the driver's ``used_event`` is: the last field of the available ring."""
        return self.avail + 4 + 2 * self.size

    @property
    def avail_event(self) -> int:
        """Where the device's ``avail_event`` is: the last field of the used ring."""
        return self.used + 4 + 8 * self.size

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
    """Entry ``index`` of the descriptor table as it stands in memory.

    The index is checked against the queue size (an index from guest memory can
    be anything), and the read goes through ``mem``'s bounds check.
    """
    if not 0 <= index < layout.size:
        raise DescriptorIndexOutOfRange(index, layout.size)
    return Descriptor(index, *mem.unpack(_DESC, layout.desc + DESC_SIZE * index, "descriptor"))


def write_descriptor(mem: GuestMemory, layout: Layout, index: int, addr: int, length: int, flags: int,
                     nxt: int) -> None:
    """Write entry ``index`` of the descriptor table (the driver's part; tests use it to break rules)."""
    if not 0 <= index < layout.size:
        raise DescriptorIndexOutOfRange(index, layout.size)
    mem.pack(_DESC, layout.desc + DESC_SIZE * index, addr, length, flags, nxt, what="descriptor")


def read_used_elem(mem: GuestMemory, layout: Layout, slot: int) -> tuple[int, int]:
    """Slot ``slot`` of the used ring: ``(id, len)``, the head of a returned chain and the bytes written."""
    head, written = mem.unpack(_USED_ELEM, layout.used + 4 + _USED_ELEM.size * slot, "used.ring")
    return head, written


def vring_need_event(event: int, new: int, old: int) -> bool:
    """Whether moving an index from ``old`` to ``new`` crossed ``event`` (all modulo 2**16).

    The specification's test for ``VIRTIO_F_EVENT_IDX``: the driver kicks when
    ``avail.idx`` went from ``old`` to ``new`` past the device's
    ``avail_event``; the device interrupts when ``used.idx`` passed the
    driver's ``used_event``. "Past ``event``" means ``event`` is one of
    ``old .. new - 1``, counted on the 16-bit circle.
    """
    return (new - event - 1) & 0xFFFF < (new - old) & 0xFFFF


class DeviceQueue:
    """The device's side of one split virtqueue in guest memory.

    The layout is checked once, here: the three parts lie inside guest memory,
    so reading a ring slot or a table entry with an index below the queue size
    cannot leave guest memory. Everything the guest can change afterwards
    (indices, heads, ``next``, buffer addresses and lengths) is checked on
    every use.
    """

    def __init__(self, mem: GuestMemory, layout: Layout, *, event_idx: bool = False) -> None:
        layout.check(mem)
        self.mem = mem
        self.layout = layout
        self.event_idx = event_idx  #: VIRTIO_F_EVENT_IDX negotiated: avail_event, not the NO_NOTIFY flag
        self.last_avail_idx = 0
        self.used_idx = mem.u16(layout.used + 2)

    # -- reading what the driver offers -------------------------------------------------

    def avail_idx(self) -> int:
        idx = self.mem.u16(self.layout.avail + 2, "avail.idx")
        ordering.acquire()  # the slots and descriptors read next are the ones the driver wrote before this index
        return idx

    def pending(self) -> int:
        """How many new chains the driver has published, checked against the queue size."""
        avail = self.avail_idx()
        new = (avail - self.last_avail_idx) & 0xFFFF
        if new > self.layout.size:
            raise AvailIndexOutOfRange(self.last_avail_idx, avail, new, self.layout.size)
        return new

    def descriptor(self, index: int) -> Descriptor:
        return read_descriptor(self.mem, self.layout, index)

    def chain(self, head: int) -> Chain:
        """Walk the chain from ``head``, validating every descriptor on the way."""
        descs: list[Descriptor] = []
        seen: set[int] = set()
        index = head
        mem, layout = self.mem, self.layout
        while True:
            if index in seen or len(descs) >= layout.size:
                raise ChainLoop(head, [d.index for d in descs] + [index])
            seen.add(index)
            d = read_descriptor(mem, layout, index)
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
        head = self.mem.u16(self.layout.avail + 4 + 2 * slot, "avail.ring")
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

    def read_chain(self, chain: Chain) -> bytes:
        """The device-readable bytes of a chain, copied out of guest memory (a copy: the driver may reuse
        the buffer as soon as the chain is used)."""
        parts = [d for d in chain.descriptors if not d.flags & VIRTQ_DESC_F_WRITE]
        if len(parts) == 1:  # the common case, without joining
            return self.mem.read(parts[0].addr, parts[0].len, "descriptor")
        return b"".join(self.mem.read(d.addr, d.len, f"descriptor {d.index}") for d in parts)

    # -- notifications (kicks) from the driver ---------------------------------------------------

    def disable_notification(self) -> None:
        """Ask the driver not to kick: the device is about to poll the ring.

        Without EVENT_IDX: set ``VIRTQ_USED_F_NO_NOTIFY``. With it there is
        nothing to write: ``avail_event`` stays where it was, so the driver's
        index runs past it once and then no more kicks come (as in vm-virtio).
        No ordering is needed: seen late, the flag only costs one more kick.
        """
        if not self.event_idx:
            self._set_used_flags(VIRTQ_USED_F_NO_NOTIFY)

    def enable_notification(self) -> bool:
        """Ask for a kick at the next buffer; True when buffers arrived meanwhile (poll again, no kick comes).

        With EVENT_IDX, ``avail_event`` is set to the next index the device
        will read; without it the NO_NOTIFY flag is cleared. Then a full fence,
        then ``avail.idx`` once more: a driver that published before it could
        see the new setting decided not to kick, and only this second look
        finds its buffers.
        """
        if self.event_idx:
            self.mem.set_u16(self.layout.avail_event, self.last_avail_idx, "avail_event")
        else:
            self._set_used_flags(0)
        ordering.full()  # the setting above is visible before avail.idx is read again (store, then load)
        return self.avail_idx() != self.last_avail_idx

    def _set_used_flags(self, flags: int) -> None:
        self.mem.set_u16(self.layout.used, flags, "used.flags")

    # -- giving buffers back -----------------------------------------------------------------

    def push_used(self, head: int, written: int = 0) -> None:
        """Put ``head`` into the used ring; ``used.idx`` is not published yet (see :meth:`publish`)."""
        slot = self.used_idx % self.layout.size
        self.mem.pack(_USED_ELEM, self.layout.used + 4 + _USED_ELEM.size * slot, head, written, what="used.ring")
        self.used_idx = (self.used_idx + 1) & 0xFFFF

    def publish(self) -> None:
        """Advance ``used.idx``: one store returns everything pushed since the last publish."""
        ordering.release()  # the used elements written before are visible before the index that returns them
        self.mem.set_u16(self.layout.used + 2, self.used_idx, "used.idx")


__all__ = [
    "Chain", "Descriptor", "DeviceQueue", "GuestMemoryError", "Layout", "VirtqueueError",
    "AvailIndexOutOfRange", "AvailRingEntryOutOfRange", "ChainLoop", "DescriptorIndexOutOfRange",
    "DescriptorOutsideMemory", "IndirectNotOffered", "PartMisaligned", "PartOutsideMemory", "PartsOverlap",
    "QueueSizeInvalid", "ReadableAfterWritable", "UnknownFlags",
    "VIRTQ_DESC_F_NEXT", "VIRTQ_DESC_F_WRITE", "VIRTQ_DESC_F_INDIRECT",
    "VIRTQ_AVAIL_F_NO_INTERRUPT", "VIRTQ_USED_F_NO_NOTIFY", "VIRTIO_F_EVENT_IDX", "read_descriptor",
    "read_used_elem", "vring_need_event", "write_descriptor",
]
