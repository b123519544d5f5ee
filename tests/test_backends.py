"""What differs between KVM's back ends (lab.backends.TABLE), observed on the back end at hand.

On the machines here that is PVM (make test); make test-hwvirt runs this file again inside a
QEMU TCG guest on kvm_amd (lab.qemu.hwvirt). Each test names the back end in its message.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab import backends, host, kvm
from lab.bench import exits
from lab.paths import REPO_ROOT

pytestmark = pytest.mark.kvm


@pytest.fixture(scope="module")
def backend() -> backends.Backend:
    name = host.probe_kvm().backend
    if name not in backends.TABLE:
        pytest.fail(f"the probe names no known KVM back end (modules: {host.probe_kvm().modules}); "
                    f"lab.backends.TABLE knows {', '.join(backends.TABLE)}")
    return backends.TABLE[name]


def test_supported_cpuid_offers_the_nested_flag_of_the_table(backend):
    with kvm.open() as system:
        flags = backends.cpuid_flags(system)
        assert backends.nested_flag(system) == backend.nested_flag, (backend.name, sorted(flags))


@pytest.mark.hypercall
def test_the_hypercall_completes_where_the_table_says(backend):
    vendor = exits.cpu_vendor()
    ok, reason, _ = exits.probe_hypercall("protected32", vendor, timeout_s=1.0)
    assert ok == backend.hypercall_completes, (backend.name, vendor, reason)


@pytest.mark.parametrize("mode", ["protected32", "long64"])
def test_an_unknown_hypercall_returns_minus_enosys(backend, mode):
    if not backend.hypercall_completes:
        pytest.skip(f"on {backend.name} a hypercall never returns (the test above checks it)")
    with kvm.open() as system:
        got = backends.hypercall(system, backend.native_hypercall, mode)
    assert (got.exit, got.rax) == ("hlt", backends.enosys_rax(mode)), (backend.name, mode, hex(got.rax))
    assert got.code_after == backends.INSTRUCTIONS[backend.native_hypercall]


def test_the_other_vendors_hypercall_is_patched_into_the_native_one(backend):
    if not backend.hypercall_completes:
        pytest.skip(f"on {backend.name} a hypercall never returns")
    foreign = next(i for i in backends.INSTRUCTIONS if i != backend.native_hypercall)
    with kvm.open() as system:
        got = backends.hypercall(system, foreign)
    assert (got.exit, got.rax) == ("hlt", backends.enosys_rax("protected32")), (backend.name, got)
    rewritten = got.code_after == backends.INSTRUCTIONS[backend.native_hypercall]
    assert ("rewritten" if rewritten else "kept") == backend.foreign_hypercall, (backend.name, got.code_after.hex())


def test_which_exits_reach_the_vmm_process(backend):
    with kvm.open() as system:
        assert backends.userspace_exits(system) == backend.userspace_exits, backend.name


def test_the_probe_names_the_loaded_back_end(backend):
    out = subprocess.run([sys.executable, "-m", "lab", "probe", "--json"], capture_output=True, text=True,
                         cwd=REPO_ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["kvm"]["backend"] == backend.name
    assert Path("/sys/module", backend.name).is_dir()


def test_enosys_is_truncated_outside_64_bit_mode():
    assert backends.enosys_rax("long64") == 0xFFFF_FFFF_FFFF_FC18
    assert backends.enosys_rax("protected32") == 0xFFFF_FC18


def test_the_table_is_complete():
    """Every back end the probe knows has a row, and rows say where they are tested."""
    assert set(backends.TABLE) == set(host.KVM_BACKENDS)
    for row in backends.TABLE.values():
        assert row.tested_here
        assert row.hypercall_completes == (row.unknown_hypercall_rax is not None)
