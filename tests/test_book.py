"""The built book: every _toc.yml page is there, the build log is clean, Japanese is text.

These tests read ``_build/`` as ``make book`` (run by ``make test`` first) left it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from lab.paths import REPO_ROOT

pytestmark = pytest.mark.book

HTML = REPO_ROOT / "_build" / "html"
LOG = REPO_ROOT / "_build" / "build.log"


def toc_files() -> list[str]:
    toc = yaml.safe_load((REPO_ROOT / "_toc.yml").read_text(encoding="utf-8"))
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    return files


@pytest.fixture(scope="module")
def built() -> Path:
    if not (HTML / "index.html").exists():
        pytest.fail("the book is not built: run 'make book' (make test does it first)")
    return HTML


def test_every_toc_page_has_a_source_and_a_page(built):
    for f in toc_files():
        assert (REPO_ROOT / f"{f}.md").exists(), f"{f}.md listed in _toc.yml does not exist"
        assert (built / f"{f}.html").exists(), f"{f}.html missing from _build/html"


def test_build_log_has_no_warning():
    text = LOG.read_text(encoding="utf-8", errors="replace")
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    bad = [line for line in plain.splitlines() if re.search(r"\b(WARNING|ERROR|CRITICAL)\b", line)]
    assert not bad, "the build log has warnings:\n" + "\n".join(bad[:20])
    assert "build succeeded" in plain


def test_pages_are_japanese(built):
    for f in toc_files():
        page = (built / f"{f}.html").read_text(encoding="utf-8")
        assert '<html lang="ja"' in page, f"{f}: the page does not declare lang=ja"
        assert re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", page), f"{f}: no Japanese text"


def test_no_cell_output_is_an_error(built):
    for f in toc_files():
        page = (built / f"{f}.html").read_text(encoding="utf-8")
        assert "Traceback (most recent call last)" not in page, f"{f}: a cell shows a traceback"
        assert "output stderr" not in page, f"{f}: a cell wrote to stderr"


def test_hands_on_commands_print_no_error(built):
    """A command of an exercise that prints ``error:`` (virsh, qemu-img) is a broken exercise, exit code 0 or not."""
    for f in toc_files():
        if f.startswith("chapters/hands_on/"):
            page = (built / f"{f}.html").read_text(encoding="utf-8")
            errors = re.findall(r"error: [^\n<]*", page)
            assert not errors, f"{f}: a command printed {errors}"


def test_every_notebook_chapter_offers_its_ipynb(built):
    for f in toc_files():
        source = (REPO_ROOT / f"{f}.md").read_text(encoding="utf-8")
        if not source.startswith("---\njupytext:"):
            continue  # a plain Markdown page
        page = (built / f"{f}.html").read_text(encoding="utf-8")
        assert f'_sources/{f}.ipynb"' in page, f"{f}: no .ipynb download button"
        assert (built / "_sources" / f"{f}.ipynb").exists(), f"{f}.ipynb missing from _build/html/_sources"


@pytest.mark.kvm
@pytest.mark.parametrize("page", ["chapters/kvm/kvm", "chapters/kvm/vmexit", "chapters/io/virtio"])
def test_hardware_pages_were_built_live_on_a_kvm_host(built, page):
    # The build executed these chapters on this machine, which has KVM: their
    # hardware cells must show live results, not the recorded-data note.
    # (Executing them on their own, live and from recorded data, is in make test-all.)
    html = (built / f"{page}.html").read_text(encoding="utf-8")
    if page == "chapters/kvm/kvm":  # %%kvm cells (lab.book.core.cells) show their own output live, and no note
        assert "&lt;kvm.Vm fd=" in html and "記録済みの出力です" not in html, f"{page}: %%kvm cells not run live"
        return
    assert "lab-live" in html, f"{page}: no live result although this machine has KVM"
