"""The virtio chapter's model section: the analysis laid out (sources, tables, figures) and worded per back end.

The arithmetic itself is tested in tests/test_analysis.py; here, on synthetic
recorded hosts, what the page offers: the host's own costs, the published
bare-metal prediction only where the host's costs are exit costs, and the
exit overhead per request on bare metal everywhere.
"""

from __future__ import annotations

import re

import pytest
from synthetic import FORWARD_ID, OTHER_ID, REVERSED_ID

from lab.bench.harness import Result, load_measured
from lab.book import io as report
from lab.book.io_model import Model, measured_exit_rows, words


def _model(root: str) -> Model:
    return Model(report.load(live=False, root=root), root=root)


def test_the_model_uses_one_hosts_costs(synthetic_roots, monkeypatch):
    root = synthetic_roots["both"]
    for host_id in (FORWARD_ID, REVERSED_ID):
        monkeypatch.setenv("LAB_RECORDED_HOST", host_id)
        model = _model(root)
        assert {s.costs.host_id for s in model.sources} == {host_id}
        ex = load_measured("exits", root)
        ex = ex[(ex["host_id"] == host_id) & (ex["mode"] == "protected32")]
        ex = ex[ex["recorded_at"] == ex["recorded_at"].max()].set_index("kind")["cycles_per_exit"].astype(float)
        assert model.own.costs.user == pytest.approx(ex["pio_user"] - ex["loop"])
        assert model.own.costs.kernel == pytest.approx(ex["pio_ioeventfd"] - ex["loop"])


def test_bare_metal_prediction_only_where_costs_are_exit_costs(synthetic_roots):
    pvm, vtx = _model(synthetic_roots["forward"]), _model(synthetic_roots["vtx"])
    assert [s.sync_id for s in pvm.sources] == [f"costs-{FORWARD_ID}"]
    assert [s.sync_id for s in vtx.sources] == [f"costs-{OTHER_ID}", "costs-published"]
    assert len([c for c in pvm.table().columns if c.startswith("予測")]) == 1
    assert len([c for c in vtx.table().columns if c.startswith("予測")]) == 2
    # the same numbers: the same exit overhead per request on bare metal, on both back ends
    assert (pvm.bare_metal().to_numpy() == vtx.bare_metal().to_numpy()).all()
    html = vtx.switchable().to_html()
    groups = re.findall(r'data-sync-group="([^"]+)"', html)
    assert groups.count("costs") == 2 and groups.count("mode") == 2 * len(report.TABS)


def test_the_words_follow_the_back_end_not_only_the_numbers(synthetic_roots):
    pvm, vtx = (words(_model(synthetic_roots[k])) for k in ("forward", "vtx"))
    assert pvm.keys() == vtx.keys()
    assert pvm["published"] != vtx["published"] and pvm["costs_meaning"] != vtx["costs_meaning"]
    m = _model(synthetic_roots["forward"])
    small, first, *_ = m.model.ratios()
    assert f"{first['hvm']:.2f}" in pvm["ratios"] and FORWARD_ID in pvm["how"]


def test_reversed_data_turns_the_words_around(synthetic_roots):
    forward, reversed_ = (words(_model(synthetic_roots[k])) for k in ("forward", "reversed"))
    for key in ("disagree", "published"):
        assert forward[key] != reversed_[key], key
    assert REVERSED_ID in reversed_["how"] and REVERSED_ID not in forward["how"]


def test_a_host_without_an_exits_recording_is_said_to_lack_it(tmp_path):
    import synthetic

    synthetic.make_host(tmp_path, FORWARD_ID, synthetic.FORWARD, resources=("io", "qemu-io"))
    model = _model(str(tmp_path))
    assert model.missing and FORWARD_ID in model.missing
    assert str(model.switchable()).count(model.missing) == 1
    assert set(words(model).values()) == {model.missing}


def _result(kind: str, cycles: float) -> Result:
    return Result.from_samples(kind, [cycles], [1.0], iterations=10, tsc_khz=1e6)


def test_measured_costs_need_the_floor_and_every_kind(synthetic_roots):
    rows = measured_exit_rows([_result("loop", 100.0), _result("pio_user", 5100.0),
                               _result("pio_ioeventfd", 600.0)], "h")
    assert set(rows["kind"]) == {"loop", "pio_user", "pio_ioeventfd"}
    with pytest.raises(ValueError, match="loop"):
        measured_exit_rows([_result("pio_user", 5100.0), _result("pio_ioeventfd", 600.0)], "h")
    broken = Result("pio_user", "error", 1, 10, reason="the guest stopped early")
    with pytest.raises(ValueError, match="the guest stopped early"):
        measured_exit_rows([_result("loop", 100.0), broken, _result("pio_ioeventfd", 600.0)], "h")
    data = report.load(live=False, root=synthetic_roots["vtx"])
    data.live = True  # as if measured here: the cell's costs replace the recording's
    model = Model(data)
    own = model.add_measured([_result("loop", 100.0), _result("pio_user", 5100.0), _result("pio_ioeventfd", 600.0)])
    assert (own.costs.user, own.costs.kernel) == (5000.0, 500.0) and own.sync_id == "costs-live"
    assert [s.sync_id for s in model.sources] == ["costs-live", "costs-published"]


def test_provenance_join_keeps_the_resource_columns(synthetic_roots):
    ex = load_measured("exits", synthetic_roots["forward"])
    assert "tsc_khz" in ex.columns and "tsc_khz_provenance" in ex.columns
    assert not any(c.endswith(("_x", "_y")) for c in ex.columns)
