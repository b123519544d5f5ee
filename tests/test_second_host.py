"""The book the day a second host is recorded: every chapter still runs, and the all-host views show it.

``data/measured`` holds one host so far. This suite points the book at a copy
that also holds the reversed fixture host (tests/data/reversed, kvm_amd, with
the same timestamps as the committed recording: the worst case for "the newest
recording"), with the live path turned off, and executes every chapter.
"""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
import yaml
from conftest import chapter_outputs, execute_chapter

from lab.bench.harness import newest_recording
from lab.paths import MEASURED_DIR, REPO_ROOT

REVERSED = REPO_ROOT / "tests" / "data" / "reversed" / "amd-0fedcba9"
TOC = yaml.safe_load((REPO_ROOT / "_toc.yml").read_text(encoding="utf-8"))
CHAPTERS = [c["file"] + ".md" for part in TOC["parts"] for c in part["chapters"]]
#: The chapters whose tables and plots show every recorded host.
ALL_HOSTS = {"chapters/kvm/kvm.md", "chapters/kvm/vmexit.md", "chapters/io/virtio.md"}


def test_newest_recording_never_mixes_two_hosts():
    frame = pd.DataFrame({"host_id": ["b", "a", "a", "b", "c"],
                          "recorded_at": ["t2", "t2", "t1", "t1", "t1"], "v": [1, 2, 3, 4, 5]})
    assert list(newest_recording(frame)["v"]) == [1]  # t2 is shared by a and b: b sorts last
    assert newest_recording(frame.iloc[0:0]).empty


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory):
    root = tmp_path_factory.mktemp("measured")
    for host in sorted(MEASURED_DIR.iterdir()):
        if host.is_dir():
            shutil.copytree(host, root / host.name)
    shutil.copytree(REVERSED, root / REVERSED.name)
    return root


@pytest.mark.full
@pytest.mark.parametrize("path", CHAPTERS)
def test_every_chapter_runs_with_a_second_recorded_host(path, two_hosts, monkeypatch):
    monkeypatch.setenv("LAB_MEASURED_DIR", str(two_hosts))
    monkeypatch.setenv("LAB_FORCE_RECORDED", "1")
    nb = execute_chapter(path, timeout=300)
    if path in ALL_HOSTS:
        shown = chapter_outputs(nb, "text/html", "text/plain")
        missing = [h.name for h in two_hosts.iterdir() if h.is_dir() and h.name not in shown]
        assert not missing, f"{path} does not show the recorded hosts {missing}"
