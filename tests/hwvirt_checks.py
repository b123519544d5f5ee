"""What tests/test_hwvirt.py (kvm_amd in QEMU TCG) and tests/test_bochs.py (kvm_intel in Bochs) check alike.

The node ids they require are derived from the test functions themselves (a renamed test is an
AttributeError here, not a silently missing name) and from the ``hypercall`` mark
(:func:`lab.qemu.hwvirt.hypercall_tests`).
"""

from __future__ import annotations

import os
from types import FunctionType, ModuleType

import pytest
import test_backends
import test_devices_live
import test_kvm_vmm
from conftest import say

from lab import backends, kit
from lab.qemu import hwvirt


def node_id(test: FunctionType) -> str:
    """``tests/<module>.py::<function>``, as pytest and the guest's JUnit XML name it."""
    return f"tests/{test.__module__}.py::{test.__name__}"


#: The tests that must have run on each back end for the run to count (the issue's list).
MUST_RUN = tuple(sorted(hwvirt.hypercall_tests() | {node_id(t) for t in (
    test_kvm_vmm.test_triple_fault_is_guest_shutdown,
    test_kvm_vmm.test_jump_to_unmapped_memory_is_a_clear_error,
    test_kvm_vmm.test_guest_that_never_exits_is_stopped_by_the_watchdog,
    test_kvm_vmm.test_error_paths_leave_nothing_behind,
    test_devices_live.test_nothing_is_left_behind,
    test_backends.test_the_probe_names_the_loaded_back_end,
)}))


def find_kit(request, profile: str) -> kit.Kit:
    """The guest kit of ``profile``; skipped (failed under LAB_REQUIRE_LIVE=kit) when it is not built."""
    try:
        found = kit.find(profile)
        request.node.user_properties.append(("live_suite", "kit"))
        return found
    except kit.KitMissing as exc:
        if "kit" in os.environ.get("LAB_REQUIRE_LIVE", ""):
            pytest.fail(f"the {profile} kit is required (LAB_REQUIRE_LIVE) but missing: {exc}")
        pytest.skip(f"did not run, because {exc}")


def check_run(request, runner: ModuleType, run: hwvirt.HwvirtRun) -> None:
    """The guest ran the live tests against the back end ``runner`` provides, all of MUST_RUN among them."""
    row = backends.TABLE[runner.BACKEND]
    label = f"{row.name} in {runner.EMULATOR}"
    say(request, f"==> {label}: {run.summary()}")
    request.node.user_properties.append(("summary_line", f"{label}: {run.summary()}"))
    for case in run.failed:
        say(request, f"    FAILED in the guest: {case.name}: {case.message.splitlines()[0] if case.message else ''}")
    assert run.backend == row.name, hwvirt.console_tail(run.console)
    names = {c.name for c in run.cases}
    assert set(MUST_RUN) <= names, sorted(set(MUST_RUN) - names)
    assert not run.failed and run.pytest_status == 0, "\n".join(f"{c.name}: {c.message}" for c in run.failed)
    assert run.count("passed") >= 70, run.summary()
