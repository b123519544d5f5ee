"""The driver's side of a split virtqueue, in Python: how a guest fills the queue.

The guest programs of :mod:`lab.devices.guests` do the same in machine code;
this one serves the tests, the KVM-free simulation (:mod:`lab.devices.sim`)
and the chapter's step-by-step ring. The layout and the rules are in
:mod:`lab.devices.virtqueue`; the ordering of each index access in
:mod:`lab.devices.ordering`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from lab.devices import ordering
from lab.devices.memory import GuestMemory
from lab.devices.virtqueue import (
    VIRTQ_AVAIL_F_NO_INTERRUPT,
    VIRTQ_DESC_F_NEXT,
    VIRTQ_DESC_F_WRITE,
    VIRTQ_USED_F_NO_NOTIFY,
    Layout,
    read_descriptor,
    read_used_elem,
    vring_need_event,
    write_descriptor,
)


class DriverQueue:
    """The driver's side of one split virtqueue in guest memory (zeroed and set up here)."""

    def __init__(self, mem: GuestMemory, layout: Layout, *, no_interrupt: bool = True,
                 event_idx: bool = False) -> None:
        layout.check(mem)
        self.mem = mem
        self.layout = layout
        self.event_idx = event_idx  #: VIRTIO_F_EVENT_IDX negotiated: kick by avail_event, not by the flag
        d, a, u = Layout.sizes(layout.size)
        mem.fill(layout.desc, d)
        mem.fill(layout.avail, a)
        mem.fill(layout.used, u)
        if no_interrupt:
            mem.set_u16(layout.avail, VIRTQ_AVAIL_F_NO_INTERRUPT)
        self.free = list(range(layout.size))
        self.avail_idx = 0
        self.kicked_idx = 0  #: avail.idx when the driver last decided whether to kick
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
        write_descriptor(self.mem, self.layout, index, addr, length, flags, nxt)

    def publish(self) -> bool:
        """Make everything added so far visible to the device (one store of ``avail.idx``); True when the
        device asked to be notified, i.e. the driver must kick now (Linux's ``virtqueue_kick_prepare``)."""
        ordering.release()  # the descriptors and ring slots are visible before the index that publishes them
        self.mem.set_u16(self.layout.avail + 2, self.avail_idx)
        ordering.full()  # the index is visible before the device's setting is read (store, then load)
        old, self.kicked_idx = self.kicked_idx, self.avail_idx
        if self.event_idx:
            return vring_need_event(self.mem.u16(self.layout.avail_event), self.avail_idx, old)
        return not self.mem.u16(self.layout.used) & VIRTQ_USED_F_NO_NOTIFY

    def used(self) -> Iterator[tuple[int, int]]:
        """Chains the device has returned since the last call, as ``(head, written)``; frees them."""
        used_idx = self.mem.u16(self.layout.used + 2)
        ordering.acquire()  # the used elements read next are the ones the device wrote before this index
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
