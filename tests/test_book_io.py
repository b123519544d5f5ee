"""What the virtio chapter shows, without KVM: recorded data, switchable figures, the ring demo."""

from __future__ import annotations

import pytest

from lab.bench import harness
from lab.bench import io as bench_io
from lab.book import io as report
from lab.devices import guests
from lab.kvm import RunTimeout


@pytest.fixture()
def recorded(tmp_path):
    results = []
    for b in (1, 8, 64, 256):
        for i, m in enumerate(bench_io.MODES):
            epr = guests.expected_exits(m, 256, 64, b) / 256
            extra = {"mode": "protected32", "batch": b, "size": 64, "what": m,
                     "expected_exits_per_request": epr, "exits_per_request": epr,
                     "requests_per_s": 1000.0 * (i + 1) + b, "requests_per_s_q1": 900.0,
                     "requests_per_s_q3": 1100.0, "bytes_per_s": 64000.0, "kicks_per_run": 0}
            results.append(harness.Result.from_samples(m, [1000.0, 1200.0], [500.0], iterations=256,
                                                       tsc_khz=2e6, **extra))
    prov = harness.provenance(command="test")
    harness.record("io", bench_io.to_frame(results, prov), bench_io.FIELDS, prov, root=tmp_path)
    return tmp_path


def test_fallback_names_the_host_and_the_reason(recorded, monkeypatch):
    monkeypatch.setattr(report.fallback, "live_reason", lambda: "/dev/kvm does not exist")
    data = report.load(root=recorded)
    assert not data.live and data.host_id
    note = data.source_ja()
    assert "/dev/kvm does not exist" in note and data.host_id in note and data.recorded_at in note


def test_switchable_has_one_synced_tab_per_style(recorded):
    data = report.load(live=False, root=recorded)
    sw = report.switchable(data, "requests_per_s", caption="req/s")
    assert [v.label for v in sw.views] == ["HVM(エミュレーション)", "PV", "virtio"]
    assert [v.sync_id for v in sw.views] == ["hvm", "pv", "virtio"]
    html = sw.to_html()
    assert html.count('data-sync-group="mode"') == 3 and "data:image/png;base64," in html
    assert report.switchable(data, "exits_per_request").views[0].png.startswith(b"\x89PNG")


def test_table_and_summary(recorded):
    data = report.load(live=False, root=recorded)
    table = report.table(data)
    assert list(table.index) == [1, 8, 64, 256]
    assert table.loc[1, "HVM(エミュレーション) exit/件"] == 17
    s = report.summary(data)
    assert s["hvm_epr"] == "17" and s["large"] == "256" and s["small"] == "1"
    # the fixture's virtio + ioeventfd does 4001 req/s at batch 1 against virtio's 3001: a third faster
    assert s["efd_small_ratio"] == "1.33" and s["efd_small_word"] == "速い"
    assert s["efd_large_ratio"] == "1.31" and s["efd_large_word"] == "速い"


def test_ring_demo_moves_the_messages():
    demo = report.ring_demo()
    assert demo.received == [b"hello, virtio ", b"ring"]
    assert demo.before["rings"].loc[0, "used.idx"] == 0 and demo.after["rings"].loc[0, "used.idx"] == 2
    assert demo.before["descriptors"].loc[0, "flags"] == "NEXT"


def test_malformed_cases_are_all_refused():
    answers = report.malformed_cases()["デバイスモデルの答え"].tolist()
    assert len(answers) == 3 and all("リセットが必要" in a for a in answers)
    assert "メモリの外" in answers[0] and "範囲外" in answers[1] and "ループ" in answers[2]


def test_exit_model_table():
    model = report.exit_model(count=64, size=16, batches=(1, 4))
    assert model.loc[1, "HVM(エミュレーション)"] == 5
    assert model.loc[4, "virtio"] == 0.25 and model.loc[4, "virtio + ioeventfd"] == 0


def test_a_failed_live_run_falls_back_and_says_why(recorded, monkeypatch):
    def fail(**_):
        raise RunTimeout(60, 0x1000, 7)

    monkeypatch.setattr(report.fallback, "live_reason", lambda: None)
    monkeypatch.setattr(report, "measure", fail)
    data = report.load(root=recorded)
    assert not data.live and "60 秒以内に exit しなかった" in data.source_ja() and "7 回" in data.source_ja()


def test_recorded_hosts_table(recorded):
    table = report.recorded_hosts(recorded)
    assert len(table) == 1 and table.loc[0, "HVM(エミュレーション) 件/秒 (バッチ 1)"] == 1001


def test_force_recorded_and_the_notes(recorded, monkeypatch):
    monkeypatch.setenv("LAB_FORCE_RECORDED", "1")
    data = report.load(root=recorded)
    html = data.note()._repr_html_()
    assert not data.live and "lab-fallback" in html and "LAB_FORCE_RECORDED" in html
    data.live = True
    assert "lab-live" in data.note()._repr_html_()
