"""The KVM chapter's walk through the mini VMM, step by step, as machine values.

:func:`hello_steps` performs, one call at a time, what every VMM does to run
a guest (open ``/dev/kvm``, create a VM, give it memory, create a vCPU, set
its registers, run it, handle its exits) and returns one :class:`Step` per
call: an action id, the ioctl(s) behind it and the values that came back.
:func:`bad_guest_steps` runs the guests that misbehave and says how each one
ended. Both are recorded by ``python -m lab record`` (resource ``tour``) so
that a reader without KVM sees what a real host answered; the book layer
(:mod:`lab.book.kvm`) turns the ids and values into sentences.
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
from lab.kvm.constants import KVM_CAP_IOEVENTFD, KVM_CAP_NR_MEMSLOTS, KVM_CAP_USER_MEMORY
from lab.kvm.exits import Exit  # the type (lab.kvm re-exports it)

if TYPE_CHECKING:  # pandas is imported where a table is built: measuring needs only the stdlib
    import pandas as pd

#: Action ids of the hello walk, in order (the book has a sentence for each).
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


def hello_steps(device: str = kvm.DEVICE) -> list[Step]:
    """Run :data:`lab.guests.HELLO` step by step; one :class:`Step` per call."""
    steps: list[Step] = []

    def add(action: str, ioctl: str, **values: Any) -> None:
        steps.append(Step("hello", len(steps) + 1, action, ioctl, values=values))

    with kvm.open(device) as system:
        add("open", "open + KVM_GET_API_VERSION", api_version=system.api_version())
        caps = {name: system.check_extension(cap) for name, cap in
                (("KVM_CAP_USER_MEMORY", KVM_CAP_USER_MEMORY), ("KVM_CAP_NR_MEMSLOTS", KVM_CAP_NR_MEMSLOTS),
                 ("KVM_CAP_IOEVENTFD", KVM_CAP_IOEVENTFD))}
        add("check_extension", "KVM_CHECK_EXTENSION", **caps)
        add("vcpu_mmap_size", "KVM_GET_VCPU_MMAP_SIZE", bytes=system.vcpu_mmap_size())
        with system.create_vm() as vm:
            add("create_vm", "KVM_CREATE_VM")
            slot = vm.add_memory(0, 64 * 1024)
            add("set_memory", "mmap + KVM_SET_USER_MEMORY_REGION", guest_addr=slot.guest_addr, size=slot.size)
            vm.load(guests.HELLO)
            add("load", "", bytes=len(guests.HELLO.code), origin=guests.HELLO.origin)
            vcpu = vm.create_vcpu(mode="real", entry=guests.HELLO.origin)
            add("create_vcpu", "KVM_CREATE_VCPU + mmap, KVM_SET_SREGS, KVM_SET_REGS",
                mode="real", cs_base=vcpu.get_sregs().cs.base, rip=vcpu.get_regs().rip)
            serial = b""
            for _ in range(16):
                ex = vcpu.run_until(timeout_s=5)
                add("run", "KVM_RUN", **_exit_values(ex))
                if not isinstance(out := ex.exit, kvm.exits.IoOut):
                    break
                serial += out.data
            add("serial", "", text=serial.decode("ascii", "replace"))
    add("close", "munmap + close")
    return steps


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
    steps = hello_steps()
    if progress:
        progress.step("hello")
    steps += bad_guest_steps()
    if progress:
        progress.step("errors")
    return steps


def _show(steps: Sequence[Step]) -> None:
    for s in steps:
        print(f"{s.section:<7} {s.step:>2}  {s.action:<16} [{s.ioctl}] {s.outcome}  "
              f"{json.dumps(s.values)} {s.message}".rstrip())


BENCH = register(Bench(
    name="tour",
    help="the KVM chapter's walk: run the hello guest step by step, then the misbehaving guests",
    add_args=lambda p: None,
    measure=_measure,
    to_frame=to_frame,
    fields=FIELDS,
    description="transcript of the KVM chapter's step-by-step run and of the misbehaving guests (lab.bench.tour)",
    steps=lambda args: 2,
    show=_show,
    as_json=lambda steps: [s.as_row() for s in steps],
    ok=lambda steps: True,
))
