"""A comparison of the recorded hosts shows a host that lacks the compared resource, and says it lacks it.

The shape of the contributed hosts: one host recorded everything, the other
everything but the Python-vs-C reference (no gcc there).
"""

from __future__ import annotations

import pytest
import synthetic

from lab.book.exits_view import NOT_RECORDED, Floor, Measurement, SideBySide

COMPLETE, PARTIAL = synthetic.FORWARD_ID, synthetic.OTHER_ID


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    base = tmp_path_factory.mktemp("lacking")
    synthetic.make_host(base, COMPLETE)
    synthetic.make_host(base, PARTIAL, scale=1.5, resources=("exits", "native", "tour", "io"))
    return str(base)


def _rows_of(frame, host_id):
    return frame[frame["ホスト"].str.startswith(host_id)]


def test_python_vs_c_shows_the_host_without_a_reference_recording_as_lacking_it(root, monkeypatch):
    monkeypatch.setenv("LAB_FORCE_RECORDED", "1")
    side = SideBySide(root=root)
    assert [words.split("(")[0] for words in side.lacking()] == [PARTIAL]
    frame = side.show().frame
    partial = _rows_of(frame, PARTIAL)
    assert len(partial) == 1
    assert all(v == NOT_RECORDED for c, v in partial.iloc[0].items() if c != "ホスト")
    complete = _rows_of(frame, COMPLETE)
    assert len(complete) > 1 and NOT_RECORDED not in complete.to_numpy()


def test_comparisons_of_what_both_hosts_have_show_both_with_values(root, monkeypatch):
    monkeypatch.setenv("LAB_FORCE_RECORDED", "1")
    for shown in (Measurement("cpuid", root=root).show(), Floor(root=root).show()):
        assert NOT_RECORDED not in shown.frame.to_numpy()
        assert len(_rows_of(shown.frame, COMPLETE)) == len(_rows_of(shown.frame, PARTIAL)) == 1
