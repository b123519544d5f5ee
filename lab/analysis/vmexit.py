"""The VMExit chapter's facts, computed from one data set and the published figures.

Every function takes rows of one recording (the page's data set chooses them)
and says only what is sound on the recording's back end
(:mod:`lab.analysis.measures`): on VT-x / AMD-V a row net of the empty loop is
an exit cost and is set against the published bare-metal figures; on PVM it is
not, and the comparable quantity is the user-space round trip.

Floors: each benchmark times its guest with an empty ``dec/jnz`` loop of its
own, recorded in the same session as its other rows. On PVM that loop is
emulated and its speed drifts between sessions, so two benchmarks recorded at
different times show different floors; every "net" value here subtracts the
loop of its own recording, never another's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from lab import published
from lab.analysis.compare import Comparison, compare
from lab.analysis.measures import Capabilities, capabilities

USER_KINDS = ("pio_user", "mmio_user")
KERNEL_KINDS = ("loop", "cpuid", "pio_ioeventfd")
#: A guest loop this many times slower than the same loop natively is not running on the CPU directly.
EMULATED_RATIO = 20.0


def _rows(frame: Any) -> dict[str, Mapping[str, Any]]:
    """One recording's rows by kind (a frame with a ``kind`` column, or a list of mappings)."""
    records = frame.to_dict("records") if hasattr(frame, "to_dict") else list(frame)
    out: dict[str, Mapping[str, Any]] = {}
    for r in records:
        if r["kind"] in out:
            raise ValueError(f"two rows of kind {r['kind']!r}: pass the rows of one recording and one mode")
        out[str(r["kind"])] = r
    return out


def _one(values: set[Any], what: str) -> Any:
    if len(values) != 1:
        raise ValueError(f"rows of one recording expected, got {len(values)} values of {what}: {sorted(values)}")
    return next(iter(values))


# --------------------------------------------------------------------------- published


@dataclass(frozen=True)
class Published:
    """The published exit costs the chapter quotes (kvm-unit-tests ``vmexit``, cycles)."""

    cpuid_bare_min: float
    cpuid_bare_max: float
    vmcall_bare: float
    cpuid_nested: float
    vmcall_nested: float
    cpuid_nested_before: float
    inl_qemu_nested: float
    inl_kernel_nested: float
    cpuid_bare_mean: float  #: the mean of the bare-metal cpuid figures (range ends count as figures)
    vmcall_bare_mean: float
    sources: tuple[str, ...]

    @property
    def ratio_cpuid(self) -> float:
        """Nested over bare metal (mean), cpuid."""
        return self.cpuid_nested / self.cpuid_bare_mean

    @property
    def ratio_vmcall(self) -> float:
        return self.vmcall_nested / self.vmcall_bare_mean

    @property
    def cpuid_bare_mid(self) -> float:
        return (self.cpuid_bare_min + self.cpuid_bare_max) / 2

    @property
    def ratio_qemu_kernel(self) -> float:
        return self.inl_qemu_nested / self.inl_kernel_nested

    @property
    def nested_gain_pct(self) -> float:
        """How much Bonzini's series cut the nested cpuid exit, in percent."""
        return 100.0 * (self.cpuid_nested_before - self.cpuid_nested) / self.cpuid_nested_before


def _bare_values(pub: Any, test: str) -> list[float]:
    bare = pub[(pub["level"] == "bare_metal") & (pub["test"] == test) & (pub["variant"] != "before_patch")]
    return [float(v) for v in bare["cycles"]] + [float(v) for v in bare["cycles_high"] if pd.notna(v)]


def published_costs() -> Published:
    """The figures of ``data/published/vmexit`` the chapter compares with (after-patch values and ranges)."""
    pub = published.vmexit_costs()
    nested = {(t, v): float(c) for lvl, t, v, c in zip(pub["level"], pub["test"], pub["variant"], pub["cycles"],
                                                       strict=True) if lvl == "nested_l2"}
    cpuid, vmcall = _bare_values(pub, "cpuid"), _bare_values(pub, "vmcall")
    cpuid_nested, vmcall_nested = nested[("cpuid", "after_patch")], nested[("vmcall", "after_patch")]
    return Published(
        cpuid_bare_min=min(cpuid), cpuid_bare_max=max(cpuid), vmcall_bare=min(vmcall),
        cpuid_nested=cpuid_nested, vmcall_nested=vmcall_nested,
        cpuid_nested_before=nested[("cpuid", "before_patch")],
        inl_qemu_nested=nested[("inl_from_qemu", "after_patch")],
        inl_kernel_nested=nested[("inl_from_kernel", "after_patch")],
        cpuid_bare_mean=sum(cpuid) / len(cpuid), vmcall_bare_mean=sum(vmcall) / len(vmcall),
        sources=tuple(sorted(set(pub["source"]))))


# --------------------------------------------------------------------------- one exits recording


@dataclass(frozen=True)
class ExitFacts:
    """One exits recording (one host, one time, one guest mode), read for what it can say."""

    host_id: str
    recorded_at: str
    mode: str
    backend: Capabilities
    cycles: dict[str, float]          #: whole rows (cycles per iteration) of the kinds measured
    net: dict[str, float]             #: the same minus this recording's own empty loop
    unavailable: dict[str, str]       #: kind -> the VMM's reason, for kinds that could not be measured
    round_trip: float | None          #: pio_user - pio_ioeventfd: the user-space round trip
    user_vs_ioeventfd: Comparison | None  #: whole pio_user row against whole pio_ioeventfd row
    user_vs_kernel: Comparison | None     #: net pio_user against net cpuid: only where rows are exit costs
    cpuid_vs_bare: Comparison | None      #: net cpuid against published bare metal: only where rows are exit costs

    @property
    def floor(self) -> float | None:
        return self.cycles.get("loop")


def exit_facts(rows: Any, kvm_backend: str | None, published_figures: Published | None = None) -> ExitFacts:
    """The facts of one exits recording; ``rows`` carry host_id, recorded_at, mode, kind, status,
    cycles_per_exit and reason (the exits resource joined with provenance)."""
    by_kind = _rows(rows)
    if not by_kind:
        raise ValueError("no exits rows")
    first = next(iter(by_kind.values()))
    _one({r["host_id"] for r in by_kind.values()}, "host_id")
    _one({str(r["recorded_at"]) for r in by_kind.values()}, "recorded_at")
    _one({r["mode"] for r in by_kind.values()}, "mode")
    caps = capabilities(kvm_backend)
    cycles = {k: float(r["cycles_per_exit"]) for k, r in by_kind.items() if r["status"] == "ok"}
    unavailable = {k: str(r.get("reason") or "") for k, r in by_kind.items() if r["status"] != "ok"}
    floor = cycles.get("loop")
    net = {k: v - floor for k, v in cycles.items() if k != "loop"} if floor is not None else {}
    round_trip = user_vs_efd = user_vs_kernel = cpuid_vs_bare = None
    if {"pio_user", "pio_ioeventfd"} <= set(cycles):
        round_trip = cycles["pio_user"] - cycles["pio_ioeventfd"]
        user_vs_efd = compare(cycles["pio_user"], cycles["pio_ioeventfd"])
    if caps.exit_costs and {"pio_user", "cpuid"} <= set(net) and net["cpuid"] > 0:
        user_vs_kernel = compare(max(net["pio_user"], 0.0), net["cpuid"])
    if caps.exit_costs and "cpuid" in net:
        pub = published_figures or published_costs()
        cpuid_vs_bare = compare(max(net["cpuid"], 0.0), pub.cpuid_bare_mid)
    return ExitFacts(str(first["host_id"]), str(first["recorded_at"]), str(first["mode"]), caps, cycles, net,
                     unavailable, round_trip, user_vs_efd, user_vs_kernel, cpuid_vs_bare)


# --------------------------------------------------------------------------- the floor


@dataclass(frozen=True)
class Floor:
    """The empty loop in the guest against the same loop natively, on one host."""

    guest: float          #: cycles per iteration in the guest (the exits recording's own loop)
    native: float         #: cycles per iteration natively (the native recording)
    emulated: bool        #: the guest's instructions do not run on the CPU directly
    other: float | None   #: another benchmark's loop on the same host (the Python-vs-C recording), if any

    @property
    def ratio(self) -> float:
        return self.guest / self.native

    @property
    def other_vs_guest(self) -> Comparison | None:
        """How the other benchmark's floor compares with this one (they differ most where emulated)."""
        return None if self.other is None else compare(self.other, self.guest)


def floor(exits: ExitFacts, native_cycles: float, other_loop: float | None = None) -> Floor:
    """The floor of ``exits`` (its own loop) against ``native_cycles`` per iteration."""
    if exits.floor is None:
        raise ValueError(f"the exits recording of {exits.host_id} has no empty loop")
    if not native_cycles > 0:
        raise ValueError(f"invalid native loop {native_cycles!r} cycles per iteration")
    ratio = exits.floor / native_cycles
    emulated = exits.backend.emulated or ratio >= EMULATED_RATIO
    return Floor(exits.floor, native_cycles, emulated, other_loop)


# --------------------------------------------------------------------------- Python against C


@dataclass(frozen=True)
class PythonVsC:
    """The same guest bytes run by the Python VMM and by the C VMM, interleaved, one recording."""

    user_kind: str
    python: float
    c: float
    user: Comparison            #: python against c on the user-space kind
    kernel_pct: tuple[float, float] | None  #: the smallest and largest difference (%) on in-kernel kinds
    extra: float                #: cycles the Python VMM adds per user-space exit
    share: float                #: that extra as a share of the Python row

    @property
    def python_adds(self) -> bool:
        return self.extra > 0


def python_vs_c(rows: Any) -> PythonVsC:
    """From the reference recording's rows (kind, python_cycles, c_cycles)."""
    by_kind = _rows(rows)
    user = [k for k in USER_KINDS if k in by_kind]
    if not user:
        raise ValueError("the reference recording has no user-space kind (pio_user or mmio_user)")
    k = user[0]
    py, c = float(by_kind[k]["python_cycles"]), float(by_kind[k]["c_cycles"])
    diffs = [compare(float(by_kind[x]["python_cycles"]), float(by_kind[x]["c_cycles"])).percent
             for x in KERNEL_KINDS if x in by_kind]
    extra = py - c
    return PythonVsC(k, py, c, compare(py, c), (min(diffs), max(diffs)) if diffs else None, extra,
                     extra / py if py > 0 else 0.0)
