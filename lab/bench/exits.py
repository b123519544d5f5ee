"""The exits benchmark: what one VMExit costs, timed inside the guest.

For each kind a guest runs a loop of ``iterations`` identical operations
between two ``rdtsc``; the host reads the two TSC values from guest memory.
Python's own overhead is therefore not in the number, except where it is
the point: for ``pio_user`` and ``mmio_user`` every exit returns to this
process (as it would to QEMU), and the time until ``KVM_RUN`` resumes the
guest is part of the cost.

Kinds (:data:`KINDS`):

``loop``          the bare loop, no exit (the floor of the measurement)
``cpuid``         ``cpuid``: exits to KVM, answered in the kernel
``hypercall``     ``vmcall`` (Intel) / ``vmmcall`` (AMD): handled in the kernel
``pio_user``      ``out`` to a port nobody handles: exit to userspace and back
``mmio_user``     a store to unmapped guest memory: MMIO exit to userspace
``pio_ioeventfd`` the same ``out``, bound to an eventfd: completed in the kernel

A hypercall that faults or never completes is reported with status
``unavailable`` and the reason; it is first tried once in a child process,
so that even a vCPU stuck inside the kernel cannot hang the caller.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from lab import guests, host, kvm
from lab.bench.harness import RECORDING_KEY, Result, load_measured, tsc_provenance, tsc_rate
from lab.bench.registry import Bench, register
from lab.kvm.constants import KVM_EXIT_IO, KVM_EXIT_IO_OUT, KVM_EXIT_MMIO
from lab.kvm.ioctl_numbers import KVM_RUN
from lab.kvm.structs import RUN_UNION_OFFSET, kvm_run

if TYPE_CHECKING:  # pandas is imported where a table is built: measuring needs only the stdlib
    import pandas as pd

KINDS = guests.KINDS
DEFAULT_REPEAT = 21
DEFAULT_ITERATIONS = 5000
DEFAULT_MODE = "protected32"
RUN_TIMEOUT_S = 10.0
HYPERCALL_PROBE_TIMEOUT_S = 2.0

DESCRIPTIONS = {
    "loop": "the timing loop alone, no exit",
    "cpuid": "cpuid: exit handled inside KVM",
    "hypercall": "vmcall/vmmcall: hypercall handled inside KVM",
    "pio_user": "out to an unhandled port: exit to the VMM process and back",
    "mmio_user": "store to unmapped memory: MMIO exit to the VMM process and back",
    "pio_ioeventfd": "out to a port bound with KVM_IOEVENTFD: completed in the kernel",
}
#: Kinds whose exits return to this process (each is resumed at once, as by a device that drops writes).
USER_KINDS = ("pio_user", "mmio_user")

# Where the fast path looks in the kvm_run page (x86 is little-endian), as 32-bit words:
# word 2 is exit_reason; for port I/O the word at the union holds direction | size << 8
# | port << 16; for MMIO, is_write is the low byte of the word after phys_addr, data[8], len.
_W_REASON = kvm_run.exit_reason.offset // 4
_W_UNION = RUN_UNION_OFFSET // 4
_B_MMIO_IS_WRITE = RUN_UNION_OFFSET + 8 + 8 + 4
#: The exact word of the timing loop's ``out dx, al``: direction out, 1 byte, port EXIT_PORT.
_PIO_WORD = KVM_EXIT_IO_OUT | 1 << 8 | guests.EXIT_PORT << 16


def cpu_vendor() -> str:
    """This host's CPU vendor (``"intel"``, ``"amd"``): the default of every ``vendor`` argument here."""
    return host.read_cpuinfo().vendor_short


def dropping_bus(kind: str) -> tuple[kvm.Bus | None, kvm.Bus | None]:
    """(pio, mmio) buses with a device that drops the timing loop's writes, for ``kind``."""
    bus = kvm.Bus()
    if kind == "pio_user":
        bus.insert(guests.EXIT_PORT, 1, kvm.bus.DropWrites())
        return bus, None
    if kind == "mmio_user":
        bus.insert(guests.MMIO_ADDR, 1, kvm.bus.DropWrites())
        return None, bus
    return None, None


def run_resuming(vcpu: kvm.Vcpu, kind: str, timeout_s: float) -> kvm.Exit:
    """Run the timing loop of ``kind`` until ``hlt``: the benchmark's fast path.

    The same outcome as ``vcpu.run_until(timeout_s, pio=..., mmio=...)`` with
    the buses of :func:`dropping_bus`, at the cost of a C loop: the inner
    loop below recognises the exact word of the timing loop's exit with two
    int comparisons and calls ``KVM_RUN`` again at once (measured here, an
    equality costs ~500 cycles per exit less than a set lookup, and decoding
    the exit into its type several thousand). Anything it does not match
    goes the general way, through :func:`lab.kvm.bus.handle`.
    """
    pio, mmio = dropping_bus(kind)
    if kind not in USER_KINDS:
        return vcpu.run_until(timeout_s)
    pio_user = kind == "pio_user"
    at, key, reason = (_W_UNION, _PIO_WORD, KVM_EXIT_IO) if pio_user else (_B_MMIO_IS_WRITE, 1, KVM_EXIT_MMIO)
    words: memoryview | None = None  # views of the kvm_run page, released in the finally below
    view: memoryview | None = None
    # Everything the inner loop touches is a local (a global or an attribute costs more per exit).
    ioctl, fd, request, w_reason = fcntl.ioctl, vcpu.fd, KVM_RUN, _W_REASON
    try:
        words = vcpu.run_page.cast("I")
        view = words if pio_user else vcpu.run_page[:]
        with vcpu.running(timeout_s) as session:
            handled = 0
            while True:
                try:
                    ioctl(fd, request)
                    while view[at] == key and words[w_reason] == reason:
                        handled += 1
                        ioctl(fd, request)
                except OSError as exc:
                    session.handled = handled
                    session.interrupted(exc)
                    continue
                outcome = kvm.bus.handle(kvm.exits.decode(vcpu.run_page), pio, mmio)
                if isinstance(outcome, kvm.bus.Stop):
                    session.handled = handled
                    return session.stop(outcome.exit)
                handled += 1
    finally:
        for v in (view, words):
            if v is not None:
                v.release()


def _read_tsc_pair(vm) -> tuple[int, int]:
    r = vm.read(guests.RESULT_ADDR, 16)
    return int.from_bytes(r[:8], "little"), int.from_bytes(r[8:], "little")


def measure_kind(system, kind: str, *, repeat: int, iterations: int, mode: str = DEFAULT_MODE,
                 vendor: str | None = None, timeout_s: float = RUN_TIMEOUT_S,
                 on_rep: Callable[[], None] | None = None) -> Result:
    """Measure one kind in a fresh VM: one warm-up run, then ``repeat`` timed runs.

    ``vendor`` picks the hypercall instruction; by default this host's (:func:`cpu_vendor`).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    program = guests.exit_loop(kind, iterations, vendor=vendor or cpu_vendor(), mode=mode)
    with system.create_vm(memory_kib=64) as vm:
        vm.load(program)
        vcpu = vm.create_vcpu(mode=mode, entry=program.origin)
        efd = vm.ioeventfd(guests.EXIT_PORT) if kind == "pio_ioeventfd" else None
        tsc_khz = vcpu.tsc_khz()
        cycles, host_ns, totals = [], [], []
        for rep in range(repeat + 1):  # run 0 warms up (page faults, caches) and is dropped
            vcpu.jump(program.origin)
            ex = run_resuming(vcpu, kind, timeout_s)
            if ex.reason != "hlt":
                raise UnexpectedExit(kind, ex.reason, ex)
            expected = iterations if kind in USER_KINDS else 0
            if ex.resumed != expected:
                raise ExitCountMismatch(kind, "vmm", ex.resumed, expected, ex)
            if efd is not None:
                counted = efd.take()
                if counted != iterations:
                    raise ExitCountMismatch(kind, "eventfd", counted, iterations)
            start, end = _read_tsc_pair(vm)
            if rep == 0:
                continue
            cycles.append((end - start) / iterations)
            host_ns.append(ex.wall_ns / iterations)
            totals.append((end - start, ex.wall_ns))
            if on_rep:
                on_rep()
    tsc_khz, tsc_source = tsc_rate(tsc_khz, totals)
    return Result.from_samples(kind, cycles, host_ns, iterations=iterations, tsc_khz=float(tsc_khz),
                               mode=mode, tsc_source=tsc_source, what=DESCRIPTIONS[kind])


class UnexpectedExit(kvm.GuestError):
    """A timing loop stopped on an exit other than its final ``hlt``."""

    code = "bench.unexpected_exit"

    def __init__(self, kind: str, reason: str, exit: kvm.Exit | None = None) -> None:
        super().__init__(f"{kind}: the timing loop stopped on an unexpected {reason} exit: {exit}", exit,
                         kind=kind, reason=reason)


class ExitCountMismatch(kvm.GuestError):
    """A timing loop's exits were not all counted where they should be (``counter``: ``vmm`` or ``eventfd``)."""

    code = "bench.exit_count"

    def __init__(self, kind: str, counter: str, counted: int, expected: int, exit: kvm.Exit | None = None) -> None:
        where = "exits reached the VMM" if counter == "vmm" else "writes the eventfd counted"
        super().__init__(f"{kind}: {counted} {where}, expected {expected}", exit,
                         kind=kind, counter=counter, counted=counted, expected=expected)


class HypercallNeverCompleted(kvm.GuestError):
    """One hypercall did not return before the probe's watchdog (``insn`` is vmcall or vmmcall)."""

    code = "bench.hypercall_timeout"

    def __init__(self, insn: str, rip: int, timeout_s: float) -> None:
        super().__init__(f"{insn} at rip={rip:#x} never completed: KVM_RUN did not return within {timeout_s:g} s "
                         f"and the watchdog stopped it", insn=insn, rip=rip, timeout_s=timeout_s)


def _hypercall_child() -> None:
    """Child-process half of :func:`probe_hypercall`: one hypercall under the watchdog."""
    mode, vendor, timeout_s = sys.argv[1], sys.argv[2], float(sys.argv[3])
    program = guests.hypercall_once(vendor, mode)
    out: dict = {}
    try:
        with kvm.open() as system, system.create_vm(memory_kib=64) as vm:
            vm.load(program)
            vcpu = vm.create_vcpu(mode=mode, entry=program.origin)
            ex = vcpu.run_until(timeout_s=timeout_s)
            rax = vcpu.get_regs().rax
            out = {"ok": ex.reason == "hlt", "exit": ex.reason, "rax": rax,
                   "reason": None if ex.reason == "hlt" else f"the hypercall ended in a {ex.reason} exit"}
    except kvm.RunTimeout as exc:
        rip = exc.exit.rip if exc.exit is not None else 0
        error = HypercallNeverCompleted(program.listing[-2][3], rip, timeout_s)
        out = {"ok": False, "reason": str(error), "error": error.record()}
    except kvm.KvmError as exc:
        out = {"ok": False, "reason": f"{type(exc).__name__}: {exc}", "error": exc.record()}
    print(json.dumps(out))


def probe_hypercall(mode: str, vendor: str, timeout_s: float = HYPERCALL_PROBE_TIMEOUT_S
                    ) -> tuple[bool, str | None, dict[str, Any] | None]:
    """Try one hypercall in a child process: ``(ok, reason, error)``.

    ``(True, None, None)`` when it completes; else the reason in English and,
    when a typed error said it, that error's code and parameters (``Coded.record``).
    """
    code = "import sys; from lab.bench.exits import _hypercall_child; _hypercall_child()"
    proc = subprocess.Popen([sys.executable, "-c", code, mode, vendor, str(timeout_s)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s + 20)
    except subprocess.TimeoutExpired:
        proc.kill()
        try:
            proc.communicate(timeout=5)
            fate = "the child process was killed"
        except subprocess.TimeoutExpired:  # stuck in the kernel beyond SIGKILL: leave it, do not hang
            fate = f"the child process {proc.pid} could not even be killed"
        return False, (f"one hypercall did not return even after the watchdog fired: the vCPU is stuck "
                       f"inside the kernel ({fate})"), None
    try:
        out = json.loads(stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return False, f"the hypercall probe failed (exit status {proc.returncode}): {stderr.strip()[-300:]}", None
    return bool(out.get("ok")), out.get("reason"), out.get("error")


def run(kinds: Sequence[str] = KINDS, *, repeat: int = DEFAULT_REPEAT, iterations: int = DEFAULT_ITERATIONS,
        mode: str = DEFAULT_MODE, vendor: str | None = None, progress=None,
        hypercall_timeout_s: float = HYPERCALL_PROBE_TIMEOUT_S) -> list[Result]:
    """Measure ``kinds``; returns one :class:`Result` per kind (``unavailable`` ones with their reason).

    Raises :class:`lab.kvm.KvmUnavailable` when there is no usable KVM.
    """
    if repeat < 1 or iterations < 1:
        raise ValueError("repeat and iterations must be at least 1")
    for k in kinds:
        if k not in KINDS:
            raise ValueError(f"unknown kind {k!r}; choose from {', '.join(KINDS)}")
    vendor = vendor or cpu_vendor()
    results: list[Result] = []
    with kvm.open() as system:
        for kind in kinds:
            step = (lambda k=kind: progress.step(k)) if progress else None
            if kind == "hypercall":
                ok, reason, error = probe_hypercall(mode, vendor, hypercall_timeout_s)
                if not ok:
                    results.append(Result(kind, "unavailable", repeat, iterations, reason=reason,
                                          extra={"mode": mode, "what": DESCRIPTIONS[kind], "error": error}))
                    if progress:
                        progress.step(kind, repeat)
                    continue
            try:
                results.append(measure_kind(system, kind, repeat=repeat, iterations=iterations, mode=mode,
                                            vendor=vendor, on_rep=step))
            except kvm.GuestError as exc:
                results.append(Result(kind, "error", repeat, iterations, reason=str(exc),
                                      extra={"mode": mode, "what": DESCRIPTIONS[kind], "error": exc.record()}))
    base = next((r for r in results if r.kind == "loop" and r.status == "ok"), None)
    for r in results:
        if r.status == "ok" and base is not None and r.cycles_per_exit is not None \
                and base.cycles_per_exit is not None:
            r.extra["net_cycles_per_exit"] = r.cycles_per_exit - base.cycles_per_exit
    return results


# --------------------------------------------------------------------------- recording

FIELDS: list[dict[str, Any]] = [
    *RECORDING_KEY,
    {"name": "kind", "type": "string", "constraints": {"required": True, "enum": list(KINDS)},
     "description": "what the guest loop does per iteration (lab.bench.exits.DESCRIPTIONS)"},
    {"name": "status", "type": "string", "constraints": {"required": True, "enum": ["ok", "unavailable", "error"]},
     "description": "ok; unavailable (cannot be measured on this host, see reason); error"},
    {"name": "mode", "type": "string", "constraints": {"required": True, "enum": ["protected32", "long64"]},
     "description": "guest CPU mode of the timing loop"},
    {"name": "iterations", "type": "integer", "constraints": {"required": True, "minimum": 1},
     "description": "operations per timed run"},
    {"name": "repeat", "type": "integer", "constraints": {"required": True, "minimum": 1},
     "description": "timed runs (after one dropped warm-up run)"},
    {"name": "cycles_per_exit", "type": "number", "constraints": {"minimum": 0},
     "description": "median over runs of guest-timed TSC cycles per operation"},
    {"name": "cycles_q1", "type": "number", "description": "first quartile of cycles per operation over runs"},
    {"name": "cycles_q3", "type": "number", "description": "third quartile of cycles per operation over runs"},
    {"name": "cycles_min", "type": "number", "description": "fastest run, cycles per operation"},
    {"name": "cycles_max", "type": "number", "description": "slowest run, cycles per operation"},
    {"name": "net_cycles_per_exit", "type": "number",
     "description": "cycles_per_exit minus the 'loop' kind of the same recording (the cost of the exit alone)"},
    {"name": "ns_per_exit", "type": "number", "constraints": {"minimum": 0},
     "description": "cycles_per_exit converted to nanoseconds at tsc_khz"},
    {"name": "host_ns_per_exit", "type": "number", "constraints": {"minimum": 0},
     "description": "host wall time of a run divided by its operations (median); "
                    "for pio_user/mmio_user the KVM_RUN round trip"},
    {"name": "tsc_khz", "type": "number", "constraints": {"minimum": 0},
     "description": "TSC rate used for the conversion, kHz"},
    {"name": "reason", "type": "string", "description": "why the kind is unavailable or failed; empty when ok"},
    {"name": "error", "type": "string",
     "description": "the error behind reason as JSON {code, params} (lab.kvm.errors.Coded); empty when ok "
                    "or in recordings made before the codes"},
]


def to_frame(results: Sequence[Result], prov: dict) -> pd.DataFrame:
    import pandas as pd

    rows = []
    for r in results:
        sp = r.spread or {}
        rows.append({
            "host_id": prov["host_id"], "recorded_at": prov["recorded_at"], "kind": r.kind,
            "status": r.status, "mode": r.extra.get("mode", DEFAULT_MODE), "iterations": r.iterations,
            "repeat": r.repeat, "cycles_per_exit": r.cycles_per_exit, "cycles_q1": sp.get("q1"),
            "cycles_q3": sp.get("q3"), "cycles_min": sp.get("min"), "cycles_max": sp.get("max"),
            "net_cycles_per_exit": r.extra.get("net_cycles_per_exit"), "ns_per_exit": r.ns_per_exit,
            "host_ns_per_exit": r.host_ns_per_exit, "tsc_khz": r.tsc_khz, "reason": r.reason or "",
            "error": json.dumps(r.extra["error"], sort_keys=True) if r.extra.get("error") else "",
        })
    return pd.DataFrame(rows, columns=[f["name"] for f in FIELDS])


def load_recorded(root: str | None = None) -> pd.DataFrame:
    """Every recorded exits measurement (all hosts), validated and joined with its provenance."""
    return load_measured("exits", root)


# --------------------------------------------------------------------------- command line


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repeat", type=int, default=DEFAULT_REPEAT, metavar="N",
                   help=f"timed runs per kind (default {DEFAULT_REPEAT})")
    p.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS, metavar="N",
                   help=f"exits per run (default {DEFAULT_ITERATIONS})")
    p.add_argument("--mode", choices=("protected32", "long64"), default=DEFAULT_MODE,
                   help="guest CPU mode of the timing loop")
    p.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated subset of: {', '.join(KINDS)}")


def _kinds(args: argparse.Namespace) -> list[str]:
    return [k.strip() for k in args.kinds.split(",") if k.strip()]


def _measure(args: argparse.Namespace, progress: Any) -> list[Result]:
    return run(_kinds(args), repeat=args.repeat, iterations=args.iterations, mode=args.mode, progress=progress)


BENCH = register(Bench(
    name="exits",
    help="cost of one VMExit per kind (cpuid, hypercall, pio, mmio, ioeventfd), timed in the guest",
    add_args=_args,
    measure=_measure,
    to_frame=to_frame,
    fields=FIELDS,
    description="guest-timed cost of one exit per kind (lab.bench.exits)",
    steps=lambda args: args.repeat * len(_kinds(args)),
    provenance=tsc_provenance,
))
