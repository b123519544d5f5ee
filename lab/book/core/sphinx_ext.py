"""A small Sphinx extension of the book: every executed chapter as a .ipynb download.

sphinx-book-theme offers the executed notebook (``.ipynb``) of a MyST text
notebook only when Binder launch buttons are configured, which needs the
public repository's URL. This copies the notebook that myst-nb executed into
``_sources`` and tells the theme about it, so the download menu has
``.ipynb`` on every chapter whether or not the book knows where it is hosted.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any


def add_ipynb_download(app, pagename: str, templatename: str, context: dict[str, Any], doctree) -> None:
    if context.get("ipynb_source") or not str(context.get("sourcename", "")).endswith((".md", ".md.txt")):
        return
    executed = Path(app.outdir).parent / "jupyter_execute" / f"{pagename}.ipynb"
    if not executed.exists():  # a plain Markdown page, not a notebook
        return
    target = Path(app.outdir) / "_sources" / f"{pagename}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(executed, target)
    context["ipynb_source"] = f"{pagename}.ipynb"


def setup(app) -> dict[str, Any]:
    # Before sphinx-book-theme builds its header buttons (priority 501).
    app.connect("html-page-context", add_ipynb_download, priority=500)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
