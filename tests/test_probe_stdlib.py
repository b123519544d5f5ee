"""``python -m lab probe`` runs on a bare Python: it imports no third-party package.

A fresh host or a non-root reader may have only the standard library (plus,
optionally, libvirt-python, which the probe asks about). The child process
below blocks pandas, numpy, matplotlib and ipywidgets with a ``sys.meta_path``
finder, runs the probe, and lists every non-stdlib module that got imported.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lab.paths import REPO_ROOT

BLOCKED = ("pandas", "numpy", "matplotlib", "ipywidgets")

CHILD = f"""
import importlib.abc, io, json, runpy, sys, contextlib
before = set(sys.modules)  # what the interpreter's start-up (site, .pth hooks) loaded

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError(f"blocked by the test: {{name}}")
        return None

sys.meta_path.insert(0, Block())
sys.argv = ["python -m lab", "probe", "--json"]
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        runpy.run_module("lab", run_name="__main__")
    except SystemExit as exc:
        assert not exc.code, exc.code
json.loads(out.getvalue())
new = {{m.split(".")[0] for m in set(sys.modules) - before}}
third = sorted(new - set(sys.stdlib_module_names) - {{"lab"}})
print(json.dumps(third))
"""


def test_probe_imports_only_the_standard_library():
    out = subprocess.run([sys.executable, "-c", CHILD], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    third = json.loads(out.stdout.strip().splitlines()[-1])
    # libvirt-python is what the probe asks about (optional); nothing else may be imported.
    assert set(third) <= {"libvirt", "libvirtmod"}, third


def test_the_block_really_blocks():
    """The finder above works: importing pandas under it fails (else the first test proves nothing)."""
    child = CHILD.split("sys.meta_path.insert(0, Block())")[0] + "sys.meta_path.insert(0, Block())\nimport pandas\n"
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "blocked by the test: pandas" in out.stderr


def test_libvirt_side_runs_without_pandas():
    """lab.virt connects on a bare Python too (the non-root reader of test_virt_live has no pandas)."""
    child = (CHILD.split("sys.argv =")[0]
             + "from lab import virt\nc = virt.connect()\nprint(c.uri)\nprint(virt.connect().domains())\n")
    out = subprocess.run([sys.executable, "-c", child], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("test:///default")


@pytest.mark.kvm
def test_benchmarks_measure_without_pandas():
    """The kvm_amd guest has no pandas: ``lab bench`` measures and prints its JSON on the standard library."""
    argv = json.dumps(["python -m lab", "bench", "exits", "--json", "--kinds", "loop,pio_user",
                       "--repeat", "1", "--iterations", "20"])
    child = CHILD.replace('["python -m lab", "probe", "--json"]', argv)
    assert argv in child
    out = subprocess.run([sys.executable, "-c", child], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert set(json.loads(out.stdout.strip().splitlines()[-1])) <= {"libvirt", "libvirtmod"}
