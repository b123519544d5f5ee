"""The reusable measurement harness: statistics, results, provenance, recording, loading."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from lab import datapackage
from lab.bench import BENCHES, exits, harness


def test_summarize_median_and_quartiles():
    s = harness.summarize([5, 1, 3, 2, 4])
    assert s == {"median": 3, "q1": 2, "q3": 4, "min": 1, "max": 5}
    assert harness.summarize([7])["q1"] == 7
    with pytest.raises(ValueError):
        harness.summarize([])


def test_cycles_to_ns():
    assert harness.cycles_to_ns(2100, 2_100_000) == pytest.approx(1000)
    with pytest.raises(ValueError):
        harness.cycles_to_ns(1, 0)


def test_result_json_has_the_stable_keys():
    r = harness.Result.from_samples("cpuid", [10, 12, 11], [5, 6, 7], iterations=100, tsc_khz=1_000_000,
                                    mode="protected32")
    d = r.as_json()
    for key in ("kind", "status", "cycles_per_exit", "ns_per_exit", "spread", "repeat", "reason"):
        assert key in d
    assert d["cycles_per_exit"] == 11 and d["repeat"] == 3 and d["status"] == "ok"
    assert d["ns_per_exit"] == pytest.approx(11)
    json.loads(harness.dumps([r]))
    with pytest.raises(ValueError):
        harness.Result("x", "maybe", 1, 1)


def test_progress_is_silent_off_a_terminal():
    buf = io.StringIO()
    p = harness.Progress(3, "x", stream=buf)
    p.step("a")
    p.close()
    assert buf.getvalue() == ""
    p = harness.Progress(2, "x", stream=buf, enabled=True)
    p.step("a")
    p.step("b")
    p.close()
    assert "2/2" in buf.getvalue()


def _fake_prov(host_id="intel-0badc0de", when="2026-11-26T08:00:00+00:00"):
    return {"host_id": host_id, "recorded_at": when, "cpu_vendor": "intel", "cpu_model": "Test CPU",
            "kernel": "6.1.0", "runs_in_vm": True, "kvm_backend": "kvm_pvm", "kvm_modules": "kvm kvm_pvm",
            "kvm_nested_param": "",
            "logical_cpus": 2, "lab_version": "0.1.0", "python": "3.11.7", "tsc_khz": 2_100_000.0,
            "tsc_source": "KVM_GET_TSC_KHZ", "command": "python -m lab record"}


def _fake_results():
    ok = harness.Result.from_samples("cpuid", [5000, 5100, 4900], [2500, 2600, 2400], iterations=100,
                                     tsc_khz=2_100_000, mode="protected32")
    ok.extra["net_cycles_per_exit"] = 2500.0
    na = harness.Result("hypercall", "unavailable", 3, 100, reason="never completed", extra={"mode": "protected32"})
    return [ok, na]


def test_record_writes_a_valid_package_and_keeps_history(tmp_path):
    prov = _fake_prov()
    frame = exits.to_frame(_fake_results(), prov)
    path = harness.record("exits", frame, exits.FIELDS, prov, root=tmp_path)
    assert path == tmp_path / prov["host_id"]
    loaded = exits.load_recorded(tmp_path)
    assert list(loaded["kind"]) == ["cpuid", "hypercall"]
    assert loaded.loc[0, "cpu_model"] == "Test CPU" and bool(loaded.loc[0, "runs_in_vm"])
    assert loaded.loc[0, "kvm_backend"] == "kvm_pvm"
    # a second recording is added, the first kept
    prov2 = _fake_prov(when="2026-11-26T09:00:00+00:00")
    harness.record("exits", exits.to_frame(_fake_results(), prov2), exits.FIELDS, prov2, root=tmp_path)
    loaded = exits.load_recorded(tmp_path)
    assert len(loaded) == 4 and loaded["recorded_at"].nunique() == 2
    # another benchmark's resource survives a new exits recording
    other = pd.DataFrame({"host_id": [prov["host_id"]], "recorded_at": [prov["recorded_at"]], "x": [1]})
    fields = [{"name": "host_id", "type": "string", "description": "h"},
              {"name": "recorded_at", "type": "datetime", "description": "t"},
              {"name": "x", "type": "integer", "description": "x"}]
    harness.record("other", other, fields, _fake_prov(when="2026-11-26T10:00:00+00:00"), root=tmp_path)
    prov3 = _fake_prov(when="2026-11-26T11:00:00+00:00")
    harness.record("exits", exits.to_frame(_fake_results(), prov3), exits.FIELDS, prov3, root=tmp_path)
    package = datapackage.validate_package(tmp_path / prov["host_id"])
    assert set(package) == {"provenance", "exits", "other"} and len(package["provenance"]) == 4


def test_record_replace_drops_old_rows_and_unused_provenance(tmp_path):
    for when in ("2026-11-26T08:00:00+00:00", "2026-11-26T09:00:00+00:00"):
        prov = _fake_prov(when=when)
        harness.record("exits", exits.to_frame(_fake_results(), prov), exits.FIELDS, prov, root=tmp_path)
    prov = _fake_prov(when="2026-11-26T10:00:00+00:00")
    harness.record("exits", exits.to_frame(_fake_results(), prov), exits.FIELDS, prov, root=tmp_path, replace=True)
    package = datapackage.validate_package(tmp_path / prov["host_id"])
    assert len(package["provenance"]) == 1 and package["exits"]["recorded_at"].nunique() == 1


def test_failed_record_leaves_the_old_package_untouched(tmp_path):
    prov = _fake_prov()
    harness.record("exits", exits.to_frame(_fake_results(), prov), exits.FIELDS, prov, root=tmp_path)
    before = {p.name: p.read_text() for p in (tmp_path / prov["host_id"]).iterdir()}
    bad = exits.to_frame(_fake_results(), prov)
    bad.loc[0, "kind"] = "not-a-kind"
    with pytest.raises(datapackage.DataError):
        harness.record("exits", bad, exits.FIELDS, _fake_prov(when="2026-11-26T12:00:00+00:00"), root=tmp_path)
    after = {p.name: p.read_text() for p in (tmp_path / prov["host_id"]).iterdir()}
    assert before == after
    assert [p.name for p in tmp_path.iterdir()] == [prov["host_id"]]  # no temporary folder left


def _old_layout_package(root, host_id="amd-0c0ffee0", modules=("kvm kvm_amd", "kvm kvm_pvm", "none")):
    """A package as lab 0.1.0 wrote it: provenance with ``nested`` and no ``kvm_backend``."""
    old_fields = [dict(f) for f in harness.PROVENANCE_FIELDS if f["name"] != "kvm_backend"]
    for f in old_fields:
        if f["name"] == "runs_in_vm":
            f["name"] = "nested"
    whens = [f"2026-11-0{i + 1}T08:00:00+00:00" for i in range(len(modules))]
    prov = pd.DataFrame([{**{k: v for k, v in _fake_prov(host_id, w).items() if k not in ("runs_in_vm", "kvm_backend")},
                          "cpu_vendor": "amd", "nested": str(i % 2 == 0).lower(), "kvm_modules": m}
                         for i, (w, m) in enumerate(zip(whens, modules, strict=True))])
    prov = prov[[f["name"] for f in old_fields]]
    other = pd.DataFrame({"host_id": [host_id] * len(whens), "recorded_at": whens, "x": range(len(whens))})
    descriptor = {"name": f"lab-measured-{host_id}", "resources": [
        {"name": "provenance", "path": "provenance.csv", "description": "p",
         "schema": {"fields": old_fields, "primaryKey": ["host_id", "recorded_at"]}},
        {"name": "other", "path": "other.csv", "description": "o", "schema": {"fields": [
            *harness.RECORDING_KEY, {"name": "x", "type": "integer", "description": "x"}]}}]}
    return datapackage.write_package(root / host_id, descriptor, {"provenance": prov, "other": other},
                                     {"record.log": "console output\n"})


def test_old_layout_loads_with_the_backend_derived_from_the_modules(tmp_path):
    _old_layout_package(tmp_path)
    loaded = harness.load_measured("other", tmp_path).sort_values("x")
    assert "nested" not in loaded.columns
    assert list(loaded["kvm_backend"]) == ["kvm_amd", "kvm_pvm", "none"]
    assert list(loaded["runs_in_vm"]) == [True, False, True]


def test_upgrade_provenance_is_the_identity_on_the_current_layout_and_refuses_unknown_columns():
    current = pd.DataFrame([_fake_prov()])[[f["name"] for f in harness.PROVENANCE_FIELDS]]
    pd.testing.assert_frame_equal(harness.upgrade_provenance(current), current)
    with pytest.raises(datapackage.DataError, match="does not know"):
        harness.upgrade_provenance(current.assign(colour="red"))
    with pytest.raises(datapackage.DataError, match="required"):
        harness.upgrade_provenance(current.drop(columns=["kvm_modules", "kvm_backend"]))


def test_migrate_package_rewrites_provenance_only_and_keeps_other_files(tmp_path):
    path = _old_layout_package(tmp_path)
    other_before = (path / "other.csv").read_text()
    harness.migrate_package(path)
    package = datapackage.validate_package(path)
    assert list(package["provenance"].columns) == [f["name"] for f in harness.PROVENANCE_FIELDS]
    assert list(package["provenance"]["kvm_backend"]) == ["kvm_amd", "kvm_pvm", "none"]
    assert (path / "other.csv").read_text() == other_before
    assert (path / "record.log").read_text() == "console output\n"
    once = {p.name: p.read_text() for p in path.iterdir()}
    harness.migrate_package(path)  # a package in the current layout stays as it is
    assert {p.name: p.read_text() for p in path.iterdir()} == once


def test_recording_into_an_old_layout_package_migrates_it(tmp_path):
    path = _old_layout_package(tmp_path)
    prov = {**_fake_prov(path.name, "2026-11-20T08:00:00+00:00"), "cpu_vendor": "amd"}
    harness.record("exits", exits.to_frame(_fake_results(), prov), exits.FIELDS, prov, root=tmp_path)
    package = datapackage.validate_package(path)
    assert len(package["provenance"]) == 4 and "nested" not in package["provenance"].columns
    assert (path / "record.log").exists()


@pytest.fixture()
def recorded_csv(tmp_path):
    """A recording of the exits benchmark in ``tmp_path``; the path of its CSV."""
    prov = _fake_prov()
    harness.record("exits", exits.to_frame(_fake_results(), prov), exits.FIELDS, prov, root=tmp_path)
    return tmp_path / prov["host_id"] / "exits.csv"


def test_row_of_an_unknown_recording_is_an_error(tmp_path, recorded_csv):
    csv = recorded_csv
    csv.write_text(csv.read_text().replace("2026-11-26T08:00:00+00:00", "2026-11-26T07:00:00+00:00", 1))
    with pytest.raises(datapackage.DataError, match="not in provenance"):
        exits.load_recorded(tmp_path)


def test_missing_column_is_an_error(tmp_path, recorded_csv):
    csv = recorded_csv
    frame = pd.read_csv(csv, dtype=str, keep_default_na=False).drop(columns=["cycles_per_exit"])
    frame.to_csv(csv, index=False)
    with pytest.raises(datapackage.DataError, match="missing"):
        exits.load_recorded(tmp_path)


def test_wrong_type_is_an_error(tmp_path, recorded_csv):
    csv = recorded_csv
    frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
    frame.loc[0, "iterations"] = "many"
    frame.to_csv(csv, index=False)
    with pytest.raises(datapackage.DataError, match="iterations"):
        exits.load_recorded(tmp_path)


def test_no_recording_is_an_error(tmp_path):
    with pytest.raises(datapackage.DataError, match="python -m lab record"):
        exits.load_recorded(tmp_path)


def test_committed_recordings_are_valid():
    frame = exits.load_recorded()
    assert len(frame) > 0 and frame["host_id"].notna().all()


def test_cli_registers_bench_and_record():
    from lab.__main__ import COMMANDS

    assert "bench" in COMMANDS and "record" in COMMANDS and "exits" in BENCHES


def test_cli_rejects_unknown_kind(capsys):
    from lab.__main__ import main

    with pytest.raises(SystemExit):
        main(["bench", "nonsense"])
    assert "invalid choice" in capsys.readouterr().err
