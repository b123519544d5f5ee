"""The same three protocols with the guest played by Python: no KVM needed.

:func:`simulate` does, step by step, what the guest programs of
:mod:`lab.devices.guests` do, against the same device models and the same
guest-memory layout, and counts every access that would leave the guest (a
port access that a live run turns into an exit to the VMM's userspace). It
runs anywhere (Binder, CI without ``/dev/kvm``) and checks the exit model and
the bytes; it measures nothing about time.
"""

from __future__ import annotations

import os
import time

from lab.devices import abi
from lab.devices.driver import DriverQueue
from lab.devices.live import PATHS, IoPath, check_params, payload
from lab.devices.memory import GuestMemory
from lab.devices.models import Delivery, VirtioDevice, expected_checksum
from lab.devices.vhost import VhostWorker
from lab.devices.virtqueue import Layout


class SimRun(Delivery):
    """A run of the simulation: Python plays the guest, no KVM."""


def simulate(mode: str, count: int, size: int, batch: int = 1, *, seed: int = 0) -> SimRun:
    """Play the guest of ``mode`` in Python; see the module docstring."""
    check_params(mode, count, size, batch)
    data = payload(count, size, seed)
    mem = GuestMemory(bytearray(abi.memory_size_for(count, size)))
    mem.write(abi.DATA, data)
    kicks = eventfd_kicks = 0
    path = PATHS[mode]
    layout = Layout(abi.QUEUE_SIZE, abi.VQ_DESC, abi.VQ_AVAIL, abi.VQ_USED)
    driver = DriverQueue(mem, layout, event_idx=path.event_idx) if path.device == "virtio" else None
    device = path.make_device(mem)

    def out(port: int, value: int, width: int = 4) -> None:  # an exit in a live run
        device.write(port - device.base, value.to_bytes(width, "little"))

    if mode == "hvm":
        for i in range(count):
            base = abi.DATA + i * size
            out(abi.HVM_CMD, size)
            for off in range(0, size, 4):
                out(abi.HVM_DATA, mem.u32(base + off))
    elif mode == "pv":
        r = abi.PV_RECORD
        mem.set_u32(r + abi.R_LEN, size)
        for i in range(count):
            mem.set_u64(r + abi.R_ADDR, abi.DATA + i * size)
            mem.set_u32(r + abi.R_STATUS, abi.PV_PENDING)
            out(abi.PV_PORT, r)
    else:
        if not isinstance(device, VirtioDevice) or driver is None:  # check_params admits no other mode
            raise ValueError(f"unknown mode {mode!r}")
        kicks, eventfd_kicks = _virtio_guest(path, driver, device, count, size, batch)
    device.close()
    return SimRun(mode=mode, count=count, size=size, batch=batch, exits=sum(device.stats.by_port.values()),
                  exits_by_port={f"{k:#x}": v for k, v in sorted(device.stats.by_port.items())}, kicks=kicks,
                  eventfd_kicks=eventfd_kicks, requests=device.sink.requests, bytes=device.sink.bytes,
                  checksum=device.sink.checksum(), expected=expected_checksum(data), errors=list(device.errors),
                  polls=device.stats.polls)


def _virtio_guest(path: IoPath, driver: DriverQueue, device: VirtioDevice, count: int, size: int,
                  batch: int) -> tuple[int, int]:
    """The virtio guests of :mod:`lab.devices.guests`, played by ``driver``; returns (kicks, eventfd kicks)."""
    worker = VhostWorker(device).__enter__() if path.ioeventfd else None
    stream = path.program == "virtio_stream"  # fill on without waiting for each batch
    kicks = done = 0

    def wait_used(until: int) -> None:  # the guest spins reading used.idx (no exit)
        nonlocal done
        while done < until and not device.errors:
            done += len(list(driver.used()))
            if done < until:
                time.sleep(0.0001)  # let the worker thread have the GIL

    try:
        for first in range(0, count, batch):
            n = min(batch, count - first)
            for i in range(first, first + n):
                if stream and not driver.free:
                    wait_used(done + 1)  # the queue is full: wait for a descriptor
                if device.errors:
                    break
                driver.add([(abi.DATA + i * size, size, False)])
            if driver.publish():  # the device asked to be kicked
                kicks += 1
                if worker is None:  # an exit in a live run
                    device.write(abi.VIRTIO_NOTIFY - device.base, (0).to_bytes(abi.VIRTIO_NOTIFY_SIZE, "little"))
                else:  # what KVM does for an ioeventfd: count it, no exit
                    os.eventfd_write(worker.kick_fd, 1)
            if not stream:
                wait_used(first + n)
        wait_used(count)
    finally:
        if worker is not None:
            worker.close()
    return kicks, worker.kicks if worker is not None else 0
