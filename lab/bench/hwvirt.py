"""Record a hardware back end's test run as ``data/measured/<host>/hwvirt.csv``, kept per back end.

One row per test that ran inside the emulated machine against ``kvm_amd``
(QEMU TCG, :mod:`lab.qemu.hwvirt`) or ``kvm_intel`` (Bochs,
:mod:`lab.qemu.bochs`): its name and outcome, with the guest's kernel and
the emulator's version and CPU. Recording one back end replaces only that
back end's older rows. The rows record *function* (what ran and whether it
passed), not time: under emulation every guest instruction is emulated, so
no timing from these guests is recorded or shown as a cost.

``python -m lab.bench.hwvirt --backend kvm_intel`` runs one and prints the
summary; ``--record`` also writes the rows.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from lab import backends, kit
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
     "description": "the KVM module that served /dev/kvm inside the guest (kvm_amd, kvm_intel)"},
    {"name": "guest_kernel", "type": "string", "description": "the guest kit's Debian kernel release"},
    {"name": "emulator", "type": "string",
     "description": "the emulator's version and CPU: the AMD-V or VT-x the back end ran on is its emulation "
                    "(QEMU TCG for kvm_amd, Bochs for kvm_intel)"},
    {"name": "run_seconds", "type": "number",
     "description": "wall time of the whole guest run (boot and tests) on the host, under emulation: "
                    "says how long CI waits, nothing about hardware"},
]
#: The back ends of lab.backends.TABLE that an emulator here provides.
BACKENDS = tuple(b.name for b in backends.TABLE.values() if b.emulator)


def runner(backend: str) -> ModuleType:
    """The module that boots ``backend``'s emulated machine (``PROFILE``, ``run``, ``emulator``)."""
    row = backends.TABLE.get(backend)
    if row is None or row.emulator is None:
        raise ValueError(f"no emulator here provides {backend!r}; choose one of {', '.join(BACKENDS)}")
    return importlib.import_module(backends.EMULATORS[row.emulator])


def to_frame(run: hwvirt.HwvirtRun, the_kit: kit.Kit, prov: dict[str, Any], emulator: str) -> pd.DataFrame:
    import pandas as pd

    rows = [{"host_id": prov["host_id"], "recorded_at": prov["recorded_at"], "test": c.name,
             "outcome": c.outcome, "backend": run.backend, "guest_kernel": the_kit.kernel_release,
             "emulator": emulator, "run_seconds": round(run.seconds, 1)} for c in run.cases]
    return pd.DataFrame(rows, columns=[f["name"] for f in FIELDS])


def record_run(run: hwvirt.HwvirtRun, the_kit: kit.Kit, root: str | Path | None = None, *,
               emulator: str | None = None) -> Path:
    """Write ``run``'s rows, replacing the older rows of its back end only."""
    if emulator is None:
        emulator = runner(run.backend).emulator()
    prov = provenance(command=f"python -m lab.bench.hwvirt --backend {run.backend} --record")
    return record(RESOURCE, to_frame(run, the_kit, prov, emulator), FIELDS, prov, root=root, replace=True,
                  replace_by="backend",
                  description="the VMM's KVM live tests run inside an emulated machine against kvm_amd "
                              "(AMD-V emulated by QEMU TCG) and kvm_intel (VT-x emulated by Bochs): one row "
                              "per test, function only, no timings")


def load_recorded(root: str | Path | None = None) -> pd.DataFrame:
    return load_measured(RESOURCE, root)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab.bench.hwvirt", description=__doc__.split("\n")[0])
    p.add_argument("--backend", choices=BACKENDS, default=hwvirt.BACKEND, help="the back end to test")
    p.add_argument("--record", action="store_true", help="write data/measured/<host>/hwvirt.csv")
    p.add_argument("--root", default=None, help="measured-data folder (default data/measured)")
    args = p.parse_args(argv)
    module = runner(args.backend)
    try:
        the_kit = kit.find(module.PROFILE)
        run = module.run(the_kit)
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
