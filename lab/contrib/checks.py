"""The checks a host's recordings pass before they join ``data/measured/``, each with its own error.

:func:`check_folder` runs them in this order on one host folder (as
``python -m lab record`` wrote it, or as unpacked from a contribution) and
returns the recordings in the current layout, ready to add; the first check
that fails raises :class:`ContributionError`, whose ``check`` names it. The
checks never write outside a temporary folder of their own.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab import datapackage
from lab.bench import BENCHES, harness
from lab.contrib import private, ranges

if TYPE_CHECKING:
    import pandas as pd

#: Every check, in the order it runs, and what it asks of a contribution (printed by ``python -m lab add``).
CHECKS: dict[str, str] = {
    "archive": "one host's folder packed by 'python -m lab pack': regular files and a manifest",
    "checksum": "the file, and every file inside it, match their SHA-256",
    "resources": "every resource is one that 'python -m lab record' writes, and its file is there",
    "layout": "recordings in an older layout are migrated to the current one",
    "schema": "every resource has the columns of its schema, every value its type and constraints",
    "host": "one host id throughout, the folder's, with the CPU vendor it names",
    "provenance": "every recording has a complete provenance row, and every provenance row a recording",
    "range": "every value inside the range hardware allows",
    "private": "no text that looks like a path, a user name or a host name",
    "duplicate": "no recording that data/measured already holds",
}

#: The host id of lab.host.host_id: CPU vendor, a dash, eight hex digits of a hash.
HOST_ID = re.compile(r"[a-z]+-[0-9a-f]{8}")
#: Resources whose recordings ran guests on /dev/kvm: their provenance must name a KVM back end.
NEEDS_KVM = {"exits", "io", "tour", "reference"}
#: Resources whose provenance must carry the TSC rate the cycles were converted at.
NEEDS_TSC = {"exits", "io"}
#: A recording time later than now by more than this is a clock or an edit, not a recording.
CLOCK_SLACK = timedelta(days=1)


class ContributionError(datapackage.DataError):
    """A contribution fails one check (``check``, a key of :data:`CHECKS`); nothing was added."""

    def __init__(self, check: str, message: str):
        if check not in CHECKS:
            raise ValueError(f"unknown check {check!r}")
        super().__init__(f"{check} check failed: {message}")
        self.check = check


@dataclass
class Checked:
    """One host's recordings that passed every check: text cells in the current layout, ready to write."""

    host_id: str
    frames: dict[str, pd.DataFrame]
    descriptor: dict[str, Any]
    #: what the checks found on the way, in plain English (migrations, counts)
    notes: list[str] = field(default_factory=list)

    @property
    def recordings(self) -> list[str]:
        return sorted(self.frames["provenance"]["recorded_at"])


def recorded_resources() -> dict[str, dict[str, Any]]:
    """The descriptor entry, in this lab's layout, of every resource ``python -m lab record`` writes."""
    return {"provenance": harness.PROVENANCE_RESOURCE,
            **{name: harness.measured_resource(name, b.fields, b.description) for name, b in BENCHES.items()}}


def check_folder(folder: str | Path, root: str | Path | None = None, *, names: Iterable[str] = ()) -> Checked:
    """Run every check on the host folder ``folder``; raise :class:`ContributionError` on the first failure.

    ``root`` is the folder the recordings would join (``data/measured``): the duplicate check reads it;
    without it that check is left out (``python -m lab pack``, on the recording machine). ``names`` are
    literal names (this machine's users and host) the private check looks for besides its patterns.
    """
    folder = Path(folder)
    host_id = folder.name
    known = recorded_resources()
    descriptor, frames = _resources(folder, known)
    notes: list[str] = []
    frames = _layout(frames, notes)
    typed = _schema(host_id, frames, known)
    _host(host_id, descriptor, typed)
    _provenance(typed)
    _range(host_id, frames, typed)
    _private(frames, names)
    if root is not None:
        _duplicate(host_id, typed, Path(root))
    out = {"provenance": frames["provenance"], **{n: f for n, f in frames.items() if n != "provenance"}}
    notes += [f"{name}: {len(f)} row{'s' * (len(f) != 1)}, {f['recorded_at'].nunique()} recording"
              f"{'s' * (f['recorded_at'].nunique() != 1)}" for name, f in out.items()
              if name != "provenance"]
    return Checked(host_id, out, package_descriptor(host_id, list(out)), notes)


def package_descriptor(host_id: str, resources: Iterable[str]) -> dict[str, Any]:
    """The descriptor of a host package holding ``resources``, each in this lab's layout."""
    known = recorded_resources()
    return {**harness.new_descriptor(host_id), "resources": [known[n] for n in resources]}


# --------------------------------------------------------------------------- the checks, in order


def _resources(folder: Path, known: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    import pandas as pd

    try:
        descriptor = datapackage.read_descriptor(folder)
    except datapackage.DataError as exc:
        raise ContributionError("resources", _relative(str(exc), folder.parent)) from None
    names = [r.get("name") for r in descriptor["resources"]]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ContributionError("resources", f"{unknown} are not resources that 'python -m lab record' writes "
                                             f"(it writes {', '.join(sorted(known))})")
    if len(set(names)) != len(names):
        raise ContributionError("resources", f"a resource is listed twice in {datapackage.DESCRIPTOR}: {names}")
    if "provenance" not in names or len(names) < 2:
        raise ContributionError("resources", "a contribution holds provenance and at least one measured resource")
    frames = {}
    for r in descriptor["resources"]:
        path = r.get("path")
        if path != known[r["name"]]["path"] or not (folder / path).is_file():
            raise ContributionError("resources", f"resource {r['name']!r} must be in the file "
                                                 f"{known[r['name']]['path']}, which is not there")
        try:
            frames[r["name"]] = pd.read_csv(folder / path, dtype=str, keep_default_na=False, na_filter=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise ContributionError("schema", f"{path} is not a well-formed CSV ({exc})") from None
        own = [f.get("name") for f in r.get("schema", {}).get("fields", [])]
        if own != list(frames[r["name"]].columns):
            raise ContributionError("schema", f"{path}: its columns {list(frames[r['name']].columns)} are not "
                                              f"those its own {datapackage.DESCRIPTOR} describes ({own})")
    return descriptor, frames


def _layout(frames: dict[str, pd.DataFrame], notes: list[str]) -> dict[str, pd.DataFrame]:
    before = list(frames["provenance"].columns)
    try:
        prov = harness.upgrade_provenance(frames["provenance"]).fillna("")
    except datapackage.DataError as exc:
        raise ContributionError("layout", f"provenance.csv is in no layout this lab knows: {exc}") from None
    if list(prov.columns) != before:
        renamed = [f"{old} -> {new}" for old, new in harness.RENAMED_PROVENANCE_COLUMNS.items() if old in before]
        added = [c for c in prov.columns if c not in before and c not in harness.RENAMED_PROVENANCE_COLUMNS.values()]
        notes.append("provenance.csv is in an older layout: migrated to the current one ("
                     + "; ".join([*(f"renamed {r}" for r in renamed), *(f"added {a}" for a in added)]) + ")")
    return {**frames, "provenance": prov}


def _schema(host_id: str, frames: Mapping[str, pd.DataFrame], known: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    """Validate the text cells against this lab's schemas (never the contribution's own); the typed frames.

    Minimum and maximum are left to the range check, which names the range each value is held to.
    """
    for name, frame in frames.items():
        expected = [f["name"] for f in known[name]["schema"]["fields"]]
        if list(frame.columns) != expected:
            missing = [c for c in expected if c not in frame.columns]
            extra = [c for c in frame.columns if c not in expected]
            raise ContributionError("schema", f"{name}.csv: columns do not match this lab's schema"
                                    + (f"; missing {missing}" if missing else "")
                                    + (f"; not in the schema {extra}" if extra else "")
                                    + ("; order differs" if not missing and not extra else ""))
    return _validate(host_id, frames, "schema", bounds=False)


def _validate(host_id: str, frames: Mapping[str, pd.DataFrame], check: str, *, bounds: bool) -> dict[str, Any]:
    """The text ``frames`` validated as a package in this lab's layout, in a temporary folder."""
    descriptor = package_descriptor(host_id, frames)
    if not bounds:
        descriptor = json.loads(json.dumps(descriptor))
        for r in descriptor["resources"]:
            for f in r["schema"]["fields"]:
                for key in ("minimum", "maximum"):
                    f.get("constraints", {}).pop(key, None)
    with tempfile.TemporaryDirectory(prefix="lab-contrib-check-") as tmp:
        staged = Path(tmp) / host_id
        staged.mkdir()
        for r in descriptor["resources"]:
            frames[r["name"]].to_csv(staged / r["path"], index=False, lineterminator="\n")
        (staged / datapackage.DESCRIPTOR).write_text(json.dumps(descriptor), encoding="utf-8")
        try:
            return datapackage.validate_package(staged)
        except datapackage.DataError as exc:
            raise ContributionError(check, _relative(str(exc), Path(tmp))) from None


def _host(host_id: str, descriptor: Mapping[str, Any], typed: Mapping[str, pd.DataFrame]) -> None:
    if not HOST_ID.fullmatch(host_id):
        raise ContributionError("host", f"the folder {host_id!r} is not a host id (vendor-8 hex digits, "
                                        f"as lab.host.host_id makes it)")
    for name, frame in typed.items():
        other = sorted(set(frame["host_id"]) - {host_id})
        if other:
            line = int(frame.index[frame["host_id"] != host_id][0]) + 2
            raise ContributionError("host", f"{name}.csv:{line}: host id {other[0]!r}, but the folder is "
                                            f"{host_id!r}: a contribution holds one host")
    package = descriptor.get("name")
    if package is not None and package != f"{harness.PACKAGE_NAME_PREFIX}{host_id}":
        raise ContributionError("host", f"{datapackage.DESCRIPTOR} is named {package!r}, not "
                                        f"{harness.PACKAGE_NAME_PREFIX}{host_id!r}")
    vendor = host_id.split("-")[0]
    wrong = sorted(set(typed["provenance"]["cpu_vendor"]) - {vendor})
    if wrong:
        raise ContributionError("host", f"the host id {host_id!r} names the vendor {vendor!r}, but provenance.csv "
                                        f"records a CPU of {wrong[0]!r}")


def _provenance(typed: Mapping[str, pd.DataFrame]) -> None:
    prov = typed["provenance"]
    rows = {key: i + 2 for i, key in enumerate(zip(prov["host_id"], prov["recorded_at"], strict=True))}
    used: set[Any] = set()
    for name, frame in typed.items():
        if name == "provenance":
            continue
        for i, key in enumerate(zip(frame["host_id"], frame["recorded_at"], strict=True)):
            if key not in rows:
                raise ContributionError("provenance", f"{name}.csv:{i + 2}: recording {key[1].isoformat()} has no "
                                                      f"row in provenance.csv (where and how it was measured)")
            used.add(key)
            line = rows[key]
            if name in NEEDS_KVM and prov.loc[line - 2, "kvm_backend"] == "none":
                raise ContributionError("provenance", f"provenance.csv:{line}: the {name} recording ran on KVM, "
                                                      f"but its provenance names no KVM back end")
            if name in NEEDS_TSC and frame["status"].iloc[i] == "ok" and _missing(prov.loc[line - 2, "tsc_khz"]):
                raise ContributionError("provenance", f"provenance.csv:{line}: the {name} recording has cycles "
                                                      f"but its provenance no TSC rate (tsc_khz)")
    for key, line in rows.items():
        if key not in used:
            raise ContributionError("provenance", f"provenance.csv:{line}: recording {key[1].isoformat()} has no "
                                                  f"measured row in any resource")


def _range(host_id: str, frames: Mapping[str, pd.DataFrame], typed: Mapping[str, pd.DataFrame]) -> None:
    found = ranges.violations(typed)
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise ContributionError("range", f"{found[0]}{more}")
    _validate(host_id, frames, "range", bounds=True)  # the schema's own minimum and maximum
    latest = datetime.now(UTC) + CLOCK_SLACK
    for i, when in enumerate(typed["provenance"]["recorded_at"]):
        if when > latest:
            raise ContributionError("range", f"provenance.csv:{i + 2}: recorded at {when.isoformat()}, in the future")


def _private(frames: Mapping[str, pd.DataFrame], names: Iterable[str]) -> None:
    names = list(names)
    for name, frame in frames.items():
        for column in frame.columns:
            for i, text in enumerate(frame[column]):
                found = private.find(str(text), names)
                if found is not None:
                    raise ContributionError("private", f"{name}.csv:{i + 2}: column {column!r} holds "
                                                       f"{found.text!r}, which looks like {found.what}; a "
                                                       f"contribution names no person, machine or folder")


def _duplicate(host_id: str, typed: Mapping[str, pd.DataFrame], root: Path) -> None:
    """No recording already there: the same (host, time), or the same measured cycles under any host."""
    mine = root / host_id
    if (mine / datapackage.DESCRIPTOR).exists():
        there = harness.load_provenance(mine)
        shared = sorted(set(typed["provenance"]["recorded_at"]) & set(there["recorded_at"]))
        if shared:
            raise ContributionError("duplicate", f"the recording {shared[0].isoformat()} of {host_id} is already "
                                                 f"in {mine}")
    for name, frame in typed.items():
        timed = _timed_columns(frame)
        if not timed:
            continue
        new = _fingerprints(frame, timed)
        for pkg in datapackage.find_packages(root):
            if name not in {r.get("name") for r in datapackage.read_descriptor(pkg)["resources"]}:
                continue
            old = datapackage.load_resource(pkg, name)
            same = {k: v for k, v in _fingerprints(old, timed).items() if v in new.values()}
            if same:
                h, t = next(iter(same))
                raise ContributionError("duplicate", f"{name}.csv: a recording has the very cycles of the "
                                                     f"recording {t.isoformat()} of {h} already in {pkg}")


def _timed_columns(frame: pd.DataFrame) -> list[str]:
    """Guest- or host-timed cycle counts: two recordings never share them by chance."""
    fields = frame.attrs.get("resource", {}).get("schema", {}).get("fields", [])
    return [f["name"] for f in fields if f.get("type") == "number" and "cycles" in f["name"]]


def _fingerprints(frame: pd.DataFrame, columns: list[str]) -> dict[tuple[Any, Any], tuple[Any, ...]]:
    """(host, time) -> the recording's timed values, for the recordings that have any."""
    out = {}
    for key, rows in frame.groupby(["host_id", "recorded_at"], sort=True):
        values = tuple(v for v in rows[columns].to_numpy().ravel().tolist() if not _missing(v))
        if values:
            out[key] = values
    return out


def _missing(value: Any) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


def _relative(message: str, base: Path) -> str:
    """``message`` without the temporary folder it names (the error points into the contribution)."""
    return message.replace(f"{base}/", "").replace(str(base), "")
