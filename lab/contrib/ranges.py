"""The ranges that hardware allows a recorded value, each named, and the check of a recording against them.

A value outside one is a unit error, a broken timer or an edited file, never
a slow or a fast machine. The ceilings on cycles are one to two orders of
magnitude above the slowest back end recorded (PVM, where KVM's instruction
emulator runs every guest instruction: thousands of cycles for an empty
loop iteration, tens of thousands for an exit to user space) and far below
what a run stopped by its watchdog could show.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

#: Guest-timed cycles per iteration: a ceiling per kind of timing loop (lab.guests.exit_loop).
CYCLES_CEILING = {
    "loop": 100_000,           # the loop alone, no exit
    "cpuid": 1_000_000,        # handled in the kernel
    "hypercall": 1_000_000,    # handled in the kernel
    "pio_ioeventfd": 1_000_000,  # completed in the kernel by an eventfd
    "pio_user": 10_000_000,    # a round trip to the VMM process (Python)
    "mmio_user": 10_000_000,   # a round trip to the VMM process (Python)
}
#: A TSC ticks between 100 MHz and 10 GHz on every x86 CPU made (in kHz, as recorded).
TSC_KHZ = (100_000.0, 10_000_000.0)
#: x86-64 Linux is built for at most 8192 CPUs (CONFIG_NR_CPUS).
MAX_CPUS = 8192
#: The native ``dec; jnz`` loop: about one TSC tick per iteration on any x86-64 CPU.
NATIVE_CEILING = 100.0
#: One emulated, PV or virtio request: a tenth of a second at 10 GHz.
IO_CYCLES_CEILING = 1_000_000_000
#: Register accesses per disk request in QEMU's device models (tens on IDE).
ACCESSES_CEILING = 10_000
#: A step of the KVM tour, or a whole QEMU run, in seconds.
SECONDS_CEILING = 3_600.0


@dataclass(frozen=True)
class Bound:
    """``low < value < high`` (or ``<=`` where ``inclusive``) for a column, on the rows ``where`` selects."""

    name: str
    resource: str
    column: str
    low: float | None
    high: float | Callable[[Mapping[str, Any]], float] | None
    inclusive: bool = False
    where: Callable[[Mapping[str, Any]], bool] = lambda row: True


def _ok(row: Mapping[str, Any]) -> bool:
    return row.get("status") == "ok"


def _kind_ceiling(row: Mapping[str, Any]) -> float:
    return CYCLES_CEILING[row["kind"]]


BOUNDS: list[Bound] = [
    Bound("a TSC rate between 100 MHz and 10 GHz", "provenance", "tsc_khz", *TSC_KHZ, inclusive=True),
    Bound(f"between 1 and {MAX_CPUS} logical CPUs", "provenance", "logical_cpus", 1, MAX_CPUS, inclusive=True),
    Bound("cycles per exit positive and below the ceiling of its kind", "exits", "cycles_per_exit",
          0, _kind_ceiling, where=_ok),
    Bound("a TSC rate between 100 MHz and 10 GHz", "exits", "tsc_khz", *TSC_KHZ, inclusive=True, where=_ok),
    Bound("Python VMM cycles positive and below the ceiling of the kind", "reference", "python_cycles",
          0, _kind_ceiling),
    Bound("C VMM cycles positive and below the ceiling of the kind", "reference", "c_cycles", 0, _kind_ceiling),
    Bound(f"native loop cycles per iteration positive and below {NATIVE_CEILING:g}", "native",
          "cycles_per_iteration", 0, NATIVE_CEILING),
    Bound("exits per request non-negative", "io", "exits_per_request", 0, None, inclusive=True, where=_ok),
    Bound(f"cycles per request positive and below {IO_CYCLES_CEILING:,}", "io", "cycles_per_request",
          0, IO_CYCLES_CEILING, where=_ok),
    Bound("requests per second positive", "io", "requests_per_s", 0, None, where=_ok),
    Bound("a TSC rate between 100 MHz and 10 GHz", "io", "tsc_khz", *TSC_KHZ, inclusive=True, where=_ok),
    Bound(f"register accesses per request between 0 and {ACCESSES_CEILING:,}", "qemu-io", "per_request",
          0, ACCESSES_CEILING, inclusive=True),
    Bound(f"seconds between 0 and {SECONDS_CEILING:g}", "tour", "seconds", 0, SECONDS_CEILING, inclusive=True),
    Bound(f"seconds between 0 and {SECONDS_CEILING:g}", "qemu-io", "run_seconds", 0, SECONDS_CEILING,
          inclusive=True),
]

#: Columns (median first) that a median and its spread must keep in order: min <= q1 <= median <= q3 <= max.
ORDERED: dict[str, list[list[str]]] = {
    "exits": [["cycles_min", "cycles_q1", "cycles_per_exit", "cycles_q3", "cycles_max"]],
    "io": [["cycles_q1", "cycles_per_request", "cycles_q3"],
           ["requests_per_s_q1", "requests_per_s", "requests_per_s_q3"]],
    "native": [["cycles_q1", "cycles_per_iteration", "cycles_q3"]],
    "reference": [["python_q1", "python_cycles", "python_q3"], ["c_q1", "c_cycles", "c_q3"]],
}


@dataclass(frozen=True)
class Violation:
    """A value outside its range: which bound, where (CSV line), and the value."""

    bound: str
    resource: str
    line: int
    column: str
    value: Any

    def __str__(self) -> str:
        return f"{self.resource}.csv:{self.line}: column {self.column!r} value {self.value!r} is outside " \
               f"the range hardware allows ({self.bound})"


def _missing(value: Any) -> bool:
    import pandas as pd

    return bool(pd.isna(value))  # None, NaN and pd.NA (an empty optional cell)


def violations(frames: Mapping[str, pd.DataFrame]) -> list[Violation]:
    """Every value of the typed ``frames`` (one per resource) outside its bound; empty when all are inside."""
    found: list[Violation] = []
    for b in BOUNDS:
        frame = frames.get(b.resource)
        if frame is None or b.column not in frame:
            continue
        for i, row in enumerate(frame.to_dict("records")):
            value = row[b.column]
            if _missing(value) or not b.where(row):
                continue
            high = b.high(row) if callable(b.high) else b.high
            below = b.low is not None and (value < b.low if b.inclusive else value <= b.low)
            above = high is not None and (value > high if b.inclusive else value >= high)
            if below or above:
                found.append(Violation(b.name, b.resource, i + 2, b.column, value))
    for resource, chains in ORDERED.items():
        frame = frames.get(resource)
        if frame is None:
            continue
        for chain in chains:
            for i, row in enumerate(frame.to_dict("records")):
                values = [(c, row.get(c)) for c in chain if c in row and not _missing(row.get(c))]
                for (c1, v1), (c2, v2) in zip(values, values[1:], strict=False):
                    if v1 > v2 * (1 + 1e-9) + 1e-9:
                        found.append(Violation(f"{c1} <= {c2} (a median inside its spread)", resource, i + 2,
                                               c1, v1))
    return found
