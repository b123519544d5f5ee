"""Where a measurement was made: the ``provenance`` resource of every measured package.

:func:`provenance` is one row (host, CPU, kernel, whether the host kernel runs
in a VM, the KVM back end and modules, date, lab version); :data:`PROVENANCE_FIELDS`
its schema. :func:`upgrade_provenance` is the one migration of provenance
written by an earlier lab (``lab.bench.harness.migrate_package`` rewrites a
package with it). :mod:`lab.bench.harness` imports these names for the benchmarks.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab import __version__, datapackage, host

if TYPE_CHECKING:
    import pandas as pd


def provenance(probe: host.Probe | None = None, **extra: Any) -> dict[str, Any]:
    """Where a measurement was made: one row of the ``provenance`` resource."""
    p = probe if probe is not None else host.probe(libvirt_uris=())
    mods = p.kvm.modules
    return {
        "host_id": p.host_id,
        "recorded_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "cpu_vendor": p.cpu.vendor_short,
        "cpu_model": p.cpu.model or "unknown",
        "kernel": p.kernel,
        "runs_in_vm": bool(p.runs_in_vm),
        "kvm_backend": p.kvm.backend,
        "kvm_modules": " ".join(m.name for m in mods) or "none",
        "kvm_nested_param": " ".join(f"{m.name}={m.nested}" for m in mods if m.nested is not None),
        "logical_cpus": p.cpu.logical_cpus,
        "lab_version": __version__,
        "python": p.python,
        **extra,
    }


PROVENANCE_FIELDS: list[dict[str, Any]] = [
    {"name": "host_id", "type": "string", "constraints": {"required": True, "pattern": r"[a-z]+-[0-9a-f]{8}"},
     "description": "anonymised host name: CPU vendor and a hash of the machine id and CPU model (lab.host.host_id)"},
    {"name": "recorded_at", "type": "datetime", "constraints": {"required": True},
     "description": "when the recording finished (UTC, ISO 8601); with host_id the key of the recording"},
    {"name": "cpu_vendor", "type": "string",
     "constraints": {"required": True, "enum": ["intel", "amd", "hygon", "centaur", "unknown"]},
     "description": "CPU vendor from /proc/cpuinfo"},
    {"name": "cpu_model", "type": "string", "constraints": {"required": True},
     "description": "CPU model name from /proc/cpuinfo"},
    {"name": "kernel", "type": "string", "constraints": {"required": True},
     "description": "host kernel release (uname -r)"},
    {"name": "runs_in_vm", "type": "boolean", "constraints": {"required": True},
     "description": "true when the host kernel itself runs in a VM (cpuinfo 'hypervisor' flag); KVM there is "
                    "nested only when kvm_backend uses the hardware (kvm_intel, kvm_amd), not on kvm_pvm"},
    {"name": "kvm_backend", "type": "string",
     "constraints": {"required": True, "pattern": r"kvm_[a-z0-9_]+|none"},
     "description": "the KVM back end that ran the guests (kvm_intel, kvm_amd, kvm_pvm, another kvm_* module "
                    "the probe found, or none): lab.host.kvm_backend_of"},
    {"name": "kvm_modules", "type": "string", "constraints": {"required": True},
     "description": "loaded kvm* kernel modules, space separated (kvm_intel, kvm_amd, kvm_pvm, ...)"},
    {"name": "kvm_nested_param", "type": "string",
     "description": "the 'nested' parameter of the kvm modules that have one, as module=value"},
    {"name": "logical_cpus", "type": "integer", "constraints": {"required": True, "minimum": 0},
     "description": "logical CPUs in /proc/cpuinfo"},
    {"name": "lab_version", "type": "string", "constraints": {"required": True},
     "description": "version of the lab package that measured"},
    {"name": "python", "type": "string", "constraints": {"required": True},
     "description": "Python version that ran the harness"},
    {"name": "tsc_khz", "type": "number", "constraints": {"minimum": 0},
     "description": "TSC rate used to convert cycles to ns, in kHz"},
    {"name": "tsc_source", "type": "string",
     "description": "where tsc_khz comes from: KVM_GET_TSC_KHZ or a calibration against the host clock"},
    {"name": "command", "type": "string", "constraints": {"required": True},
     "description": "the command line that made the recording"},
]


#: Columns of earlier provenance layouts and what they became (read by :func:`upgrade_provenance`).
RENAMED_PROVENANCE_COLUMNS = {"nested": "runs_in_vm"}


def upgrade_provenance(frame: pd.DataFrame) -> pd.DataFrame:
    """A provenance table in the current layout (:data:`PROVENANCE_FIELDS`), from any earlier one.

    The one migration of recorded provenance. Layout of lab 0.1.0 (4c3de19): the column ``nested``
    (the hypervisor bit) is now ``runs_in_vm``, and ``kvm_backend``, which did not exist, is derived
    from ``kvm_modules`` as the probe derives it (:func:`lab.host.kvm_backend_of`). Works on text
    cells (a package being rewritten) and on typed ones (a loaded resource); a table already in the
    current layout comes back unchanged. A column that is neither current nor known is a DataError.
    """
    frame = frame.rename(columns=RENAMED_PROVENANCE_COLUMNS)
    if "kvm_backend" not in frame.columns and "kvm_modules" in frame.columns:
        frame = frame.assign(kvm_backend=[host.kvm_backend_of(str(m).split()) for m in frame["kvm_modules"]])
    names = [f["name"] for f in PROVENANCE_FIELDS]
    extra = [c for c in frame.columns if c not in names]
    if extra:
        raise datapackage.DataError(f"provenance has columns this lab does not know: {extra}")
    missing = [f["name"] for f in PROVENANCE_FIELDS
               if f["name"] not in frame.columns and f.get("constraints", {}).get("required")]
    if missing:
        raise datapackage.DataError(f"provenance lacks the required columns {missing}")
    return frame.reindex(columns=names)


def load_provenance(package_dir: str | Path) -> pd.DataFrame:
    """The provenance resource of one package, validated against its own schema, in the current layout."""
    return upgrade_provenance(datapackage.load_resource(package_dir, "provenance"))
