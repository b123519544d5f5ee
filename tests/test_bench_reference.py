"""The C reference loop builds and measures the same guest as the Python harness."""

from __future__ import annotations

import shutil

import pytest

from lab.bench import reference

pytestmark = [pytest.mark.kvm,
              pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc (apt-get install gcc linux-libc-dev)")]


def test_side_by_side_quick():
    rows = reference.compare(["loop", "cpuid", "pio_user"], iterations=200, repeat=2, rounds=1)
    assert [r["kind"] for r in rows] == ["loop", "cpuid", "pio_user"]
    for r in rows:
        assert r["python"] > 0 and r["c"] > 0 and r["runs"] == 2


def test_cli_prints_both_columns(capsys):
    assert reference.main(["--iterations", "100", "--repeat", "1", "--rounds", "1", "--kinds", "cpuid"]) == 0
    out = capsys.readouterr().out
    assert "Python" in out and " C " in out and "cpuid" in out
