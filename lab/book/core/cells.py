"""The book's one live-or-recorded cell type: the ``%%kvm`` cell magic.

A chapter registers it in its hidden setup cell (``%load_ext
lab.book.chapters.<page>``, whose ``load_ipython_extension`` calls
:func:`register`); then a cell that needs KVM reads::

    %%kvm
    system = kvm.open()
    system.api_version()

and nothing else: the reader's code is the API. Where KVM is usable
(:func:`lab.bench.dataset.why_not_live` is None) the magic runs the code as
IPython would, and the cell's last expression is its result. Where it is not
(Binder, a static build on a machine without ``/dev/kvm``,
``LAB_FORCE_RECORDED=1``) the code is not run: the cell shows the note of
:mod:`lab.book.core.fallback` (which host, when, why not here) and then what the
same code printed on the page's recorded host (:mod:`lab.bench.cells`: keyed
by the page and a hash of the code). When the code changed since that
recording, the cell says so and shows nothing of the old output. The switch
raises nothing, so a recorded page executes, and builds, like a live one.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.bench import cells as recorded_cells
from lab.bench import dataset
from lab.book.core import fallback, pages


def _run(shell: Any, body: str) -> Any:
    """Run ``body`` in the notebook's namespace as a cell would; the value of a last expression is returned."""
    __tracebackhide__ = True  # a reader's traceback starts at the reader's code
    code = shell.transform_cell(body)  # IPython syntax inside the cell works as in any other cell
    filename = shell.compile.cache(code)  # tracebacks show the cell's own lines
    tree = ast.parse(code, filename)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, filename, "exec"), shell.user_ns)  # noqa: S102  (the reader's own cell)
    if last is None or code.rstrip().endswith(";"):
        if last is not None:
            exec(compile(ast.Module([last], []), filename, "exec"), shell.user_ns)  # noqa: S102
        return None
    return eval(compile(ast.Expression(last.value), filename, "eval"), shell.user_ns)  # noqa: S307


@dataclass
class Replayed:
    """What a recorded cell shows: the note, then the recorded outputs in their order."""

    note: fallback.Note
    outputs: list[dict[str, Any]]

    def show(self) -> None:
        from IPython.display import display, publish_display_data

        display(self.note)
        for out in self.outputs:
            if out["output_type"] == "stream":
                (sys.stderr if out["name"] == "stderr" else sys.stdout).write(out["text"])
            elif out["output_type"] in ("display_data", "execute_result"):
                sys.stdout.flush()
                publish_display_data(out["data"])


class KvmCells:
    """The ``%%kvm`` magic of one page: live where KVM is usable, the page's recording otherwise."""

    def __init__(self, shell: Any, page: str, root: str | Path | None = None):
        self.shell, self.page, self.root = shell, page, root
        self._noted: set[tuple[str, str]] = set()  # (host, recording) whose whole note this page has shown

    def recorded(self, body: str, why: str) -> Replayed:
        """What the cell with code ``body`` shows without KVM (``why``: :func:`lab.bench.dataset.why_not_live`)."""
        reason = fallback.reason_ja(why)
        ds = pages.data(self.page, self.root, live=False)
        rows = ds.get(recorded_cells.RESOURCE, page=self.page) if ds.has(recorded_cells.RESOURCE) else None
        if rows is None or rows.empty:
            return Replayed(fallback.cell_missing_note(ds.host_id, self.page, reason), [])
        match = rows[rows["key"] == recorded_cells.key(body)]
        if match.empty:
            return Replayed(fallback.cell_changed_note(rows.iloc[0], self.page, reason), [])
        row = match.iloc[0]
        seen = (str(row["host_id"]), str(row["recorded_at"]))
        note = fallback.cell_note(row, reason, short=seen in self._noted)
        self._noted.add(seen)
        return Replayed(note, recorded_cells.outputs_of(row))

    def __call__(self, line: str, cell: str) -> Any:
        __tracebackhide__ = True
        if line.strip():
            from IPython.core.error import UsageError

            raise UsageError(f"%%kvm takes no arguments (got {line.strip()!r}): the cell's code is the whole cell")
        why = dataset.why_not_live()
        if why is None:
            return _run(self.shell, cell)
        self.recorded(cell, why).show()
        return None


def register(shell: Any, page: str, root: str | Path | None = None) -> KvmCells:
    """Register ``%%kvm`` in ``shell`` for the chapter ``page`` (its file name without ``.md``)."""
    magic = KvmCells(shell, page, root)
    shell.register_magic_function(magic, magic_kind="cell", magic_name=recorded_cells.MAGIC)
    return magic
