"""No English sentence written by the book in the pages this book writes in Japanese.

Reads the built HTML (``make book``). Exempt, as the issue defines it: code
and program output (``pre``, ``code``, highlighted blocks, math), identifiers
and proper names (links without Japanese, e.g. citations; quoted titles in
「」 or “”), machine code bytes in guest listings, and the bibliography.
What remains is prose, headings, notes, table headings and cells: a run of
five or more English words there is a sentence the book wrote in English.
"""

from __future__ import annotations

import re

import pytest

from lab.paths import REPO_ROOT

pytestmark = pytest.mark.book

HTML = REPO_ROOT / "_build" / "html"
NOT_OURS = ("chapters/appendix/bibliography",)
JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
ENGLISH_RUN = re.compile(r"[A-Za-z][A-Za-z'’-]*(?:[ ,;:]+[A-Za-z][A-Za-z'’-]*){4,}")
HEX_BYTES = re.compile(r"[0-9a-f]{1,2}(?:[ ,;:]+[0-9a-f]{1,2})*")  # machine code in a listing, not words
QUOTED = re.compile(r"「[^」]*」|“[^”]*”|\"[^\"]*\"")


def english_sentences(html: str) -> list[str]:
    """Runs of five or more English words in the book-written text of one page."""
    bs4 = pytest.importorskip("bs4")
    soup = bs4.BeautifulSoup(html, "html.parser")
    main = soup.find("article") or soup.find("main") or soup
    for tag in main.find_all(["pre", "code", "kbd", "script", "style", "math"]):
        tag.decompose()
    for tag in main.select(".highlight, .math, .headerlink, .citation, .footnote"):
        tag.decompose()
    for a in main.find_all("a"):
        if not JAPANESE.search(a.get_text()):
            a.decompose()
    found = []
    for text in main.stripped_strings:
        found += [run for run in ENGLISH_RUN.findall(QUOTED.sub("", text)) if not HEX_BYTES.fullmatch(run)]
    return found


def test_the_detector_finds_english_and_ignores_code():
    page = ("<article><p>これは日本語です。This sentence is written in English.</p>"
            "<pre>virsh -c qemu:///system list all of the domains</pre>"
            "<p>論文「QEMU, a Fast and Portable Dynamic Translator」を読む。</p>"
            "<table><tr><td>c7 43 04 ff ff ff ff</td></tr></table></article>")
    assert english_sentences(page) == ["This sentence is written in English"]


def pages() -> list[str]:
    from test_book import toc_files

    return [f for f in toc_files() if not f.startswith(NOT_OURS)]


@pytest.mark.parametrize("page", pages())
def test_page_has_no_english_sentence(page):
    path = HTML / f"{page}.html"
    if not path.exists():
        pytest.fail("the book is not built: run 'make book' (make test does it first)")
    found = english_sentences(path.read_text(encoding="utf-8"))
    assert not found, f"{page}: English written by the book: {found}"
