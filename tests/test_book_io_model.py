"""The model joining the VMExit and virtio chapters: its arithmetic, its cost sources, its words."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest
from synthetic import FORWARD_ID, REVERSED_ID

from lab.bench.harness import Result, load_measured
from lab.book import io as report
from lab.book import published_exits
from lab.book.io import IoData
from lab.book.io_model import ExitCosts, Model, measured_costs, published_costs, words
from lab.datapackage import DataError


def _io(rows: list[tuple[str, int, float, int, float]], host_id: str = FORWARD_ID) -> IoData:
    """rows: (mode, batch, user exits per request, kicks per run of 100 requests, requests/s) at 1 GHz."""
    frame = pd.DataFrame([{"mode": m, "batch": b, "exits_per_request": e, "kicks_per_run": k, "count": 100,
                           "requests_per_s": r, "tsc_khz": 1e6} for m, b, e, k, r in rows])
    return IoData(frame, live=False, host_id=host_id, cpu_model="test", runs_in_vm=False,
                  recorded_at="2020-01-06", kvm_backend="kvm_pvm")


def test_prediction_is_exits_times_cost_plus_work(synthetic_roots):
    # at 1 GHz: calibration point 1e9 / 1e5 = 10,000 cycles per request, 1/100 kernel exit of 500 -> work 9,995
    data = _io([("virtio_ioeventfd", 100, 0.0, 1, 1e5), ("hvm", 1, 17.0, 0, 1e4), ("pv", 1, 1.0, 0, 5e4)])
    model = Model(data, root=synthetic_roots["forward"])
    own = ExitCosts("own", "costs-own", user=2000.0, kernel=500.0, origin="test", host_id=FORWARD_ID)
    model.own, model.sources = own, [own]
    assert model.work() == pytest.approx(10_000 - 5.0)
    p = model.predict(own).set_index("mode")
    assert p.loc["hvm", "predicted_cycles"] == pytest.approx(17 * 2000 + 9_995)
    assert p.loc["pv", "predicted_rps"] == pytest.approx(1e9 / (2000 + 9_995))
    assert p.loc["virtio_ioeventfd", "measured_over_predicted"] == pytest.approx(1.0)
    assert p.loc["hvm", "kernel_epr"] == 0 and p.loc["virtio_ioeventfd", "kernel_epr"] == pytest.approx(0.01)
    cheaper = ExitCosts("cheap", "costs-cheap", user=1000.0, kernel=100.0, origin="test")
    q = model.predict(cheaper).set_index("mode")
    # the work stays the io host's own: only the exit part changes
    assert q.loc["hvm", "predicted_cycles"] == pytest.approx(17 * 1000 + 9_995)


def test_recorded_model_words_its_disagreement(synthetic_roots):
    root = synthetic_roots["forward"]
    model = Model(report.load(live=False, root=root), root=root)
    w = words(model)
    p = model.predict(model.own).set_index(["mode", "batch"])
    hvm = p.loc[("hvm", 1), "measured_over_predicted"]
    assert f"{hvm:.2f}" in w["ratios"] and FORWARD_ID in w["how"]


def test_reversed_data_turns_the_words_around(synthetic_roots):
    forward, reversed_ = (words(Model(report.load(live=False, root=synthetic_roots[k]), root=synthetic_roots[k]))
                          for k in ("forward", "reversed"))
    assert forward.keys() == reversed_.keys()
    for key in ("disagree", "published"):
        assert forward[key] != reversed_[key], key
    assert REVERSED_ID in reversed_["how"] and REVERSED_ID not in forward["how"]


def test_every_recorded_host_is_a_choice(synthetic_roots, monkeypatch):
    root = synthetic_roots["both"]
    monkeypatch.setenv("LAB_RECORDED_HOST", FORWARD_ID)  # the io data of the older host; costs of both
    data = report.load_recorded(root)
    assert data.host_id == FORWARD_ID
    model = Model(data, root=root)
    labels = [s.label for s in model.sources]
    assert [lab.split("(")[0] for lab in labels[:2]] == sorted([FORWARD_ID, REVERSED_ID]) and len(labels) == 3
    table = model.table()
    heads = [c for c in table.columns if c.startswith("予測")]
    assert len(heads) == 3 and all(h.count(REVERSED_ID) <= 1 for h in heads)
    rev, fwd = (next(h for h in heads if hid in h) for hid in (REVERSED_ID, FORWARD_ID))
    # the nested AMD fixture's cheap exits predict more requests/s for the exit-heavy path than PVM's
    hvm = table[table["経路"] == table["経路"].iloc[0]].iloc[0]
    assert hvm[rev] > hvm[fwd]
    html = model.switchable().to_html()
    groups = re.findall(r'data-sync-group="([^"]+)"', html)
    assert set(groups) == {"costs", "mode"}
    assert groups.count("costs") == len(model.sources)
    assert groups.count("mode") == html.count("data:image/png;base64,") == len(model.sources) * len(report.TABS)


def test_a_host_without_exit_costs_is_refused(synthetic_roots):
    root = synthetic_roots["reversed"]
    data = report.load_recorded(root)
    data.host_id = "somewhere-else"
    with pytest.raises(DataError, match="no exits recording of host somewhere-else"):
        Model(data, root=root)


def _result(kind: str, cycles: float) -> Result:
    return Result.from_samples(kind, [cycles], [1.0], iterations=10, tsc_khz=1e6)


def test_measured_costs_subtract_the_floor_and_need_it():
    costs = measured_costs([_result("loop", 100.0), _result("pio_user", 5100.0), _result("pio_ioeventfd", 600.0)],
                           "h")
    assert (costs.user, costs.kernel) == (5000.0, 500.0) and "h" in costs.label
    with pytest.raises(ValueError, match="loop"):
        measured_costs([_result("pio_user", 5100.0), _result("pio_ioeventfd", 600.0)], "h")
    broken = Result("pio_user", "error", 1, 10, reason="the guest stopped early")
    with pytest.raises(ValueError, match="the guest stopped early"):
        measured_costs([_result("loop", 100.0), broken, _result("pio_ioeventfd", 600.0)], "h")


def test_published_costs_come_from_the_bare_metal_cpuid_figures():
    pub = published_exits.load()
    bare = pub[(pub["level"] == "bare_metal") & (pub["test"] == "cpuid")]
    values = list(bare["cycles"]) + [v for v in bare["cycles_high"] if pd.notna(v)]
    own = ExitCosts("own", "costs-own", user=12_000.0, kernel=2_000.0, origin="test", host_id="h")
    costs = published_costs(own)
    assert costs.kernel == pytest.approx((min(values) + max(values)) / 2)
    assert costs.user == pytest.approx(costs.kernel + 10_000.0)
    assert "Christopherson2024noapic" in costs.origin and "Bonzini" not in costs.origin
    assert math.isfinite(costs.user)


def test_provenance_join_keeps_the_resource_columns(synthetic_roots):
    ex = load_measured("exits", synthetic_roots["forward"])
    assert "tsc_khz" in ex.columns and "tsc_khz_provenance" in ex.columns
    assert not any(c.endswith(("_x", "_y")) for c in ex.columns)
