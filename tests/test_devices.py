"""The toy device models and the split virtqueue, without KVM (guest memory is a bytearray)."""

from __future__ import annotations

import struct

import pytest

from lab import kvm
from lab.devices import abi, guests, virtqueue
from lab.devices.driver import DriverQueue
from lab.devices.memory import GuestMemory, GuestMemoryError
from lab.devices.models import EmulatedDevice, PVDevice, VirtioDevice, expected_checksum
from lab.devices.sim import simulate
from lab.devices.virtqueue import (
    VIRTQ_DESC_F_INDIRECT,
    VIRTQ_DESC_F_NEXT,
    DeviceQueue,
    Layout,
    VirtqueueError,
)
from lab.kvm.bus import handle

MODES = ("hvm", "pv", "virtio", "virtio_ioeventfd", "virtio_no_notify", "virtio_event_idx")
QSIZE = 8


# --------------------------------------------------------------------------- guest memory

def test_guest_memory_checks_every_range():
    mem = GuestMemory(bytearray(0x1000), base=0x4000)
    mem.write(0x4ff0, b"x" * 16)
    assert mem.read(0x4ff0, 16) == b"x" * 16
    for gpa, n in [(0x3fff, 1), (0x4ff1, 16), (0x5000, 1), (0x4000, 0x1001), (-4, 8)]:
        with pytest.raises(GuestMemoryError, match="outside guest memory"):
            mem.read(gpa, n)
    with pytest.raises(GuestMemoryError):
        mem.set_u32(0x4ffe, 1)


# --------------------------------------------------------------------------- layout

def test_layout_follows_the_virtio_alignments():
    lay = Layout.contiguous(0x1001, 256)
    assert lay.desc % 16 == 0 and lay.avail % 2 == 0 and lay.used % 4 == 0
    assert Layout.sizes(256) == (16 * 256, 6 + 2 * 256, 6 + 8 * 256)
    assert lay.avail == lay.desc + 16 * 256
    lay.check(GuestMemory(bytearray(0x4000)))


@pytest.mark.parametrize("layout, message, code", [
    (Layout(3, 0x0, 0x100, 0x200), "power of 2", "virtqueue.size"),
    (Layout(8, 0x8, 0x100, 0x200), "not aligned to 16", "virtqueue.misaligned"),
    (Layout(8, 0x0, 0x101, 0x200), "not aligned to 2", "virtqueue.misaligned"),
    (Layout(8, 0x0, 0x100, 0x202), "not aligned to 4", "virtqueue.misaligned"),
    (Layout(8, 0x0, 0x100, 0xFFF0), "used ring .* outside guest memory", "virtqueue.part_outside_memory"),
    (Layout(8, 0x0, 0x40, 0x200), "overlap", "virtqueue.parts_overlap"),
])
def test_bad_layouts_are_refused(layout, message, code):
    with pytest.raises(VirtqueueError, match=message) as info:
        DeviceQueue(GuestMemory(bytearray(0x10000)), layout)
    assert info.value.code == code


# --------------------------------------------------------------------------- queue round trip

def _queue(size: int = QSIZE, memory: int = 0x10000):
    mem = GuestMemory(bytearray(memory))
    lay = Layout.contiguous(0x1000, size)
    return mem, DriverQueue(mem, lay), DeviceQueue(mem, lay)


def test_a_batch_goes_round_the_rings():
    mem, drv, dev = _queue()
    mem.write(0x8000, b"hello, ")
    mem.write(0x9000, b"virtio")
    heads = [drv.add([(0x8000, 7, False), (0x9000, 6, False), (0xA000, 16, True)]),
             drv.add([(0x9000, 6, False)])]
    assert dev.pending() == 0  # nothing is visible before avail.idx is published
    drv.publish()
    assert dev.pending() == 2
    chains = list(dev.pop_all())
    assert [c.head for c in chains] == heads
    assert [len(c.descriptors) for c in chains] == [3, 1]
    assert dev.read_chain(chains[0]) == b"hello, virtio"
    assert [d.len for d in chains[0].writable()] == [16]
    for c in chains:
        dev.push_used(c.head, 0)
    assert list(drv.used()) == []  # used.idx not published yet
    dev.publish()
    assert [h for h, _ in drv.used()] == heads
    assert len(drv.free) == QSIZE  # every descriptor came back


def test_free_running_indices_wrap_at_65536():
    mem, drv, dev = _queue()
    start = 0xFFFD
    drv.avail_idx = dev.last_avail_idx = start
    dev.used_idx = drv.last_used_idx = start
    mem.set_u16(dev.layout.used + 2, start)
    for _round in range(3):
        for i in range(4):
            drv.add([(0x8000 + i, 1, False)])
        drv.publish()
        chains = list(dev.pop_all())
        assert len(chains) == 4
        for c in chains:
            dev.push_used(c.head)
        dev.publish()
        assert len(list(drv.used())) == 4
    assert dev.last_avail_idx == (start + 12) & 0xFFFF


# --------------------------------------------------------------------------- malformed rings

def test_descriptor_outside_guest_memory():
    mem, drv, dev = _queue()
    drv.add([(0xFFF0, 0x20, False)])  # runs past the end of the 64 KiB
    drv.publish()
    with pytest.raises(virtqueue.DescriptorOutsideMemory, match=r"descriptor 0 points outside guest memory: "
                       r"\[0xfff0, 0x10010\)") as info:
        dev.pop()
    assert info.value.record() == {"code": "virtqueue.descriptor_outside_memory",
                                   "params": {"index": 0, "start": 0xFFF0, "end": 0x10010, "mem_start": 0,
                                              "mem_end": 0x10000}}


def test_descriptor_with_a_huge_address():
    mem, drv, dev = _queue()
    drv.add([(2**64 - 8, 16, False)])
    drv.publish()
    with pytest.raises(VirtqueueError, match="outside guest memory"):
        dev.pop()


def test_avail_index_out_of_range():
    mem, drv, dev = _queue()
    mem.set_u16(dev.layout.avail + 2, QSIZE + 1)  # claims 9 new entries in a queue of 8
    with pytest.raises(virtqueue.AvailIndexOutOfRange, match="9 new entries in a queue of 8"):
        dev.pop()


def test_avail_ring_head_out_of_range():
    mem, drv, dev = _queue()
    drv.add([(0x8000, 4, False)])
    mem.set_u16(dev.layout.avail + 4, QSIZE)  # avail.ring[0] = 8
    drv.publish()
    with pytest.raises(virtqueue.AvailRingEntryOutOfRange, match=r"avail.ring\[0\] = 8 is out of range"):
        dev.pop()


def test_next_out_of_range():
    mem, drv, dev = _queue()
    drv.add([(0x8000, 4, False), (0x8004, 4, False)])
    drv.write_descriptor(0, 0x8000, 4, VIRTQ_DESC_F_NEXT, 200)
    drv.publish()
    with pytest.raises(virtqueue.DescriptorIndexOutOfRange, match="descriptor index 200 is out of range"):
        dev.pop()


@pytest.mark.parametrize("links", [[0], [1, 0], [1, 2, 1]])
def test_loops_in_a_chain(links):
    """links[i] is the ``next`` of descriptor i; every descriptor has NEXT set."""
    mem, drv, dev = _queue()
    drv.add([(0x8000, 4, False)])
    for i, nxt in enumerate(links):
        drv.write_descriptor(i, 0x8000, 4, VIRTQ_DESC_F_NEXT, nxt)
    drv.publish()
    with pytest.raises(virtqueue.ChainLoop, match="chain from head 0 loops") as info:
        dev.pop()
    path = info.value.params["path"]
    assert info.value.params["head"] == 0 and path[-1] in path[:-1]  # the walk came back to a descriptor seen


@pytest.mark.parametrize("flags, message", [
    (VIRTQ_DESC_F_INDIRECT, "indirect"),
    (0x40, "unknown flags 0x40"),
])
def test_flags_the_device_did_not_offer(flags, message):
    error = virtqueue.IndirectNotOffered if flags == VIRTQ_DESC_F_INDIRECT else virtqueue.UnknownFlags
    mem, drv, dev = _queue()
    drv.add([(0x8000, 16, False)])
    drv.write_descriptor(0, 0x8000, 16, flags, 0)
    drv.publish()
    with pytest.raises(error, match=message):
        dev.pop()


def test_readable_after_writable():
    mem, drv, dev = _queue()
    drv.add([(0x8000, 4, True), (0x8004, 4, False)])
    drv.publish()
    with pytest.raises(virtqueue.ReadableAfterWritable, match="device-readable after a device-writable"):
        dev.pop()


def test_device_reads_nothing_outside_guest_memory():
    """Guest memory is the middle of a larger host buffer; a descriptor points into the rest."""
    host = bytearray(b"S" * 0x3000)
    guest = memoryview(host)[0x1000:0x2000]
    mem = GuestMemory(guest, base=0x100000)
    lay = Layout.contiguous(0x100000, QSIZE)
    drv = DriverQueue(mem, lay)
    device = VirtioDevice(mem, lay)
    drv.add([(0x100000 + 0x0FF0, 0x20, False)])  # 16 bytes inside, 16 in the host's secret
    drv.publish()
    assert device.notify() == 0
    assert device.needs_reset and device.errors[0]["code"] == "virtio.needs_reset"
    assert device.errors[0]["params"]["cause"]["code"] == "virtqueue.descriptor_outside_memory"
    assert device.sink.requests == 0 and device.sink.bytes == 0
    assert host[:0x1000] == b"S" * 0x1000 and host[0x2000:] == b"S" * 0x1000
    # A device that needs reset ignores further kicks instead of crashing.
    assert device.notify() == 0


def test_a_virtio_device_returns_good_chains_before_a_bad_one():
    mem = GuestMemory(bytearray(abi.memory_size_for(4, 16)))
    lay = Layout(abi.QUEUE_SIZE, abi.VQ_DESC, abi.VQ_AVAIL, abi.VQ_USED)
    drv = DriverQueue(mem, lay)
    device = VirtioDevice(mem, lay)
    drv.add([(abi.DATA, 16, False)])
    drv.add([(2**40, 16, False)])
    drv.publish()
    assert device.notify() == 1
    assert [h for h, _ in drv.used()] == [0]
    assert device.needs_reset


# --------------------------------------------------------------------------- PV and emulated

def _pv(memory: int = 0x10000):
    mem = GuestMemory(bytearray(memory))
    return mem, PVDevice(mem)


def test_pv_request_is_read_in_place():
    mem, dev = _pv()
    mem.write(0x9000, b"abcdefgh")
    mem.write(abi.PV_RECORD, struct.pack("<QII", 0x9000, 8, abi.PV_PENDING))
    dev.write(0, abi.PV_RECORD.to_bytes(4, "little"))
    assert mem.u32(abi.PV_RECORD + abi.R_STATUS) == abi.ST_OK
    assert dev.sink.checksum() == expected_checksum(b"abcdefgh")


@pytest.mark.parametrize("addr, length, status", [
    (0xFFFC, 8, abi.ST_BAD_RANGE),
    (0x9000, 0, abi.ST_TOO_LONG),
    (0x9000, abi.MAX_REQUEST + 4, abi.ST_TOO_LONG),
])
def test_pv_bad_request_gets_an_error_status(addr, length, status):
    mem, dev = _pv()
    mem.write(abi.PV_RECORD, struct.pack("<QII", addr, length, abi.PV_PENDING))
    dev.write(0, abi.PV_RECORD.to_bytes(4, "little"))
    assert mem.u32(abi.PV_RECORD + abi.R_STATUS) == status
    assert dev.sink.requests == 0 and dev.errors


def test_pv_record_outside_memory_is_only_reported():
    mem, dev = _pv()
    before = bytes(mem.read(0, len(mem)))
    dev.write(0, (0xFFFFFFF0).to_bytes(4, "little"))
    assert dev.errors[0] == {"code": "pv.record_outside_memory", "params": {"record": 0xFFFFFFF0}}
    assert mem.read(0, len(mem)) == before


def _status(dev: EmulatedDevice) -> bytes:
    """What the guest's ``in al, dx`` on the status register reads: the device on a bus answers it."""
    answer = bytearray(1)
    assert handle(kvm.exits.IoIn(abi.HVM_STATUS, 1, 1, 0, memoryview(answer)), _bus(dev)) is kvm.HANDLED
    return bytes(answer)


def _bus(dev) -> kvm.Bus:
    bus = kvm.Bus()
    dev.attach(bus)
    return bus


def test_emulated_device_register_protocol():
    dev = EmulatedDevice(GuestMemory(bytearray(16)))
    cmd, data = abi.HVM_CMD - dev.base, abi.HVM_DATA - dev.base
    dev.write(cmd, (6).to_bytes(4, "little"))
    assert _status(dev) == bytes([abi.ST_PROTOCOL])  # still waiting for data
    dev.write(data, b"abcd")
    dev.write(data, b"ef\x00\x00")  # the last dword is cut to the length
    assert _status(dev) == bytes([abi.ST_OK])
    assert dev.sink.checksum() == expected_checksum(b"abcdef")
    assert dev.stats.accesses == 5
    assert dev.stats.by_port == {abi.HVM_CMD: 1, abi.HVM_DATA: 2, abi.HVM_STATUS: 2}


def test_emulated_device_errors():
    dev = EmulatedDevice(GuestMemory(bytearray(16)))
    dev.write(abi.HVM_DATA - dev.base, b"abcd")
    assert _status(dev) == bytes([abi.ST_PROTOCOL])
    dev.write(abi.HVM_CMD - dev.base, (abi.MAX_REQUEST + 1).to_bytes(4, "little"))
    assert _status(dev) == bytes([abi.ST_TOO_LONG])
    assert [e["code"] for e in dev.errors] == ["hvm.no_request", "device.request_length"]
    assert dev.sink.requests == 0


def test_an_offset_the_device_has_no_register_at_is_a_host_error():
    from lab.devices.models import NoRegister

    with pytest.raises(NoRegister, match="no register at port 0x614"):
        PVDevice(GuestMemory(bytearray(16))).write(4, b"\0\0\0\0")


# --------------------------------------------------------------------------- the model, end to end

# 300 requests: hvm exits 300 * (1 + size/4) (counted by hand below), virtio one kick per batch (300/b rounded up).
@pytest.mark.parametrize("size, batch, hvm_exits, kicks", [
    (4, 1, 600, 300), (64, 8, 5100, 38), (512, 64, 38700, 5), (64, 256, 5100, 2),
])
def test_every_mode_moves_the_same_bytes_and_exits_follow_the_model(size, batch, hvm_exits, kicks):
    count = 300
    runs = {m: simulate(m, count, size, batch, seed=7) for m in MODES}
    sums = {r.checksum for r in runs.values()}
    assert len(sums) == 1 and sums == {runs["pv"].expected}
    for mode, r in runs.items():
        assert r.ok, (mode, r.errors)
        assert r.exits == guests.expected_exits(mode, count, size, batch), mode
    assert runs["hvm"].exits == hvm_exits
    assert runs["pv"].exits == count
    assert runs["virtio"].exits == runs["virtio"].kicks == kicks
    assert runs["virtio_ioeventfd"].exits == 0
    assert runs["virtio_ioeventfd"].eventfd_kicks == kicks
    for mode in ("virtio_no_notify", "virtio_event_idx"):  # how many kicks depends on how busy the device was
        r = runs[mode]
        assert r.exits == 0 and r.eventfd_kicks == r.kicks and 1 <= r.kicks <= kicks, (mode, r.kicks)


def test_bad_parameters_are_refused_with_the_rule():
    with pytest.raises(ValueError, match="multiple of 4"):
        simulate("pv", 1, 6)
    with pytest.raises(ValueError, match="queue size"):
        simulate("virtio", 1, 4, batch=257)
    with pytest.raises(ValueError, match="unknown mode"):
        simulate("sriov", 1, 4)
