"""The virtio chapter executes: from recorded data anywhere, live on a KVM host; never to stderr."""

from __future__ import annotations

import pytest
from conftest import chapter_outputs, execute_chapter

from lab.paths import REPO_ROOT

CHAPTER = REPO_ROOT / "chapters/io/virtio.md"

pytestmark = pytest.mark.full


def _execute() -> str:
    return chapter_outputs(execute_chapter(CHAPTER.relative_to(REPO_ROOT), timeout=120), "text/html")


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
