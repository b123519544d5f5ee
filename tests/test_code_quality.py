"""The code checks `make test` and CI run: ruff, mypy, and the size limits of CONTRIBUTING.md.

ruff (settings in pyproject.toml) over ``lab`` and ``tests``; mypy over
``lab`` (strict on the mechanism: kvm, guests, devices); no module over 400
lines and no function over 60.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from lab.paths import REPO_ROOT

BIN = Path(sys.executable).parent
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run 'make setup' (it is pinned in requirements.txt)")
    return str(path)


def test_ruff():
    out = subprocess.run([_tool("ruff"), "check", "lab", "tests"],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy():
    out = subprocess.run([_tool("mypy"), "--no-error-summary", "--cache-dir", str(REPO_ROOT / ".mypy_cache")],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    errors = [line for line in out.stdout.splitlines() if ": error:" in line]
    assert not errors, "\n".join(errors)
    assert "error: " not in out.stderr, out.stderr


def _sources() -> list[Path]:
    return sorted((REPO_ROOT / "lab").rglob("*.py"))


def test_no_module_over_400_lines():
    long = {p.relative_to(REPO_ROOT).as_posix(): n for p in _sources()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert not long, f"split these modules (lines): {long}"


def test_no_function_over_60_lines():
    long = {}
    for p in _sources():
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long[f"{p.relative_to(REPO_ROOT).as_posix()}:{node.lineno} {node.name}"] = n
    assert not long, f"split these functions (lines): {long}"
