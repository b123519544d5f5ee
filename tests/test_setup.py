"""Set-up checks the declared programs: missing ones are named with their package.

Runs tools/programs.sh and tools/setup.sh for real, with a declared list that
names a program no machine has (LAB_PROGRAMS_LIST), as root and as a reader
without root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from lab.paths import REPO_ROOT

TOOLS = REPO_ROOT / "tools"
GHOST = "lab-no-such-program"


@pytest.fixture
def shared_dir():
    """A folder every user can read (pytest's own tmp_path is root's, mode 700)."""
    folder = Path(tempfile.mkdtemp(prefix="lab-programs-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def _list(folder: Path, purpose: str) -> str:
    """A copy of the declared list plus one program nobody has."""
    path = folder / "programs.tsv"
    path.write_text((TOOLS / "programs.tsv").read_text(encoding="utf-8")
                    + f"{GHOST}\tlab-ghost-package\t{purpose}\ta program nobody has\n", encoding="utf-8")
    path.chmod(0o644)
    return str(path)


def test_check_names_the_missing_program_and_its_package(tmp_path):
    env = {**os.environ, "LAB_PROGRAMS_LIST": _list(tmp_path, "test")}
    out = subprocess.run([str(TOOLS / "programs.sh"), "check", "test"], env=env, capture_output=True, text=True)
    assert out.returncode == 1
    want = f"missing test program: {GHOST} (Debian package lab-ghost-package: apt-get install lab-ghost-package)"
    assert want in out.stdout
    ok = subprocess.run([str(TOOLS / "programs.sh"), "check", "base", "book", "live", "test"],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout   # this machine ran set-up: everything declared is here


def test_an_unreadable_list_is_an_error_not_a_pass(tmp_path):
    env = {**os.environ, "LAB_PROGRAMS_LIST": str(tmp_path / "missing.tsv")}
    out = subprocess.run([str(TOOLS / "programs.sh"), "check", "book"], env=env, capture_output=True, text=True)
    assert out.returncode == 2 and "cannot read" in out.stderr


def test_packages_of_a_purpose(tmp_path):
    out = subprocess.run([str(TOOLS / "programs.sh"), "packages", "test"], capture_output=True, text=True, check=True)
    assert {"libxml2-utils", "chromium", "binutils"} <= set(out.stdout.split())
    assert "libvirt-clients" not in out.stdout.split()   # a live package


def _as_reader(folder: Path, purpose: str) -> subprocess.CompletedProcess[str]:
    runuser = shutil.which("runuser", path="/usr/sbin:/sbin:/usr/bin")
    if os.geteuid() != 0 or runuser is None:
        pytest.fail("needs root and runuser to act as a reader without root")
    # The checkout may sit in a folder only root can enter (a fresh clone in a mktemp folder):
    # the reader runs a copy of the two scripts from the shared folder.
    tools = folder / "tools"
    tools.mkdir()
    for script in ("setup.sh", "programs.sh"):
        shutil.copy2(TOOLS / script, tools / script)
    tools.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "LAB_PROGRAMS_LIST": _list(folder, purpose), "HOME": str(folder)}
    return subprocess.run([runuser, "-u", "nobody", "--", str(tools / "setup.sh"), "system"],
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.root
def test_without_root_a_missing_live_program_is_a_warning(shared_dir):
    out = _as_reader(shared_dir, "live")
    assert out.returncode == 0, out.stderr
    assert GHOST in out.stderr and "sudo apt-get install -y lab-ghost-package" in out.stderr
    assert "the book builds" in out.stderr


@pytest.mark.root
def test_without_root_a_missing_book_program_stops_set_up(shared_dir):
    out = _as_reader(shared_dir, "book")
    assert out.returncode == 1
    assert "sudo apt-get install -y lab-ghost-package" in out.stderr
