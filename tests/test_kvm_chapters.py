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
    if path.endswith("kvm.md"):  # every %%kvm cell shows its recorded output, none says it changed
        assert text.count("記録済みの出力です") >= 8 and "このセルの記録はありません" not in text
    assert "LAB_FORCE_RECORDED" in text  # the note says why it did not measure


@pytest.mark.kvm
@pytest.mark.parametrize("path", CHAPTERS)
def test_chapter_runs_live(path, monkeypatch):
    monkeypatch.delenv("LAB_FORCE_RECORDED", raising=False)
    text = _execute(path)
    if path.endswith("kvm.md"):  # the %%kvm cells ran here: their own output, no recorded-output note
        assert "<kvm.Vm fd=" in text and "記録済みの出力です" not in text
    else:
        assert "この機械で測った結果です" in text
