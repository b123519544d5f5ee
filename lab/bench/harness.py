"""The measurement harness shared by every benchmark of the book.

What any benchmark needs, kept apart from what it measures:

* :func:`summarize` - median and spread over repetitions;
* :class:`Result` - one measured kind, in the stable JSON form of the CLI;
* :func:`provenance` - where a measurement comes from (host, CPU, kernel,
  whether it runs in a VM, the KVM back end and modules, date, lab version),
  with :func:`upgrade_provenance` for an earlier layout: defined in
  :mod:`lab.bench.provenance`, imported here; :func:`migrate_package`
  rewrites a package in the current layout;
* :class:`Progress` - a progress bar on a terminal, silent elsewhere (a
  notebook cell must never write to stderr);
* :func:`record` - write (or update) one resource of the host's data package
  ``data/measured/<host-id>/``, with the provenance resource next to it.

A benchmark module (``lab.bench.exits``; others later) produces a list of
:class:`Result` and registers itself in :data:`lab.bench.BENCHES`.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab import datapackage, paths
from lab.bench.provenance import (  # noqa: F401  (harness.provenance() etc.: the benchmarks' one import)
    PROVENANCE_FIELDS,
    RENAMED_PROVENANCE_COLUMNS,
    load_provenance,
    provenance,
    upgrade_provenance,
)

if TYPE_CHECKING:  # pandas is imported where a table is built: measuring needs only the stdlib
    import pandas as pd

STATUSES = ("ok", "unavailable", "error")


# --------------------------------------------------------------------------- statistics


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Median, quartiles (inclusive method), min and max of ``values``."""
    if not values:
        raise ValueError("no values to summarize")
    vals = sorted(float(v) for v in values)
    if len(vals) == 1:
        q1 = q3 = vals[0]
    else:
        q1, _, q3 = statistics.quantiles(vals, n=4, method="inclusive")
    return {"median": statistics.median(vals), "q1": q1, "q3": q3, "min": vals[0], "max": vals[-1]}


def tsc_rate(reported_khz: float | None, runs: Sequence[tuple[float, float]]) -> tuple[float, str]:
    """The TSC rate (kHz) and where it comes from.

    ``reported_khz`` is what ``KVM_GET_TSC_KHZ`` answered (0 or None when KVM
    cannot say); then the rate is calibrated from ``runs``, pairs of (guest
    TSC ticks, host nanoseconds) measured over the same runs: the median of
    ticks per millisecond.
    """
    if reported_khz:
        return float(reported_khz), "KVM_GET_TSC_KHZ"
    if not runs:
        raise ValueError("KVM does not report the TSC rate and there are no runs to calibrate it from")
    return summarize([ticks / ns * 1e6 for ticks, ns in runs])["median"], "calibrated against the host clock"


def cycles_to_ns(cycles: float, tsc_khz: float) -> float:
    """TSC cycles to nanoseconds at ``tsc_khz`` (kHz = cycles per millisecond)."""
    if not tsc_khz or tsc_khz <= 0:
        raise ValueError(f"invalid TSC rate {tsc_khz!r} kHz")
    return cycles * 1e6 / tsc_khz


# --------------------------------------------------------------------------- results


@dataclass
class Result:
    """One measured kind. ``as_json`` is the stable form printed by ``--json``.

    ``cycles_per_exit`` is the median over repetitions of the guest-timed
    cycles per operation; ``spread`` its quartiles and extremes; ``ns_per_exit``
    the same median converted at ``tsc_khz``; ``host_ns_per_exit`` the host's
    wall time of the whole run divided by the operations (includes this
    process's own work); ``status`` is ``ok``, ``unavailable`` (the operation
    cannot be measured here, ``reason`` says why) or ``error``.
    """

    kind: str
    status: str
    repeat: int
    iterations: int
    cycles_per_exit: float | None = None
    ns_per_exit: float | None = None
    host_ns_per_exit: float | None = None
    spread: dict[str, float] | None = None
    tsc_khz: float | None = None
    reason: str | None = None
    samples: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {self.status!r}")

    @classmethod
    def from_samples(cls, kind: str, cycles: Sequence[float], host_ns: Sequence[float], *,
                     iterations: int, tsc_khz: float, **extra: Any) -> Result:
        s = summarize(cycles)
        return cls(kind, "ok", len(cycles), iterations, cycles_per_exit=s["median"],
                   ns_per_exit=cycles_to_ns(s["median"], tsc_khz),
                   host_ns_per_exit=statistics.median(host_ns) if host_ns else None,
                   spread={k: s[k] for k in ("q1", "q3", "min", "max")}, tsc_khz=tsc_khz,
                   samples=list(cycles), extra=dict(extra))

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("samples")
        extra = d.pop("extra")
        return {**d, **extra}


def results_frame(results: Sequence[Result]) -> pd.DataFrame:
    """Results as a table (one row per kind), for notebooks."""
    import pandas as pd

    rows = []
    for r in results:
        rows.append({
            "kind": r.kind, "status": r.status,
            "cycles_per_exit": r.cycles_per_exit, "ns_per_exit": r.ns_per_exit,
            "q1": (r.spread or {}).get("q1"), "q3": (r.spread or {}).get("q3"),
            "host_ns_per_exit": r.host_ns_per_exit, "repeat": r.repeat,
            "iterations": r.iterations, "reason": r.reason,
        })
    return pd.DataFrame(rows)


def tsc_provenance(results: Sequence[Result]) -> dict[str, Any]:
    """The TSC rate of a recording, for its provenance row (from the first result that has one)."""
    ok = [r for r in results if r.status == "ok" and r.tsc_khz]
    if not ok:
        return {}
    return {"tsc_khz": ok[0].tsc_khz, "tsc_source": ok[0].extra.get("tsc_source", "")}


# --------------------------------------------------------------------------- provenance
# Where a measurement comes from: lab.bench.provenance (imported here, where every benchmark finds it).

#: The first two fields of every recorded resource: they point a row to its provenance row.
RECORDING_KEY: list[dict[str, Any]] = [
    {"name": "host_id", "type": "string", "constraints": {"required": True},
     "description": "host of the recording (see provenance.csv)"},
    {"name": "recorded_at", "type": "datetime", "constraints": {"required": True},
     "description": "recording time (UTC); with host_id, the key into provenance.csv"},
]


# --------------------------------------------------------------------------- progress


class Progress:
    """A one-line progress bar on an interactive terminal's stderr; silent otherwise."""

    def __init__(self, total: int, label: str = "", stream=None, enabled: bool | None = None):
        self.total, self.done, self.label = max(total, 1), 0, label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled if enabled is not None else bool(getattr(self.stream, "isatty", lambda: False)())

    def step(self, what: str = "", n: int = 1) -> None:
        self.done += n
        if self.enabled:
            width = 30
            filled = int(width * self.done / self.total)
            self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] "
                              f"{self.done}/{self.total} {what:<24}")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


# --------------------------------------------------------------------------- recording

PACKAGE_NAME_PREFIX = "lab-measured-"


def host_dir(host_id: str, root: str | Path | None = None) -> Path:
    return Path(root if root is not None else paths.MEASURED_DIR) / host_id


def _cell(value: Any) -> str:
    """A provenance value as its CSV text."""
    return "true" if value is True else "false" if value is False else "" if value is None else str(value)


def new_descriptor(host_id: str) -> dict[str, Any]:
    return {
        "name": f"{PACKAGE_NAME_PREFIX}{host_id}",
        "title": f"Measurements recorded on host {host_id}",
        "description": "Written by `python -m lab record`. Every measured row carries host_id and "
                       "recorded_at, which point to its row in the provenance resource.",
        "resources": [],
    }


#: The descriptor of the provenance resource, first in every measured package.
PROVENANCE_RESOURCE: dict[str, Any] = {
    "name": "provenance", "path": "provenance.csv",
    "description": "one row per recording: where and how it was measured",
    "schema": {"fields": PROVENANCE_FIELDS, "primaryKey": ["host_id", "recorded_at"]},
}


def measured_resource(name: str, fields: list[dict[str, Any]], description: str = "") -> dict[str, Any]:
    """The descriptor entry of a measured resource (``fields`` start with :data:`RECORDING_KEY`)."""
    return {"name": name, "path": f"{name}.csv", "description": description, "schema": {"fields": fields}}


def read_package_text(target: Path) -> tuple[dict[str, Any], dict[str, pd.DataFrame], dict[str, str]]:
    """A measured package's descriptor, its resources as text cells (provenance in the current layout),
    and the other files it holds (e.g. a contributor's ``record.log``), kept when it is rewritten."""
    import pandas as pd

    target = datapackage.recover(target, tidy=False)
    descriptor = datapackage.read_descriptor(target)
    frames = {r["name"]: pd.read_csv(target / r["path"], dtype=str, keep_default_na=False)
              for r in descriptor["resources"]}
    if "provenance" in frames:
        frames["provenance"] = upgrade_provenance(frames["provenance"]).fillna("")
    known = {datapackage.DESCRIPTOR, *(r["path"] for r in descriptor["resources"])}
    extra = {p.name: p.read_text(encoding="utf-8") for p in sorted(target.iterdir())
             if p.is_file() and p.name not in known}
    return descriptor, frames, extra


def migrate_package(package_dir: str | Path) -> Path:
    """Rewrite one measured package with its provenance in the current layout (:func:`upgrade_provenance`).

    Validates the package first (against its own schema, and every row's link to provenance), then
    writes it atomically: the other resources are kept as they are. Running it on a package already
    in the current layout rewrites the same content.
    """
    package_dir = Path(package_dir)
    check_links(package_dir)
    descriptor, frames, extra = read_package_text(package_dir)
    descriptor = {**descriptor, "resources": [PROVENANCE_RESOURCE if r["name"] == "provenance" else r
                                              for r in descriptor["resources"]]}
    path = datapackage.write_package(package_dir, descriptor, frames, extra)
    check_links(path)
    return path


def record(resource: str, frame: pd.DataFrame, fields: list[dict[str, Any]], prov: dict[str, Any], *,
           root: str | Path | None = None, description: str = "", replace: bool = False,
           replace_by: str | None = None) -> Path:
    """Write ``frame`` as resource ``resource`` of ``data/measured/<host-id>/``, atomically.

    The package keeps its other resources (other benchmarks recorded earlier
    on the same host) and gains one row in ``provenance`` for this recording.
    Older rows of ``resource`` are kept too, unless ``replace`` (then the
    provenance rows no other row points to go with them); with ``replace_by``
    (a column name) only the older rows whose value in that column is one of
    the new rows' values are replaced, e.g. the runs of one back end.
    Every row of ``frame`` must carry ``host_id`` and ``recorded_at`` equal to
    ``prov``'s, which points it to its provenance row.
    """
    import pandas as pd

    target = host_dir(prov["host_id"], root)
    if (target / datapackage.DESCRIPTOR).exists():
        descriptor, frames, extra = read_package_text(target)
    else:
        descriptor, frames, extra = new_descriptor(prov["host_id"]), {}, {}
    prov_frame = frames.get("provenance", pd.DataFrame(columns=[f["name"] for f in PROVENANCE_FIELDS]))
    row = {f["name"]: _cell(prov.get(f["name"], "")) for f in PROVENANCE_FIELDS}
    same = (prov_frame["host_id"] == row["host_id"]) & (
        pd.to_datetime(prov_frame["recorded_at"]) == pd.to_datetime(row["recorded_at"]))
    if not same.any():  # benchmarks recorded by one command within the same second share a row
        prov_frame = pd.concat([prov_frame, pd.DataFrame([row])], ignore_index=True)
    frames["provenance"] = prov_frame

    old = frames.get(resource)
    frame = frame.copy()
    if old is not None and replace:  # drop older recordings of this benchmark, and provenance nobody uses
        if replace_by is None:
            old = None
            frames.pop(resource)
        else:
            old = old[~old[replace_by].astype(str).isin(set(frame[replace_by].astype(str)))]
            frames[resource] = old
        used = {(h, t) for name, f in frames.items() if name != "provenance"
                for h, t in zip(f["host_id"], f["recorded_at"], strict=True)}
        used.add((row["host_id"], row["recorded_at"]))
        keep = [(h, t) in used for h, t in zip(prov_frame["host_id"], prov_frame["recorded_at"], strict=True)]
        frames["provenance"] = prov_frame[keep].reset_index(drop=True)
    if old is not None:  # keep older recordings of the same benchmark
        frame = pd.concat([old, frame.astype(str).replace({"nan": "", "None": "", "<NA>": ""})],
                          ignore_index=True)
    frames[resource] = frame

    resources = [r for r in descriptor["resources"] if r["name"] not in ("provenance", resource)]
    resources.insert(0, PROVENANCE_RESOURCE)
    resources.append(measured_resource(resource, fields, description))
    descriptor["resources"] = resources
    path = datapackage.write_package(target, descriptor, frames, extra)
    check_links(path)
    return path


def check_links(package_dir: str | Path) -> None:
    """Every measured row must point to a provenance row of the same package."""
    package = datapackage.validate_package(package_dir)
    prov = package.get("provenance")
    if prov is None:
        raise datapackage.DataError(f"{package_dir}: no provenance resource")
    keys = set(zip(prov["host_id"], prov["recorded_at"], strict=True))
    host = Path(package_dir).name
    if set(prov["host_id"]) - {host}:
        raise datapackage.DataError(f"{package_dir}: provenance names hosts {sorted(set(prov['host_id']))}, "
                                    f"but the folder is {host!r}")
    for name, frame in package.items():
        if name == "provenance":
            continue
        for i, key in enumerate(zip(frame["host_id"], frame["recorded_at"], strict=True)):
            if key not in keys:
                raise datapackage.DataError(
                    f"{package_dir}/{name}.csv:{i + 2}: row points to recording {key} "
                    f"which is not in provenance.csv (unknown host or recording)")


#: Set this to a folder laid out like ``data/measured`` to read recordings from there (tests, other hosts).
MEASURED_DIR_ENV = "LAB_MEASURED_DIR"


def load_measured(resource: str, root: str | Path | None = None) -> pd.DataFrame:
    """Resource ``resource`` of every host under ``data/measured``, validated, joined with provenance.

    A column that both the resource and the provenance have (``tsc_khz``, ``kernel``) keeps the
    resource's value under its own name; the provenance's is ``<name>_provenance``.
    Without ``root``, the folder named by the environment variable ``LAB_MEASURED_DIR`` (when set) is read
    instead of ``data/measured``: one switch that points every chapter at another set of recordings.
    """
    import pandas as pd

    root = Path(root if root is not None else os.environ.get(MEASURED_DIR_ENV) or paths.MEASURED_DIR)
    frames = []
    for pkg in datapackage.find_packages(root):
        descriptor = datapackage.read_descriptor(pkg)
        if not any(r.get("name") == resource for r in descriptor["resources"]):
            continue
        check_links(pkg)
        data = datapackage.load_resource(pkg, resource)
        prov = load_provenance(pkg)
        frames.append(data.merge(prov, on=["host_id", "recorded_at"], how="left", validate="many_to_one",
                                 suffixes=("", "_provenance")))
    if not frames:
        raise datapackage.DataError(
            f"no recording of {resource!r} under {root}: run 'python -m lab record' on a KVM host")
    return pd.concat(frames, ignore_index=True)


def dumps(results: Sequence[Result]) -> str:
    return json.dumps([r.as_json() for r in results], ensure_ascii=False, indent=2)
