"""Add a contribution to ``data/measured/``: unpack, check, then write the host's package in one step.

Either every recording of the file is added or none: the checks run on a
temporary copy, and the host's package is then replaced by a single atomic
write (:func:`lab.datapackage.write_package`), which keeps what the package
already held (other resources, earlier recordings, other files).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lab import datapackage, paths
from lab.bench import harness
from lab.contrib import archive
from lab.contrib.checks import Checked, check_folder


@dataclass
class Added:
    """What :func:`add` did (or, with ``dry_run``, would do)."""

    checked: Checked
    target: Path
    sha256: str
    #: the checksum compared with: given, from the .sha256 file beside it, or None (nothing to compare)
    expected: str | None
    written: bool


def add(path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None, *, sha256: str | None = None,
        dry_run: bool = False) -> Added:
    """Check the contribution file ``path`` and add its recordings to ``root`` (default ``data/measured``).

    Raises :class:`lab.contrib.checks.ContributionError` (nothing written) when a check fails.
    """
    root = Path(root if root is not None else paths.MEASURED_DIR)
    expected = archive.expected_sha256(path, sha256)
    digest = archive.sha256_of(path)
    with tempfile.TemporaryDirectory(prefix="lab-add-") as tmp:
        folder = archive.unpack(path, tmp, expected)
        checked = check_folder(folder, root)
    target = root / checked.host_id
    if not dry_run:
        datapackage.check_writable(root)
        write(checked, target)
    return Added(checked, target, digest, expected, not dry_run)


def write(checked: Checked, target: Path) -> Path:
    """Join ``checked`` to the host package at ``target`` (made when there is none), atomically."""
    import pandas as pd

    frames = dict(checked.frames)
    descriptor = checked.descriptor
    extra: dict[str, str] = {}
    if (target / datapackage.DESCRIPTOR).exists():
        harness.check_links(target)
        old_descriptor, old, extra = harness.read_package_text(target)
        for name, frame in old.items():
            frames[name] = pd.concat([frame, frames[name]], ignore_index=True) if name in frames else frame
        ours = {r["name"]: r for r in descriptor["resources"]}
        resources = [ours.pop(r["name"], r) for r in old_descriptor["resources"]]
        descriptor = {**old_descriptor, "resources": resources + list(ours.values())}
    path = datapackage.write_package(target, descriptor, frames, extra)
    harness.check_links(path)
    return path
