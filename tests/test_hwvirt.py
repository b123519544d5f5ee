"""The VMM's live tests against kvm_amd: a QEMU TCG guest with emulated AMD-V (lab.qemu.hwvirt).

``make test-hwvirt`` runs this file (and ``make test-all``, as part of the suites marked
``full``). It needs the ``hwvirt`` guest kit: ``python -m lab kit build --profile hwvirt``.
"""

from __future__ import annotations

import os
import time

import pytest
from conftest import say

from lab import kit
from lab.qemu import hwvirt

#: The tests that must have run on kvm_amd for the run to count (the issue's list).
MUST_RUN = (
    "tests/test_bench_exits.py::test_quick_run_measures_every_kind",  # every exit kind, the hypercall too
    "tests/test_kvm_vmm.py::test_triple_fault_is_guest_shutdown",
    "tests/test_kvm_vmm.py::test_jump_to_unmapped_memory_is_a_clear_error",
    "tests/test_kvm_vmm.py::test_guest_that_never_exits_is_stopped_by_the_watchdog",
    "tests/test_kvm_vmm.py::test_error_paths_leave_nothing_behind",
    "tests/test_devices_live.py::test_nothing_is_left_behind",
    "tests/test_backends.py::test_the_hypercall_completes_where_the_table_says",
)


def _kit(request) -> kit.Kit:
    try:
        found = kit.find(hwvirt.PROFILE)
        request.node.user_properties.append(("live_suite", "kit"))
        return found
    except kit.KitMissing as exc:
        if "kit" in os.environ.get("LAB_REQUIRE_LIVE", ""):
            pytest.fail(f"the hwvirt kit is required (LAB_REQUIRE_LIVE) but missing: {exc}")
        pytest.skip(str(exc))


@pytest.mark.full
def test_the_kvm_live_tests_pass_on_kvm_amd(request):
    run = hwvirt.run(_kit(request))
    say(request, f"==> hwvirt: {run.summary()}")
    request.node.user_properties.append(("summary_line", f"hwvirt (kvm_amd in QEMU TCG): {run.summary()}"))
    for case in run.failed:
        say(request, f"    FAILED in the guest: {case.name}: {case.message.splitlines()[0] if case.message else ''}")
    assert run.backend == "kvm_amd", hwvirt.console_tail(run.console)
    names = {c.name for c in run.cases}
    assert set(MUST_RUN) <= names, sorted(set(MUST_RUN) - names)
    assert not run.failed and run.pytest_status == 0, "\n".join(f"{c.name}: {c.message}" for c in run.failed)
    assert run.count("passed") >= 70, run.summary()


@pytest.mark.full
def test_a_guest_past_its_deadline_is_a_failure_with_its_console(request):
    t0 = time.monotonic()
    with pytest.raises(hwvirt.HwvirtFailed, match="did not finish within 4 s") as info:
        hwvirt.run(_kit(request), ("tests/test_kvm_vmm.py",), deadline_s=4)
    assert time.monotonic() - t0 < 20
    assert "console ends with" in str(info.value)


def test_results_are_read_from_junit_xml():
    xml = ('<testsuites><testsuite><testcase classname="tests.test_a" name="test_ok"/>'
           '<testcase classname="tests.test_a" name="test_bad"><failure message="boom">x</failure></testcase>'
           '<testcase classname="tests.test_b" name="test_skip"><skipped message="why"/></testcase>'
           '</testsuite></testsuites>')
    text = f"noise\r\n{hwvirt.BEGIN}\r\n{xml}\r\n{hwvirt.END} rc=1\r\n"
    cases, status = hwvirt.parse_results(text, "console")
    assert status == 1
    assert [(c.name, c.outcome, c.message) for c in cases] == [
        ("tests/test_a.py::test_ok", "passed", ""), ("tests/test_a.py::test_bad", "failed", "boom"),
        ("tests/test_b.py::test_skip", "skipped", "why")]


@pytest.mark.parametrize("text", ["", f"{hwvirt.BEGIN}\n<testsuites>", f"{hwvirt.BEGIN}\n<a>\n{hwvirt.END} rc=2"])
def test_missing_or_broken_results_fail_with_the_console_tail(text):
    with pytest.raises(hwvirt.HwvirtFailed, match="console ends with:\nboot\nlast line"):
        hwvirt.parse_results(text, "boot\nlast line")


def test_the_payload_holds_the_tests_pytest_and_the_runner(tmp_path):
    root = hwvirt.payload_tree(tmp_path, ("tests/test_backends.py",))
    assert (root / "run").stat().st_mode & 0o111
    assert "tests/test_backends.py" in (root / "run").read_text()
    for name in ("repo/lab/kvm/vcpu.py", "repo/tests/conftest.py", "site/pytest/__init__.py", "site/pluggy"):
        assert (root / name).exists(), name
    assert not (root / "repo/lab/book").exists()  # the book layer stays out: it needs pandas
    assert not (root / "site/pandas").exists()  # measuring needs no pandas, not even a stand-in
    assert list((root / "repo/lab/kvm/__pycache__").glob("vcpu.cpython-311.pyc"))
