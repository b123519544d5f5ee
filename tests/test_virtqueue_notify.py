"""Kick suppression in the split virtqueue (NO_NOTIFY, EVENT_IDX), its memory fences, and one path to guest memory.

Hand-built rings in a bytearray: no KVM, no thread. The driver is
:class:`lab.devices.driver.DriverQueue`, the device
:class:`lab.devices.virtqueue.DeviceQueue` or the
:class:`lab.devices.models.VirtioDevice` built on it.
"""

from __future__ import annotations

import ctypes.util

import pytest

from lab.devices import ordering
from lab.devices.driver import DriverQueue
from lab.devices.memory import GuestMemory
from lab.devices.models import VirtioDevice
from lab.devices.virtqueue import (
    VIRTQ_USED_F_NO_NOTIFY,
    DescriptorIndexOutOfRange,
    DeviceQueue,
    Layout,
    read_descriptor,
    vring_need_event,
)

QSIZE = 8
DATA = 0x8000


def _ring(event_idx: bool = False, start: int = 0):
    """A queue whose indices all stand at ``start`` (as after ``start`` requests went round)."""
    mem = GuestMemory(bytearray(0x10000))
    layout = Layout.contiguous(0x1000, QSIZE)
    driver = DriverQueue(mem, layout, event_idx=event_idx)
    for part in (layout.avail + 2, layout.used + 2):
        mem.set_u16(part, start)
    driver.avail_idx = driver.kicked_idx = driver.last_used_idx = start
    device = DeviceQueue(mem, layout, event_idx=event_idx)
    device.last_avail_idx = start
    return mem, layout, driver, device


def _add(driver: DriverQueue, n: int = 1) -> None:
    for i in range(n):
        driver.add([(DATA + 16 * i, 16, False)])


# --------------------------------------------------------------------------- vring_need_event


def _crossed(event: int, new: int, old: int) -> bool:
    """The same question asked without modular arithmetic: is ``event`` one of the indices old .. new - 1?"""
    return any((old + k) % 65536 == event for k in range((new - old) % 65536))


@pytest.mark.parametrize("old", [0, 1, 100, 0xFFF0, 0xFFFE, 0xFFFF])
def test_need_event_is_the_crossing_of_the_event_index_around_the_16_bit_wrap(old):
    for step in (0, 1, 2, 7, 255):
        new = (old + step) % 65536
        for event in {(old + d) % 65536 for d in range(-3, step + 4)}:
            assert vring_need_event(event, new, old) == _crossed(event, new, old), (event, new, old)


def test_need_event_examples_across_the_wrap():
    assert vring_need_event(0xFFFF, 0x0001, 0xFFFE)      # the index went 0xFFFE -> 0x0001 through 0xFFFF
    assert vring_need_event(0x0000, 0x0001, 0xFFFE)
    assert not vring_need_event(0x0001, 0x0001, 0xFFFE)  # not passed yet: the next buffer is the one
    assert not vring_need_event(0xFFFD, 0x0001, 0xFFFE)  # passed before the last decision: kicked then
    assert not vring_need_event(5, 5, 5)                 # nothing published


# --------------------------------------------------------------------------- the flag: VIRTQ_USED_F_NO_NOTIFY


def test_without_suppression_every_publish_asks_for_a_kick():
    _, _, driver, device = _ring()
    for _ in range(3):
        _add(driver)
        assert driver.publish()
        assert len(list(device.pop_all())) == 1


def test_no_notify_stops_the_kicks_and_reenabling_finds_what_came_meanwhile():
    mem, layout, driver, device = _ring()
    device.disable_notification()
    assert mem.u16(layout.used) & VIRTQ_USED_F_NO_NOTIFY
    _add(driver, 2)
    assert not driver.publish()  # the device polls: no kick
    # The device drained the ring before these came; turning kicks on again, it must look once more.
    assert device.enable_notification() is True
    assert mem.u16(layout.used) & VIRTQ_USED_F_NO_NOTIFY == 0
    assert len(list(device.pop_all())) == 2
    assert device.enable_notification() is False  # nothing new: wait for the next kick
    _add(driver)
    assert driver.publish()


def test_a_driver_that_ignores_no_notify_only_costs_a_notification():
    mem = GuestMemory(bytearray(0x10000))
    layout = Layout.contiguous(0x1000, QSIZE)
    driver, device = DriverQueue(mem, layout), VirtioDevice(mem, layout, suppress="no_notify")
    _add(driver)
    driver.publish()
    assert device.notify() == 1
    device.queue.disable_notification()  # as if the device were still polling
    _add(driver)
    assert not driver.publish()
    assert device.notify() == 1  # kicked anyway: served, nothing refused
    assert device.notify() == 0  # and a kick with nothing new is harmless
    assert device.errors == [] and not device.needs_reset and device.stats.notifications == 3
    assert [h for h, _ in driver.used()] == [0, 1]


# --------------------------------------------------------------------------- the event index: VIRTIO_F_EVENT_IDX


@pytest.mark.parametrize("start", [0, 0xFFFE])
def test_event_idx_kicks_once_per_enable_and_the_recheck_catches_the_rest(start):
    mem, layout, driver, device = _ring(event_idx=True, start=start)
    assert device.enable_notification() is False
    assert mem.u16(layout.avail_event) == start
    _add(driver)
    assert driver.publish()  # passed avail_event: kick
    _add(driver)
    assert not driver.publish()  # the device has not moved avail_event: it knows there is work
    device.disable_notification()  # with EVENT_IDX nothing to write
    assert mem.u16(layout.avail_event) == start
    assert len(list(device.pop_all())) == 2
    _add(driver)  # published after the device's last look ...
    assert not driver.publish()  # ... and avail_event was behind it: no kick
    assert device.enable_notification() is True  # the second look finds it
    assert mem.u16(layout.avail_event) == (start + 2) % 65536
    assert len(list(device.pop_all())) == 1
    assert device.enable_notification() is False
    _add(driver)
    assert driver.publish()  # idle again: the next buffer kicks


def test_event_idx_the_driver_reads_avail_event_not_the_flag():
    mem, layout, driver, _ = _ring(event_idx=True)
    mem.set_u16(layout.used, VIRTQ_USED_F_NO_NOTIFY)  # a flag the driver must ignore with EVENT_IDX
    _add(driver)
    assert driver.publish()


# --------------------------------------------------------------------------- a device that polls while busy


@pytest.mark.parametrize("suppress", ["no_notify", "event_idx"])
def test_a_suppressing_device_takes_what_the_driver_adds_while_it_works(suppress):
    """The driver adds one more request while the device is still in its first pass (here: from inside the
    device's sink); the device finds it on its second look and returns both, with kicks off in between."""
    mem = GuestMemory(bytearray(0x10000))
    layout = Layout.contiguous(0x1000, QSIZE)
    driver = DriverQueue(mem, layout, event_idx=suppress == "event_idx")
    device = VirtioDevice(mem, layout, suppress=suppress)
    kicks = []
    consume = device.sink.consume

    def busy(data):
        consume(data)
        if device.sink.requests == 1:
            _add(driver)
            kicks.append(driver.publish())

    device.sink.consume = busy
    _add(driver)
    assert driver.publish()
    assert device.notify() == 2
    assert kicks == [False]  # the request added meanwhile was not kicked
    assert device.stats.polls == 1 and device.stats.notifications == 1
    assert [h for h, _ in driver.used()] == [0, 1]


def test_an_unknown_suppression_is_refused():
    with pytest.raises(ValueError, match="suppress must be one of"):
        VirtioDevice(GuestMemory(bytearray(0x10000)), Layout.contiguous(0x1000, QSIZE), suppress="sometimes")


# --------------------------------------------------------------------------- one path to guest memory


def test_every_descriptor_read_checks_the_index():
    mem, layout, _, _ = _ring()
    with pytest.raises(DescriptorIndexOutOfRange):
        read_descriptor(mem, layout, QSIZE)
    with pytest.raises(DescriptorIndexOutOfRange):
        read_descriptor(mem, layout, -1)


def test_read_chain_is_bytes_for_one_part_and_for_many():
    mem, _, driver, device = _ring()
    mem.write(DATA, b"one")
    mem.write(DATA + 0x100, b"two")
    driver.add([(DATA, 3, False)])
    driver.add([(DATA, 3, False), (DATA + 0x100, 3, False)])
    driver.publish()
    parts = [device.read_chain(c) for c in device.pop_all()]
    assert parts == [b"one", b"onetwo"] and all(type(p) is bytes for p in parts)


def test_the_device_queue_holds_no_view_of_guest_memory():
    """Every access goes through GuestMemory's checks; nothing keeps a raw view that would pin the mapping."""
    mem = GuestMemory.anonymous(0x10000)
    layout = Layout.contiguous(0x1000, QSIZE)
    driver, device = DriverQueue(mem, layout), DeviceQueue(mem, layout)
    _add(driver)
    driver.publish()
    assert [device.read_chain(c) for c in device.pop_all()] == [bytes(16)]
    device.push_used(0)
    device.publish()
    mem.close()  # raises while a view is alive
    assert mem.closed


# --------------------------------------------------------------------------- the fences


def test_the_fences_run():
    ordering.acquire()
    ordering.release()
    ordering.full()


def test_without_libatomic_the_fence_says_what_to_install(monkeypatch):
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: "libatomic-that-is-not-there.so.1")
    fence = ordering._load()
    with pytest.raises(ordering.FencesUnavailable, match="apt-get install libatomic1") as info:
        fence(ordering.MEMORY_ORDER_SEQ_CST)
    assert info.value.code == "ordering.no_libatomic"
    assert info.value.params["library"] == "libatomic-that-is-not-there.so.1"
