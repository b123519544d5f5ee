"""The rules of a split virtqueue a driver can break: one error type per rule, each with its code.

As vm-virtio's ``Error`` has one variant per rule broken, each class here is
one rule, with a stable ``code`` and the values that broke it in ``params``
(:class:`lab.kvm.errors.Coded`); :mod:`lab.devices.virtqueue` raises them.
"""

from __future__ import annotations

from lab.devices.memory import DeviceError

MAX_QUEUE_SIZE = 32768


class VirtqueueError(DeviceError):
    """The driver broke the virtqueue rules; the device must not go on with this queue.

    One subclass per rule, as vm-virtio's ``Error`` has one variant per rule,
    each with its stable ``code`` and the values in ``params``.
    """

    code = "virtqueue.error"


class QueueSizeInvalid(VirtqueueError):
    code = "virtqueue.size"

    def __init__(self, size: int) -> None:
        super().__init__(f"queue size {size} is not a power of 2 between 1 and {MAX_QUEUE_SIZE}",
                         size=size, max=MAX_QUEUE_SIZE)


class PartMisaligned(VirtqueueError):
    code = "virtqueue.misaligned"

    def __init__(self, part: str, addr: int, alignment: int) -> None:
        super().__init__(f"{part} at {addr:#x} is not aligned to {alignment} bytes",
                         part=part, addr=addr, alignment=alignment)


class PartOutsideMemory(VirtqueueError):
    code = "virtqueue.part_outside_memory"

    def __init__(self, part: str, start: int, end: int, mem_start: int, mem_end: int) -> None:
        super().__init__(f"{part} [{start:#x}, {end:#x}) is outside guest memory [{mem_start:#x}, {mem_end:#x})",
                         part=part, start=start, end=end, mem_start=mem_start, mem_end=mem_end)


class PartsOverlap(VirtqueueError):
    code = "virtqueue.parts_overlap"

    def __init__(self, first: str, second: str) -> None:
        super().__init__(f"{first} and {second} overlap", first=first, second=second)


class AvailIndexOutOfRange(VirtqueueError):
    code = "virtqueue.avail_index"

    def __init__(self, last: int, avail: int, new: int, size: int) -> None:
        super().__init__(f"avail.idx moved from {last} to {avail}: {new} new entries in a queue of {size} "
                         f"(ring index out of range)", last=last, avail=avail, new=new, size=size)


class DescriptorIndexOutOfRange(VirtqueueError):
    code = "virtqueue.descriptor_index"

    def __init__(self, index: int, size: int) -> None:
        super().__init__(f"descriptor index {index} is out of range for a queue of {size}", index=index, size=size)


class AvailRingEntryOutOfRange(VirtqueueError):
    code = "virtqueue.avail_entry"

    def __init__(self, slot: int, head: int, size: int) -> None:
        super().__init__(f"avail.ring[{slot}] = {head} is out of range for a queue of {size}",
                         slot=slot, head=head, size=size)


class ChainLoop(VirtqueueError):
    code = "virtqueue.chain_loop"

    def __init__(self, head: int, path: list[int]) -> None:
        super().__init__(f"descriptor chain from head {head} loops ({' -> '.join(map(str, path))})",
                         head=head, path=path)


class IndirectNotOffered(VirtqueueError):
    code = "virtqueue.indirect"

    def __init__(self, index: int) -> None:
        super().__init__(f"descriptor {index} is indirect, a feature this device did not offer", index=index)


class UnknownFlags(VirtqueueError):
    code = "virtqueue.unknown_flags"

    def __init__(self, index: int, flags: int) -> None:
        super().__init__(f"descriptor {index} has unknown flags {flags:#x}", index=index, flags=flags)


class DescriptorOutsideMemory(VirtqueueError):
    code = "virtqueue.descriptor_outside_memory"

    def __init__(self, index: int, start: int, end: int, mem_start: int, mem_end: int) -> None:
        super().__init__(f"descriptor {index} points outside guest memory: [{start:#x}, {end:#x}) is not inside "
                         f"[{mem_start:#x}, {mem_end:#x})",
                         index=index, start=start, end=end, mem_start=mem_start, mem_end=mem_end)


class ReadableAfterWritable(VirtqueueError):
    code = "virtqueue.readable_after_writable"

    def __init__(self, index: int, head: int) -> None:
        super().__init__(f"descriptor {index} is device-readable after a device-writable one in chain {head}",
                         index=index, head=head)
