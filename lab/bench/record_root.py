"""The folder recordings go to (``python -m lab record --root``): checked before anything is measured,
and written as a placeholder in the command a recording keeps."""

from __future__ import annotations

import re
from pathlib import Path

from lab import datapackage, paths
from lab.bench.harness import check_links, host_dir

#: What a recorded command shows instead of the folder given to ``--root``: where the recordings were
#: stored is not how they were measured, and a path can name a person (``/home/<name>/...``).
ROOT_PLACEHOLDER = "<folder>"
_ROOT_OPTION = re.compile(r"""--root(?:=|\s+)(?:'[^']*'|"[^"]*"|\S+)""")


def hide_root(command: str) -> str:
    """``command`` (a shell command line) with the folder of every ``--root`` written as the placeholder."""
    return _ROOT_OPTION.sub(f"--root {ROOT_PLACEHOLDER}", command)


def check_root(root: str | Path | None, host_id: str) -> Path:
    """Refuse, before anything is measured, a ``--root`` a recording of ``host_id`` could not be written to.

    The folder must be writable (:func:`lab.datapackage.check_writable`), and
    what is already there for this host must be a valid package, since the new
    recording is added to it: a folder that is not a package would be replaced,
    a broken one could not be read back. Returns the folder.
    """
    folder = datapackage.check_writable(root if root is not None else paths.MEASURED_DIR)
    target = host_dir(host_id, folder)
    if target.exists():
        if not target.is_dir() or not (target / datapackage.DESCRIPTOR).exists():
            raise datapackage.DataError(f"{target}: exists but is not a data package of recordings "
                                        f"(no {datapackage.DESCRIPTOR}); move it away or choose another --root")
        try:
            check_links(target)
        except datapackage.DataError as exc:
            raise datapackage.DataError(f"the recordings already in {target} are not valid, so a new one "
                                        f"cannot be added to them: {exc}") from None
    return folder
