"""The hands-on pages against the real libvirtd: they run every command live and leave nothing behind.

Marked ``libvirtd`` and ``full`` (each page starts domains under QEMU). The
pages name everything they create ``labex-...``; before and after, ``virsh
list --all`` on qemu:///system and the images folder hold no such name.
Other work on the same daemon may add or remove its own domains meanwhile,
so only the ``labex-`` names are compared.
"""

from __future__ import annotations

import glob
import subprocess

import pytest
from conftest import chapter_outputs, execute_chapter

pytestmark = [pytest.mark.libvirtd, pytest.mark.full]

PAGES = ["chapters/hands_on/libvirt_lifecycle.md", "chapters/hands_on/virtio_vs_emulated.md"]
PREFIX = "labex-"


def leftovers() -> list[str]:
    proc = subprocess.run(["virsh", "-c", "qemu:///system", "list", "--all", "--name"],
                          capture_output=True, text=True, timeout=60, check=True)
    names = [n for n in proc.stdout.split() if n.startswith(PREFIX)]
    return names + glob.glob(f"/var/lib/libvirt/images/{PREFIX}*")


def execute(path: str) -> str:
    return chapter_outputs(execute_chapter(path), "text/html", "text/plain")


@pytest.mark.parametrize("path", PAGES)
def test_page_runs_virsh_live_and_leaves_nothing(path, monkeypatch):
    monkeypatch.delenv("LAB_FORCE_RECORDED", raising=False)
    monkeypatch.delenv("LAB_RECORD_TRANSCRIPTS", raising=False)
    assert leftovers() == [], "labex- leftovers before the run: remove them first"
    text = execute(path)
    assert leftovers() == [], f"{path} left these behind"
    assert "記録済みの出力です" not in text, "a command fell back to its recording although libvirtd runs here"
    assert "(終了コード 0)" in text
    assert "error: " not in text, f"{path}: a command printed an error although it ran live"


def test_lifecycle_page_falls_back_to_recordings_when_forced(monkeypatch):
    monkeypatch.setenv("LAB_FORCE_RECORDED", "1")
    text = execute(PAGES[0])
    assert "記録済みの出力です" in text and "LAB_FORCE_RECORDED" in text
    assert "Running hypervisor: QEMU" in text  # the recorded virsh version output
    assert leftovers() == []
