"""Loading validates data against its schema; writing is all-or-nothing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import date

import pandas as pd
import pytest

from lab import datapackage as dp
from lab.paths import DATA_DIR


def make_package(tmp_path, csv_text, fields, **schema_extra):
    (tmp_path / "t.csv").write_text(csv_text)
    desc = {"name": "t", "resources": [{"name": "t", "path": "t.csv", "schema": {"fields": fields, **schema_extra}}]}
    (tmp_path / dp.DESCRIPTOR).write_text(json.dumps(desc))
    return tmp_path


FIELDS = [
    {"name": "host", "type": "string", "description": "host id",
     "constraints": {"required": True, "pattern": "[a-z]+-[0-9a-f]+"}},
    {"name": "kind", "type": "string", "description": "exit kind", "constraints": {"enum": ["cpuid", "pio"]}},
    {"name": "cycles", "type": "number", "description": "cycles", "constraints": {"minimum": 0}},
    {"name": "n", "type": "integer", "description": "repeat"},
    {"name": "nested", "type": "boolean", "description": "nested?"},
    {"name": "day", "type": "date", "description": "date"},
]
GOOD = "host,kind,cycles,n,nested,day\nintel-ab12,cpuid,13000.5,5,true,2026-11-26\nintel-ab12,pio,,7,false,2026-11-26\n"


def test_typed_load(tmp_path):
    frame = dp.load_resource(make_package(tmp_path, GOOD, FIELDS), "t")
    assert list(frame.columns) == [f["name"] for f in FIELDS]
    assert frame["cycles"].dtype == "float64" and pd.isna(frame["cycles"][1])
    assert str(frame["n"].dtype) == "Int64" and frame["n"].tolist() == [5, 7]
    assert frame["nested"].tolist() == [True, False]
    assert frame["day"][0] == date(2026, 11, 26)


@pytest.mark.parametrize(
    "csv_text, message",
    [
        ("host,kind,cycles,n,nested\nintel-ab12,cpuid,1,1,true\n", "missing ['day']"),
        (GOOD.replace(",day", ",day,extra").replace("26\n", "26,x\n"), "not in schema ['extra']"),
        (GOOD.replace("13000.5", "lots"), ":2: column 'cycles' value 'lots' is not a number"),
        (GOOD.replace(",5,", ",5.5,"), "'n' value '5.5' is not a integer"),
        (GOOD.replace("cpuid", "vmcall"), "not one of ['cpuid', 'pio']"),
        (GOOD.replace("13000.5", "-1"), "below minimum 0"),
        (GOOD.replace("intel-ab12,cpuid", ",cpuid"), ":2: column 'host' is required but empty"),
        (GOOD.replace("intel-ab12,cpuid", "Intel_X,cpuid"), "does not match"),
        (GOOD.replace("true", "perhaps"), "is not a boolean"),
        (GOOD.replace("2026-11-26\nintel", "26/11/2026\nintel"), "is not a date"),
    ],
)
def test_bad_data_is_a_clear_error(tmp_path, csv_text, message):
    with pytest.raises(dp.DataError, match=None) as info:
        dp.load_resource(make_package(tmp_path, csv_text, FIELDS), "t")
    assert message in str(info.value)
    assert "t.csv" in str(info.value)


def test_schema_problems(tmp_path):
    no_desc = [dict(FIELDS[0], description="")]
    with pytest.raises(dp.DataError, match="has no description"):
        dp.load_resource(make_package(tmp_path, "host\nintel-ab\n", no_desc), "t")
    with pytest.raises(dp.DataError, match="unsupported type"):
        fields = [{"name": "host", "type": "blob", "description": "d"}]
        dp.load_resource(make_package(tmp_path, "host\nx\n", fields), "t")
    with pytest.raises(dp.DataError, match="no resource named 'u'"):
        dp.load_resource(make_package(tmp_path, GOOD, FIELDS), "u")
    with pytest.raises(dp.DataError, match="no data package descriptor"):
        dp.read_descriptor(tmp_path / "nowhere")


def test_primary_key(tmp_path):
    pkg = make_package(tmp_path, GOOD.replace(",pio,", ",cpuid,"), FIELDS, primaryKey=["host", "kind"])
    with pytest.raises(dp.DataError, match="primary key"):
        dp.load_resource(pkg, "t")


def test_write_is_atomic(tmp_path):
    target = tmp_path / "out"
    desc = {"name": "o", "resources": [{"name": "t", "path": "t.csv", "schema": {"fields": FIELDS}}]}
    good = dp.load_resource(make_package(tmp_path, GOOD, FIELDS), "t")
    dp.write_package(target, desc, {"t": good}, extra_files={"host.json": "{}"})
    assert dp.load_resource(target, "t")["n"].tolist() == [5, 7]
    bad = good.copy()
    bad["kind"] = ["cpuid", "nonsense"]
    with pytest.raises(dp.DataError):
        dp.write_package(target, desc, {"t": bad})
    # the old package is untouched and nothing half-written is left beside it
    assert dp.load_resource(target, "t")["kind"].tolist() == ["cpuid", "pio"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["datapackage.json", "out", "t.csv"]


def test_every_package_in_data_validates():
    packages = dp.find_packages(DATA_DIR)
    assert packages, "data/ holds no data package"
    for package in packages:
        frames = dp.validate_package(package)
        assert all(len(f) for f in frames.values()), f"{package}: an empty resource"


# --------------------------------------------------------------------------- interrupted writes

STEPS = ["write", "retire", "install", "discard"]
SIMPLE = [{"name": "v", "type": "integer", "description": "a value"}]
SIMPLE_DESC = {"name": "s", "resources": [{"name": "s", "path": "s.csv", "schema": {"fields": SIMPLE}}]}


def _values(target):
    return dp.load_resource(target, "s")["v"].tolist()


def _siblings(target):
    return sorted(p.name for p in target.parent.iterdir())


@pytest.mark.parametrize("step", STEPS)
def test_a_failure_at_any_step_keeps_the_old_package(tmp_path, monkeypatch, step):
    target = tmp_path / "pkg"
    dp.write_package(target, SIMPLE_DESC, {"s": pd.DataFrame({"v": [1, 2]})})

    def fail(at):
        if at == step:
            raise OSError(28, "No space left on device (injected)")

    monkeypatch.setattr(dp, "_checkpoint", fail)
    with pytest.raises(OSError, match="injected"):
        dp.write_package(target, SIMPLE_DESC, {"s": pd.DataFrame({"v": [3, 4, 5]})})
    # Before 'discard' the old package comes back; at 'discard' the new one was
    # complete and in place, and the old one already gone.
    assert _values(target) == ([3, 4, 5] if step == "discard" else [1, 2])
    assert _siblings(target) == ["pkg"]


def test_a_failing_rename_keeps_the_old_package(tmp_path, monkeypatch):
    # The fault the tracker reproduced: ENOSPC on the rename that installs the new package.
    target = tmp_path / "pkg"
    dp.write_package(target, SIMPLE_DESC, {"s": pd.DataFrame({"v": [1]})})
    real_rename = type(target).rename

    def rename(self, dest):
        if self.name.startswith(".pkg.new-") and dest == target:
            raise OSError(28, "No space left on device (injected)")
        return real_rename(self, dest)

    monkeypatch.setattr(type(target), "rename", rename)
    with pytest.raises(OSError, match="injected"):
        dp.write_package(target, SIMPLE_DESC, {"s": pd.DataFrame({"v": [9]})})
    assert _values(target) == [1] and _siblings(target) == ["pkg"]


KILLER = """
import os, signal, sys
import pandas as pd
from lab import datapackage as dp
step, target = sys.argv[1], sys.argv[2]
def kill(at):
    if at == step:
        os.kill(os.getpid(), signal.SIGKILL)
dp._checkpoint = kill
desc = {"name": "s", "resources": [{"name": "s", "path": "s.csv",
        "schema": {"fields": [{"name": "v", "type": "integer", "description": "a value"}]}}]}
dp.write_package(target, desc, {"s": pd.DataFrame({"v": [3, 4, 5]})})
"""


@pytest.mark.parametrize("step", STEPS)
def test_a_process_killed_at_any_step_loses_nothing(tmp_path, step):
    target = tmp_path / "pkg"
    dp.write_package(target, SIMPLE_DESC, {"s": pd.DataFrame({"v": [1, 2]})})
    proc = subprocess.run([sys.executable, "-c", KILLER, step, str(target)], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    # The next load sees a complete package: the old one until the new one was in place.
    assert _values(target) == ([1, 2] if step in ("write", "retire") else [3, 4, 5])
    # The next write tidies whatever the killed one left.
    dp.write_package(target, SIMPLE_DESC, {"s": pd.DataFrame({"v": [7]})})
    assert _values(target) == [7] and _siblings(target) == ["pkg"]
