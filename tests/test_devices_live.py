"""The I/O guests on the mini VMM: same bytes in every mode, exits as the model says.

Marked ``kvm``: skipped with the reason where /dev/kvm is not usable (and a
failure under ``LAB_REQUIRE_LIVE=kvm``).
"""

from __future__ import annotations

import os
import threading

import pytest

from lab.devices import abi, guests, live

pytestmark = pytest.mark.kvm


@pytest.fixture(scope="module")
def system():
    from lab import kvm

    with kvm.open() as s:
        yield s


@pytest.mark.parametrize("size, batch", [(4, 1), (64, 8), (256, 256)])
def test_every_mode_moves_the_same_bytes(system, size, batch):
    count = 40
    runs = {m: live.run_io(m, count, size, batch, seed=3, system=system) for m in live.MODES}
    expected = runs["hvm"].expected
    for mode, r in runs.items():
        assert r.ok, (mode, r.errors)
        assert r.checksum == expected and r.requests == count and r.bytes == count * size, mode
        assert r.guest_done == count and r.guest_errors == 0, mode
        assert r.guest_cycles > 0 and r.wall_ns > 0


@pytest.mark.parametrize("size", [4, 32, 128])
def test_emulated_device_one_exit_per_register_access(system, size):
    r = live.run_io("hvm", 10, size, system=system)
    assert r.exits == 10 * (1 + size // 4) == guests.expected_exits("hvm", 10, size, 1)
    assert r.exits_by_port == {f"{abi.HVM_CMD:#x}": 10, f"{abi.HVM_DATA:#x}": 10 * size // 4}


def test_pv_one_exit_per_request(system):
    r = live.run_io("pv", 37, 64, system=system)
    assert r.exits == 37 and r.exits_by_port == {f"{abi.PV_PORT:#x}": 37}


@pytest.mark.parametrize("count, batch", [(64, 1), (64, 8), (100, 64), (256, 256)])
def test_virtio_one_exit_per_batch(system, count, batch):
    r = live.run_io("virtio", count, 16, batch, system=system)
    batches = -(-count // batch)
    assert r.ok and r.exits == r.kicks == batches


@pytest.mark.parametrize("batch", [1, 16])
def test_virtio_ioeventfd_no_exit_to_userspace(system, batch):
    r = live.run_io("virtio_ioeventfd", 64, 16, batch, system=system)
    assert r.ok and r.exits == 0
    assert r.eventfd_kicks == r.kicks == -(-64 // batch)  # every kick went through the eventfd


@pytest.mark.parametrize("mode", ["virtio_no_notify", "virtio_event_idx"])
@pytest.mark.parametrize("batch", [1, 16])
def test_suppressed_kicks_are_no_more_than_the_batches_and_all_reach_the_eventfd(system, mode, batch):
    """Every kick the guest makes is an ioeventfd (no exit to userspace) and none is lost; the device asks
    for fewer kicks the longer it is busy, so their number is bounded, not fixed."""
    r = live.run_io(mode, 64, 16, batch, system=system)
    assert r.ok and r.exits == 0 and r.guest_done == 64
    assert r.eventfd_kicks == r.kicks and 1 <= r.kicks <= -(-64 // batch)


def test_pv_refuses_data_outside_guest_memory(system):
    r = live.run_io("pv", 5, 64, system=system, data_addr=0x4000_0000)
    assert not r.ok and r.requests == 0
    assert r.guest_errors == 5  # the guest saw an error status each time
    assert r.errors[0]["code"] == "pv.data_outside_memory" and r.errors[0]["params"]["start"] == 0x4000_0000


def test_virtio_device_refuses_and_the_watchdog_ends_the_wait(system):
    with pytest.raises(live.GuestWaitsForRefusedDevice, match="did not halt within 1 s.*virtio.needs_reset"):
        live.run_io("virtio", 8, 64, 8, system=system, data_addr=0x4000_0000, timeout_s=1.0)


def test_a_guest_that_never_halts_is_stopped(system, monkeypatch):
    from lab import kvm
    from lab.guests import SPIN

    monkeypatch.setitem(guests.PROGRAMS, "pv", SPIN)
    with pytest.raises(kvm.RunTimeout, match="did not exit within 0.5 s"):
        live.run_io("pv", 1, 4, system=system, timeout_s=0.5)


def test_nothing_is_left_behind(system):
    def fds():
        return sorted(os.listdir("/proc/self/fd"))

    live.run_io("virtio_ioeventfd", 8, 16, 4, system=system)  # warm imports
    before, threads = fds(), threading.active_count()
    for mode in live.MODES:
        live.run_io(mode, 8, 16, 4, system=system)
    assert fds() == before
    assert threading.active_count() == threads
