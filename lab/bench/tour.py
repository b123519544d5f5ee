"""How the KVM chapter's misbehaving guests end on a host, as machine values.

:func:`bad_guest_steps` runs the guests that misbehave (a triple fault, a
jump to unmapped memory, a guest that never exits) and one hypercall, and
says how each one ended: a typed error, never a hang. Recorded by
``python -m lab record --only tour`` (resource ``tour``, section ``errors``),
so that the chapter can compare every recorded host; the book layer
(:mod:`lab.book.chapters.kvm`) turns the ids and values into sentences.

The section ``hello`` (the step-by-step run of the hello guest) is only in
older recordings: the chapter's ``%%kvm`` cells now show that run
(:mod:`lab.bench.cells`), and the schema keeps accepting those rows.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lab import guests, host, kvm
from lab.bench import exits as bench_exits
from lab.bench.harness import RECORDING_KEY
from lab.bench.registry import Bench, register
from lab.kvm.exits import Exit  # the type (lab.kvm re-exports it)

if TYPE_CHECKING:  # pandas is imported where a table is built: measuring needs only the stdlib
    import pandas as pd

#: Action ids of the hello walk, in order (section ``hello`` of older recordings only).
HELLO_ACTIONS = ("open", "check_extension", "vcpu_mmap_size", "create_vm", "set_memory", "load",
                 "create_vcpu", "run", "serial", "close")
#: The misbehaving guests, then the single hypercall.
BAD_GUESTS = (guests.TRIPLE_FAULT, guests.JUMP_UNMAPPED, guests.SPIN)
ERROR_ACTIONS = tuple(p.name for p in BAD_GUESTS) + ("hypercall_once",)


@dataclass
class Step:
    """One step of the walk: what was done, through which ioctl, and what came back (machine values)."""

    section: str
    step: int
    action: str
    ioctl: str = ""
    outcome: str = "ok"
    values: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    seconds: float | None = None

    def as_row(self) -> dict[str, Any]:
        return {"section": self.section, "step": self.step, "action": self.action, "ioctl": self.ioctl,
                "outcome": self.outcome, "values": json.dumps(self.values, sort_keys=True),
                "message": self.message, "seconds": self.seconds}


def _exit_values(ex: Exit) -> dict[str, Any]:
    values = {k: v for k, v in ex.as_dict().items() if k not in ("resumed", "wall_ns")}
    if isinstance(values.get("data"), bytes):
        values["data"] = values["data"].hex()
    return values


def _bad_guest(program: guests.Program, step: int, timeout_s: float) -> Step:
    t0 = time.perf_counter()
    try:
        with kvm.open() as system, system.create_vm(memory_kib=64) as vm:
            vm.load(program)
            ex = vm.create_vcpu(mode=program.mode, entry=program.origin).run_until(timeout_s=timeout_s)
        outcome, message, values = f"exit_{ex.reason}", "", _exit_values(ex)
    except kvm.GuestError as exc:
        outcome, message, values = type(exc).__name__, str(exc), {"error": exc.record()}
    return Step("errors", step, program.name, "KVM_RUN", outcome, values, message,
                round(time.perf_counter() - t0, 1))


def bad_guest_steps(timeout_s: float = 1.0, vendor: str | None = None) -> list[Step]:
    """Run each misbehaving guest, then one hypercall; one :class:`Step` per guest with how it ended."""
    steps = [_bad_guest(program, i + 1, timeout_s) for i, program in enumerate(BAD_GUESTS)]
    vendor = vendor or host.read_cpuinfo().vendor_short
    insn = guests.HYPERCALL_INSN.get(vendor, guests.asm.VMCALL)[0]
    ok, reason, error = bench_exits.probe_hypercall("protected32", vendor, timeout_s=timeout_s)
    steps.append(Step("errors", len(steps) + 1, "hypercall_once", "KVM_RUN", "ok" if ok else "unavailable",
                      {"insn": insn, "mode": "protected32", **({"error": error} if error else {})}, reason or ""))
    return steps


# --------------------------------------------------------------------------- recording

FIELDS: list[dict[str, Any]] = [
    *RECORDING_KEY,
    {"name": "section", "type": "string", "constraints": {"required": True, "enum": ["hello", "errors"]},
     "description": "hello = the step-by-step run of the hello guest; errors = how each misbehaving guest ended"},
    {"name": "step", "type": "integer", "constraints": {"required": True, "minimum": 1},
     "description": "order within the section"},
    {"name": "action", "type": "string",
     "constraints": {"required": True, "enum": list(HELLO_ACTIONS + ERROR_ACTIONS)},
     "description": "what the VMM did (an id of lab.bench.tour; errors: the guest program's name)"},
    {"name": "ioctl", "type": "string", "description": "the KVM ioctl(s) behind the step; empty when none"},
    {"name": "outcome", "type": "string", "constraints": {"required": True},
     "description": "ok; for a misbehaving guest the error type (GuestShutdown, RunTimeout, ...) or exit_<reason>; "
                    "for the hypercall ok or unavailable"},
    {"name": "values", "type": "string", "constraints": {"required": True},
     "description": "what came back, a JSON object of machine values (numbers, ids; exit data as hex)"},
    {"name": "message", "type": "string", "description": "the VMM's message, verbatim (errors only)"},
    {"name": "seconds", "type": "number", "constraints": {"minimum": 0},
     "description": "wall time until the misbehaving guest was stopped (errors only)"},
]


def to_frame(steps: Sequence[Step], prov: dict) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame([s.as_row() for s in steps])
    frame.insert(0, "recorded_at", prov["recorded_at"])
    frame.insert(0, "host_id", prov["host_id"])
    return frame[[f["name"] for f in FIELDS]]


def _measure(args: argparse.Namespace, progress: Any) -> list[Step]:
    steps = bad_guest_steps()
    if progress:
        progress.step("errors")
    return steps


def _show(steps: Sequence[Step]) -> None:
    for s in steps:
        print(f"{s.section:<7} {s.step:>2}  {s.action:<16} [{s.ioctl}] {s.outcome}  "
              f"{json.dumps(s.values)} {s.message}".rstrip())


BENCH = register(Bench(
    name="tour",
    help="the KVM chapter's misbehaving guests: how each one ends on this host",
    add_args=lambda p: None,
    measure=_measure,
    to_frame=to_frame,
    fields=FIELDS,
    description="how the KVM chapter's misbehaving guests ended on this host (lab.bench.tour)",
    steps=lambda args: 1,
    show=_show,
    as_json=lambda steps: [s.as_row() for s in steps],
    ok=lambda steps: True,
))
