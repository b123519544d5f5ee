"""``python -m lab record``: the folder is refused before anything is measured, a benchmark the host cannot
run is named with its reason while the others are recorded, and the C reference travels with the package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from lab import datapackage, host
from lab.bench import cli, harness, record_root
from lab.bench.registry import Bench
from lab.paths import REPO_ROOT


def _record(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab", "record", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300, env=env)


def test_a_root_under_proc_is_refused_before_anything_is_measured():
    out = _record("--only", "native", "--root", "/proc/nope")
    assert out.returncode == 2, out
    assert "nothing measured" in out.stderr and "/proc/nope" in out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""  # no benchmark started, none printed
    assert not Path("/proc/nope").exists()


def test_a_root_below_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    out = _record("--only", "native", "--root", str(tmp_path / "file" / "sub"))
    assert out.returncode == 2 and "is not a folder" in out.stderr and out.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # the write check left nothing behind


def test_an_existing_host_folder_that_is_not_a_package_is_refused(tmp_path):
    mine = tmp_path / host.probe(libvirt_uris=()).host_id
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    out = _record("--only", "native", "--root", str(tmp_path))
    assert out.returncode == 2 and "not a data package" in out.stderr and out.stdout == ""
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_check_root_refuses_a_broken_package_and_accepts_a_new_folder(tmp_path):
    (tmp_path / "h-00000000").mkdir()
    (tmp_path / "h-00000000" / datapackage.DESCRIPTOR).write_text("{not json")
    with pytest.raises(datapackage.DataError, match="not valid"):
        record_root.check_root(tmp_path, "h-00000000")
    assert record_root.check_root(tmp_path / "new" / "deeper", "h-00000000") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checked, not created


def test_hide_root_writes_the_folder_as_a_placeholder():
    assert record_root.hide_root("python -m lab record --only io --root /home/ann/x --replace") == \
        "python -m lab record --only io --root <folder> --replace"
    assert record_root.hide_root("python -m lab record --root='/tmp/a b' --only io") == \
        "python -m lab record --root <folder> --only io"
    assert record_root.hide_root("python -m lab record --only io") == "python -m lab record --only io"


def _fake_bench(name: str, measure) -> Bench:
    fields = [*harness.RECORDING_KEY, {"name": "value", "type": "number", "description": "a value"}]

    def to_frame(rows, prov):
        return pd.DataFrame([{"host_id": prov["host_id"], "recorded_at": prov["recorded_at"], "value": r}
                             for r in rows])

    return Bench(name=name, help=name, add_args=lambda p: None, measure=measure, to_frame=to_frame,
                 fields=fields, description=name, show=lambda rows: print(f"{name} rows {list(rows)}"),
                 ok=lambda rows: True, unavailable=lambda: (LookupError,))


def _no_tool(args, progress):
    raise LookupError("the tool it needs is not installed here")


def _broken(args, progress):
    raise RuntimeError("something broke half way")


def _record_with(monkeypatch, tmp_path, benches, only=()):
    monkeypatch.setattr(cli, "BENCHES", benches)
    import argparse

    parser = argparse.ArgumentParser()
    cli.record_args(parser)
    options = ["--root", str(tmp_path), *[a for name in only for a in ("--only", name)]]
    monkeypatch.setattr(sys, "argv", ["python -m lab", "record", *options])
    # --only's choices are the real benchmarks; the fake ones are chosen by leaving --only out
    args = parser.parse_args(["--root", str(tmp_path)])
    args.only = list(only) or None
    return cli.record_run(args)


def test_record_names_what_cannot_run_and_records_the_rest(monkeypatch, tmp_path, capsys):
    benches = {"first": _fake_bench("first", lambda a, p: [1.0, 2.0]),
               "needs-tool": _fake_bench("needs-tool", _no_tool),
               "breaks": _fake_bench("breaks", _broken),
               "last": _fake_bench("last", lambda a, p: [3.0])}
    status = _record_with(monkeypatch, tmp_path, benches)
    out = capsys.readouterr().out
    assert status == 1  # one benchmark failed
    assert "not recorded, cannot run here: needs-tool: the tool it needs is not installed here" in out
    assert "not recorded, failed: breaks: RuntimeError: something broke half way" in out
    package = datapackage.validate_package(next(tmp_path.iterdir()))
    assert set(package) == {"provenance", "first", "last"}
    assert set(package["provenance"]["command"]) == {"python -m lab record --root <folder>"}


def test_record_of_everything_succeeds_when_the_rest_cannot_run_here(monkeypatch, tmp_path, capsys):
    benches = {"first": _fake_bench("first", lambda a, p: [1.0]), "needs-tool": _fake_bench("needs-tool", _no_tool)}
    assert _record_with(monkeypatch, tmp_path, benches) == 0
    assert _record_with(monkeypatch, tmp_path, benches, only=["needs-tool"]) == 1  # asked for by name
    assert _record_with(monkeypatch, tmp_path, {"needs-tool": _fake_bench("needs-tool", _no_tool)}) == 1
    assert "recorded in" in capsys.readouterr().out


def test_reference_without_gcc_is_named_not_a_crash(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {**os.environ, "PATH": str(empty)}
    out = _record("--only", "reference", "--root", str(tmp_path / "rec"), env=env)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "not recorded, cannot run here: reference:" in out.stdout
    assert not (tmp_path / "rec").exists()  # nothing recorded, no folder made


def test_the_c_reference_is_installed_with_the_package(tmp_path):
    """A non-editable install (what a reader's `pip install .` or a copied package has) carries the C source."""
    src = tmp_path / "src"
    shutil.copytree(REPO_ROOT / "lab", src / "lab", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO_ROOT / "pyproject.toml", src / "pyproject.toml")
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--disable-pip-version-check", "--target", str(target), str(src)],
                   check=True, capture_output=True, timeout=120)
    probe = subprocess.run([sys.executable, "-I", "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                            "from lab.bench import reference; print(reference.C_SOURCE.is_file(), reference.C_SOURCE)",
                            str(target)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr
    found, where = probe.stdout.split(maxsplit=1)
    assert found == "True" and where.strip().startswith(str(target))


@pytest.mark.root
def test_a_reader_without_root_is_refused_a_folder_they_cannot_write_before_anything_is_measured():
    """A non-root reader on a bare Python (Debian's, no pandas): a root-owned folder is refused at once."""
    runuser = shutil.which("runuser", path="/usr/sbin:/sbin:/usr/bin")
    if os.geteuid() != 0 or runuser is None or not Path("/usr/bin/python3").exists():
        pytest.fail("needs root, runuser and /usr/bin/python3 to act as a reader without root")
    shared = Path(tempfile.mkdtemp(prefix="lab-record-", dir="/tmp"))  # pytest's tmp_path is root's, mode 700
    try:
        shutil.copytree(REPO_ROOT / "lab", shared / "lab", ignore=shutil.ignore_patterns("__pycache__"))
        (shared / "recordings").mkdir()
        for p in [shared, *shared.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        out = subprocess.run([runuser, "-u", "nobody", "--", "/usr/bin/python3", "-m", "lab", "record",
                              "--only", "native", "--root", str(shared / "recordings")],
                             cwd=shared, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(shared)},
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 2, out
        assert "nothing measured" in out.stderr and "Permission denied" in out.stderr and out.stdout == ""
        assert list((shared / "recordings").iterdir()) == []
    finally:
        shutil.rmtree(shared)
