"""The VMM's live tests against kvm_amd: a QEMU TCG guest with emulated AMD-V (lab.qemu.hwvirt).

``make test-hwvirt`` runs this file beside tests/test_bochs.py (kvm_intel), and ``make test-all`` runs
both among the suites marked ``full``. It needs the ``hwvirt-amd`` guest kit:
``python -m lab kit build --profile hwvirt-amd``.
"""

from __future__ import annotations

import time

import pytest
from hwvirt_checks import MUST_RUN, check_run, find_kit

from lab.paths import REPO_ROOT
from lab.qemu import hwvirt


@pytest.mark.full
def test_the_kvm_live_tests_pass_on_kvm_amd(request):
    check_run(request, hwvirt, hwvirt.run(find_kit(request, hwvirt.PROFILE)))


@pytest.mark.full
def test_a_guest_past_its_deadline_is_a_failure_with_its_console(request):
    t0 = time.monotonic()
    with pytest.raises(hwvirt.HwvirtFailed, match="did not finish within 4 s") as info:
        hwvirt.run(find_kit(request, hwvirt.PROFILE), ("tests/test_kvm_vmm.py",), deadline_s=4)
    assert time.monotonic() - t0 < 20
    assert "console ends with" in str(info.value)


def test_the_pinned_node_ids_name_real_tests():
    """MUST_RUN and the hypercall tests are derived: each names a test function of a guest test file."""
    assert hwvirt.hypercall_tests(), "no guest test carries @pytest.mark.hypercall"
    for name in MUST_RUN:
        file, function = name.split("::")
        assert file in hwvirt.GUEST_TESTS and f"def {function}(" in (REPO_ROOT / file).read_text(), name


def test_marked_tests_are_read_from_the_source(tmp_path, monkeypatch):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests/test_x.py").write_text(
        "import pytest\n\n@pytest.mark.hypercall\ndef test_a():\n    pass\n\n"
        "@pytest.mark.parametrize('m', [1])\n@pytest.mark.hypercall\ndef test_b(m):\n    pass\n\n"
        "def test_c():\n    pass\n")
    monkeypatch.setattr(hwvirt, "REPO_ROOT", tmp_path)
    assert hwvirt.marked_tests("hypercall", ("tests/test_x.py",)) == {"tests/test_x.py::test_a",
                                                                       "tests/test_x.py::test_b"}


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
