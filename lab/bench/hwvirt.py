"""Record a kvm_amd run (:mod:`lab.qemu.hwvirt`) as ``data/measured/<host>/hwvirt.csv``.

One row per test that ran inside the QEMU TCG guest against ``kvm_amd``:
its name and outcome, with the guest's kernel, the QEMU version and the
CPU model QEMU emulated. The rows record *function* (what ran and whether it
passed), not time: under TCG every guest instruction is emulated, so no
timing from this guest is recorded or shown.

``python -m lab.bench.hwvirt`` runs it and prints the summary;
``--record`` also writes the rows (replacing the previous recording).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab import kit
from lab.bench.harness import RECORDING_KEY, load_measured, provenance, record
from lab.qemu import hwvirt

if TYPE_CHECKING:  # pandas is imported where a table is built: measuring needs only the stdlib
    import pandas as pd

RESOURCE = "hwvirt"
FIELDS: list[dict[str, Any]] = [
    *RECORDING_KEY,
    {"name": "test", "type": "string", "constraints": {"required": True},
     "description": "the pytest node id of a test run inside the guest"},
    {"name": "outcome", "type": "string", "constraints": {"required": True,
                                                          "enum": ["passed", "failed", "error", "skipped"]},
     "description": "what pytest reported for it inside the guest"},
    {"name": "backend", "type": "string", "constraints": {"required": True},
     "description": "the KVM module that served /dev/kvm inside the guest (kvm_amd)"},
    {"name": "guest_kernel", "type": "string", "description": "the guest kit's Debian kernel release"},
    {"name": "emulator", "type": "string",
     "description": "QEMU's version and CPU options: the AMD-V that kvm_amd ran on is QEMU TCG's emulation"},
    {"name": "run_seconds", "type": "number",
     "description": "wall time of the whole guest run (boot and tests) on the host, under TCG: "
                    "says how long CI waits, nothing about hardware"},
]


def qemu_version() -> str:
    try:
        out = subprocess.run([hwvirt.QEMU, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.splitlines()[0].replace("QEMU emulator version ", "QEMU ") if out else "unknown"


def to_frame(run: hwvirt.HwvirtRun, the_kit: kit.Kit, prov: dict[str, Any]) -> pd.DataFrame:
    import pandas as pd

    emulator = f"{qemu_version()}, -accel tcg -cpu max"
    rows = [{"host_id": prov["host_id"], "recorded_at": prov["recorded_at"], "test": c.name,
             "outcome": c.outcome, "backend": run.backend, "guest_kernel": the_kit.kernel_release,
             "emulator": emulator, "run_seconds": round(run.seconds, 1)} for c in run.cases]
    return pd.DataFrame(rows, columns=[f["name"] for f in FIELDS])


def record_run(run: hwvirt.HwvirtRun, the_kit: kit.Kit, root: str | Path | None = None) -> Path:
    prov = provenance(command="python -m lab.bench.hwvirt --record")
    return record(RESOURCE, to_frame(run, the_kit, prov), FIELDS, prov, root=root, replace=True,
                  description="the VMM's KVM live tests run inside a QEMU TCG guest against kvm_amd "
                              "(AMD-V emulated by QEMU): one row per test, function only, no timings")


def load_recorded(root: str | Path | None = None) -> pd.DataFrame:
    return load_measured(RESOURCE, root)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab.bench.hwvirt", description=__doc__.split("\n")[0])
    p.add_argument("--record", action="store_true", help="write data/measured/<host>/hwvirt.csv")
    p.add_argument("--root", default=None, help="measured-data folder (default data/measured)")
    args = p.parse_args(argv)
    try:
        the_kit = kit.find(hwvirt.PROFILE)
        run = hwvirt.run(the_kit)
    except (kit.KitError, hwvirt.HwvirtFailed) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(run.summary())
    for c in run.failed:
        print(f"FAILED {c.name}: {c.message}")
    if args.record and not run.failed:
        print(f"recorded {record_run(run, the_kit, args.root)}")
    return 1 if run.failed else 0


if __name__ == "__main__":
    sys.exit(main())
