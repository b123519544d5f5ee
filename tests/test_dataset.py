"""lab.bench.dataset: one host per page, the newest recording of each resource, and the rule that picks the host."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import synthetic
from synthetic import BASE, FORWARD, FORWARD_ID, OTHER_ID, REVERSED, REVERSED_ID

from lab.bench import dataset
from lab.book import kvm as book_kvm
from lab.book import vmexit_words
from lab.book.core import pages
from lab.datapackage import DataError


@pytest.fixture(autouse=True)
def recorded(monkeypatch):
    monkeypatch.setenv(dataset.FORCE_RECORDED_ENV, "1")


def test_the_newest_host_with_every_resource_is_chosen(tmp_path):
    synthetic.make_host(tmp_path, FORWARD_ID, FORWARD)
    synthetic.make_host(tmp_path, REVERSED_ID, REVERSED, start=BASE + timedelta(days=1))
    # the newest of all, but without 'reference'
    synthetic.make_host(tmp_path, OTHER_ID, FORWARD, start=BASE + timedelta(days=2), resources=("exits", "native"))
    ds = dataset.data_set(["exits", "native", "reference"], root=tmp_path)
    assert (ds.host_id, ds.chosen_by, ds.missing, ds.live) == (REVERSED_ID, dataset.NEWEST_COMPLETE, (), False)
    assert ds.reason == dataset.FORCED
    assert dataset.data_set(["exits", "native"], root=tmp_path).host_id == OTHER_ID
    for frame in ds.frames.values():
        assert set(frame["host_id"]) == {REVERSED_ID}


def test_without_a_complete_host_the_one_with_most_resources_says_what_it_lacks(tmp_path):
    synthetic.make_host(tmp_path, FORWARD_ID, FORWARD, resources=("exits", "native"))
    synthetic.make_host(tmp_path, REVERSED_ID, REVERSED, start=BASE + timedelta(days=1), resources=("exits",))
    ds = dataset.data_set(["exits", "native", "reference"], root=tmp_path)
    assert (ds.host_id, ds.chosen_by, ds.missing) == (FORWARD_ID, dataset.NEWEST_PARTIAL, ("reference",))
    with pytest.raises(dataset.MissingResource, match="reference") as exc:
        ds.get("reference")
    assert isinstance(exc.value, DataError) and exc.value.host_id == FORWARD_ID


def test_the_environment_names_the_host(tmp_path, monkeypatch):
    synthetic.two_hosts(tmp_path)
    monkeypatch.setenv(dataset.RECORDED_HOST_ENV, FORWARD_ID)
    ds = dataset.data_set(["exits"], root=tmp_path)
    assert (ds.host_id, ds.chosen_by) == (FORWARD_ID, dataset.NAMED)
    monkeypatch.setenv(dataset.RECORDED_HOST_ENV, "amd-00000000")
    with pytest.raises(DataError, match=f"not a recorded host.*{FORWARD_ID}"):
        dataset.data_set(["exits"], root=tmp_path)


def test_each_resource_gives_its_newest_recording_and_exits_one_per_mode(tmp_path):
    synthetic.make_host(tmp_path, FORWARD_ID, FORWARD)
    synthetic.make_host(tmp_path, FORWARD_ID, FORWARD, scale=3.0, start=BASE + timedelta(hours=1),
                        resources=("native", "exits"))
    ds = dataset.data_set(["native", "exits", "io"], root=tmp_path)
    assert ds.get("native")["recorded_at"].nunique() == 1 and len(ds.get("native")) == 1
    assert float(ds.get("native").iloc[0]["cycles_per_iteration"]) == pytest.approx(0.77 * 3)
    exits = ds.get("exits")
    assert sorted(exits["mode"].unique()) == ["long64", "protected32"]
    assert exits.groupby("mode")["recorded_at"].nunique().eq(1).all()
    assert (exits["recorded_at"] > ds.get("io")["recorded_at"].max()).all()  # the re-recording, not the first


def test_a_live_data_set_holds_what_the_page_measured(monkeypatch):
    monkeypatch.delenv(dataset.FORCE_RECORDED_ENV)
    monkeypatch.setattr(dataset, "why_not_live", lambda: None)
    ds = dataset.data_set(["native"])
    assert ds.live and ds.chosen_by == dataset.LIVE and ds.missing == ("native",)
    with pytest.raises(dataset.MissingResource, match="not measured"):
        ds.get("native")
    ds.put("native", synthetic_native := __import__("pandas").DataFrame({"host_id": [ds.host_id]}))
    assert ds.has("native") and list(ds.get("native")["host_id"]) == list(synthetic_native["host_id"])


def test_a_recorded_data_set_is_read_only(synthetic_roots):
    ds = dataset.data_set(["native"], root=synthetic_roots["forward"])
    with pytest.raises(ValueError, match="read-only"):
        ds.put("native", ds.get("native"))


def test_no_recording_at_all_says_what_to_run(tmp_path):
    with pytest.raises(DataError, match="python -m lab record"):
        dataset.data_set(["exits"], root=tmp_path)


def test_every_host_gives_each_hosts_own_newest(synthetic_roots):
    sets = dataset.every_host(["exits", "qemu-io"], root=synthetic_roots["both"])
    assert [s.host_id for s in sets] == sorted([FORWARD_ID, REVERSED_ID])
    for s in sets:
        assert {h for f in s.frames.values() for h in f["host_id"]} == {s.host_id}


# --------------------------------------------------------------------------- a page, built against two hosts


def _page_values(root: str) -> tuple[dict, dict]:
    return book_kvm.vmexit_facts(root), vmexit_words.sentences(root)


@pytest.mark.parametrize("named", [None, FORWARD_ID])
def test_the_vmexit_page_takes_every_value_from_the_chosen_host(synthetic_roots, monkeypatch, named):
    """Default: the newer host (reversed); named: the older one. Every recorded number and sentence is that host's."""
    root = synthetic_roots["both"]
    if named:
        monkeypatch.setenv(dataset.RECORDED_HOST_ENV, named)
    chosen = named or REVERSED_ID
    other = FORWARD_ID if chosen == REVERSED_ID else REVERSED_ID
    ds = pages.data("vmexit", root)
    assert ds.host_id == chosen
    facts, words = _page_values(root)
    exits = ds.get("exits", mode="protected32").set_index("kind")
    assert facts["rec_host"] == chosen
    analysed = vmexit_words.facts(ds)
    assert analysed.host_id == chosen
    for kind in ("loop", "cpuid", "pio_user", "mmio_user", "pio_ioeventfd"):
        assert analysed.cycles[kind] == pytest.approx(float(exits.loc[kind, "cycles_per_exit"]))
        if kind != "loop":
            assert analysed.net[kind] == pytest.approx(float(exits.loc[kind, "net_cycles_per_exit"]))
    text = " ".join(words.values())
    assert chosen in text and other not in text
    python_c = ds.get("reference").set_index("kind").loc["pio_user"]
    assert f"{float(python_c['python_cycles']):,.0f}" in words["py_vs_c"]
    native = float(ds.get("native").iloc[0]["cycles_per_iteration"])
    assert f"{native:.2f}" in words["floor_sentence"]
    # the same page against the other host alone gives other numbers: the values above are not shared
    monkeypatch.delenv(dataset.RECORDED_HOST_ENV, raising=False)
    other_root = synthetic_roots["forward" if other == FORWARD_ID else "reversed"]
    other_facts = vmexit_words.facts(pages.data("vmexit", other_root))
    assert all(other_facts.cycles[k] != analysed.cycles[k] for k in ("cpuid", "pio_user", "pio_ioeventfd"))


def test_a_page_whose_host_lacks_a_resource_says_so_where_it_would_be(tmp_path, monkeypatch):
    synthetic.make_host(tmp_path, FORWARD_ID, FORWARD, resources=("exits", "native"))
    words = vmexit_words.sentences(str(tmp_path))
    assert "reference" in words["py_vs_c"] and FORWARD_ID in words["py_vs_c"]
    assert words["py_vs_c"] == vmexit_words.spaced(vmexit_words.missing_words(pages.data("vmexit", tmp_path),
                                                                              "reference"))


def test_the_real_drivers_section_says_its_host_has_no_qemu_io_recording(tmp_path):
    from lab.book import io as toy_report
    from lab.book import qemu_io

    synthetic.make_host(tmp_path, FORWARD_ID, FORWARD, resources=("io", "exits"))
    real, toy = qemu_io.load_recorded(str(tmp_path)), toy_report.load_recorded(str(tmp_path))
    assert real.missing is not None and real.note() is real.missing and FORWARD_ID in real.note().body
    assert qemu_io.table(real) is real.missing and qemu_io.versus_toy(real, toy) is real.missing
    assert set(qemu_io.summary(real)) == set(qemu_io.SUMMARY_KEYS)
    assert set(qemu_io.versus_summary(real, toy)) == set(qemu_io.VERSUS_KEYS)


def test_the_missing_values_have_the_keys_of_the_real_ones(synthetic_roots):
    from lab.book import io as toy_report
    from lab.book import qemu_io

    root = synthetic_roots["forward"]
    real, toy = qemu_io.load_recorded(root), toy_report.load_recorded(root)
    assert real.missing is None
    assert set(qemu_io.summary(real)) == set(qemu_io.SUMMARY_KEYS)
    assert set(qemu_io.versus_summary(real, toy)) == set(qemu_io.VERSUS_KEYS)


@pytest.mark.full
@pytest.mark.parametrize("named", [None, FORWARD_ID])
def test_the_executed_vmexit_chapter_quotes_only_the_chosen_host(synthetic_roots, monkeypatch, named):
    """The chapter itself, executed against two synthetic hosts: every number glued into its prose is the
    chosen host's, and no sentence names the other host (the all-host tables below the prose may)."""
    from conftest import execute_chapter, glued_values

    root = synthetic_roots["both"]
    monkeypatch.setenv("LAB_MEASURED_DIR", root)
    if named:
        monkeypatch.setenv(dataset.RECORDED_HOST_ENV, named)
    chosen = named or REVERSED_ID
    other = FORWARD_ID if chosen == REVERSED_ID else REVERSED_ID
    nb = execute_chapter("chapters/kvm/vmexit.md", timeout=300)
    glued = glued_values(nb)
    exits = pages.data("vmexit", root).get("exits", mode="protected32").set_index("kind")
    assert glued["rec_host"] == chosen
    text = " ".join(v for k, v in glued.items() if not k.startswith("pub_"))
    quoted = set(re.findall(r"\d[\d,]*(?:\.\d+)?", text))
    for kind in ("loop", "cpuid", "pio_user", "pio_ioeventfd"):
        assert f"{float(exits.loc[kind, 'cycles_per_exit']):,.0f}" in quoted, (kind, sorted(quoted))
    assert chosen in text and other not in text
