"""The virtio chapter executes: from recorded data anywhere, live on a KVM host; never to stderr."""

from __future__ import annotations

import pytest

from lab.paths import REPO_ROOT

CHAPTER = REPO_ROOT / "chapters/io/virtio.md"

pytestmark = pytest.mark.full


def _execute() -> str:
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    nb = jupytext.read(CHAPTER)
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(CHAPTER.parent)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    bad = [o for o in outputs if o.get("name") == "stderr" or o.get("output_type") == "error"]
    assert not bad, bad
    return "\n".join(str(o.get("data", {}).get("text/html", "")) for o in outputs)


def test_chapter_runs_from_recorded_data(monkeypatch):
    monkeypatch.setenv("LAB_FORCE_RECORDED", "1")
    html = _execute()
    assert "lab-fallback" in html and "lab-live" not in html
    # the toy models' two switchable figures (three tabs each), then the real drivers' section's own
    assert html.count('data-sync-group="mode"') >= 6


@pytest.mark.kvm
def test_chapter_runs_live(monkeypatch):
    monkeypatch.delenv("LAB_FORCE_RECORDED", raising=False)
    html = _execute()
    assert "lab-live" in html
    # the only recorded view is the real drivers' section (QEMU guests are booted only with LAB_LIVE_QEMU_IO=1)
    notes = html.split('class="admonition note lab-fallback"')[1:]
    assert all("LAB_LIVE_QEMU_IO" in n.split("</div>")[0] for n in notes), notes
