"""The words of the KVM, VMExit and virtio chapters follow the data they sit beside.

A fixture recording (tests/data/reversed, made by its make_fixture.py) reverses
every ordering the chapters word: ioeventfd slower than a plain kick, Python
faster than C, a guest loop close to native, PV slower than HVM(エミュレーション),
on a nested kvm_amd host. The same sentences built from it must say the
opposite of those built from the committed recording, and name the other host.
"""

from __future__ import annotations

import pytest
from conftest import execute_chapter

from lab.book import io as report
from lab.book import vmexit_words
from lab.book.virtio_view import sentences as io_sentences
from lab.paths import MEASURED_DIR, REPO_ROOT

REVERSED = REPO_ROOT / "tests" / "data" / "reversed"
CHAPTERS = ["chapters/kvm/kvm.md", "chapters/kvm/vmexit.md", "chapters/io/virtio.md"]


def _both(fn):
    return fn(str(MEASURED_DIR)), fn(str(REVERSED))


def test_vmexit_sentences_turn_around():
    committed, reversed_ = _both(vmexit_words.sentences)
    assert committed.keys() == reversed_.keys()
    for key in ("user_vs_efd", "efd_direction", "floor_sentence", "floor_meaning", "py_vs_c", "py_vs_c_meaning",
                "sum_costs", "sum_backend"):
        assert committed[key] != reversed_[key], key
    assert "倍かかりました" in committed["user_vs_efd"] and "より安く" in reversed_["user_vs_efd"]
    assert "遅く" in committed["py_vs_c"] and "速く" in reversed_["py_vs_c"]
    assert "PVM" in committed["floor_sentence"] and "命令エミュレータ" in committed["floor_sentence"]
    assert "ほぼそのまま" in reversed_["floor_sentence"] and "入れ子の KVM(kvm_amd" in reversed_["floor_sentence"]
    assert "倍かかりました" in committed["sum_costs"] and "より安く" in reversed_["sum_costs"]
    assert "PVM" in committed["sum_backend"] and "ほぼ exit そのもの" in reversed_["sum_backend"]
    assert "amd-0fedcba9" in reversed_["rec_host_sentence"] and "入れ子" not in committed["rec_host_sentence"]


def test_io_sentences_turn_around():
    committed = io_sentences(report.load(live=False, root=str(MEASURED_DIR)))
    reversed_ = io_sentences(report.load(live=False, root=str(REVERSED)))
    assert "倍速く" in committed["efd_sentence"] and "速くなっています" in committed["efd_meaning"]
    assert "より遅く" in reversed_["efd_sentence"] and "遅くなりました" in reversed_["efd_meaning"]
    assert "倍速く" in committed["pv_vs_hvm"] and "より遅く" in reversed_["pv_vs_hvm"]
    assert committed["small_meaning"] != reversed_["small_meaning"]
    assert "PVM" in committed["source"] and "amd-0fedcba9" in reversed_["source"]


def _glued(path: str, monkeypatch, root: str) -> dict[str, str]:
    monkeypatch.setenv("LAB_FORCE_RECORDED", "1")
    monkeypatch.setenv("LAB_MEASURED_DIR", root)
    nb = execute_chapter(path, timeout=300)
    glued = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            key = out.get("metadata", {}).get("scrapbook", {}).get("name")
            if key:
                data = out.get("data", {})
                glued[key] = str(data.get("application/papermill.record/text/markdown")
                                 or data.get("application/papermill.record/text/plain", ""))
    return glued


@pytest.mark.full
@pytest.mark.parametrize("path", CHAPTERS)
def test_chapters_built_with_reversed_data_say_the_opposite(path, monkeypatch):
    committed = _glued(path, monkeypatch, str(MEASURED_DIR))
    reversed_ = _glued(path, monkeypatch, str(REVERSED))
    assert committed.keys() == reversed_.keys()
    changed = [k for k in committed if committed[k] != reversed_[k]]
    expected = {"chapters/kvm/kvm.md": ["hypercall_words"],
                "chapters/kvm/vmexit.md": ["user_vs_efd", "efd_direction", "py_vs_c", "floor_sentence", "sum_costs",
                                           "rec_backend_words", "sum_backend"],
                "chapters/io/virtio.md": ["io_efd_sentence", "io_efd_meaning", "io_pv_vs_hvm", "io_source",
                                          "model_how", "model_disagree", "model_published"]}[path]
    assert set(expected) <= set(changed), (set(expected) - set(changed))
