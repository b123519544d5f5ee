"""Toy device models: three ways for a guest to hand the same bytes to a device.

* :mod:`lab.devices.memory` - guest memory with bounds-checked access (the one gate);
* :mod:`lab.devices.virtqueue` - the virtio 1.x split virtqueue: layout, the device's side, kick suppression;
* :mod:`lab.devices.driver` - the driver's side of a virtqueue, in Python;
* :mod:`lab.devices.ordering` - the memory fences the ring's index accesses need (C11, not x86's order);
* :mod:`lab.devices.virtqueue_errors` - the virtqueue rules a driver can break, one error type each;
* :mod:`lab.devices.faults` - what the device models answer a guest that breaks their protocol;
* :mod:`lab.devices.models` - the emulated (HVM), PV and virtio devices (bus devices);
* :mod:`lab.devices.vhost` - the vhost-style worker thread that takes kicks from an eventfd;
* :mod:`lab.devices.abi` - ports and guest-physical addresses shared with the guest programs;
* :mod:`lab.devices.guests` - the guest programs, one per mode, as listings;
* :mod:`lab.devices.live` - running them on the mini VMM (:mod:`lab.kvm`);
* :mod:`lab.devices.sim` - the same protocols with Python as the guest (no KVM);

The pure parts (memory, virtqueue, models, sim) need neither KVM nor root.
"""

from lab.devices.memory import DeviceError, GuestMemory, GuestMemoryError  # noqa: F401
from lab.devices.virtqueue import VirtqueueError  # noqa: F401
