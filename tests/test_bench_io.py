"""The io benchmark: its recorded form, its table, its command line; live runs marked ``kvm``."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from lab import datapackage
from lab.bench import BENCHES, harness
from lab.bench import io as bench_io
from lab.devices import guests


def _fake_results():
    out = []
    for b in (1, 8):
        for i, m in enumerate(bench_io.MODES):
            extra = {"mode": "protected32", "batch": b, "size": 64, "what": m,
                     "expected_exits_per_request": guests.expected_exits(m, 32, 64, b) / 32,
                     "exits_per_request": guests.expected_exits(m, 32, 64, b) / 32,
                     "requests_per_s": 1000.0 * (i + 1) * b, "requests_per_s_q1": 900.0,
                     "requests_per_s_q3": 1100.0, "bytes_per_s": 64000.0, "kicks_per_run": 0,
                     "tsc_source": "KVM_GET_TSC_KHZ"}
            out.append(harness.Result.from_samples(m, [1000.0, 1100.0, 1200.0], [500.0, 510.0],
                                                   iterations=32, tsc_khz=2_000_000.0, **extra))
    out.append(harness.Result("virtio", "error", 3, 32, reason="the device needs reset",
                              extra={"mode": "protected32", "batch": 64, "size": 64,
                                     "expected_exits_per_request": 1 / 64}))
    return out


def test_registered():
    assert BENCHES["io"] is bench_io.BENCH


def test_record_round_trip(tmp_path):
    results = _fake_results()
    prov = harness.provenance(command="test", tsc_khz=2_000_000.0, tsc_source="KVM_GET_TSC_KHZ")
    frame = bench_io.to_frame(results, prov)
    path = harness.record("io", frame, bench_io.FIELDS, prov, root=tmp_path, description="test")
    assert (path / "io.csv").exists() and (path / "provenance.csv").exists()
    loaded = bench_io.load_recorded(tmp_path)
    assert len(loaded) == len(results)
    assert set(loaded["mode"]) == set(bench_io.MODES)
    assert loaded.loc[loaded["status"] == "error", "reason"].tolist() == ["the device needs reset"]
    # every column is described
    names = [f["name"] for f in bench_io.FIELDS]
    assert list(frame.columns) == names and all(f["description"] for f in bench_io.FIELDS)


def test_bad_mode_in_a_recording_is_a_load_error(tmp_path):
    prov = harness.provenance(command="test")
    frame = bench_io.to_frame(_fake_results()[:1], prov)
    frame.loc[0, "mode"] = "sriov"
    with pytest.raises(datapackage.DataError, match="not one of"):
        harness.record("io", frame, bench_io.FIELDS, prov, root=tmp_path)
    assert not any(tmp_path.rglob("io.csv"))  # nothing half-written


def test_wide_table_puts_modes_side_by_side():
    wide = bench_io.wide_table(_fake_results())
    assert list(wide.index) == [(64, 1), (64, 8)]  # the error row is left out
    assert list(wide.columns.get_level_values(1)[:len(bench_io.MODES)]) == list(bench_io.MODES)
    assert wide.loc[(64, 8), ("exits_per_request", "virtio")] == pytest.approx(1 / 8)
    assert wide.loc[(64, 1), ("exits_per_request", "hvm")] == 17


def test_cli_help_and_bad_arguments():
    out = subprocess.run([sys.executable, "-m", "lab", "bench", "io", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--batches" in out.stdout and "--modes" in out.stdout
    rec = subprocess.run([sys.executable, "-m", "lab", "record", "--help"], capture_output=True, text=True)
    assert rec.returncode == 0 and "--batches" in rec.stdout, rec.stderr
    bad = subprocess.run([sys.executable, "-m", "lab", "bench", "io", "--batches", "1,999"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "batch must be between 1 and the queue size" in bad.stderr


@pytest.mark.kvm
def test_live_run_matches_the_model():
    results = bench_io.run(count=32, repeat=2, batches=(1, 8), sizes=(16,))
    assert [r.status for r in results] == ["ok"] * 8, [r.reason for r in results]
    for r in results:
        assert r.extra["exits_per_request"] == pytest.approx(r.extra["expected_exits_per_request"])
        assert r.extra["requests_per_s"] > 0 and r.cycles_per_exit > 0 and r.tsc_khz > 0


def _bench_json(kind: str, *options: str) -> list[dict]:
    """``python -m lab bench <kind> --json <options>``: its rows, after checking it succeeded."""
    out = subprocess.run([sys.executable, "-m", "lab", "bench", kind, "--json", *options],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.kvm
def test_cli_json():
    rows = _bench_json("io", "--repeat", "1", "--count", "16", "--batches", "4", "--sizes", "8")
    assert {r["kind"] for r in rows} == set(bench_io.IO_MODES)
    for r in rows:
        assert r["status"] == "ok" and r["batch"] == 4 and r["size"] == 8
        assert {"exits_per_request", "requests_per_s", "bytes_per_s", "cycles_per_exit"} <= set(r)
    frame = pd.DataFrame(rows).set_index("kind")
    assert frame.loc["hvm", "exits_per_request"] == 3 and frame.loc["virtio_ioeventfd", "exits_per_request"] == 0


@pytest.mark.kvm
def test_notify_benchmark_counts_the_kicks_of_each_suppression():
    """The notify benchmark runs the ioeventfd paths with and without suppression: no exit to userspace on
    any, one kick per batch without suppression, never more than that with it."""
    rows = _bench_json("notify", "--repeat", "2", "--count", "64", "--batches", "1,8", "--sizes", "16")
    assert {r["kind"] for r in rows} == set(bench_io.NOTIFY_MODES)
    for r in rows:
        assert r["status"] == "ok" and r["exits_per_request"] == 0, r
        batches = -(-64 // r["batch"])
        if r["kind"] == "virtio_ioeventfd":
            assert r["kicks_per_run"] == batches
        else:
            assert 1 <= r["kicks_per_run"] <= batches
