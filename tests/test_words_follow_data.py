"""The words of the KVM, VMExit and virtio chapters follow the data they sit beside.

Two synthetic hosts (tests/synthetic.py) hold every ordering the chapters word
one way (``forward``: a PVM host) and the other (``reversed``: ioeventfd slower
than a plain kick, Python faster than C, a guest loop close to native, PV
slower than HVM emulation, on a nested kvm_amd host). The same sentences built
from each must differ, and name their own host and no other.
"""

from __future__ import annotations

import pytest
from conftest import execute_chapter, glued_values
from synthetic import FORWARD_ID, REVERSED_ID

from lab.book import io as report
from lab.book import vmexit_words
from lab.book.virtio_view import sentences as io_sentences

CHAPTERS = ["chapters/kvm/kvm.md", "chapters/kvm/vmexit.md", "chapters/io/virtio.md"]


def _names_only(sentences: dict[str, str], own: str, other: str) -> None:
    text = " ".join(sentences.values())
    assert own in text and other not in text


def test_vmexit_sentences_turn_around(synthetic_roots):
    forward, reversed_ = (vmexit_words.sentences(synthetic_roots[k]) for k in ("forward", "reversed"))
    assert forward.keys() == reversed_.keys()
    for key in ("user_vs_efd", "efd_direction", "floor_sentence", "floor_meaning", "py_vs_c", "py_vs_c_meaning",
                "sum_costs", "sum_backend", "rec_backend_words", "rec_rows_meaning", "rec_cpuid_words", "round_trip"):
        assert forward[key].replace(FORWARD_ID, "") != reversed_[key].replace(REVERSED_ID, ""), key
    _names_only(forward, FORWARD_ID, REVERSED_ID)
    _names_only(reversed_, REVERSED_ID, FORWARD_ID)


def test_io_sentences_turn_around(synthetic_roots):
    forward, reversed_ = (io_sentences(report.load(live=False, root=synthetic_roots[k]))
                          for k in ("forward", "reversed"))
    for key in ("efd_sentence", "efd_meaning", "pv_vs_hvm", "small_meaning", "source", "backend"):
        assert forward[key] != reversed_[key], key
    _names_only(forward, FORWARD_ID, REVERSED_ID)
    _names_only(reversed_, REVERSED_ID, FORWARD_ID)


def _glued(path: str, monkeypatch, root: str) -> dict[str, str]:
    monkeypatch.setenv("LAB_FORCE_RECORDED", "1")
    monkeypatch.setenv("LAB_MEASURED_DIR", root)
    nb = execute_chapter(path, timeout=300)
    return glued_values(nb)


@pytest.mark.full
@pytest.mark.parametrize("path", CHAPTERS)
def test_chapters_built_with_reversed_data_say_the_opposite(path, monkeypatch, synthetic_roots):
    forward = _glued(path, monkeypatch, synthetic_roots["forward"])
    reversed_ = _glued(path, monkeypatch, synthetic_roots["reversed"])
    assert forward.keys() == reversed_.keys()
    changed = [k for k in forward if forward[k] != reversed_[k]]
    expected = {"chapters/kvm/kvm.md": ["hypercall_words"],
                "chapters/kvm/vmexit.md": ["user_vs_efd", "efd_direction", "py_vs_c", "floor_sentence", "sum_costs",
                                           "rec_backend_words", "sum_backend", "rec_rows_meaning", "round_trip"],
                "chapters/io/virtio.md": ["io_efd_sentence", "io_efd_meaning", "io_pv_vs_hvm", "io_source",
                                          "model_how", "model_disagree", "model_published",
                                          "model_costs_meaning"]}[path]
    assert set(expected) <= set(changed), (set(expected) - set(changed))
