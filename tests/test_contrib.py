"""The contribution path: ``pack`` makes one checked file, ``add`` refuses every kind of broken contribution
with its own error and leaves ``data/measured`` as it was, and adds a good one (an older layout migrated).

Every host here is synthetic, made by the harness's own recording code in a temporary folder.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
import synthetic  # noqa: E402  (tests/synthetic.py)

from lab import datapackage
from lab.bench import exits, harness
from lab.contrib import archive, checks, private
from lab.contrib.add import add
from lab.contrib.checks import ContributionError
from lab.paths import REPO_ROOT

HOST, THERE = synthetic.FORWARD_ID, synthetic.OTHER_ID  # the contribution; a host already in data/measured
#: What ``python -m lab record`` writes of a synthetic host (exits in two modes, native, io).
RECORDED = ("exits", "native", "io")


def make_host(root: Path, host_id: str, scale: float = 1.0, days: int = 0) -> Path:
    return synthetic.make_host(root, host_id, scale=scale, start=synthetic.BASE + timedelta(days=days),
                               resources=RECORDED)


def _times(folder: Path) -> list[str]:
    return list(pd.read_csv(folder / "provenance.csv", dtype=str)["recorded_at"])


def archive_of(folder: Path, out: Path, host_id: str | None = None) -> Path:
    """The folder packed as a contribution file, without the checks ``pack`` runs (to send broken ones)."""
    host_id = host_id or folder.name
    files = {f"{host_id}/{p.name}": p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
    out.write_bytes(archive.build_archive(host_id, files))
    return out


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def templates(tmp_path_factory) -> Path:
    """Both synthetic hosts, recorded once per module; each test works on its own copy."""
    root = tmp_path_factory.mktemp("templates")
    make_host(root / "measured", THERE, scale=1.3)
    make_host(root / "contributor", HOST)
    return root


@pytest.fixture
def measured(templates, tmp_path) -> Path:
    """A data/measured holding one synthetic host."""
    shutil.copytree(templates / "measured", tmp_path / "measured")
    return tmp_path / "measured"


@pytest.fixture
def good(templates, tmp_path) -> Path:
    """A valid contribution's host folder (not yet packed)."""
    shutil.copytree(templates / "contributor", tmp_path / "contributor")
    return tmp_path / "contributor" / HOST


def _edit_csv(folder: Path, name: str, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    frame = pd.read_csv(folder / f"{name}.csv", dtype=str, keep_default_na=False)
    frame = edit(frame)
    frame.to_csv(folder / f"{name}.csv", index=False, lineterminator="\n")
    descriptor = json.loads((folder / datapackage.DESCRIPTOR).read_text())
    for r in descriptor["resources"]:  # keep the package's own descriptor in step with its CSV
        if r["name"] == name:
            by_name = {f["name"]: f for f in r["schema"]["fields"]}
            r["schema"]["fields"] = [by_name.get(c, {"name": c, "type": "string", "description": c})
                                     for c in frame.columns]
    (folder / datapackage.DESCRIPTOR).write_text(json.dumps(descriptor))


def _set(name: str, column: str, value: str, row: int = 0):
    def edit(folder: Path) -> None:
        def change(frame):
            frame.loc[row, column] = value
            return frame
        _edit_csv(folder, name, change)
    return edit


def _drop_column(name: str, column: str):
    return lambda folder: _edit_csv(folder, name, lambda f: f.drop(columns=[column]))


def _add_column(name: str, column: str):
    return lambda folder: _edit_csv(folder, name, lambda f: f.assign(**{column: "x"}))


def _extra_resource(folder: Path) -> None:
    (folder / "transcripts.csv").write_text("host_id,recorded_at\n")
    descriptor = json.loads((folder / datapackage.DESCRIPTOR).read_text())
    descriptor["resources"].append({"name": "transcripts", "path": "transcripts.csv",
                                    "schema": {"fields": [{"name": "host_id"}, {"name": "recorded_at"}]}})
    (folder / datapackage.DESCRIPTOR).write_text(json.dumps(descriptor))


def _retime(folder: Path, old: str, new: str) -> None:
    """Move one recording to another time, in provenance and in its resource alike."""
    for name in ("provenance", *RECORDED):
        _edit_csv(folder, name, lambda f: f.assign(recorded_at=f["recorded_at"].replace(old, new)))


def _orphan_provenance(folder: Path) -> None:
    def add_row(frame):
        row = frame.iloc[0].copy()
        row["recorded_at"] = "2026-10-02T00:00:00+00:00"
        return pd.concat([frame, row.to_frame().T], ignore_index=True)
    _edit_csv(folder, "provenance", add_row)


def _copy_of_there(measured: Path):
    def edit(folder: Path) -> None:  # the contribution becomes the host already there, unchanged
        shutil.rmtree(folder)
        shutil.copytree(measured / THERE, folder)
    return edit


def _same_cycles_as_there(measured: Path):
    def edit(folder: Path) -> None:  # another host id and times, the very cycles of the host there
        theirs = pd.read_csv(measured / THERE / "exits.csv", dtype=str, keep_default_na=False)
        def swap(frame):
            measured_columns = [c for c in frame.columns if c not in ("host_id", "recorded_at")]
            frame[measured_columns] = theirs[measured_columns]
            return frame
        _edit_csv(folder, "exits", swap)
    return edit


BROKEN = {
    # check: [(what is broken, how, a fragment of the error)]
    "resources": [("a resource record does not write", _extra_resource, "transcripts"),
                  ("no provenance", lambda f: _edit_descriptor(f, drop="provenance"), "provenance")],
    "layout": [("provenance in no known layout", _add_column("provenance", "colour"), "colour")],
    "schema": [("a missing column", _drop_column("exits", "cycles_q1"), "cycles_q1"),
               ("a number that is not one", _set("exits", "cycles_per_exit", "fast"), "cycles_per_exit"),
               ("an unknown kind", _set("exits", "kind", "teleport"), "teleport"),
               ("an empty required cell", _set("provenance", "kernel", ""), "kernel")],
    "host": [("a row of another host", _set("exits", "host_id", "intel-0000aaaa", row=1), "intel-0000aaaa"),
             ("the vendor differs from the host id", _set("provenance", "cpu_vendor", "amd"), "amd")],
    "provenance": [("a row pointing to no recording", _set("exits", "recorded_at", "2026-10-03T00:00:00+00:00"),
                    "no row in provenance.csv"),
                   ("a recording with no measured row", _orphan_provenance, "no measured row"),
                   ("cycles without a TSC rate", _set("provenance", "tsc_khz", "", row=0), "TSC"),
                   ("KVM recordings without a back end", _set("provenance", "kvm_backend", "none"), "back end")],
    "range": [("zero cycles per exit", _set("exits", "cycles_per_exit", "0"), "cycles per exit positive"),
              ("cycles above the ceiling of the kind", _set("exits", "cycles_per_exit", "500000"), "ceiling"),
              ("negative exits per request", _set("io", "exits_per_request", "-1"), "exits per request"),
              ("a TSC of 50 MHz", _set("provenance", "tsc_khz", "50000"), "100 MHz and 10 GHz"),
              ("a TSC of 20 GHz", _set("provenance", "tsc_khz", "20000000"), "100 MHz and 10 GHz"),
              ("a median outside its spread", _set("native", "cycles_q1", "5"), "spread"),
              ("recorded in the future", lambda f: _retime(f, _times(f)[2], "2099-01-01T00:00:00+00:00"), "future")],
    "private": [("a home folder in the command", _set("provenance", "command",
                                                      "python -m lab record --root /home/alice/rec"), "/home/alice"),
                ("a user at a host in a reason", _set("exits", "reason", "seen by alice@laptop", row=3),
                 "alice@laptop"),
                ("a path in the home folder", _set("exits", "reason", "see ~/notes.txt", row=3), "~/"),
                ("a Windows user folder", _set("exits", "reason", r"C:\Users\alice\x", row=3), "C:")],
}


def _edit_descriptor(folder: Path, drop: str) -> None:
    descriptor = json.loads((folder / datapackage.DESCRIPTOR).read_text())
    descriptor["resources"] = [r for r in descriptor["resources"] if r["name"] != drop]
    (folder / datapackage.DESCRIPTOR).write_text(json.dumps(descriptor))


CASES = [(check, what, how, fragment) for check, cases in BROKEN.items() for what, how, fragment in cases]


@pytest.mark.parametrize(("check", "what", "how", "fragment"), CASES, ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_a_broken_contribution_is_refused_with_its_own_error(check, what, how, fragment, good, measured, tmp_path):
    how(good)
    path = archive_of(good, tmp_path / "c.tar.gz", HOST)
    before = snapshot(measured)
    with pytest.raises(ContributionError) as err:
        add(path, measured)
    assert err.value.check == check, f"{what}: {err.value}"
    assert str(err.value).startswith(f"{check} check failed: ")
    if fragment:
        assert fragment in str(err.value)
    assert snapshot(measured) == before  # data/measured did not change


@pytest.mark.parametrize("kind", ["the same recording", "the same cycles under another host"])
def test_a_duplicate_is_refused(kind, good, measured, tmp_path):
    edit = _copy_of_there(measured) if kind == "the same recording" else _same_cycles_as_there(measured)
    edit(good)
    host_id = THERE if kind == "the same recording" else HOST
    path = archive_of(good, tmp_path / "c.tar.gz", host_id)
    before = snapshot(measured)
    with pytest.raises(ContributionError) as err:
        add(path, measured)
    assert err.value.check == "duplicate" and THERE in str(err.value)
    assert snapshot(measured) == before


def _tar(path: Path, members: dict[str, bytes], *, symlink: str | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if symlink:
            info = tarfile.TarInfo(symlink)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
    return path


def test_files_that_are_not_contributions_are_refused(good, measured, tmp_path):
    before = snapshot(measured)
    manifest = json.dumps({"format": archive.FORMAT, "host_id": HOST, "files": {}}).encode()
    bad = {
        "not an archive": tmp_path / "a.tar.gz",
        "a path out of the folder": _tar(tmp_path / "b.tar.gz", {archive.MANIFEST: manifest, "../evil": b"x"}),
        "a link": _tar(tmp_path / "c.tar.gz", {archive.MANIFEST: manifest}, symlink=f"{HOST}/exits.csv"),
        "no manifest": _tar(tmp_path / "d.tar.gz", {f"{HOST}/exits.csv": b"x"}),
        "a file the manifest does not list": _tar(tmp_path / "e.tar.gz", {archive.MANIFEST: manifest,
                                                                          f"{HOST}/exits.csv": b"x"}),
    }
    bad["not an archive"].write_text("hello")
    for what, path in bad.items():
        with pytest.raises(ContributionError) as err:
            add(path, measured)
        assert err.value.check == "archive", what
    assert snapshot(measured) == before
    assert not (Path.cwd() / "evil").exists() and not (tmp_path / "evil").exists()


def test_a_file_changed_after_packing_fails_the_checksum(good, measured, tmp_path):
    path = archive_of(good, tmp_path / "c.tar.gz")
    with tarfile.open(path) as tar:  # rebuild it with one byte of exits.csv changed, the manifest kept
        members = {i.name: tar.extractfile(i).read() for i in tar}
    members[f"{HOST}/exits.csv"] = members[f"{HOST}/exits.csv"].replace(b"cpuid", b"cpuiD", 1)
    changed = _tar(tmp_path / "changed.tar.gz", members)
    before = snapshot(measured)
    with pytest.raises(ContributionError) as err:
        add(changed, measured)
    assert err.value.check == "checksum" and "exits.csv" in str(err.value)
    path.with_name(path.name + ".sha256").write_text("0" * 64 + "  c.tar.gz\n")  # the checksum sent with it
    with pytest.raises(ContributionError) as err:
        add(path, measured)
    assert err.value.check == "checksum"
    assert snapshot(measured) == before


def test_a_good_contribution_is_added_and_an_older_layout_migrated(good, measured, tmp_path):
    # the layout of lab 0.1.0: `nested`, no `kvm_backend`
    _edit_csv(good, "provenance", lambda f: f.drop(columns=["kvm_backend"]).rename(columns={"runs_in_vm": "nested"}))
    packed = archive.pack(good, tmp_path / "out" / archive.file_name(HOST))
    assert any("older layout" in n for n in packed.checked.notes)
    added = add(packed.path, measured)
    assert added.written and added.expected == packed.sha256  # compared with the .sha256 beside it
    prov = harness.load_provenance(measured / HOST)
    assert list(prov.columns) == [f["name"] for f in harness.PROVENANCE_FIELDS]
    assert set(prov["kvm_backend"]) == {"kvm_pvm"} and prov["runs_in_vm"].all()
    frame = exits.load_recorded(measured)
    assert set(frame["host_id"]) == {HOST, THERE}
    # the host already there is untouched, and adding the same file again is a duplicate
    before = snapshot(measured)
    with pytest.raises(ContributionError, match="duplicate"):
        add(packed.path, measured)
    assert snapshot(measured) == before


def test_more_recordings_of_a_known_host_join_its_package(measured, tmp_path):
    before = len(harness.load_provenance(measured / THERE)), len(exits.load_recorded(measured))
    later = make_host(tmp_path / "later", THERE, scale=0.8, days=4)
    add(archive.pack(later, tmp_path / "later.tar.gz").path, measured)
    after = len(harness.load_provenance(measured / THERE)), len(exits.load_recorded(measured))
    assert after == (2 * before[0], 2 * before[1])


def test_check_only_adds_nothing(good, measured, tmp_path):
    packed = archive.pack(good, tmp_path / "c.tar.gz")
    before = snapshot(measured)
    added = add(packed.path, measured, dry_run=True)
    assert not added.written and snapshot(measured) == before


def test_pack_is_reproducible_and_names_nobody(good, tmp_path):
    _set("provenance", "command", "python -m lab record --only exits --root /tmp/scratch/x")(good)
    one = archive.pack(good, tmp_path / "one.tar.gz")
    two = archive.pack(good, tmp_path / "two.tar.gz")
    assert one.sha256 == two.sha256 == hashlib.sha256(one.path.read_bytes()).hexdigest()
    assert (tmp_path / "one.tar.gz.sha256").read_text().split() == [one.sha256, "one.tar.gz"]
    with tarfile.open(one.path) as tar:
        infos = tar.getmembers()
        assert {i.uname for i in infos} == {""} and {i.uid for i in infos} == {0}
        prov = pd.read_csv(tar.extractfile(f"{HOST}/provenance.csv"), dtype=str, keep_default_na=False)
    assert "python -m lab record --only exits --root <folder>" in set(prov["command"])
    assert not any("/tmp" in c for c in prov["command"])
    for name in private.local_names():  # no host or user name of this machine is in the file
        assert name.encode() not in one.path.read_bytes()


def test_pack_leaves_out_what_record_does_not_write(good, tmp_path):
    (good / "record.log").write_text("console output\n")
    packed = archive.pack(good, tmp_path / "c.tar.gz")
    assert any("record.log" in what for what in packed.left_out)
    with tarfile.open(packed.path) as tar:
        assert f"{HOST}/record.log" not in tar.getnames()


def test_pack_refuses_this_machines_names(good, tmp_path):
    assert private.find("made on dune by ann", ["dune"]).text == "dune"
    assert private.find("KVM_CAP_USER_MEMORY: 1; /dev/kvm; /proc/cpuinfo; qemu:///system") is None
    names = private.local_names()
    if not names:
        pytest.skip("this machine has no host or user name long enough to look for")
    _set("exits", "reason", f"seen on {names[0]}", row=3)(good)
    with pytest.raises(ContributionError) as err:
        archive.pack(good, tmp_path / "c.tar.gz")
    assert err.value.check == "private" and not (tmp_path / "c.tar.gz").exists()


def test_every_check_has_a_broken_contribution():
    covered = set(BROKEN) | {"duplicate", "archive", "checksum"}
    assert covered == set(checks.CHECKS)


def _lab(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"})


def test_the_commands(good, measured, tmp_path):
    out = _lab("pack", str(good), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "no host name, user name or path" in out.stdout and "sha256" in out.stdout
    path = tmp_path / archive.file_name(HOST)
    out = _lab("add", str(path), "--root", str(measured), "--check", cwd=tmp_path)
    assert out.returncode == 0 and "nothing written" in out.stdout and not (measured / HOST).exists()
    out = _lab("add", str(path), "--root", str(measured), cwd=tmp_path)
    assert out.returncode == 0 and (measured / HOST).is_dir()
    before = snapshot(measured)
    out = _lab("add", str(path), "--root", str(measured), cwd=tmp_path)
    assert out.returncode == 1 and "refused, nothing added: duplicate check failed" in out.stderr
    assert "Traceback" not in out.stderr and snapshot(measured) == before
