"""Toy device models: three ways for a guest to hand the same bytes to a device.

* :mod:`lab.devices.memory` - guest memory with bounds-checked access (the one gate);
* :mod:`lab.devices.virtqueue` - the virtio 1.x split virtqueue: layout, device side, driver side;
* :mod:`lab.devices.virtqueue_errors` - the virtqueue rules a driver can break, one error type each;
* :mod:`lab.devices.faults` - what the device models answer a guest that breaks their protocol;
* :mod:`lab.devices.models` - the emulated (HVM), PV and virtio devices (bus devices), the vhost-style worker;
* :mod:`lab.devices.abi` - ports and guest-physical addresses shared with the guest programs;
* :mod:`lab.devices.guests` - the guest programs, one per mode, as listings;
* :mod:`lab.devices.live` - running them on the mini VMM (:mod:`lab.kvm`);
* :mod:`lab.devices.sim` - the same protocols with Python as the guest (no KVM);

The pure parts (memory, virtqueue, models, sim) need neither KVM nor root.
"""

from lab.devices.memory import DeviceError, GuestMemory, GuestMemoryError  # noqa: F401
from lab.devices.virtqueue import VirtqueueError  # noqa: F401
