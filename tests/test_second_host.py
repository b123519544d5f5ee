"""The book the day another host is recorded: every chapter still runs, and the all-host views show it.

This suite points the book at a copy of ``data/measured`` that also holds a
synthetic host (tests/synthetic.py, reversed orderings, kvm_amd) with only
some of the resources, with the live path turned off, and executes every
chapter. A second run names that host with ``LAB_RECORDED_HOST``: the pages
then say what it lacks where it would be shown.
"""

from __future__ import annotations

import shutil

import pytest
import synthetic
import yaml
from conftest import chapter_outputs, execute_chapter

from lab.paths import MEASURED_DIR, REPO_ROOT

TOC = yaml.safe_load((REPO_ROOT / "_toc.yml").read_text(encoding="utf-8"))
CHAPTERS = [c["file"] + ".md" for part in TOC["parts"] for c in part["chapters"]]
#: The chapters whose tables and plots show every recorded host.
ALL_HOSTS = {"chapters/kvm/kvm.md", "chapters/kvm/vmexit.md", "chapters/io/virtio.md"}


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory):
    root = tmp_path_factory.mktemp("measured")
    for host in sorted(MEASURED_DIR.iterdir()):
        if host.is_dir():
            shutil.copytree(host, root / host.name)
    synthetic.make_host(root, synthetic.REVERSED_ID, synthetic.REVERSED, resources=("exits", "native", "tour", "io"))
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


@pytest.mark.full
@pytest.mark.parametrize("path", sorted(ALL_HOSTS))
def test_a_named_host_that_lacks_a_resource_says_so(path, two_hosts, monkeypatch):
    monkeypatch.setenv("LAB_MEASURED_DIR", str(two_hosts))
    monkeypatch.setenv("LAB_FORCE_RECORDED", "1")
    monkeypatch.setenv("LAB_RECORDED_HOST", synthetic.REVERSED_ID)
    nb = execute_chapter(path, timeout=300)
    shown = chapter_outputs(nb, "text/html", "text/plain", "text/markdown",
                            "application/papermill.record/text/markdown")  # what the prose glues
    assert synthetic.REVERSED_ID in shown
    if path != "chapters/kvm/kvm.md":  # the KVM chapter needs only the tour, which the host has
        assert "reference" in shown or "qemu-io" in shown
