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

from lab.paths import REPO_ROOT

pytestmark = [pytest.mark.libvirtd, pytest.mark.full]

PAGES = ["chapters/hands_on/libvirt_lifecycle.md", "chapters/hands_on/virtio_vs_emulated.md"]
PREFIX = "labex-"


def leftovers() -> list[str]:
    proc = subprocess.run(["virsh", "-c", "qemu:///system", "list", "--all", "--name"],
                          capture_output=True, text=True, timeout=60, check=True)
    names = [n for n in proc.stdout.split() if n.startswith(PREFIX)]
    return names + glob.glob(f"/var/lib/libvirt/images/{PREFIX}*")


def execute(path: str) -> str:
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    nb = jupytext.read(REPO_ROOT / path)
    client = nbclient.NotebookClient(nb, timeout=180, kernel_name="python3",
                                     resources={"metadata": {"path": str((REPO_ROOT / path).parent)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    bad = [o for o in outputs if o.get("name") == "stderr" or o.get("output_type") == "error"]
    assert not bad, bad
    return "\n".join(str(o.get("data", {}).get("text/html", o.get("data", {}).get("text/plain", "")))
                     for o in outputs)


@pytest.mark.parametrize("path", PAGES)
def test_page_runs_virsh_live_and_leaves_nothing(path, monkeypatch):
    monkeypatch.delenv("LAB_FORCE_RECORDED", raising=False)
    monkeypatch.delenv("LAB_RECORD_TRANSCRIPTS", raising=False)
    assert leftovers() == [], "labex- leftovers before the run: remove them first"
    text = execute(path)
    assert leftovers() == [], f"{path} left these behind"
    assert "記録済みの出力です" not in text, "a command fell back to its recording although libvirtd runs here"
    assert "(終了コード 0)" in text


def test_lifecycle_page_falls_back_to_recordings_when_forced(monkeypatch):
    monkeypatch.setenv("LAB_FORCE_RECORDED", "1")
    text = execute(PAGES[0])
    assert "記録済みの出力です" in text and "LAB_FORCE_RECORDED" in text
    assert "Running hypervisor: QEMU" in text  # the recorded virsh version output
    assert leftovers() == []
