"""Load and write the book's data as Frictionless-style data packages.

Each folder of ``data/`` that holds CSV files also holds a ``datapackage.json``
that describes every column (a Table Schema). Loading validates the CSV
against it: a missing or extra column, a value of the wrong type, an empty
required cell, a value outside its ``enum`` or ``pattern`` is a
:class:`DataError` that names the file, the line and the column, never a
silently wrong plot.

Supported field types: ``string``, ``integer``, ``number``, ``boolean``,
``date`` (ISO ``YYYY-MM-DD``), ``datetime`` (ISO 8601), ``year``.
Supported constraints: ``required``, ``unique``, ``enum``, ``minimum``,
``maximum``, ``pattern``. A schema may name a ``primaryKey`` (unique rows).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas is imported where a table is read: finding and recovering packages needs only the stdlib
    import pandas as pd

DESCRIPTOR = "datapackage.json"


class DataError(ValueError):
    """The data on disk does not match its schema (or the schema is broken)."""


def read_descriptor(package_dir: str | os.PathLike[str]) -> dict[str, Any]:
    path = recover(package_dir, tidy=False) / DESCRIPTOR
    try:
        descriptor = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: no data package descriptor here") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(descriptor.get("resources"), list) or not descriptor["resources"]:
        raise DataError(f"{path}: 'resources' must be a non-empty list")
    return descriptor


def resource_descriptor(descriptor: Mapping[str, Any], name: str) -> dict[str, Any]:
    for resource in descriptor["resources"]:
        if resource.get("name") == name:
            return resource
    names = ", ".join(r.get("name", "?") for r in descriptor["resources"])
    raise DataError(f"no resource named {name!r} (the package has: {names})")


# --------------------------------------------------------------------------- cell parsers

_TRUE = {"true", "True", "TRUE", "1", "yes"}
_FALSE = {"false", "False", "FALSE", "0", "no"}


def _parse_boolean(text: str) -> bool:
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("not a boolean (true/false)")


def _parse_integer(text: str) -> int:
    if not re.fullmatch(r"[+-]?\d+", text):
        raise ValueError("not an integer")
    return int(text)


def _parse_number(text: str) -> float:
    value = float(text)  # raises ValueError with its own message
    return value


def _parse_year(text: str) -> int:
    if not re.fullmatch(r"\d{4}", text):
        raise ValueError("not a four-digit year")
    return int(text)


PARSERS: dict[str, Callable[[str], Any]] = {
    "string": str,
    "integer": _parse_integer,
    "number": _parse_number,
    "boolean": _parse_boolean,
    "date": date.fromisoformat,
    "datetime": datetime.fromisoformat,
    "year": _parse_year,
}


def _check_schema(schema: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    fields = schema.get("fields")
    if not isinstance(fields, list) or not fields:
        raise DataError(f"{where}: schema.fields must be a non-empty list")
    for f in fields:
        if "name" not in f:
            raise DataError(f"{where}: a field has no name")
        ftype = f.get("type", "string")
        if ftype not in PARSERS:
            raise DataError(f"{where}: field {f['name']!r} has unsupported type {ftype!r}")
        if not f.get("description"):
            raise DataError(f"{where}: field {f['name']!r} has no description")
    return fields


def load_resource(package_dir: str | os.PathLike[str], name: str) -> pd.DataFrame:
    """The resource ``name`` of the package in ``package_dir``, validated.

    Columns come back typed: integers as ``Int64``, numbers as ``float64``,
    booleans as ``boolean``, dates as Python ``date`` objects; empty cells of
    optional fields are missing values.
    """
    import pandas as pd

    package_dir = recover(package_dir, tidy=False)
    descriptor = read_descriptor(package_dir)
    resource = resource_descriptor(descriptor, name)
    csv_path = package_dir / resource.get("path", "")
    fields = _check_schema(resource.get("schema", {}), f"{package_dir / DESCRIPTOR} [{name}]")
    raw = _read_csv(csv_path, [f["name"] for f in fields])
    frame = pd.DataFrame({f["name"]: _parse_column(raw[f["name"]], f, str(csv_path)) for f in fields},
                         columns=[f["name"] for f in fields])
    for f in fields:
        dtype = _DTYPES.get(f.get("type", "string"))
        if dtype:
            frame[f["name"]] = frame[f["name"]].astype(dtype)
    _check_primary_key(frame, resource["schema"].get("primaryKey"), str(csv_path))
    frame.attrs["resource"] = resource
    frame.attrs["package"] = {k: v for k, v in descriptor.items() if k != "resources"}
    return frame


#: The pandas type of a column, per field type (the others stay Python objects).
_DTYPES = {"integer": "Int64", "year": "Int64", "number": "float64", "boolean": "boolean"}


def _read_csv(csv_path: Path, expected: list[str]) -> pd.DataFrame:
    """The CSV as text cells, its columns checked against the schema's."""
    import pandas as pd

    where = str(csv_path)
    try:
        raw = pd.read_csv(csv_path, dtype=str, keep_default_na=False, na_filter=False)
    except FileNotFoundError:
        raise DataError(f"{where}: file listed in {DESCRIPTOR} does not exist") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{where}: not a well-formed CSV ({exc})") from None
    if list(raw.columns) != expected:
        missing = [c for c in expected if c not in raw.columns]
        extra = [c for c in raw.columns if c not in expected]
        raise DataError(
            f"{where}: columns do not match the schema"
            + (f"; missing {missing}" if missing else "")
            + (f"; not in schema {extra}" if extra else "")
            + ("; order differs" if not missing and not extra else "")
        )
    return raw


def _parse_column(cells: pd.Series, field: Mapping[str, Any], where: str) -> list[Any]:
    """Parse and check one column's text cells against its field; ``DataError`` names the line."""
    col, ftype = field["name"], field.get("type", "string")
    parse = PARSERS[ftype]
    cons = field.get("constraints", {})
    pattern = re.compile(cons["pattern"]) if "pattern" in cons else None
    values: list[Any] = []
    for i, text in enumerate(cells):
        line = i + 2  # header is line 1
        if text == "":
            if cons.get("required"):
                raise DataError(f"{where}:{line}: column {col!r} is required but empty")
            values.append(None)
            continue
        if pattern is not None and not pattern.fullmatch(text):
            raise DataError(f"{where}:{line}: column {col!r} value {text!r} does not match {pattern.pattern!r}")
        try:
            value = parse(text)
        except ValueError as exc:
            raise DataError(f"{where}:{line}: column {col!r} value {text!r} is not a {ftype}: {exc}") from None
        if "enum" in cons and value not in cons["enum"]:
            raise DataError(f"{where}:{line}: column {col!r} value {text!r} not one of {cons['enum']}")
        if "minimum" in cons and value < cons["minimum"]:
            raise DataError(f"{where}:{line}: column {col!r} value {value} below minimum {cons['minimum']}")
        if "maximum" in cons and value > cons["maximum"]:
            raise DataError(f"{where}:{line}: column {col!r} value {value} above maximum {cons['maximum']}")
        values.append(value)
    if cons.get("unique"):
        seen = [v for v in values if v is not None]
        if len(seen) != len(set(seen)):
            raise DataError(f"{where}: column {col!r} must be unique but has duplicates")
    return values


def _check_primary_key(frame: pd.DataFrame, key: str | list[str] | None, where: str) -> None:
    if not key:
        return
    cols = [key] if isinstance(key, str) else list(key)
    if frame.duplicated(subset=cols).any():
        dup = frame[frame.duplicated(subset=cols, keep=False)][cols].head(3).to_dict("records")
        raise DataError(f"{where}: primary key {cols} repeats, e.g. {dup}")


def validate_package(package_dir: str | os.PathLike[str]) -> dict[str, pd.DataFrame]:
    """Load every resource of a package; raises :class:`DataError` on the first problem."""
    descriptor = read_descriptor(package_dir)
    return {r["name"]: load_resource(package_dir, r["name"]) for r in descriptor["resources"]}


def find_packages(root: str | os.PathLike[str]) -> list[Path]:
    """Every folder under ``root`` that holds a ``datapackage.json`` (hidden folders, e.g. a
    package being written, are left out)."""
    root = Path(root)
    return sorted(p.parent for p in root.rglob(DESCRIPTOR)
                  if not any(part.startswith(".") for part in p.parent.relative_to(root).parts))


# --------------------------------------------------------------------------- writing
#
# A package is replaced in steps, each a single rename within one folder:
#   1. write   every file into a new hidden sibling ``.NAME.new-XXXX``, validate it
#   2. retire  rename the old package to ``.NAME.old``
#   3. install rename the new folder to ``NAME``
#   4. discard remove ``.NAME.old``
# A failure in any step puts the old package back. A process killed between
# two steps leaves a state that :func:`recover` repairs, and every read and
# write of the package calls it first: ``NAME`` missing with ``.NAME.old``
# present means the swap did not finish (the old package comes back);
# ``NAME`` present means it did (leftovers are removed). One writer at a time.

_NEW = ".{name}.new-"
_OLD = ".{name}.old"


def _checkpoint(step: str) -> None:
    """Called after each step of :func:`write_package`; tests make it fail or kill the process."""


def recover(package_dir: str | os.PathLike[str], *, tidy: bool = True) -> Path:
    """Finish or undo an interrupted :func:`write_package` of ``package_dir``; return where the package is.

    Readers call it with ``tidy=False``: they put a retired package back but
    leave unfinished new folders alone (a writer may be busy with one).
    Without write access to the parent folder (a reader on Binder) nothing is
    changed and the intact old copy, if that is all there is, is returned.
    """
    package_dir = Path(package_dir)
    parent, name = package_dir.parent, package_dir.name
    old = parent / _OLD.format(name=name)
    if not parent.is_dir() or not (old.exists() or any(parent.glob(_NEW.format(name=name) + "*"))):
        return package_dir
    try:
        if old.exists() and not package_dir.exists():
            old.rename(package_dir)
        elif old.exists():
            shutil.rmtree(old)
        for leftover in parent.glob(_NEW.format(name=name) + "*") if tidy else ():
            shutil.rmtree(leftover)
    except OSError:
        return old if old.exists() and not package_dir.exists() else package_dir
    return package_dir


def check_writable(folder: str | os.PathLike[str]) -> Path:
    """Refuse, before any work, a folder that packages cannot be written into; return it.

    The folder need not exist yet (it is created when the first package is
    written), but it must be a folder, or creatable in its nearest existing
    parent. Writability is tried for real (a temporary folder is made and
    removed), since permission bits say nothing for root, on /proc or on a
    read-only mount. Nothing is left behind.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{folder}: not a folder; give a folder to write the recordings into")
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise DataError(f"{folder}: cannot be created, since {existing} is not a folder")
    try:
        probe = tempfile.mkdtemp(prefix=".lab-write-check-", dir=existing)
    except OSError as exc:
        what = "write into it" if existing == folder else f"create it in {existing}"
        raise DataError(f"{folder}: cannot {what} ({exc.strerror or exc}); "
                        f"choose a folder you can write to") from None
    os.rmdir(probe)
    return folder


def write_package(package_dir: str | os.PathLike[str], descriptor: Mapping[str, Any],
                  frames: Mapping[str, pd.DataFrame], extra_files: Mapping[str, str] | None = None) -> Path:
    """Write a whole package: after it returns the new package is in place; if it fails, the old one is.

    ``extra_files`` maps file names to text (e.g. a provenance JSON). See the
    steps above; a validation error (:class:`DataError`) leaves the old
    package untouched.
    """
    package_dir = Path(package_dir)
    package_dir.parent.mkdir(parents=True, exist_ok=True)
    recover(package_dir)
    new = Path(tempfile.mkdtemp(prefix=_NEW.format(name=package_dir.name), dir=package_dir.parent))
    old = package_dir.with_name(_OLD.format(name=package_dir.name))
    retired = False
    try:
        for resource in descriptor["resources"]:
            frames[resource["name"]].to_csv(new / resource["path"], index=False, lineterminator="\n")
        (new / DESCRIPTOR).write_text(json.dumps(descriptor, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        for fname, text in (extra_files or {}).items():
            (new / fname).write_text(text, encoding="utf-8")
        validate_package(new)
        _checkpoint("write")
        if package_dir.exists():
            package_dir.rename(old)
            retired = True
            _checkpoint("retire")
        new.rename(package_dir)
        _checkpoint("install")
    except BaseException:
        if retired:  # put the old package back, taking the new one out if it got in
            if package_dir.exists():
                package_dir.rename(new)
            old.rename(package_dir)
        shutil.rmtree(new, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    _checkpoint("discard")
    return package_dir
