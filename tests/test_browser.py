"""The built book in a real browser: Debian's headless Chromium driven by Playwright.

Every page of ``_toc.yml`` is opened from a local HTTP server on 127.0.0.1.
A page fails on a JavaScript console error (except the theme's known
"Got invalid theme mode" on a fresh profile), a failed request, a broken
image or missing Japanese text. PV / HVM / virtio tabs are clicked and the
shown figure must change; the search page must find a word. Screenshots go
to ``_build/screenshots/``.
"""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import pytest
from test_book import HTML, toc_files

from lab.paths import REPO_ROOT

pytestmark = pytest.mark.book

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = REPO_ROOT / "_build" / "screenshots"
ALLOWED_CONSOLE_ERRORS = ("Got invalid theme mode",)
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest's output readable
        pass


@pytest.fixture(scope="module")
def server():
    if not (HTML / "index.html").exists():
        pytest.fail("the book is not built: run 'make book' (make test does it first)")
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (make test does it as root)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in requirements.txt")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def open_page(browser, url: str):
    """A fresh page that records console errors and failed requests."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type == "error" and not m.text.startswith(ALLOWED_CONSOLE_ERRORS) else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    page.goto(url, wait_until="networkidle")
    return page, problems


@pytest.mark.parametrize("doc", toc_files())
def test_page_renders(browser, server, doc):
    page, problems = open_page(browser, f"{server}/{doc}.html")
    try:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{doc.replace('/', '__')}.png"), full_page=True)
        broken = page.evaluate(
            "() => [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src.slice(0, 80))"
        )
        text = page.inner_text("main")
        assert not problems, f"{doc}: " + "; ".join(problems)
        assert not broken, f"{doc}: broken images {broken}"
        assert any("\u3040" <= c <= "\u30ff" or "\u4e00" <= c <= "\u9fff" for c in text), f"{doc}: no Japanese text"
        assert "Traceback" not in text, f"{doc}: a traceback is shown"
    finally:
        page.close()


def pages_with_tabs() -> list[str]:
    return [d for d in toc_files()
            if (HTML / f"{d}.html").exists() and "lab-switchable" in (HTML / f"{d}.html").read_text(encoding="utf-8")]


def test_mode_tabs_switch_figures(browser, server):
    """Clicking a tab shows another figure, and tabs of one group follow each other."""
    docs = pages_with_tabs()
    if not docs:
        pytest.fail("no page of the book has switchable views (lab.book.core.widgets.Switchable)")
    for doc in docs:
        page, problems = open_page(browser, f"{server}/{doc}.html")
        try:
            sets = page.locator(".lab-switchable .sd-tab-set")
            first = sets.first
            labels = first.locator("label.sd-tab-label")
            assert labels.count() >= 2, f"{doc}: a switchable view with fewer than two tabs"

            def shown(tab_set):
                return tab_set.evaluate(
                    "ts => { const i = [...ts.querySelectorAll(':scope > input')].findIndex(x => x.checked);"
                    " return ts.querySelectorAll(':scope > .sd-tab-content img')[i].src; }")

            before = shown(first)
            checked_index = first.evaluate(
                "ts => [...ts.querySelectorAll(':scope > input')].findIndex(x => x.checked)")
            target = labels.nth(0 if checked_index != 0 else 1)
            target.click()
            after = shown(first)
            assert before != after, f"{doc}: clicking a tab did not change the figure"
            sync_id = target.get_attribute("data-sync-id")
            group = target.get_attribute("data-sync-group")
            for i in range(sets.count()):
                same = sets.nth(i).locator(f'label[data-sync-group="{group}"][data-sync-id="{sync_id}"]')
                if same.count():
                    checked = sets.nth(i).evaluate(
                        "(ts, id) => { const l = ts.querySelector(`label[data-sync-id='${id}']`);"
                        " return document.getElementById(l.getAttribute('for')).checked; }", sync_id)
                    assert checked, f"{doc}: tab set {i} did not follow the choice {sync_id!r}"
            page.screenshot(path=str(SCREENSHOTS / f"{doc.replace('/', '__')}__tab-{sync_id}.png"), full_page=True)
            assert not problems, f"{doc}: " + "; ".join(problems)
        finally:
            page.close()


def test_search_finds_kvm(browser, server):
    page, problems = open_page(browser, f"{server}/search.html?q=KVM")
    try:
        page.wait_for_selector("#search-results li", timeout=15_000)
        assert page.locator("#search-results li").count() > 0
        page.screenshot(path=str(SCREENSHOTS / "search.png"))
        assert not problems, "; ".join(problems)
    finally:
        page.close()
