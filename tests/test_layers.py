"""The layer contract of lab (``[tool.importlinter]`` in pyproject.toml) holds, and can fail.

``lint-imports`` (import-linter) checks that each layer imports only those
below it (book | bench, virt, published | devices, host | kvm, guests |
datapackage, paths) and that the mechanism imports no pandas, matplotlib,
ipywidgets or book code. The second test breaks the contract on purpose in a
copy of the package, to show that the check really fails on a violation.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab.paths import REPO_ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    if not LINT_IMPORTS.exists():
        pytest.fail(f"{LINT_IMPORTS} is missing: run 'make setup' (import-linter is pinned in requirements.txt)")
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--config", str(root / "pyproject.toml")],
                          cwd=root, capture_output=True, text=True, env=env, timeout=120)


def test_the_layers_are_kept():
    out = _lint(REPO_ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


@pytest.mark.parametrize("module, line, contract", [
    ("lab/kvm/_violation.py", "from lab.bench import harness\n", "lab is layered"),
    ("lab/devices/_violation.py", "import matplotlib.pyplot\n", "the mechanism"),
    ("lab/bench/_violation.py", "from lab.book import kvm\n", "lab is layered"),
])
def test_a_violation_breaks_the_contract(tmp_path, module, line, contract):
    shutil.copytree(REPO_ROOT / "lab", tmp_path / "lab", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / module).write_text(line)
    out = _lint(tmp_path)
    assert out.returncode != 0, out.stdout
    broken = out.stdout.split("Broken contracts")[-1]
    assert contract in broken and "_violation" in broken, out.stdout


#: What a chapter module (lab/book/chapters/<page>.py) may import directly (lab.book's docstring).
CHAPTER_MAY_IMPORT = ("lab.kvm", "lab.guests", "lab.devices", "lab.host", "lab.analysis", "lab.book.core",
                      "lab.book.ja", "pandas", "matplotlib", "IPython",
                      "__future__", "json", "typing", "dataclasses", "collections")


def _imports(path: Path) -> set[str]:
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module in ("lab", "lab.book"):  # from lab import kvm
            names |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_a_chapter_module_imports_only_what_the_docstring_allows():
    modules = sorted((REPO_ROOT / "lab" / "book" / "chapters").glob("[!_]*.py"))
    assert modules, "no chapter module under lab/book/chapters"
    for path in modules:
        bad = {n for n in _imports(path) if not any(n == a or n.startswith(a + ".") for a in CHAPTER_MAY_IMPORT)}
        assert not bad, f"{path.name} imports {sorted(bad)}: see lab.book's docstring for what a chapter may import"


def test_inside_the_book_layer_imports_go_only_downward():
    """chapters -> core -> ja: core imports no chapter module, ja imports nothing of the book."""
    book = REPO_ROOT / "lab" / "book"
    below = {"core": ("lab.book.chapters",), "ja": ("lab.book.chapters", "lab.book.core")}
    for part, forbidden in below.items():
        for path in sorted((book / part).glob("*.py")):
            names = _imports(path)
            if part == "ja":
                names = {n for n in names if n.startswith("lab.book")}
                bad = {n for n in names if not n.startswith("lab.book.ja")}
            else:
                bad = {n for n in names if any(n == f or n.startswith(f + ".") for f in forbidden)}
            assert not bad, f"lab/book/{part}/{path.name} imports {sorted(bad)}: lab.book's parts import only downward"
