"""Benchmarks of the book and their command line: ``python -m lab bench <kind>``.

Each benchmark module registers a :class:`~lab.bench.registry.Bench` in
:data:`BENCHES`: its command-line arguments, how it runs, and how it becomes
a recorded resource of ``data/measured/<host-id>/`` (``python -m lab record``
records every registered benchmark). Importing this package imports them all.
The shared machinery (statistics, provenance, progress, recording) is in
:mod:`lab.bench.harness`.

* :mod:`lab.bench.exits` - what one VMExit costs, per kind;
* :mod:`lab.bench.io` - the same requests through an emulated, a PV and a virtio device (``io``), and
  through virtio over ioeventfd with and without kick suppression (``notify``);
* :mod:`lab.bench.tour` - the misbehaving guests of the KVM chapter, recorded on each host;
* :mod:`lab.bench.cells` - what the chapters' ``%%kvm`` cells printed on a KVM host (their recorded outputs);
* :mod:`lab.bench.reference` - the same guest bytes under this Python VMM and a C VMM;
* :mod:`lab.bench.native` - the guest's empty loop run natively on the host;
* :mod:`lab.bench.qemu_io` - register accesses per disk request in QEMU's real device models.

Where recordings go (``--root``, checked before anything is measured): :mod:`lab.bench.record_root`.
"""

# The registry first: a benchmark module may import Bench and register from lab.bench itself.
from lab.bench.registry import BENCHES, Bench, register  # noqa: F401  # isort: skip
from lab.bench import cells, exits, io, native, qemu_io, reference, tour  # noqa: F401  (each registers its benchmark)
