"""The VMM's live tests against kvm_intel: a Bochs guest with emulated VT-x (lab.qemu.bochs).

Its own file so that pytest-xdist runs it on one core beside tests/test_hwvirt.py (kvm_amd in
QEMU TCG) on the other: ``make test-hwvirt`` runs both, ``make test-all`` too (marked ``full``).
It needs Bochs (``tools/setup.sh system`` as root; the live suite ``bochs``, which CI requires)
and the ``hwvirt-intel`` guest kit: ``python -m lab kit build --profile hwvirt-intel``.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest
from hwvirt_checks import check_run, find_kit

from lab import backends
from lab.qemu import bochs, hwvirt


def _new(before: tuple[set[str], set[str]]) -> tuple[set[str], set[str]]:
    """Temporary folders and Bochs children that were not there ``before`` (other runs may end meanwhile)."""
    after = _leftovers()
    return after[0] - before[0], after[1] - before[1]


def _leftovers() -> tuple[set[str], set[str]]:
    """Bochs runs' temporary folders, and this process's Bochs children."""
    folders = {p.name for p in Path(tempfile.gettempdir()).glob("labbochs-*")}
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, rest = stat.read_text().split(" ", 1)
        except OSError:
            continue
        comm, fields = rest.rsplit(") ", 1)
        if int(fields.split()[1]) == os.getpid() and comm.lstrip("(") == bochs.BOCHS:
            children.add(pid)
    return folders, children


@pytest.mark.full
@pytest.mark.bochs
def test_the_kvm_live_tests_pass_on_kvm_intel(request):
    before = _leftovers()
    check_run(request, bochs, bochs.run(find_kit(request, bochs.PROFILE)))
    assert _new(before) == (set(), set())


@pytest.mark.full
@pytest.mark.bochs
def test_a_guest_past_its_deadline_is_killed_and_leaves_nothing(request):
    the_kit = find_kit(request, bochs.PROFILE)
    before = _leftovers()
    t0 = time.monotonic()
    with pytest.raises(hwvirt.HwvirtFailed, match="did not finish within 5 s and Bochs was killed") as info:
        bochs.run(the_kit, ("tests/test_kvm_vmm.py",), deadline_s=5)
    assert time.monotonic() - t0 < 60
    assert "console ends with" in str(info.value)
    assert _new(before) == (set(), set())


def test_the_bochs_back_end_is_the_tables_kvm_intel():
    assert bochs.BACKEND == "kvm_intel" and backends.TABLE["kvm_intel"].emulator == bochs.EMULATOR
    assert backends.TABLE[bochs.BACKEND].native_hypercall == "vmcall"
    assert hwvirt.BACKEND == "kvm_amd"


def test_the_config_boots_the_cd_with_two_serial_files(tmp_path):
    text = bochs.bochsrc(tmp_path / "cd.iso", tmp_path / "c.log", tmp_path / "r.txt", tmp_path / "b.log")
    assert f"cpu: model={bochs.CPU_MODEL}, count=1, ips=100000000, ignore_bad_msrs=1" in text
    assert f'ata0-master: type=cdrom, path="{tmp_path / "cd.iso"}"' in text and "boot: cdrom" in text
    assert f'com1: enabled=1, mode=file, dev="{tmp_path / "c.log"}"' in text
    assert f'com2: enabled=1, mode=file, dev="{tmp_path / "r.txt"}"' in text
    assert "panic: action=fatal" in text and "display_library: term" in text


def test_a_missing_program_is_named_with_the_command_that_installs_it(monkeypatch):
    monkeypatch.setattr(bochs, "PROGRAMS", {"bochs-bin-not-installed": "bochs"})
    reason = bochs.missing()
    assert reason.startswith("did not run, because") and "bochs-bin-not-installed (bochs)" in reason
    assert "tools/setup.sh system" in reason and "apt-get install" in reason
    with pytest.raises(hwvirt.HwvirtFailed, match="did not run, because"):
        bochs.run(None)


def test_results_count_as_complete_only_with_pytests_status(tmp_path):
    results = tmp_path / "results.txt"
    for text, complete in ((f"{hwvirt.BEGIN}\n<a/>\n", False), (f"{hwvirt.BEGIN}\n<a/>\n{hwvirt.END}", False),
                           (f"{hwvirt.BEGIN}\n<a/>\n{hwvirt.END} rc=1", False),
                           (f"{hwvirt.BEGIN}\n<a/>\n{hwvirt.END} rc=1\r\n", True)):
        results.write_text(text)
        assert bochs._results_complete(results) == complete, text
