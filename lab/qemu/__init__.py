"""Real Linux guests under emulators: QEMU device models per disk request, and KVM on emulated VT-x / AMD-V.

* :mod:`lab.qemu.trace` - QEMU's trace of register accesses, counted per marked phase (a stream parser);
* :mod:`lab.qemu.domain` - the run's libvirt domain XML: ``lab.virt``'s spec plus direct kernel
  boot, the marker device and the trace options (QEMU command-line namespace);
* :mod:`lab.qemu.run` - boot it on ``qemu:///system`` with a deadline, parse, clean up;
* :mod:`lab.qemu.hwvirt` - the VMM's KVM live tests on ``kvm_amd``, in a guest on QEMU TCG's emulated AMD-V;
* :mod:`lab.qemu.bochs` - the same tests on ``kvm_intel``, in a guest on Bochs' emulated VT-x (same payload);
* :mod:`lab.qemu.io` - the per-request counts for IDE, AHCI and virtio-blk, and what they mean under KVM.
"""
