"""``python -m lab bench qemu-io``: register accesses per disk request in QEMU's real device models.

A real Linux guest (the guest kit, :mod:`lab.kit`) makes O_DIRECT requests
to a disk on IDE, AHCI and virtio-blk (and virtio-blk with ``ioeventfd='off'``)
in the exercise's own libvirt domains; QEMU's trace counts every register
access per request (:mod:`lab.qemu`). Counts, not times: the guest runs
under TCG on machines whose KVM cannot boot it, and a count is the same at
any speed. Each row is one (configuration, operation, request count); the
rows of the two request counts must agree per request, and the control
phases (the same ``dd`` without the disk) must show no access at all.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

from lab.bench import Bench, register
from lab.bench.harness import RECORDING_KEY, load_measured

KIT_PROFILE = "disk-trap"
URI = "qemu:///system"


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"--{what} takes comma-separated integers, not {text!r}") from None
    if not values:
        raise ValueError(f"--{what} is empty")
    return values


def choose_accel(requested: str) -> str:
    """``kvm`` where KVM has a hardware back end (kvm_intel, kvm_amd), ``qemu`` (TCG) otherwise."""
    if requested != "auto":
        return requested
    from lab import host

    kvm = host.probe_kvm()
    return "kvm" if kvm.usable and kvm.backend in ("kvm_intel", "kvm_amd") else "qemu"


def _status(row: dict[str, Any], rows: list[dict[str, Any]]) -> tuple[str, str]:
    if row["op"] == "control":
        return ("ok", "") if row["accesses"] == 0 else ("error", "device accesses in a phase without disk I/O")
    if row["accesses"] % row["requests"]:
        return "error", "accesses are not a whole number per request"
    same = {r["per_request"] for r in rows if (r["config"], r["op"]) == (row["config"], row["op"])}
    if len(same) > 1:
        return "error", f"per-request counts differ between request counts: {sorted(same)}"
    return "ok", ""


def rows_of(runs: Sequence[Any], conn: Any, kit: Any, block_size: int) -> list[dict[str, Any]]:
    """The runs as JSON-able rows (one per configuration, operation and request count)."""
    from lab.qemu import io

    rows = []
    for r in runs:
        for c in io.counts_of(r):
            rows.append({
                "config": c.config, "bus": c.bus, "ioeventfd": c.ioeventfd, "op": c.op, "requests": c.requests,
                "block_size": block_size, "accesses": c.accesses, "per_request": c.per_request,
                "reads": c.reads, "writes": c.writes, "pio": c.pio, "mmio": c.mmio,
                "userspace": c.userspace, "kernel": c.kernel,
                "kicks": c.kicks, "interrupts": c.interrupts,
                "regions": " ".join(f"{k}={v}" for k, v in c.regions.items()),
                "background": " ".join(f"{k}={v}" for k, v in c.background.items()),
                "accelerator": r.domain_type, "qemu_version": conn.hypervisor_version or "unknown",
                "libvirt_version": conn.library_version,
                "guest_kernel": f"{kit.kernel_release} ({kit.manifest['packages'][kit.manifest['kernel_package']]})",
                "run_seconds": round(r.seconds, 1), "trace_bytes": r.trace_bytes,
            })
    for row in rows:
        row["status"], row["reason"] = _status(row, rows)
    return rows


def measure(args: argparse.Namespace, progress: Any = None) -> list[dict[str, Any]]:
    from lab import kit as kits
    from lab import virt
    from lab.qemu import domain, io
    from lab.qemu.run import RunFailed

    configs = tuple(c.strip() for c in args.configs.split(",") if c.strip())
    counts = _ints(args.counts, "counts")
    unknown = [c for c in configs if c not in domain.CONFIGS]
    if unknown:
        raise ValueError(f"unknown configuration(s) {unknown}; known: {', '.join(domain.CONFIGS)}")
    kit = kits.find(KIT_PROFILE)
    accel = choose_accel(args.accel)
    started = time.monotonic()
    with virt.connect(URI) as conn:
        if conn.driver.upper() != "QEMU":
            raise virt.Unsupported(f"{URI} answered with driver {conn.driver}, not QEMU")
        try:
            runs = io.measure(conn, kit, configs, counts, domain_type=accel, jobs=args.jobs,
                              deadline_s=args.deadline, progress=progress)
        except RunFailed:
            if args.accel != "auto" or accel == "qemu":
                raise
            # KVM has a hardware back end but the guest did not finish under it: count under TCG
            accel = "qemu"
            runs = io.measure(conn, kit, configs, counts, domain_type=accel, jobs=args.jobs,
                              deadline_s=args.deadline, progress=progress)
        rows = rows_of(runs, conn, kit, 4096)
    for row in rows:
        row["wall_seconds"] = round(time.monotonic() - started, 1)
    return rows


def load_recorded(root: Any = None) -> Any:
    """Every recorded qemu-io measurement (all hosts), validated and joined with its provenance."""
    return load_measured("qemu-io", root)


def show(rows: Sequence[dict[str, Any]]) -> None:
    """Per request, at the largest request count; the control phase's total; where KVM would handle each."""
    if not rows:
        return
    top = max(r["requests"] for r in rows)
    print(f"{'config':<19} {'op':<6} {'per req':>7} {'reads':>6} {'writes':>6} {'PIO':>5} {'MMIO':>5} "
          f"{'to QEMU':>7} {'kicks':>6} "
          f"{'irqs':>5}  {'status':<6} regions (per request)")
    for r in rows:
        if r["requests"] != top:
            continue
        n = r["requests"]
        regions = " ".join(f"{k}={int(v) / n:g}" for k, v in (p.split("=") for p in r["regions"].split()))
        status = r["status"] if r["status"] == "ok" else f"{r['status']}: {r['reason']}"
        print(f"{r['config']:<19} {r['op']:<6} {r['per_request']:>7g} {r['reads'] / n:>6g} {r['writes'] / n:>6g} "
              f"{r['pio'] / n:>5g} {r['mmio'] / n:>5g} "
              f"{r['userspace'] / n:>7g} {r['kicks'] / n:>6g} {r['interrupts'] / n:>5g}  {status:<6} {regions}")
    first = rows[0]
    counts = sorted({r["requests"] for r in rows})
    print(f"{len(counts)} request counts {counts} of {first['block_size']} B; 'to QEMU' = exits to user space "
          f"under KVM; kicks under ioeventfd end in the kernel; control = the same dd without the disk")
    print(f"accelerator {first['accelerator']}, QEMU {first['qemu_version']}, libvirt {first['libvirt_version']}, "
          f"guest kernel {first['guest_kernel']}; wall time {first['wall_seconds']:.0f} s")


FIELDS: list[dict[str, Any]] = [
    *RECORDING_KEY,
    {"name": "config", "type": "string", "constraints": {"required": True,
     "enum": ["ide", "ahci", "virtio", "virtio-noioeventfd"]},
     "description": "disk configuration: libvirt bus ide, sata (AHCI), virtio, virtio with ioeventfd='off'"},
    {"name": "bus", "type": "string", "constraints": {"required": True, "enum": ["ide", "sata", "virtio"]},
     "description": "<target bus=...> of the disk in the domain XML"},
    {"name": "ioeventfd", "type": "boolean", "constraints": {"required": True},
     "description": "virtio notifications go to an eventfd (true) or to QEMU as a register write (false)"},
    {"name": "op", "type": "string", "constraints": {"required": True, "enum": ["control", "read", "write"]},
     "description": "O_DIRECT reads, writes, or control (the same dd to /dev/null, no disk)"},
    {"name": "requests", "type": "integer", "constraints": {"required": True, "minimum": 1},
     "description": "requests in the phase (dd count)"},
    {"name": "block_size", "type": "integer", "constraints": {"required": True, "minimum": 512},
     "description": "bytes per request"},
    {"name": "accesses", "type": "integer", "constraints": {"required": True, "minimum": 0},
     "description": "guest register accesses to devices in the phase (markers, local APIC and clocks left out)"},
    {"name": "per_request", "type": "number", "constraints": {"required": True, "minimum": 0},
     "description": "accesses / requests"},
    {"name": "reads", "type": "integer", "constraints": {"required": True, "minimum": 0},
     "description": "register reads among the accesses"},
    {"name": "writes", "type": "integer", "constraints": {"required": True, "minimum": 0},
     "description": "register writes among the accesses"},
    {"name": "pio", "type": "integer", "constraints": {"required": True, "minimum": 0},
     "description": "accesses to I/O ports (in/out; under KVM a KVM_EXIT_IO)"},
    {"name": "mmio", "type": "integer", "constraints": {"required": True, "minimum": 0},
     "description": "accesses to memory-mapped registers (under KVM a KVM_EXIT_MMIO after an EPT/NPT fault)"},
    {"name": "userspace", "type": "integer", "constraints": {"required": True, "minimum": 0},
     "description": "accesses that under KVM exit to QEMU in user space (KVM_EXIT_IO / KVM_EXIT_MMIO)"},
    {"name": "kernel", "type": "integer", "constraints": {"required": True, "minimum": 0},
     "description": "accesses KVM's in-kernel irqchip would handle (I/O APIC, PIC, PIT)"},
    {"name": "kicks", "type": "integer", "constraints": {"required": True, "minimum": 0},
     "description": "virtio queue notifications (with ioeventfd: completed in the kernel, no register access)"},
    {"name": "interrupts", "type": "integer", "constraints": {"required": True, "minimum": 0},
     "description": "interrupt messages the devices delivered (MSI and I/O APIC, region apic-msi)"},
    {"name": "regions", "type": "string", "description": "accesses by QEMU memory region and direction"},
    {"name": "background", "type": "string",
     "description": "local-APIC (eoi, timer, other) and clock accesses of the phase: grow with time, not requests"},
    {"name": "accelerator", "type": "string", "constraints": {"required": True, "enum": ["qemu", "kvm"]},
     "description": "libvirt domain type: qemu = TCG software emulation, kvm = hardware KVM"},
    {"name": "qemu_version", "type": "string", "constraints": {"required": True},
     "description": "QEMU version reported by libvirt"},
    {"name": "libvirt_version", "type": "string", "constraints": {"required": True},
     "description": "libvirt library version"},
    {"name": "guest_kernel", "type": "string", "constraints": {"required": True},
     "description": "guest kernel release and Debian package version (the guest kit)"},
    {"name": "run_seconds", "type": "number", "constraints": {"minimum": 0},
     "description": "host wall time of the whole run incl. boot (noisy, TCG, shared host: not a disk speed)"},
    {"name": "trace_bytes", "type": "integer", "constraints": {"minimum": 0},
     "description": "size of QEMU's trace of the run"},
    {"name": "wall_seconds", "type": "number", "constraints": {"minimum": 0},
     "description": "host wall time of the whole benchmark (all runs)"},
    {"name": "status", "type": "string", "constraints": {"required": True, "enum": ["ok", "error"]},
     "description": "ok: a whole number per request, equal for every request count, control phases empty"},
    {"name": "reason", "type": "string", "description": "why the row is an error; empty when ok"},
]


def to_frame(rows: Sequence[dict[str, Any]], prov: dict[str, Any]) -> Any:
    import pandas as pd

    frame = pd.DataFrame(list(rows))
    frame.insert(0, "recorded_at", prov["recorded_at"])
    frame.insert(0, "host_id", prov["host_id"])
    return frame[[f["name"] for f in FIELDS]]


def _args(p: argparse.ArgumentParser) -> None:
    from lab.qemu import io, run

    p.add_argument("--configs", default=",".join(io.DEFAULT_CONFIGS), metavar="C,...",
                   help=f"disk configurations (default {','.join(io.DEFAULT_CONFIGS)})")
    p.add_argument("--counts", default=",".join(map(str, io.DEFAULT_COUNTS)), metavar="N,...",
                   help="requests per phase, at least two to show the counts are per request (default 1000,2000)")
    p.add_argument("--accel", choices=("auto", "qemu", "kvm"), default="auto",
                   help="domain type: auto = kvm on a hardware KVM back end, else qemu (TCG)")
    p.add_argument("--jobs", type=int, default=2, help="guests run at the same time (default 2)")
    p.add_argument("--deadline", type=float, default=run.DEFAULT_DEADLINE_S, metavar="S",
                   help=f"seconds a guest may take before it is stopped (default {run.DEFAULT_DEADLINE_S:.0f})")


def _unavailable() -> tuple[type[BaseException], ...]:
    from lab.kit import KitError
    from lab.qemu.run import RunFailed
    from lab.virt import VirtError

    return (KitError, VirtError, RunFailed)


BENCH = register(Bench(
    name="qemu-io",
    help="register accesses per disk request in QEMU's IDE, AHCI and virtio-blk with a real Linux guest",
    add_args=_args,
    measure=measure,  # type: ignore[arg-type]  # rows, not harness.Result: see show/as_json/ok
    to_frame=to_frame,  # type: ignore[arg-type]
    fields=FIELDS,
    description="register accesses per O_DIRECT request, QEMU trace, real Linux guest (lab.bench.qemu_io)",
    steps=lambda args: len([c for c in args.configs.split(",") if c.strip()]),
    show=show,
    as_json=lambda rows: list(rows),
    ok=lambda rows: all(r["status"] == "ok" for r in rows),
    unavailable=_unavailable,
))
