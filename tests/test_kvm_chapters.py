"""The two KVM chapters execute: live on a KVM host, from recorded data otherwise; never to stderr."""

from __future__ import annotations

import pytest
from conftest import chapter_outputs, execute_chapter

CHAPTERS = ["chapters/kvm/kvm.md", "chapters/kvm/vmexit.md"]

pytestmark = pytest.mark.full


def _execute(path):
    return chapter_outputs(execute_chapter(path, timeout=120), "text/plain")


@pytest.mark.parametrize("path", CHAPTERS)
def test_chapter_runs_from_recorded_data(path, monkeypatch):
    monkeypatch.setenv("LAB_FORCE_RECORDED", "1")
    text = _execute(path)
    assert "記録済みのデータを表示しています" in text and "ホスト " in text
    assert "LAB_FORCE_RECORDED" in text  # the note says why it did not measure


@pytest.mark.kvm
@pytest.mark.parametrize("path", CHAPTERS)
def test_chapter_runs_live(path, monkeypatch):
    monkeypatch.delenv("LAB_FORCE_RECORDED", raising=False)
    text = _execute(path)
    assert "この機械で測った結果です" in text
