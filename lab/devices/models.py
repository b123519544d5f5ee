"""Three toy device models that receive the same payload in three ways.

All three end in the same :class:`Sink` (think of the disk platter or the wire):
it counts requests and bytes and hashes the byte stream, so a test can check
that every mode moved exactly the same bytes.

* :class:`EmulatedDevice` (HVM): a legacy controller in the style of IDE PIO or
  e1000 registers. The guest writes a length to a command register and the
  payload one dword at a time to a data register; a status register can be
  read back. Every register access is a VMExit to the userspace device model:
  ``1 + S/4`` exits for a request of ``S`` bytes (the book's guest does not
  read the status, which would add one more).
* :class:`PVDevice`: the guest knows it runs on a hypervisor and makes one
  request per operation - a single port write carrying the guest-physical
  address of a record ``{addr, len, status}``. The device reads the payload
  straight out of guest memory: one exit per request.
* :class:`VirtioDevice`: a split virtqueue (:mod:`lab.devices.virtqueue`); the
  guest queues a batch and notifies once: one exit per batch. With the
  notification bound to an eventfd (``KVM_IOEVENTFD``), :class:`~lab.devices.vhost.VhostWorker`
  takes the kick on a host thread and the vCPU never returns to userspace
  for it: zero exits (the vhost idea). With notification suppression
  (``suppress="no_notify"`` or ``"event_idx"``) the device, once kicked, asks
  for no more kicks and polls the ring while the driver keeps adding to it,
  as vhost does; the driver's kicks, each still an exit into KVM, then
  become rarer than its batches.

Each device is a :class:`lab.kvm.BusDevice` (``read(offset, data)``,
``write(offset, data)``) over its ports: the VMM puts it on its port-I/O bus
(:meth:`_Device.attach`), a simulation calls ``write`` itself.

A device never raises into the VMM's run loop for something the guest did
wrong: it answers with an error status (emulated, PV) or marks itself
"needs reset" (virtio, like the virtio status bit ``DEVICE_NEEDS_RESET``), and
keeps the fault, as its code and values, in :attr:`errors`. Host-side
mistakes (an offset where the device has no register) are exceptions.
"""

from __future__ import annotations

import hashlib
import struct
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from lab.devices import abi
from lab.devices.faults import (
    DataOutsideMemory,
    DeviceFault,
    NeedsReset,
    NoRegister,
    NoRequestOpen,
    NoSuchQueue,
    ReadOnlyRegister,
    RecordOutsideMemory,
    RequestIncomplete,
    RequestLength,
)
from lab.devices.memory import GuestMemory
from lab.devices.virtqueue import DeviceQueue, Layout, VirtqueueError

MAX_ERRORS_KEPT = 20


class Sink:
    """Where every request ends: counts requests and bytes, hashes the stream."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.requests = 0
        self.bytes = 0

    def consume(self, data: bytes | memoryview) -> None:
        self._hash.update(data)
        self.requests += 1
        self.bytes += len(data)

    def checksum(self) -> str:
        """SHA-256 of all bytes received, in order (hex, first 16 digits)."""
        return self._hash.hexdigest()[:16]


def expected_checksum(payload: bytes) -> str:
    """What :meth:`Sink.checksum` reports after receiving ``payload``."""
    return hashlib.sha256(payload).hexdigest()[:16]


@dataclass
class DeviceStats:
    """What a device saw: guest accesses per port, notifications, and the faults it answered.

    ``errors`` holds each fault as its code and parameters (``Coded.record``),
    the first :data:`MAX_ERRORS_KEPT` of them.
    """

    accesses: int = 0
    notifications: int = 0
    polls: int = 0  #: passes a suppressing device made because buffers came while kicks were off
    by_port: Counter[int] = field(default_factory=Counter)
    errors: list[dict[str, Any]] = field(default_factory=list)


class _Device:
    """The part every device model shares: a :class:`lab.kvm.BusDevice` at ``base`` over ``length`` ports.

    ``read(offset, data)`` and ``write(offset, data)`` are the one interface
    (the same as every device on a :class:`lab.kvm.Bus`); each access is
    counted per port in ``stats.by_port``.
    """

    mode: str = ""
    base: int = 0
    length: int = 0

    def __init__(self, mem: GuestMemory) -> None:
        self.mem = mem
        self.sink = Sink()
        self.stats = DeviceStats()
        self._lock = threading.Lock()

    @property
    def errors(self) -> list[dict[str, Any]]:
        return self.stats.errors

    def _fault(self, fault: DeviceFault) -> None:
        if len(self.stats.errors) < MAX_ERRORS_KEPT:
            self.stats.errors.append(fault.record())

    def close(self) -> None:
        """Drop every view of guest memory (before the VMM unmaps it)."""

    def attach(self, bus: Any) -> None:
        """Put this device on a port-I/O :class:`lab.kvm.Bus`, over its ports."""
        bus.insert(self.base, self.length, self)

    def _count(self, offset: int) -> int:
        if not 0 <= offset < self.length:
            raise NoRegister(type(self).__name__, self.base + offset)
        port = self.base + offset
        self.stats.accesses += 1
        self.stats.by_port[port] += 1
        return port

    def write(self, offset: int, data: bytes) -> None:  # pragma: no cover - overridden
        self._count(offset)

    def read(self, offset: int, data: memoryview) -> None:
        """Reading a register this device does not drive gives all ones, like an open bus."""
        self._count(offset)
        data[:] = b"\xff" * len(data)


class EmulatedDevice(_Device):
    """Register-at-a-time controller: command, data and status registers (see module doc)."""

    mode = "hvm"
    base, length = abi.HVM_CMD, abi.HVM_STATUS + 4 - abi.HVM_CMD

    def __init__(self, mem: GuestMemory) -> None:
        super().__init__(mem)
        self.status = abi.ST_OK
        self._expect = 0
        self._buffer = bytearray()

    def write(self, offset: int, data: bytes) -> None:
        port = self._count(offset)
        value = int.from_bytes(data, "little")
        if port == abi.HVM_CMD:
            if self._expect:
                self._fault(RequestIncomplete(self._expect))
            self._buffer.clear()
            if not 0 < value <= abi.MAX_REQUEST:
                self._expect = 0
                self.status = abi.ST_TOO_LONG
                self._fault(RequestLength(value))
                return
            self._expect = value
            self.status = abi.ST_OK
        elif port == abi.HVM_DATA:
            if not self._expect:
                self.status = abi.ST_PROTOCOL
                self._fault(NoRequestOpen())
                return
            take = min(self._expect, len(data))
            self._buffer += data[:take]
            self._expect -= take
            if not self._expect:
                self.sink.consume(bytes(self._buffer))
                self._buffer.clear()
        else:
            self.status = abi.ST_PROTOCOL
            self._fault(ReadOnlyRegister(port))

    def read(self, offset: int, data: memoryview) -> None:
        if self.base + offset != abi.HVM_STATUS:
            return super().read(offset, data)
        self._count(offset)
        status = abi.ST_PROTOCOL if self._expect else self.status
        data[:] = bytes([status]) + b"\x00" * (len(data) - 1)


class PVDevice(_Device):
    """One port write per request, carrying the address of a ``{addr, len, status}`` record."""

    mode = "pv"
    base, length = abi.PV_PORT, 4
    _RECORD = struct.Struct("<QII")

    def write(self, offset: int, data: bytes) -> None:
        self._count(offset)
        self.stats.notifications += 1
        record = int.from_bytes(data, "little")
        if not self.mem.contains(record, abi.PV_RECORD_SIZE):
            # Nowhere to write a status: note it and leave guest memory alone.
            self._fault(RecordOutsideMemory(record))
            return
        addr, length, _ = self._RECORD.unpack(self.mem.read(record, abi.PV_RECORD_SIZE))
        if not 0 < length <= abi.MAX_REQUEST:
            status = abi.ST_TOO_LONG
            self._fault(RequestLength(length, record))
        elif not self.mem.contains(addr, length):
            status = abi.ST_BAD_RANGE
            self._fault(DataOutsideMemory(record, addr, addr + length))
        else:
            self.sink.consume(self.mem.view(addr, length))
            status = abi.ST_OK
        self.mem.set_u32(record + abi.R_STATUS, status)


#: How a virtio device keeps the driver from kicking while it is busy: not at all, the
#: ``VIRTQ_USED_F_NO_NOTIFY`` flag, or ``avail_event`` (``VIRTIO_F_EVENT_IDX``).
SUPPRESSION = (None, "no_notify", "event_idx")


class VirtioDevice(_Device):
    """A device with one split virtqueue; each readable chain is one request.

    ``suppress`` (:data:`SUPPRESSION`): once kicked, the device turns kicks off,
    takes every chain there is, turns them on again and takes what arrived
    meanwhile, until the ring stays empty (vhost's ``handle_tx`` loop). That
    only pays when the device runs beside the vCPU, on a :class:`~lab.devices.vhost.VhostWorker`.
    """

    mode = "virtio"
    length = abi.VIRTIO_NOTIFY_SIZE

    def __init__(self, mem: GuestMemory, layout: Layout | None = None,
                 notify_port: int = abi.VIRTIO_NOTIFY, suppress: str | None = None) -> None:
        if suppress not in SUPPRESSION:
            raise ValueError(f"suppress must be one of {SUPPRESSION}, not {suppress!r}")
        super().__init__(mem)
        self.layout = layout or Layout(abi.QUEUE_SIZE, abi.VQ_DESC, abi.VQ_AVAIL, abi.VQ_USED)
        # raises VirtqueueError on a bad layout
        self.queue = DeviceQueue(mem, self.layout, event_idx=suppress == "event_idx")
        self.suppress = suppress
        self.base = notify_port
        self.needs_reset = False

    def write(self, offset: int, data: bytes) -> None:
        """A notification that went through the VMM's run loop (an exit to userspace)."""
        self._count(offset)
        queue = int.from_bytes(data, "little")
        if queue != 0:
            self._fault(NoSuchQueue(queue))
            return
        self.notify()

    def notify(self) -> int:
        """Consume every available chain and publish the used ring; returns chains done.

        Without suppression: what is there now, published once. With it: the
        loop in the class docstring, publishing after each pass. A chain that
        breaks the rules marks the device "needs reset"; the good chains
        before it are returned to the driver first.
        """
        with self._lock:  # the vCPU loop and a vhost thread never process at the same time
            self.stats.notifications += 1
            if self.needs_reset:
                return 0
            if self.suppress is None:
                return self._take_all()
            done = 0
            while True:
                self.queue.disable_notification()
                done += self._take_all()
                if self.needs_reset or not self.queue.enable_notification():
                    return done
                self.stats.polls += 1

    def _take_all(self) -> int:
        done = 0
        try:
            for chain in self.queue.pop_all():
                self.sink.consume(self.queue.read_chain(chain))
                self.queue.push_used(chain.head, 0)
                done += 1
        except VirtqueueError as exc:
            self.needs_reset = True
            self._fault(NeedsReset(exc))
        finally:
            if done:
                self.queue.publish()
        return done


DEVICE_CLASSES = {"hvm": EmulatedDevice, "pv": PVDevice, "virtio": VirtioDevice}


@dataclass
class Delivery:
    """What one run of ``count`` requests of ``size`` bytes handed to a device model.

    Shared by the live runs (:class:`lab.devices.live.IoRun`) and the Python
    simulation (:class:`lab.devices.sim.SimRun`), so both are judged alike.
    """

    mode: str
    count: int
    size: int
    batch: int
    exits: int                 #: returns to the VMM's userspace (the final hlt not counted)
    exits_by_port: dict[str, int] = field(default_factory=dict)
    kicks: int = 0             #: notifications the guest made (virtio modes)
    polls: int = 0             #: passes a suppressing device made on buffers that came while kicks were off
    eventfd_kicks: int = 0     #: notifications counted by the ioeventfd (completed in the kernel)
    requests: int = 0          #: requests the device received
    bytes: int = 0             #: bytes the device received
    checksum: str = ""         #: of the bytes the device received
    expected: str = ""         #: of the payload the host put in guest memory
    errors: list[dict[str, Any]] = field(default_factory=list)  #: the devices' faults, as codes and values

    @property
    def ok(self) -> bool:
        return not self.errors and self.checksum == self.expected and self.requests == self.count

    @property
    def exits_per_request(self) -> float:
        return self.exits / self.count
