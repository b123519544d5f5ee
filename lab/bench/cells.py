"""Recorded outputs of the chapters' ``%%kvm`` cells: how they are keyed, recorded and found again.

A chapter cell that needs KVM starts with the line ``%%kvm`` (the cell magic
of :mod:`lab.book.core.cells`); everything below it is the reader's code, the real
API. Where KVM is usable the magic runs that code. Where it is not, the magic
shows what the same cell printed on the page's recorded host. This module
holds the recordings; it knows nothing of how the book words them.

**Key.** A recorded cell is found by its page (the chapter's file name without
``.md``) and :func:`key` of its body: the SHA-256 of the code below the
``%%kvm`` line, with trailing spaces and leading and trailing blank lines
removed, as its first :data:`KEY_LENGTH` hex digits. Any other change to the
code (a changed argument, a new line, a comment) changes the key, so a
recording is never shown for code other than the code that printed it.

**Recording.** ``python -m lab record --only cells`` (``--page kvm`` for one
page) executes each chapter that has ``%%kvm`` cells in a fresh kernel on a
KVM host, as the book build does (:func:`execute`), and stores each marked
cell's outputs (nbformat outputs: streams, rich displays, the cell's result;
text and PNG only) as one row of the resource ``cells`` in
``data/measured/<host>/``, with a provenance row like every other recording.
A page is recorded whole (its cells share state), so a host's newest
recording of a page (:data:`lab.bench.dataset.PARTS`) is the one the book uses.

**A changed cell.** When a cell's key is not in that recording, the cell was
changed (or added) after the page was recorded: the book says so and shows no
output, never the output of other code; :func:`stale` lists such cells, and
the tests fail on them until the page is recorded again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab import host, paths
from lab.bench.harness import RECORDING_KEY
from lab.bench.registry import Bench, register

if TYPE_CHECKING:
    import pandas as pd

RESOURCE = "cells"
MAGIC = "kvm"
MAGIC_LINE = f"%%{MAGIC}"
KEY_LENGTH = 16
CHAPTERS_DIR = paths.REPO_ROOT / "chapters"
#: Output types and MIME types kept in a recording (widget state and scripts are not).
KEPT_MIMES = ("text/plain", "text/html", "text/markdown", "image/png")
EXECUTE_TIMEOUT_S = 300

FIELDS: list[dict[str, Any]] = [
    *RECORDING_KEY,
    {"name": "page", "type": "string", "constraints": {"required": True},
     "description": "the chapter's file name without .md (e.g. kvm for chapters/kvm/kvm.md)"},
    {"name": "ordinal", "type": "integer", "constraints": {"required": True, "minimum": 1},
     "description": "position among the page's %%kvm cells when it was recorded (for people; the key finds the cell)"},
    {"name": "key", "type": "string", "constraints": {"required": True, "pattern": f"^[0-9a-f]{{{KEY_LENGTH}}}$"},
     "description": "lab.bench.cells.key of the cell's code: SHA-256 of the normalised body, first 16 hex digits"},
    {"name": "source", "type": "string", "constraints": {"required": True},
     "description": "the cell's code below the %%kvm line, as recorded"},
    {"name": "outputs", "type": "string", "constraints": {"required": True},
     "description": "what the cell printed: a JSON list of nbformat outputs (stream, display_data, execute_result)"},
]


class CellsUnavailable(Exception):
    """The chapters cannot be recorded here (no usable KVM, no notebook runner): the reason, in English."""


class RecordingError(RuntimeError):
    """A page's cells did not record (a cell raised, or printed nothing the magic could see)."""


@dataclass(frozen=True)
class Cell:
    """One ``%%kvm`` cell of a page: where it is, its key, its code, and (once executed) its outputs."""

    page: str
    ordinal: int
    key: str
    source: str
    outputs: tuple[dict[str, Any], ...] = ()

    def as_row(self) -> dict[str, Any]:
        return {"page": self.page, "ordinal": self.ordinal, "key": self.key, "source": self.source,
                "outputs": json.dumps(list(self.outputs), ensure_ascii=False, sort_keys=True)}


def normalise(body: str) -> str:
    """The code a key is made of: trailing spaces and leading and trailing blank lines removed."""
    return "\n".join(line.rstrip() for line in body.strip("\n").splitlines()).strip("\n")


def key(body: str) -> str:
    """The key of a ``%%kvm`` cell from the code below its magic line (see the module docstring)."""
    return hashlib.sha256(normalise(body).encode("utf-8")).hexdigest()[:KEY_LENGTH]


def body_of(source: str) -> str | None:
    """The code of a notebook cell below its ``%%kvm`` line, or None when the cell is not marked."""
    first, _, rest = source.lstrip("\n").partition("\n")
    return rest if first.split() == [MAGIC_LINE] else None


def page_name(path: str | Path) -> str:
    return Path(path).stem


def marked_cells(nb_or_path: Any) -> list[Cell]:
    """The ``%%kvm`` cells of a chapter (a path to its MyST file, or a notebook), in order, with their outputs."""
    if isinstance(nb_or_path, (str, Path)):
        import jupytext

        nb, page = jupytext.read(nb_or_path), page_name(nb_or_path)
    else:
        nb, page = nb_or_path, nb_or_path.metadata.get("lab_page", "")
    cells: list[Cell] = []
    for c in nb.cells:
        body = body_of(c.source) if c.cell_type == "code" else None
        if body is not None:
            cells.append(Cell(page, len(cells) + 1, key(body), normalise(body),
                              tuple(_kept(o) for o in c.get("outputs", []))))
    return cells


def pages_with_cells(chapters: str | Path = CHAPTERS_DIR) -> dict[str, Path]:
    """Every chapter that has ``%%kvm`` cells, by page name."""
    found = {}
    for path in sorted(Path(chapters).rglob("*.md")):
        if any(line.split() == [MAGIC_LINE] for line in path.read_text(encoding="utf-8").splitlines()):
            found[page_name(path)] = path
    return found


def _kept(output: Any) -> dict[str, Any]:
    """An nbformat output as recorded: its type, and for rich outputs only :data:`KEPT_MIMES`."""
    kind = output.get("output_type")
    if kind == "stream":
        return {"output_type": "stream", "name": output["name"], "text": output["text"]}
    if kind in ("display_data", "execute_result"):
        data = {m: v for m, v in output.get("data", {}).items() if m in KEPT_MIMES}
        return {"output_type": kind, "data": data}
    return {"output_type": kind, **{k: output.get(k) for k in ("ename", "evalue")}}


# --------------------------------------------------------------------------- recording

def execute(path: str | Path, timeout_s: int = EXECUTE_TIMEOUT_S) -> list[Cell]:
    """Execute a chapter in a fresh kernel (live: ``LAB_FORCE_RECORDED`` is not passed on) and return its
    ``%%kvm`` cells with what each printed; :class:`RecordingError` if a cell raised."""
    try:
        import jupytext
        import nbclient
    except ImportError as exc:
        raise CellsUnavailable(f"{exc.name} is missing: run 'make setup' (it is pinned in requirements.txt)") from None
    from lab.bench import dataset

    path = Path(path)
    nb = jupytext.read(path)
    nb.metadata["lab_page"] = page_name(path)
    saved = os.environ.pop(dataset.FORCE_RECORDED_ENV, None)
    try:
        nbclient.NotebookClient(nb, timeout=timeout_s, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}}).execute()
    except nbclient.exceptions.CellExecutionError as exc:
        raise RecordingError(f"{path.name}: a cell raised, nothing recorded: {str(exc)[-800:]}") from None
    finally:
        if saved is not None:
            os.environ[dataset.FORCE_RECORDED_ENV] = saved
    cells = marked_cells(nb)
    if not cells:
        raise RecordingError(f"{path.name} has no {MAGIC_LINE} cell to record")
    errors = [c.ordinal for c in cells if any(o["output_type"] == "error" for o in c.outputs)]
    if errors:
        raise RecordingError(f"{path.name}: %%kvm cells {errors} ended in an error: nothing recorded")
    return cells


def _measure(args: argparse.Namespace, progress: Any) -> list[Cell]:
    info = host.probe_kvm()
    if not info.usable:
        raise CellsUnavailable(f"the pages' %%kvm cells need a usable KVM: {info.reason}")
    every = pages_with_cells()
    chosen = args.page or sorted(every)
    unknown = [p for p in chosen if p not in every]
    if unknown:
        raise ValueError(f"no page with %%kvm cells named {unknown}: choose from {', '.join(sorted(every))}")
    cells: list[Cell] = []
    for page in chosen:
        cells += execute(every[page])
        if progress:
            progress.step(page)
    return cells


def to_frame(cells: Sequence[Cell], prov: dict[str, Any]) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame([c.as_row() for c in cells])
    frame.insert(0, "recorded_at", prov["recorded_at"])
    frame.insert(0, "host_id", prov["host_id"])
    return frame[[f["name"] for f in FIELDS]]


def _add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--page", action="append", default=None,
                   help="record the %%%%kvm cells of this page only (repeatable; default: every page that has them)")


def _show(cells: Sequence[Cell]) -> None:
    for c in cells:
        kinds = ", ".join(o["output_type"] for o in c.outputs) or "no output"
        print(f"{c.page:<10} {c.ordinal:>2}  {c.key}  {kinds}")


BENCH = register(Bench(
    name=RESOURCE,
    help="execute the chapters on this KVM host and record what their %%kvm cells printed",
    add_args=_add_args,
    measure=_measure,
    to_frame=to_frame,
    fields=FIELDS,
    description="what each %%kvm cell of the chapters printed on this host, keyed by page and code (lab.bench.cells)",
    steps=lambda args: len(args.page or pages_with_cells()),
    show=_show,
    as_json=lambda cells: [c.as_row() for c in cells],
    ok=lambda cells: True,
    unavailable=lambda: (CellsUnavailable,),
))


# --------------------------------------------------------------------------- finding a recording

def outputs_of(row: Any) -> list[dict[str, Any]]:
    """The outputs of a recorded row, checked: a list of nbformat outputs of the kinds :func:`_kept` keeps."""
    outputs = json.loads(row["outputs"])
    if not isinstance(outputs, list) or not all(isinstance(o, dict) and "output_type" in o for o in outputs):
        raise ValueError(f"recorded cell {row['page']}/{row['key']} of host {row['host_id']}: outputs are not "
                         "a list of nbformat outputs")
    return outputs


def stale(path: str | Path, recorded_keys: Sequence[str]) -> list[Cell]:
    """The ``%%kvm`` cells of the chapter at ``path`` whose code has no recording among ``recorded_keys``."""
    keys = set(recorded_keys)
    return [c for c in marked_cells(path) if c.key not in keys]
