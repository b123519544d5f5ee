"""The VMExit and virtio pages say what each back end's numbers are (lab.analysis.measures).

The synthetic hosts ``forward`` (kvm_pvm) and ``vtx`` (kvm_intel) hold the
same numbers; only the back end differs. What the analysis says is sound only
on a hardware back end (an exit cost, a comparison with bare metal, a
throughput predicted with published costs) appears for ``vtx`` and not for
``forward``; what is sound everywhere (the user-space round trip, exit counts)
is worded the same for both.
"""

from __future__ import annotations

import pytest
from conftest import execute_chapter
from synthetic import FORWARD_ID, OTHER_ID

from lab.book import vmexit_words


def _same(a: str, b: str) -> bool:
    return a.replace(FORWARD_ID, "HOST") == b.replace(OTHER_ID, "HOST")


def test_only_a_hardware_back_end_gets_exit_costs(synthetic_roots):
    pvm, vtx = (vmexit_words.sentences(synthetic_roots[k]) for k in ("forward", "vtx"))
    assert pvm.keys() == vtx.keys()
    assert pvm["user_vs_kernel"] == "" and vtx["user_vs_kernel"] != ""
    for key in ("rec_rows_meaning", "rec_cpuid_words", "sum_costs", "sum_backend"):
        assert not _same(pvm[key], vtx[key]), key
    for key in ("round_trip", "user_vs_efd"):  # sound on every back end: the same numbers, the same words
        assert _same(pvm[key], vtx[key]), key


def test_the_rows_table_names_what_each_back_end_adds(synthetic_roots):
    pvm, vtx = (vmexit_words.rows_table(synthetic_roots[k]).data for k in ("forward", "vtx"))
    assert list(pvm.iloc[:, 0]) == list(vtx.iloc[:, 0])
    assert all(a != b for a, b in zip(pvm.iloc[:, 1], vtx.iloc[:, 1], strict=True))


def _page(path: str, monkeypatch, root: str) -> tuple[dict[str, str], str]:
    """The glued values and every HTML output of a chapter executed on ``root``'s recorded host."""
    monkeypatch.setenv("LAB_FORCE_RECORDED", "1")
    monkeypatch.setenv("LAB_MEASURED_DIR", root)
    nb = execute_chapter(path, timeout=300)
    glued, html = {}, []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            key = out.get("metadata", {}).get("scrapbook", {}).get("name")
            if key:
                md = "application/papermill.record/text/markdown"
                glued[key] = str(data[md] if md in data else data.get("application/papermill.record/text/plain", ""))
            html.append(str(data.get("text/html", "")))
    return glued, "\n".join(html)


@pytest.mark.full
def test_built_pages_call_no_pvm_value_an_exit_cost(monkeypatch, synthetic_roots):
    pvm, pvm_html = _page("chapters/kvm/vmexit.md", monkeypatch, synthetic_roots["forward"])
    vtx, _ = _page("chapters/kvm/vmexit.md", monkeypatch, synthetic_roots["vtx"])
    assert pvm["user_vs_kernel"] == "" and vtx["user_vs_kernel"] != ""
    assert not _same(pvm["rec_cpuid_words"], vtx["rec_cpuid_words"])
    assert vtx["rec_cpuid_words"].replace(OTHER_ID, FORWARD_ID) not in pvm_html
    pvm, pvm_html = _page("chapters/io/virtio.md", monkeypatch, synthetic_roots["forward"])
    vtx, vtx_html = _page("chapters/io/virtio.md", monkeypatch, synthetic_roots["vtx"])
    assert "costs-published" not in pvm_html and "costs-published" in vtx_html
    assert not _same(pvm["model_published"], vtx["model_published"])
    assert not _same(pvm["model_costs_meaning"], vtx["model_costs_meaning"])
