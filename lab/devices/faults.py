"""What the device models answer a guest that breaks their protocol: one fault type per rule, each with its code.

A device keeps a fault (its code and values, :meth:`lab.kvm.errors.Coded.record`)
in its ``errors`` and answers the guest with an error status; it never raises
into the VMM's run loop for it. :class:`NoRegister` and :class:`WorkerFailed`
are host-side mistakes, raised.
"""

from __future__ import annotations

from lab.devices import abi
from lab.devices.memory import DeviceError
from lab.devices.virtqueue_errors import VirtqueueError


class DeviceFault(DeviceError):
    """Something the guest did wrong that a device answers with a status, not an exception (kept in ``errors``)."""


class RequestIncomplete(DeviceFault):
    code = "hvm.request_incomplete"

    def __init__(self, missing: int) -> None:
        super().__init__(f"command register written with {missing} bytes of the last request missing",
                         missing=missing)


class RequestLength(DeviceFault):
    code = "device.request_length"

    def __init__(self, length: int, record: int | None = None) -> None:
        where = f"PV request at {record:#x}: " if record is not None else "request "
        super().__init__(f"{where}length {length} is not between 1 and {abi.MAX_REQUEST}",
                         length=length, max=abi.MAX_REQUEST, record=record)


class NoRequestOpen(DeviceFault):
    code = "hvm.no_request"

    def __init__(self) -> None:
        super().__init__("data register written with no request open (write the command register first)",
                         port=abi.HVM_DATA)


class ReadOnlyRegister(DeviceFault):
    code = "hvm.read_only"

    def __init__(self, port: int) -> None:
        super().__init__(f"status register at {port:#x} is read-only", port=port)


class RecordOutsideMemory(DeviceFault):
    code = "pv.record_outside_memory"

    def __init__(self, record: int) -> None:
        super().__init__(f"PV request record at {record:#x} is outside guest memory", record=record)


class DataOutsideMemory(DeviceFault):
    code = "pv.data_outside_memory"

    def __init__(self, record: int, start: int, end: int) -> None:
        super().__init__(f"PV request at {record:#x}: data [{start:#x}, {end:#x}) is outside guest memory",
                         record=record, start=start, end=end)


class NoSuchQueue(DeviceFault):
    code = "virtio.no_such_queue"

    def __init__(self, queue: int) -> None:
        super().__init__(f"notification for queue {queue}; this device has only queue 0", queue=queue)


class NeedsReset(DeviceFault):
    code = "virtio.needs_reset"

    def __init__(self, cause: VirtqueueError) -> None:
        super().__init__(f"virtqueue error, device needs reset: {cause}", cause=cause.record())


class NoRegister(DeviceError):
    """A host-side mistake: an access at an offset where the device has no register."""

    code = "device.no_register"

    def __init__(self, device: str, port: int) -> None:
        super().__init__(f"{device} has no register at port {port:#x}", device=device, port=port)


class WorkerFailed(DeviceError):
    code = "device.worker_failed"

    def __init__(self, failure: str) -> None:
        super().__init__(f"vhost worker thread failed: {failure}", failure=failure)
