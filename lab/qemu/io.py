"""Register accesses per disk request for IDE, AHCI and virtio-blk, and what they mean under KVM.

:func:`measure` boots one guest per disk configuration (two at a time: the
machines here have two cores), each running O_DIRECT reads and writes of
``block_size`` bytes for every count in ``counts`` plus a control phase (the
same ``dd`` without the disk), and turns the phases into :class:`Count` rows.

Counting is exact and independent of the host's speed, so it can run under
QEMU's software emulation (TCG). What an access would cost under hardware
KVM depends on where KVM handles it (:func:`handled_by`):

* a PIO or MMIO access to an emulated device (IDE's ports and bus-master
  DMA registers, AHCI's MMIO registers, virtio's configuration and, with
  ``ioeventfd=off``, notify registers) is a VMExit that KVM passes to QEMU in
  user space (``KVM_EXIT_IO`` / ``KVM_EXIT_MMIO``): a trip through two
  privilege switches and QEMU's device model;
* a virtio kick under ioeventfd is a VMExit that KVM completes in the kernel
  by signalling an eventfd (no access shows in the trace, only the
  notification);
* local-APIC, I/O-APIC and PIC accesses go to KVM's in-kernel irqchip (with
  APIC virtualization an EOI may not exit at all); interrupts are injected
  through irqfd. These are background here (timer, end of interrupt).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from lab.kit import Kit
from lab.qemu import domain
from lab.qemu import run as qrun
from lab.qemu.trace import Phase
from lab.virt import Connection

DEFAULT_CONFIGS = ("ide", "ahci", "virtio", "virtio-noioeventfd")
DEFAULT_COUNTS = (1000, 2000)
OPS = ("read", "write")
#: Regions KVM emulates in the kernel when QEMU runs with its in-kernel irqchip.
KERNEL_REGIONS = frozenset({"ioapic", "pic", "elcr", "kvm-pit", "pit"})


def handled_by(region: str) -> str:
    """``kernel`` when KVM handles an access to ``region`` itself, ``userspace`` when it exits to QEMU."""
    return "kernel" if region in KERNEL_REGIONS else "userspace"


@dataclass(frozen=True)
class Count:
    """One (configuration, operation, request count) of one run.

    ``accesses`` is the guest's device register accesses in the phase (reads
    + writes), ``per_request`` that divided by ``requests``; ``userspace`` and
    ``kernel`` split them by where KVM would handle them, ``pio`` and
    ``mmio`` by address space (I/O port or memory-mapped register), ``kicks`` are virtio
    notifications (under ioeventfd: handled in the kernel, no access in the
    trace), ``interrupts`` interrupt messages delivered; ``regions`` the
    accesses by region and direction; ``background`` the local-APIC and
    clock accesses of the phase, which grow with time, not with requests.
    """

    config: str
    bus: str
    ioeventfd: bool
    op: str
    requests: int
    accesses: int
    reads: int
    writes: int
    pio: int
    mmio: int
    userspace: int
    kernel: int
    kicks: int
    interrupts: int
    regions: dict[str, int]
    background: dict[str, int]
    domain_type: str

    @property
    def per_request(self) -> float:
        return self.accesses / self.requests

    @property
    def whole(self) -> bool:
        return self.accesses % self.requests == 0


def _count(r: qrun.Run, phase: Phase, op: str, n: int) -> Count:
    bus, ioeventfd = domain.CONFIGS[r.config]
    user = sum(v for (region, _), v in phase.accesses.items() if handled_by(region) == "userspace")
    return Count(
        config=r.config, bus=bus, ioeventfd=ioeventfd is not False if bus == "virtio" else False,
        op=op, requests=n, accesses=phase.total, reads=phase.by_direction("read"),
        writes=phase.by_direction("write"), pio=phase.spaces["pio"],
        mmio=phase.spaces["mmio"], userspace=user, kernel=phase.total - user, kicks=phase.kicks,
        interrupts=phase.interrupts,
        regions={f"{region}:{d}": v for (region, d), v in sorted(phase.accesses.items())},
        background=dict(sorted(phase.lapic.items())), domain_type=r.domain_type)


def counts_of(r: qrun.Run) -> list[Count]:
    """The rows of one run: every operation at every request count, and the control phases (op ``control``)."""
    rows = []
    for n in r.counts:
        for op in ("control", *OPS):
            rows.append(_count(r, r.trace.phase(f"{op} {n}"), op, n))
    return rows


def measure(conn: Connection, kit: Kit, configs: Sequence[str] = DEFAULT_CONFIGS,
            counts: Sequence[int] = DEFAULT_COUNTS, *, domain_type: str = "qemu", jobs: int = 2,
            deadline_s: float = qrun.DEFAULT_DEADLINE_S, progress: Any = None) -> list[qrun.Run]:
    """Run every configuration (``jobs`` at a time); the runs in the order of ``configs``.

    A failing run raises :class:`lab.qemu.run.RunFailed` after the others ended
    (each run removes its own domain and files whatever happens).
    """
    stop = threading.Event()

    def one(config: str) -> qrun.Run:
        if stop.is_set():
            raise qrun.RunFailed(f"{config}: not started, an earlier run failed or was interrupted")
        result = qrun.run(conn, kit, config, tuple(counts), domain_type=domain_type, deadline_s=deadline_s,
                          stop=stop)
        if progress:
            progress.step(config)
        return result

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(one, c) for c in configs]
        try:
            return [f.result() for f in futures]
        except BaseException:  # a failure or Ctrl-C: the other guests stop within a poll interval
            stop.set()
            raise
