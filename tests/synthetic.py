"""Synthetic recorded hosts for the tests: known, distinguishable numbers, written by the real recorder.

Not a measurement. :func:`make_host` writes ``<root>/<host_id>/`` with
:func:`lab.bench.harness.record` (so the package has the current schema and
passes every check a recording passes), one recording per resource at its own
time, as ``python -m lab record --only <bench>`` would. Two profiles:

* ``FORWARD``: the orderings the book's recorded hosts show (a PVM host in a
  VM: ioeventfd cheaper than a round trip to user space, the Python VMM slower
  than C, a guest loop far above native, PV faster than HVM emulation, the
  hypercall never completes);
* ``REVERSED``: every one of those orderings the other way, on a nested
  ``kvm_amd`` host (the hypercall completes).

``scale`` multiplies every cost and rate, so two hosts of one profile give
different numbers everywhere: a test can tell which host a value came from.
The host ids are made up (``SYNTHETIC_IDS``); no recorded host appears here.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from lab import datapackage, transcripts
from lab.bench import cells, exits, harness, native, qemu_io, reference, tour
from lab.bench import io as bench_io

FORWARD, REVERSED = "forward", "reversed"
FORWARD_ID, REVERSED_ID, OTHER_ID = "intel-5f0a0001", "amd-5f0a0002", "intel-5f0a0003"
SYNTHETIC_IDS = (FORWARD_ID, REVERSED_ID, OTHER_ID)
#: Every resource a synthetic host can have (the benchmarks' resource names).
RESOURCES = ("exits", "native", "reference", "tour", "io", "notify", "qemu-io", "transcripts", "cells")
#: The chapter whose %%kvm cells a synthetic host records (each cell prints one known line).
CELLS_PAGE = "chapters/kvm/kvm.md"
#: When the first synthetic recording was made; a host's resources follow it minute by minute.
BASE = datetime(2020, 1, 6, 9, 0, tzinfo=UTC)

_EXIT_COSTS = {
    FORWARD: {"loop": 2011.0, "cpuid": 5023.0, "pio_user": 15037.0, "mmio_user": 15541.0, "pio_ioeventfd": 3059.0,
              "hypercall": None},
    REVERSED: {"loop": 5.0, "cpuid": 3000.0, "pio_user": 2000.0, "mmio_user": 2100.0, "pio_ioeventfd": 4000.0,
               "hypercall": 1500.0},
}
_NATIVE = {FORWARD: 0.77, REVERSED: 2.0}
#: (python, c) cycles per iteration of the same guest bytes
_REFERENCE = {
    FORWARD: {"loop": (2013.0, 2011.0), "cpuid": (5031.0, 5020.0), "pio_user": (17701.0, 15013.0),
              "mmio_user": (17803.0, 15207.0), "pio_ioeventfd": (3061.0, 3057.0)},
    REVERSED: {"loop": (5.0, 5.1), "cpuid": (2940.0, 3000.0), "pio_user": (12000.0, 15000.0),
               "mmio_user": (12500.0, 15500.0), "pio_ioeventfd": (3900.0, 4000.0)},
}
_BATCHES = (1, 8, 64, 256)


def _io_rate(profile: str, mode: str, batch: int) -> float:
    if profile == FORWARD:
        rate = {"hvm": 2601.0, "pv": 25103.0, "virtio": 15211.0 * min(batch, 3), "virtio_ioeventfd": 0.0}
        rate["virtio_ioeventfd"] = rate["virtio"] * 1.4
    else:
        rate = {"hvm": 50000.0, "pv": 20000.0, "virtio": 30000.0 if batch == 1 else 10000.0, "virtio_ioeventfd": 0.0}
        rate["virtio_ioeventfd"] = rate["virtio"] * 0.5
    return rate[mode]


def _frame(rows: list[dict[str, Any]], fields: list[dict[str, Any]], prov: dict[str, Any]) -> pd.DataFrame:
    """Rows with every field of the resource (empty where a row has no value), keyed to ``prov``."""
    keyed = [{"host_id": prov["host_id"], "recorded_at": prov["recorded_at"], **r} for r in rows]
    frame = pd.DataFrame(keyed).reindex(columns=[f["name"] for f in fields])
    return frame.astype(object).where(frame.notna(), "").astype(str)


def _exits_rows(profile: str, scale: float, mode: str) -> list[dict[str, Any]]:
    costs = _EXIT_COSTS[profile]
    loop = costs["loop"] * scale
    rows = []
    for kind in exits.KINDS:
        c = costs[kind]
        if c is None:
            rows.append({"kind": kind, "status": "unavailable", "mode": mode, "iterations": 5000, "repeat": 21,
                         "reason": "vmcall at rip=0x1002 never completed: KVM_RUN did not return within 1 s "
                                   "and the watchdog stopped it"})
            continue
        c *= scale
        rows.append({"kind": kind, "status": "ok", "mode": mode, "iterations": 5000, "repeat": 21,
                     "cycles_per_exit": c, "cycles_q1": c * 0.95, "cycles_q3": c * 1.05, "cycles_min": c * 0.9,
                     "cycles_max": c * 1.2, "net_cycles_per_exit": c - loop, "ns_per_exit": c / 2.1,
                     "host_ns_per_exit": c / 2.0, "tsc_khz": 2_100_000.0})
    return rows


def _tour_rows(profile: str) -> list[dict[str, Any]]:
    hello = [("open", "open + KVM_GET_API_VERSION", {"api_version": 12}),
             ("check_extension", "KVM_CHECK_EXTENSION", {"KVM_CAP_IOEVENTFD": 1, "KVM_CAP_USER_MEMORY": 1}),
             ("vcpu_mmap_size", "KVM_GET_VCPU_MMAP_SIZE", {"bytes": 12288}),
             ("create_vm", "KVM_CREATE_VM", {}),
             ("set_memory", "mmap + KVM_SET_USER_MEMORY_REGION", {"guest_addr": 0, "size": 65536}),
             ("load", "", {"bytes": 13, "origin": 4096}),
             ("create_vcpu", "KVM_CREATE_VCPU", {"cs_base": 0, "mode": "real", "rip": 4096})]
    hello += [("run", "KVM_RUN", {"count": 1, "data": f"{ord(ch):02x}", "exit": "IoOut", "port": 1016,
                                  "reason": "io", "rip": 4102 + 3 * i, "size": 1}) for i, ch in enumerate("Hi\n")]
    hello += [("run", "KVM_RUN", {"exit": "Hlt", "reason": "hlt", "rip": 4109}),
              ("serial", "", {"text": "Hi\n"}), ("close", "munmap + close", {})]
    rows = [{"section": "hello", "step": i + 1, "action": a, "ioctl": ioctl, "outcome": "ok",
             "values": json.dumps(v, sort_keys=True)} for i, (a, ioctl, v) in enumerate(hello)]
    errors = [("triple_fault", "GuestShutdown", {}, "the guest triple-faulted at rip=0x1000", 0.0),
              ("jump_unmapped", "InternalError", {}, "KVM internal error at rip=0xd0000000, suberror 1", 0.0),
              ("spin", "RunTimeout", {}, "the guest did not exit within 1 s (rip=0x1001)", 1.0)]
    insn = "vmcall" if profile == FORWARD else "vmmcall"
    if profile == FORWARD:
        errors.append(("hypercall_once", "unavailable", {"insn": insn, "mode": "protected32"},
                       f"{insn} at rip=0x1002 never completed", None))
    else:
        errors.append(("hypercall_once", "ok", {"insn": insn, "mode": "protected32"}, "", None))
    rows += [{"section": "errors", "step": i + 1, "action": a, "ioctl": "KVM_RUN", "outcome": o,
              "values": json.dumps(v, sort_keys=True), "message": m, "seconds": s}
             for i, (a, o, v, m, s) in enumerate(errors)]
    return rows


#: Kicks per run of 256 requests on the suppressing paths, as a share of the batches (one kick per batch
#: without suppression): the forward host's device is busy more often with EVENT_IDX, the reversed one's with
#: the flag.
_SUPPRESSED_KICKS = {FORWARD: {"virtio_no_notify": 0.75, "virtio_event_idx": 0.25},
                     REVERSED: {"virtio_no_notify": 0.25, "virtio_event_idx": 0.75}}


def _notify_rows(profile: str, scale: float) -> list[dict[str, Any]]:
    rows = _io_rows(profile, scale, bench_io.NOTIFY_MODES)
    for r in rows:
        batches = 256 // r["batch"]
        r["kicks_per_run"] = max(1, round(batches * _SUPPRESSED_KICKS[profile].get(r["mode"], 1.0)))
    return rows


def _io_rows(profile: str, scale: float, modes: tuple[str, ...] = bench_io.IO_MODES) -> list[dict[str, Any]]:
    rows = []
    for batch in _BATCHES:
        for mode in modes:
            exits_per = {"hvm": 17.0, "pv": 1.0, "virtio": 1.0 / batch}.get(mode, 0.0)
            rate = _io_rate(profile, mode if mode in bench_io.IO_MODES else "virtio_ioeventfd", batch) * scale
            cycles = 2_100_000_000 / rate
            rows.append({"mode": mode, "batch": batch, "size": 64, "count": 256, "repeat": 11, "status": "ok",
                         "exits_per_request": exits_per, "expected_exits_per_request": exits_per,
                         "requests_per_s": rate, "requests_per_s_q1": rate * 0.9, "requests_per_s_q3": rate * 1.1,
                         "bytes_per_s": rate * 64, "cycles_per_request": cycles, "cycles_q1": cycles * 0.9,
                         "cycles_q3": cycles * 1.1, "ns_per_request": cycles / 2.1, "host_ns_per_request": cycles / 2,
                         "kicks_per_run": 0 if mode in ("hvm", "pv") else 256 // batch, "tsc_khz": 2_100_000.0})
    return rows


def _qemu_io_rows(profile: str) -> list[dict[str, Any]]:
    """Register accesses per request of each disk (the reversed host counts more on virtio than on IDE)."""
    per = {"ide": 26, "ahci": 7, "virtio": 0, "virtio-noioeventfd": 1}
    if profile == REVERSED:
        per = {"ide": 2, "ahci": 3, "virtio": 5, "virtio-noioeventfd": 9}
    bus = {"ide": "ide", "ahci": "sata", "virtio": "virtio", "virtio-noioeventfd": "virtio"}
    rows = []
    for config in per:
        for requests in (1000, 2000):
            for op in ("control", "read", "write"):
                n = 0 if op == "control" else per[config] * requests
                efd = config == "virtio"
                kicks = requests if config.startswith("virtio") and op != "control" else 0
                pio = n if config == "ide" else 0
                rows.append({"config": config, "bus": bus[config], "ioeventfd": str(efd), "op": op,
                             "requests": requests, "block_size": 4096, "accesses": n,
                             "per_request": n / requests, "reads": n // 2, "writes": n - n // 2, "pio": pio,
                             "mmio": n - pio, "userspace": n, "kernel": 0, "kicks": kicks,
                             "interrupts": 0 if op == "control" else requests, "regions": "", "background": "",
                             "accelerator": "qemu", "qemu_version": "7.2.0", "libvirt_version": "9.0.0",
                             "guest_kernel": "6.1.0-synthetic", "run_seconds": 20.0, "trace_bytes": 1000,
                             "wall_seconds": 30.0, "status": "ok"})
    return rows


def _transcript_rows(host_id: str) -> list[dict[str, Any]]:
    commands = {"virsh -c qemu:///system version": f"Compiled against library: libvirt 9.0.0 ({host_id})\n",
                "virsh -c qemu:///system list --all": " Id   Name   State\n--------------------\n",
                "qemu-img create -f qcow2 /var/lib/libvirt/images/labex-vm.qcow2 16M":
                    "Formatting 'labex-vm.qcow2', fmt=qcow2 size=16777216\n"}
    return [{"command": c, "exit_code": 0, "stdout": out, "stderr": "", "duration_s": 0.1, "user": "root"}
            for c, out in commands.items()]


def cell_text(profile: str, ordinal: int) -> str:
    """What the synthetic host's ``%%kvm`` cell number ``ordinal`` printed."""
    return f"SYNTHETIC {profile} output of %%kvm cell {ordinal}\n"


def _cell_rows(profile: str, page: str = CELLS_PAGE) -> list[dict[str, Any]]:
    """One row per %%kvm cell of ``page`` as it is now (so the keys match), each printing :func:`cell_text`."""
    from lab.paths import REPO_ROOT

    marked = cells.marked_cells(REPO_ROOT / page)
    return [{**c.as_row(), "outputs": json.dumps([{"output_type": "stream", "name": "stdout",
                                                    "text": cell_text(profile, c.ordinal)}])} for c in marked]


def make_host(root: str | Path, host_id: str, profile: str = FORWARD, *, scale: float = 1.0,
              start: datetime = BASE, resources: tuple[str, ...] = RESOURCES, backend: str | None = None) -> Path:
    """Write one synthetic host's package under ``root``; returns its folder. ``backend`` replaces the
    profile's back end (``kvm_pvm`` forward, ``kvm_amd`` reversed): the same numbers on another back end."""
    backend = backend or ("kvm_pvm" if profile == FORWARD else "kvm_amd")
    vendor = host_id.split("-")[0]
    minute = iter(range(100))

    def prov(command: str) -> dict[str, Any]:
        when = (start + timedelta(minutes=next(minute))).isoformat()
        return {"host_id": host_id, "recorded_at": when, "cpu_vendor": vendor,
                "cpu_model": f"Synthetic {vendor.upper()} CPU ({profile}, x{scale:g})", "kernel": "6.1.0-synthetic",
                "runs_in_vm": True, "kvm_backend": backend, "kvm_modules": f"kvm {backend}",
                "kvm_nested_param": "" if backend == "kvm_pvm" else f"{backend}=1", "logical_cpus": 2,
                "lab_version": "0.1.0", "python": "3.11.0", "tsc_khz": 2_100_000.0,
                "tsc_source": "KVM_GET_TSC_KHZ", "command": f"tests/synthetic.py {command}"}

    recordings: list[tuple[str, pd.DataFrame, list[dict[str, Any]], dict[str, Any]]] = []

    def add(resource: str, rows: list[dict[str, Any]], fields: list[dict[str, Any]], command: str) -> None:
        p = prov(command)
        recordings.append((resource, _frame(rows, fields, p), fields, p))

    for resource in resources:
        if resource == "exits":
            for mode in ("protected32", "long64"):
                add("exits", _exits_rows(profile, scale, mode), exits.FIELDS, f"exits --mode {mode}")
        elif resource == "native":
            c = _NATIVE[profile] * scale
            add("native", [{"iterations": 1_000_000, "repeat": 21, "cycles_per_iteration": c,
                            "cycles_q1": c * 0.99, "cycles_q3": c * 1.01}], native.FIELDS, "native")
        elif resource == "reference":
            add("reference", [{"kind": k, "mode": "protected32", "iterations": 5000, "runs": 63,
                               "python_cycles": py * scale, "python_q1": py * scale * 0.97,
                               "python_q3": py * scale * 1.03, "c_cycles": c * scale, "c_q1": c * scale * 0.97,
                               "c_q3": c * scale * 1.03} for k, (py, c) in _REFERENCE[profile].items()],
                reference.FIELDS, "reference")
        elif resource == "tour":
            add("tour", _tour_rows(profile), tour.FIELDS, "tour")
        elif resource == "io":
            add("io", _io_rows(profile, scale), bench_io.FIELDS, "io")
        elif resource == "notify":
            add("notify", _notify_rows(profile, scale), bench_io.FIELDS, "notify")
        elif resource == "qemu-io":
            add("qemu-io", _qemu_io_rows(profile), qemu_io.FIELDS, "qemu-io")
        elif resource == "cells":
            add(cells.RESOURCE, _cell_rows(profile), cells.FIELDS, "cells")
        elif resource == "transcripts":
            add(transcripts.RESOURCE, _transcript_rows(host_id), transcripts.FIELDS, "transcripts")
        else:
            raise ValueError(f"no synthetic {resource!r}")
    return _write(Path(root), host_id, recordings)


def _write(root: Path, host_id: str,
           recordings: list[tuple[str, pd.DataFrame, list[dict[str, Any]], dict[str, Any]]]) -> Path:
    """A new package in one write (the recorder's schema and checks); into an existing one, recording by recording."""
    path = root / host_id
    if (path / "datapackage.json").exists():
        for resource, frame, fields, p in recordings:
            harness.record(resource, frame, fields, p, root=root)
        return path
    names = [f["name"] for f in harness.PROVENANCE_FIELDS]
    frames: dict[str, pd.DataFrame] = {"provenance": pd.DataFrame(
        [{n: harness._cell(p.get(n)) for n in names} for *_, p in recordings], columns=names)}
    descriptor = {"name": f"{harness.PACKAGE_NAME_PREFIX}{host_id}",
                  "title": f"SYNTHETIC TEST HOST {host_id} (tests/synthetic.py, not a measurement)",
                  "resources": [harness.PROVENANCE_RESOURCE]}
    for resource, frame, fields, _ in recordings:
        if resource in frames:
            frames[resource] = pd.concat([frames[resource], frame], ignore_index=True)
        else:
            frames[resource] = frame
            descriptor["resources"].append({"name": resource, "path": f"{resource}.csv", "description": "synthetic",
                                            "schema": {"fields": fields}})
    datapackage.write_package(path, descriptor, frames)
    harness.check_links(path)
    return path


def two_hosts(root: str | Path) -> Path:
    """The forward host and, recorded a day later, the reversed one; returns ``root``."""
    make_host(root, FORWARD_ID, FORWARD)
    make_host(root, REVERSED_ID, REVERSED, start=BASE + timedelta(days=1))
    return Path(root)
