"""`make lab`: JupyterLab opens the chapters as notebooks and asks nothing about news.

Starts a real JupyterLab server from .venv with the project's settings and
reads the effective settings through its REST API.
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from lab.paths import REPO_ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    overrides = Path(sys.prefix) / "etc" / "jupyter" / "labconfig" / "default_setting_overrides.json"
    if not overrides.exists():
        pytest.fail(f"{overrides} is missing: run tools/setup.sh (make lab does) to install the project's lab settings")
    port, token = _free_port(), secrets.token_hex(16)
    home = tmp_path_factory.mktemp("home")  # a new profile, as a first-time reader has
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--notebook-dir={REPO_ROOT}", "--allow-root"],
        env={"HOME": str(home), "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    pytest.fail(f"JupyterLab did not start: {proc.stderr.read()[-2000:]}")
                time.sleep(0.3)
        yield base, token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _defaults(server, plugin: str) -> dict:
    """The plugin's default values as the server serves them (with the project's overrides applied)."""
    base, token = server
    with urllib.request.urlopen(f"{base}/lab/api/settings/{plugin}?token={token}", timeout=10) as r:
        body = json.load(r)
    return {name: prop.get("default") for name, prop in body["schema"]["properties"].items()}


def test_markdown_chapters_open_as_notebooks(server):
    viewers = _defaults(server, "@jupyterlab/docmanager-extension:plugin")["defaultViewers"]
    assert viewers.get("markdown") == "Jupytext Notebook"


def test_no_question_about_news(server):
    notification = _defaults(server, "@jupyterlab/apputils-extension:notification")
    assert notification["fetchNews"] == "false"
