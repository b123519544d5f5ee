"""Memory ordering between a guest's vCPU and a device model's thread: C11 fences, not x86's store order.

A virtqueue is shared memory written by two CPUs at once: the vCPU (the
driver) and the host thread of a device model such as
:class:`~lab.devices.vhost.VhostWorker`. Each index access in
:mod:`lab.devices.virtqueue` says which ordering it needs, as vm-virtio's
``queue.rs`` and Linux's ``virtio_ring.c`` do:

* **acquire** after loading an index (``avail.idx``, ``used.idx``): what is
  read next (ring slots, descriptors, used elements) is at least as new as the
  index;
* **release** before storing an index: what was written before (descriptors,
  used elements) is visible before the index that publishes it;
* **full** (sequentially consistent) between storing a notification setting
  (``used.flags``, ``avail_event``) and loading the other side's index, and the
  same on the driver's side between storing ``avail.idx`` and loading the
  device's setting. Without it both sides can miss each other's store (a store
  may wait in the store buffer while a later load goes ahead, even on x86) and
  the driver then waits for a device that waits for a kick.

The fences are C11's ``atomic_thread_fence``, called in GCC's ``libatomic``
(Debian's ``libatomic1``), so each is the right instruction for the CPU it runs
on (``mfence`` for a full fence on x86-64, ``dmb`` on arm64) and nothing in the
ring code relies on x86 keeping stores in order. An index is two aligned bytes
read or written with one copy (``GuestMemory.u16`` / ``set_u16``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

from lab.devices.memory import DeviceError

#: C11's memory_order values (<stdatomic.h>)
MEMORY_ORDER_ACQUIRE, MEMORY_ORDER_RELEASE, MEMORY_ORDER_SEQ_CST = 2, 3, 5

LIBRARY = "libatomic.so.1"


class FencesUnavailable(DeviceError):
    """GCC's libatomic, which provides the ring's memory fences, cannot be loaded."""

    code = "ordering.no_libatomic"

    def __init__(self, library: str, error: str) -> None:
        super().__init__(f"the virtqueue's memory fences come from GCC's libatomic, which cannot be loaded "
                         f"({library}: {error}): install it with 'apt-get install libatomic1'",
                         library=library, error=error)


def _load() -> Callable[[int], None]:
    name = ctypes.util.find_library("atomic") or LIBRARY
    try:
        fence = ctypes.CDLL(name).atomic_thread_fence
    except (OSError, AttributeError) as exc:
        error = str(exc)

        def missing(order: int) -> None:
            raise FencesUnavailable(name, error)
        return missing
    fence.argtypes = [ctypes.c_int]
    fence.restype = None
    return fence  # type: ignore[no-any-return]


_fence = _load()


def acquire() -> None:
    """After a load: later loads and stores are not done before it."""
    _fence(MEMORY_ORDER_ACQUIRE)


def release() -> None:
    """Before a store: earlier loads and stores are done before it."""
    _fence(MEMORY_ORDER_RELEASE)


def full() -> None:
    """Between a store and a load of another location: the store is visible to all CPUs before the load."""
    _fence(MEMORY_ORDER_SEQ_CST)
