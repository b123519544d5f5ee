"""The book's data on libvirt: the virsh <-> API <-> cloud CLI table and the timeline.

Both live in ``data/libvirt/`` as CSV with a ``datapackage.json`` that
describes every column; :func:`lab.datapackage.load_resource` validates them
on load.
"""

from __future__ import annotations

from pathlib import Path

from lab.paths import DATA_DIR

PACKAGE_DIR: Path = DATA_DIR / "libvirt"


# lab.datapackage needs pandas; it is imported on use, so that connecting to
# libvirt works on a bare Python (a non-root reader's, a fresh host's).


def load_mapping(package_dir: str | Path = PACKAGE_DIR):
    """virsh command <-> libvirt API <-> AWS CLI <-> OpenStack CLI, one row per operation."""
    from lab.datapackage import load_resource

    return load_resource(package_dir, "api_mapping")


def load_timeline(package_dir: str | Path = PACKAGE_DIR):
    """Dated events of libvirt's history, each with its source."""
    from lab.datapackage import load_resource

    return load_resource(package_dir, "timeline")


#: How the book marks the correspondence of a cloud command to the libvirt operation.
MARKS = {"same": "=", "similar": "≈", "none": "-"}


def _mark(kind: str, command: object) -> str:
    text = command if isinstance(command, str) and command else "(なし)"
    return f"{MARKS[kind]} {text}"


def mapping_table(package_dir: str | Path = PACKAGE_DIR):
    """The mapping as the book shows it: one row per operation, Japanese headings.

    Each cloud command is prefixed with ``=`` (same effect), ``≈`` (related,
    see the note) or ``-`` (no counterpart).
    """
    import pandas as pd

    frame = load_mapping(package_dir)
    return pd.DataFrame({
        "virsh": frame["virsh"],
        "libvirt API": frame["libvirt_api"],
        "AWS CLI": [_mark(k, c) for k, c in zip(frame["aws_correspondence"], frame["aws_cli"], strict=True)],
        "OpenStack CLI": [_mark(k, c) for k, c in
                          zip(frame["openstack_correspondence"], frame["openstack_cli"], strict=True)],
        "注": frame["note"],
    }).set_axis(frame["operation"].rename("操作"))
