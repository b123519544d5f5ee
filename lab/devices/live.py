"""Live runs: the guest programs of :mod:`lab.devices.guests` on the mini VMM.

:func:`run_io` builds a VM, puts the payload and the parameters in guest
memory, attaches the device model of the mode, runs the guest until it halts
and reports what happened: exits to the VMM's userspace, notifications,
guest-timed cycles, host wall time, and the checksum of what the device
received (to compare with the checksum of the payload).

Modes (:data:`PATHS`): ``hvm``, ``pv``, ``virtio`` and ``virtio_ioeventfd``
(the virtio notify port registered with ``KVM_IOEVENTFD`` and served by a
:class:`~lab.devices.vhost.VhostWorker` thread: the vCPU does not come back
to userspace for a kick), and on that same path ``virtio_no_notify`` and
``virtio_event_idx``: the worker's device suppresses kicks while it polls
(``VIRTQ_USED_F_NO_NOTIFY``, or ``avail_event`` with ``VIRTIO_F_EVENT_IDX``)
and the guest (:data:`~lab.devices.guests.VIRTIO_STREAM`) fills the queue
without waiting for each batch, kicking only when asked. Every kick there is
still an exit, one KVM finishes in the kernel: ``kicks`` counts them.

The device models are bus devices on a port-I/O bus
(``Vcpu.run_until(pio=bus)``, :mod:`lab.kvm.bus`): the whole run is one call with
one watchdog, so thousands of register accesses cost one ``KVM_RUN`` round
trip each and nothing more. The models work on the VM's own
:class:`~lab.kvm.memory.GuestMemory`. Ctrl-C during a run raises
``KeyboardInterrupt`` at once, after the host thread, the device and the VM
are closed.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass
from typing import Any

from lab import kvm
from lab.devices import abi, guests
from lab.devices.memory import DeviceError, GuestMemory
from lab.devices.models import DEVICE_CLASSES, Delivery, VirtioDevice, _Device, expected_checksum
from lab.devices.vhost import VhostWorker
from lab.kvm.kick import sigint_deferred


@dataclass(frozen=True)
class IoPath:
    """How one mode moves a request: the guest program, the device, and where the kick goes."""

    program: str                #: key of :data:`lab.devices.guests.PROGRAMS`
    device: str                 #: key of :data:`lab.devices.models.DEVICE_CLASSES`
    ioeventfd: bool = False     #: the kick is an ioeventfd taken by a VhostWorker thread (no exit to userspace)
    suppress: str | None = None  #: how the device turns kicks off while busy (:data:`models.SUPPRESSION`)

    @property
    def event_idx(self) -> bool:
        """VIRTIO_F_EVENT_IDX negotiated: the driver kicks by ``avail_event``."""
        return self.suppress == "event_idx"

    def make_device(self, mem: GuestMemory) -> _Device:
        """The device model this path hands its requests to, over ``mem``."""
        if self.device == "virtio":
            return VirtioDevice(mem, suppress=self.suppress)
        return DEVICE_CLASSES[self.device](mem)


PATHS = {
    "hvm": IoPath("hvm", "hvm"),
    "pv": IoPath("pv", "pv"),
    "virtio": IoPath("virtio", "virtio"),
    "virtio_ioeventfd": IoPath("virtio", "virtio", ioeventfd=True),
    "virtio_no_notify": IoPath("virtio_stream", "virtio", ioeventfd=True, suppress="no_notify"),
    "virtio_event_idx": IoPath("virtio_stream", "virtio", ioeventfd=True, suppress="event_idx"),
}
MODES = tuple(PATHS)


class IoRunError(DeviceError):
    """A live I/O run could not complete; the message says why and what to do."""

    code = "io.run"


class GuestWaitsForRefusedDevice(IoRunError):
    """The guest did not halt because a device refused its requests (``cause``: the first fault)."""

    code = "io.device_refused"

    def __init__(self, timeout_s: float, cause: dict[str, Any]) -> None:
        super().__init__(f"the guest did not halt within {timeout_s:g} s: it waits for a device that refused its "
                         f"requests ({cause['code']} {cause['params']}); check the guest's queue or parameters",
                         timeout_s=timeout_s, cause=cause)


class UnexpectedStop(IoRunError):
    """The guest stopped on an exit no device of the run handles."""

    code = "io.unexpected_exit"

    def __init__(self, exit: kvm.Exit) -> None:
        super().__init__(f"the guest stopped with {exit!r} instead of hlt: no device of this run handles it",
                         exit=type(exit.exit).__name__, rip=exit.rip)


@dataclass
class IoRun(Delivery):
    """The outcome of one live run of ``count`` requests of ``size`` bytes."""

    wall_ns: int = 0           #: host time from the first KVM_RUN to the hlt
    guest_cycles: int = 0      #: rdtsc end - start, inside the guest
    guest_done: int = 0        #: requests the guest saw completed
    guest_errors: int = 0      #: error statuses the guest saw
    tsc_khz: float | None = None  #: the guest TSC rate KVM reports (None when it cannot say)

    @property
    def requests_per_s(self) -> float:
        return self.count / (self.wall_ns / 1e9) if self.wall_ns else float("nan")

    @property
    def cycles_per_request(self) -> float:
        return self.guest_cycles / self.count

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(ok=self.ok, exits_per_request=self.exits_per_request,
                 requests_per_s=self.requests_per_s, cycles_per_request=self.cycles_per_request)
        return d


def payload(count: int, size: int, seed: int = 0) -> bytes:
    """The deterministic payload: ``count * size`` pseudo-random bytes from ``seed``."""
    return random.Random(seed).randbytes(count * size)


def check_params(mode: str, count: int, size: int, batch: int) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
    if count < 1:
        raise ValueError(f"count must be at least 1, not {count}")
    if not (4 <= size <= abi.MAX_REQUEST and size % 4 == 0):
        raise ValueError(f"size must be a multiple of 4 between 4 and {abi.MAX_REQUEST}, not {size}")
    if not 1 <= batch <= abi.QUEUE_SIZE:
        raise ValueError(f"batch must be between 1 and the queue size {abi.QUEUE_SIZE}, not {batch}")
    if count * size > 64 * 1024 * 1024:
        raise ValueError(f"{count} x {size} bytes is more than the 64 MiB of payload a run may use")


def port_bus(device: _Device) -> kvm.Bus:
    """A port-I/O bus with ``device`` over its ports (each access is counted in ``device.stats.by_port``)."""
    bus = kvm.Bus()
    device.attach(bus)
    return bus


def _write_params(mem: GuestMemory, count: int, size: int, batch: int, data_addr: int) -> None:
    p = abi.PARAMS
    mem.fill(p, abi.PARAMS_SIZE)
    mem.set_u32(p + abi.P_COUNT, count)
    mem.set_u32(p + abi.P_SIZE, size)
    mem.set_u32(p + abi.P_BATCH, batch)
    mem.set_u32(p + abi.P_DATA, data_addr)


def run_io(mode: str, count: int, size: int, batch: int = 1, *, seed: int = 0,
           timeout_s: float = 60.0, system: kvm.System | None = None, data_addr: int = abi.DATA) -> IoRun:
    """Run ``count`` requests of ``size`` bytes through the device of ``mode`` in a fresh VM.

    ``system`` is an open :class:`lab.kvm.System` to reuse (else one is opened
    and closed here). ``data_addr`` is where the guest is told the payload is
    (tests point it outside guest memory to see the devices refuse).

    Raises :class:`lab.kvm.KvmUnavailable` without KVM, :class:`IoRunError`
    when the device refused the guest's requests and the guest could not
    finish, :class:`lab.kvm.RunTimeout` when the guest did not halt.
    """
    check_params(mode, count, size, batch)
    if system is None:
        with kvm.open() as own:
            return run_io(mode, count, size, batch, seed=seed, timeout_s=timeout_s, system=own,
                          data_addr=data_addr)

    data = payload(count, size, seed)
    path = PATHS[mode]
    program = guests.PROGRAMS[path.program]
    with system.create_vm(memory_kib=abi.memory_size_for(count, size) // 1024) as vm:
        mem = vm.memory(0)
        worker: VhostWorker | None = None
        device: _Device | None = None
        try:
            device = _prepare(mem, mode, data, count, size, batch, data_addr)
            vm.load(program)
            vcpu = vm.create_vcpu(mode="protected32", entry=program.origin)
            tsc_khz = vcpu.tsc_khz()
            if path.ioeventfd:
                efd = vm.ioeventfd(abi.VIRTIO_NOTIFY, length=abi.VIRTIO_NOTIFY_SIZE, datamatch=0)
                with sigint_deferred():  # the thread and its eventfd are ours before a Ctrl-C can strike
                    worker = VhostWorker(device, kick_fd=efd.fd)  # type: ignore[arg-type]
                    worker.__enter__()
            start = time.perf_counter_ns()
            _run_until_hlt(vcpu, port_bus(device), device, timeout_s)
            wall = time.perf_counter_ns() - start
            eventfd_kicks = 0
            if worker is not None:
                worker.close()  # raises if the worker thread failed
                eventfd_kicks = worker.kicks
            p, ports = abi.PARAMS, device.stats.by_port
            return IoRun(
                mode=mode, count=count, size=size, batch=batch,
                exits=sum(ports.values()), exits_by_port={f"{k:#x}": v for k, v in sorted(ports.items())},
                kicks=mem.u32(p + abi.P_KICKS), eventfd_kicks=eventfd_kicks, wall_ns=wall,
                guest_cycles=mem.u64(p + abi.P_TSC_END) - mem.u64(p + abi.P_TSC_START),
                requests=device.sink.requests, bytes=device.sink.bytes,
                checksum=device.sink.checksum(), expected=expected_checksum(data),
                guest_done=mem.u32(p + abi.P_DONE), guest_errors=mem.u32(p + abi.P_ERRORS),
                tsc_khz=float(tsc_khz) if tsc_khz else None, errors=list(device.errors), polls=device.stats.polls,
            )
        finally:
            _release(worker, device)


def _release(worker: VhostWorker | None, device: _Device | None) -> None:
    """Stop the worker thread and drop the device's views of guest memory (before the VM unmaps it)."""
    with sigint_deferred():  # a Ctrl-C here would leave the thread or the views of guest memory
        if worker is not None:
            try:
                worker.close()
            except DeviceError:
                pass
        if device is not None:
            device.close()


def _prepare(mem: GuestMemory, mode: str, data: bytes, count: int, size: int, batch: int,
             data_addr: int) -> _Device:
    """Put the payload, the parameters and (virtio) empty rings in guest memory; the device of ``mode``."""
    path = PATHS[mode]
    mem.write(abi.DATA, data)
    _write_params(mem, count, size, batch, data_addr)
    if path.device == "virtio":
        from lab.devices.driver import DriverQueue
        from lab.devices.virtqueue import Layout
        DriverQueue(mem, Layout(abi.QUEUE_SIZE, abi.VQ_DESC, abi.VQ_AVAIL, abi.VQ_USED))  # zeroed rings
        mem.set_u32(abi.PARAMS + abi.P_EVENT_IDX, int(path.event_idx))
    return path.make_device(mem)


# --------------------------------------------------------------------------- run loop


def _run_until_hlt(vcpu: kvm.Vcpu, bus: kvm.Bus, device: _Device, timeout_s: float) -> None:
    """Run ``vcpu`` until ``hlt``, giving every port-I/O exit to the devices on ``bus`` (one watchdog for the run)."""
    try:
        exit_ = vcpu.run_until(timeout_s, pio=bus)
    except kvm.RunTimeout as exc:
        if not device.errors:
            raise
        raise GuestWaitsForRefusedDevice(timeout_s, device.errors[0]) from exc
    if not isinstance(exit_.exit, kvm.exits.Hlt):
        raise UnexpectedStop(exit_)
