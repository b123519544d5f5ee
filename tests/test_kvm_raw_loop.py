"""The KVM chapter's one raw loop (fcntl, mmap, struct; no lab.kvm) runs the hello guest and closes what it opens."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lab import guests
from lab.paths import REPO_ROOT

CHAPTER = REPO_ROOT / "chapters" / "kvm" / "kvm.md"


def raw_cell() -> str:
    """The chapter's %%kvm cell that calls KVM_RUN through fcntl itself (its body below the magic line)."""
    jupytext = pytest.importorskip("jupytext")
    cells = [c.source for c in jupytext.read(CHAPTER).cells if c.cell_type == "code"]
    raw = [c for c in cells if c.startswith("%%kvm") and "fcntl.ioctl(vcpu_fd, nr.KVM_RUN" in c]
    assert len(raw) == 1, f"the chapter shows the raw KVM_RUN loop once, found {len(raw)}"
    return raw[0].split("\n", 1)[1]


def test_the_raw_loop_uses_only_the_standard_library_and_the_ioctl_numbers():
    body = raw_cell()
    assert "lab.kvm import ioctl_numbers" in body and "KVM_RUN" in body
    assert "kvm.open(" not in body and "create_vcpu(" not in body  # not the book's VMM


@pytest.mark.kvm
def test_the_raw_loop_prints_what_the_guest_writes_and_leaves_no_fd():
    program = (
        "import os\n"
        "from lab import guests\n"
        "before = len(os.listdir('/proc/self/fd'))\n"
        f"exec(compile({raw_cell()!r}, 'raw-cell', 'exec'))\n"
        "print('fds', before, len(os.listdir('/proc/self/fd')))\n"
    )
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60,
                         cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    written = [line for line in lines if line.startswith("KVM_EXIT_IO")]
    assert len(written) == sum(1 for *_, text, _c in guests.HELLO.listing if text.startswith("out"))
    assert all(f"port={guests.SERIAL_PORT:#x}" in line for line in written)
    assert lines[-2] == "KVM_EXIT_HLT"
    _, before, after = lines[-1].split()
    assert before == after, "the raw loop left a file descriptor open"
