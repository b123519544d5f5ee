"""The two KVM chapters execute: live on a KVM host, from recorded data otherwise; never to stderr."""

from __future__ import annotations

import pytest

from lab.paths import REPO_ROOT

CHAPTERS = ["chapters/kvm/kvm.md", "chapters/kvm/vmexit.md"]

pytestmark = pytest.mark.full


def _execute(path):
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    nb = jupytext.read(REPO_ROOT / path)
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str((REPO_ROOT / path).parent)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    stderr = [o for o in outputs if o.get("name") == "stderr" or o.get("output_type") == "error"]
    assert not stderr, stderr
    return "\n".join(str(o.get("data", {}).get("text/plain", "")) for o in outputs)


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
