"""Count a guest's device register accesses per phase from QEMU's trace, read as a stream.

QEMU (built with the ``log`` trace backend, as Debian's is) writes one line
per enabled trace event to the file given with ``-D``::

    memory_region_ops_write cpu 0 mr 0x55d4... addr 0x1f7 value 0xc8 size 1 name 'ide'
    memory_region_ops_write cpu -1 mr 0x55d4... addr 0xfee00000 value 0x41 size 4 name 'apic-msi'
    virtio_queue_notify vdev 0x55d4... n 0 vq 0x55d4...

(optionally prefixed by ``<pid>@<seconds>:``). ``cpu`` is the vCPU that made
the access, ``-1`` when the device side made it (an interrupt message sent
from QEMU's main loop). The guest marks its phases by writing text lines
``@lab begin read 1000`` / ``@lab end read 1000`` a byte at a time to an
``isa-debugcon`` port (region ``isa-debugcon``); every other access between a
begin and its end belongs to the phase.

Pitfalls handled here:

* SeaBIOS logs to the same port before the kernel starts, and its last line
  may have no newline: a marker is whatever follows the last ``@lab `` of a
  line, and lines without one are ignored.
* The local APIC's registers are in QEMU's ``apic-msi`` region together with
  the MSI window. Guest writes there are end-of-interrupt (offset 0xb0),
  timer (0x320, 0x380) and others: background that grows with time, not
  with requests, kept apart in :attr:`Phase.lapic`. Writes at an MSI message
  address (low 12 bits zero apart from bits 2-3), or with ``cpu -1``, are
  interrupts delivered.
* Under ioeventfd a virtio kick is no register access at all: it appears
  only as ``virtio_queue_notify``, counted in :attr:`Phase.kicks`.

The file is read line by line (traces are tens of MB); memory use does not
grow with its size.
"""

from __future__ import annotations

import gzip
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

MARKER_REGION = "isa-debugcon"
LAPIC_REGION = "apic-msi"
MARKER_PREFIX = "@lab "
#: QEMU's trace shows absolute addresses; x86 I/O ports are 0..0xffff, memory-mapped registers far above.
PIO_LIMIT = 0x10000
#: Trace events the counter needs (``-trace enable=...``).
EVENTS = ("memory_region_ops_read", "memory_region_ops_write", "virtio_queue_notify")

_OPS = re.compile(r"memory_region_ops_(read|write) cpu (-?\d+) mr \S+ addr 0x([0-9a-f]+) "
                  r"value 0x([0-9a-f]+) size (\d+) name '([^']*)'")
#: Regions the guest reads for the time of day, not for the disk: kept apart like the APIC timer.
CLOCK_REGIONS = frozenset({"hpet", "acpi-tmr", "rtc", "rtc-index"})
LAPIC_KINDS = {0xB0: "eoi", 0x320: "timer", 0x380: "timer", 0x390: "timer", 0x3E0: "timer"}


class TraceError(ValueError):
    """The trace does not hold the phases the guest should have marked."""


@dataclass
class Phase:
    """What happened between ``@lab begin <label>`` and ``@lab end <label>``.

    ``accesses`` counts guest register accesses by ``(region, "read"|"write")``
    (markers and the local APIC left out), ``spaces`` the same accesses by
    address space (``pio``: I/O ports, addresses below 0x10000 - ``in``/``out``,
    ``KVM_EXIT_IO`` under KVM; ``mmio``: memory-mapped registers,
    ``KVM_EXIT_MMIO``); ``lapic`` the guest's local-APIC
    accesses by kind (``eoi``, ``timer``, ``other``) and the clock reads
    (``clock``: HPET, ACPI PM timer, RTC); ``interrupts`` the
    interrupt messages delivered; ``kicks`` the virtio queue notifications.
    """

    label: str
    accesses: Counter[tuple[str, str]] = field(default_factory=Counter)
    lapic: Counter[str] = field(default_factory=Counter)
    spaces: Counter[str] = field(default_factory=Counter)
    interrupts: int = 0
    kicks: int = 0

    @property
    def total(self) -> int:
        return sum(self.accesses.values())

    def by_direction(self, direction: str) -> int:
        return sum(n for (_, d), n in self.accesses.items() if d == direction)


@dataclass
class Trace:
    """The phases of one run, in order, and what the guest said besides."""

    phases: list[Phase]
    notes: list[str]
    errors: list[str]
    done: bool
    other_lines: list[str]
    lines: int

    def phase(self, label: str) -> Phase:
        for p in self.phases:
            if p.label == label:
                return p
        raise TraceError(f"no phase {label!r} in the trace (phases: {[p.label for p in self.phases]})")


def _is_msi_message(addr: int) -> bool:
    return addr & 0xFF3 == 0


class _Counter:
    def __init__(self) -> None:
        self.phases: list[Phase] = []
        self.current: Phase | None = None
        self.notes: list[str] = []
        self.errors: list[str] = []
        self.other: list[str] = []
        self.done = False
        self.buf = bytearray()

    def marker_byte(self, value: int) -> None:
        if value != 0x0A:
            self.buf.append(value & 0xFF)
            return
        line = self.buf.decode("latin-1")
        self.buf.clear()
        at = line.rfind(MARKER_PREFIX)
        if at < 0:
            self.other = (self.other + [line])[-20:]
            return
        self.marker(line[at + len(MARKER_PREFIX):].strip())

    def marker(self, text: str) -> None:
        word, _, rest = text.partition(" ")
        if word == "begin":
            if self.current is not None:
                raise TraceError(f"phase {rest!r} begins inside phase {self.current.label!r}")
            self.current = Phase(rest)
        elif word == "end":
            if self.current is None or self.current.label != rest:
                raise TraceError(f"end of phase {rest!r} without its begin")
            self.phases.append(self.current)
            self.current = None
        elif word == "error":
            self.errors.append(rest)
        elif word == "done":
            self.done = True
        else:
            self.notes.append(text)

    def access(self, direction: str, cpu: int, addr: int, value: int, name: str) -> None:
        if name == MARKER_REGION:
            if direction == "write" and cpu >= 0:
                self.marker_byte(value)
            return
        p = self.current
        if p is None:
            return
        if name == LAPIC_REGION:
            if direction == "write" and (cpu < 0 or _is_msi_message(addr)):
                p.interrupts += 1
            else:
                p.lapic[LAPIC_KINDS.get(addr & 0xFFF, "other")] += 1
            return
        if name in CLOCK_REGIONS:
            p.lapic["clock"] += 1
            return
        if cpu < 0:  # a device-side access that is not an interrupt: not the guest's
            p.lapic["device-side"] += 1
            return
        p.accesses[(name, direction)] += 1
        p.spaces["pio" if addr < PIO_LIMIT else "mmio"] += 1


def parse_lines(lines: Iterable[str]) -> Trace:
    """Phases from trace lines (any iterable: a file, a list in a test)."""
    c = _Counter()
    n = 0
    for n, line in enumerate(lines, 1):
        if "memory_region_ops_" in line:
            m = _OPS.search(line)
            if m is None:
                raise TraceError(f"line {n}: cannot read {line.strip()[:120]!r}")
            c.access(m[1], int(m[2]), int(m[3], 16), int(m[4], 16), m[6])
        elif "virtio_queue_notify " in line and c.current is not None:
            c.current.kicks += 1
    if c.current is not None:
        raise TraceError(f"the trace ends inside phase {c.current.label!r}: the guest stopped early")
    return Trace(c.phases, c.notes, c.errors, c.done, c.other, n)


def parse_file(path: str | Path) -> Trace:
    """Phases from a trace file (gzip'd if its name ends in ``.gz``), read as a stream."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="latin-1") as f:
        return parse_lines(f)

