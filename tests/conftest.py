"""Shared pytest set-up: live suites that need real components.

Tests marked ``kvm`` need a usable ``/dev/kvm``; tests marked ``libvirtd``
need a libvirt daemon with QEMU at ``qemu:///system``; tests marked ``root``
need root, to create the non-root reader they run as; tests marked ``kit``
need the guest kit that boots a real Linux under QEMU; tests marked ``bochs``
need Bochs (kvm_intel under emulated VT-x, tests/test_bochs.py). When one is missing the
test is skipped with the reason, and the terminal summary says, one line per
live suite, whether it ran, and if not why and the command that enables it.
``LAB_REQUIRE_LIVE=kvm,libvirtd`` (set by ``.ci/run`` on a host that has them)
turns such a skip into a failure, so a component that went missing cannot
hide behind a skip. The counts work under pytest-xdist too: each test that ran
in a live suite carries the suite's name in its report.
"""

from __future__ import annotations

import functools
import os

import pytest

from lab import host

pytest.register_assert_rewrite("hwvirt_checks")

LIVE_SUITES = ("kvm", "libvirtd", "root", "kit", "bochs")
#: What a reader runs to make each live suite run.
ENABLE = {
    "kvm": "give this user read-write access to /dev/kvm (sudo usermod -aG kvm $USER, then log in again) "
           "or run as root",
    "libvirtd": "install the live packages and start the daemons: sudo tools/libvirt-daemons.sh start "
                "(make test does both when run as root)",
    "root": "run the tests as root: sudo make test",
    "kit": "build the guest kit once: python -m lab kit build (make test-all does it as root)",
    "bochs": "install Bochs as root: tools/setup.sh system (make test-hwvirt then builds the hwvirt-intel kit)",
}
_ran: dict[str, int] = {name: 0 for name in LIVE_SUITES}
#: Lines a test asked to show in the summary (user property "summary_line"; works under pytest-xdist).
_lines: list[str] = []


def _required() -> set[str]:
    return {s.strip() for s in os.environ.get("LAB_REQUIRE_LIVE", "").split(",") if s.strip()}


@functools.cache
def live_reason(name: str) -> str | None:
    """None when the live suite ``name`` can run here, else why not."""
    if name == "kvm":
        info = host.probe_kvm()
        return None if info.usable else info.reason
    if name == "libvirtd":
        info = host.probe_libvirt(("qemu:///system",))
        if not info.python_module:
            return info.reason
        uri = info.uris[0]
        return None if uri.ok else uri.reason
    if name == "kit":
        from lab import kit

        try:
            kit.find("disk-trap")
        except kit.KitMissing as exc:
            return str(exc)
        return None
    if name == "bochs":
        from lab.qemu import bochs

        return bochs.missing()
    if name == "root":
        return None if os.geteuid() == 0 else f"runs as uid {os.geteuid()}, not root: cannot create the non-root reader"
    raise ValueError(f"unknown live suite {name!r}")


@pytest.fixture(scope="session")
def synthetic_roots(tmp_path_factory):
    """Folders laid out like data/measured, of synthetic hosts (tests/synthetic.py): ``forward`` (one host),
    ``reversed`` (one host, every ordering the other way), ``both`` (the two, the reversed one newer) and
    ``vtx`` (the forward numbers recorded on ``kvm_intel``: what only the back end changes)."""
    import synthetic

    base = tmp_path_factory.mktemp("synthetic")
    synthetic.make_host(base / "forward", synthetic.FORWARD_ID, synthetic.FORWARD)
    synthetic.make_host(base / "reversed", synthetic.REVERSED_ID, synthetic.REVERSED)
    synthetic.two_hosts(base / "both")
    synthetic.make_host(base / "vtx", synthetic.OTHER_ID, synthetic.FORWARD, backend="kvm_intel")
    return {name: str(base / name) for name in ("forward", "reversed", "both", "vtx")}


@pytest.fixture(autouse=True)
def _no_recorded_host_named(monkeypatch):
    """A test chooses its data itself: LAB_RECORDED_HOST and LAB_MEASURED_DIR of the caller do not leak in."""
    monkeypatch.delenv("LAB_RECORDED_HOST", raising=False)
    monkeypatch.delenv("LAB_MEASURED_DIR", raising=False)


def glued_values(nb) -> dict[str, str]:
    """What an executed chapter glued (myst_nb ``glue``), name -> its markdown or plain text."""
    glued = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            key = out.get("metadata", {}).get("scrapbook", {}).get("name")
            if key:
                data = out.get("data", {})
                glued[key] = str(data.get("application/papermill.record/text/markdown")
                                 or data.get("application/papermill.record/text/plain", ""))
    return glued


def execute_chapter(path: str | os.PathLike[str], timeout: int = 180, check: bool = True):
    """Execute a chapter (a MyST text notebook under the repository) in a fresh kernel, as the book build does.

    Returns the executed notebook. With ``check`` (the default) an error or
    anything written to stderr fails the test, as it fails the book build.
    """
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    from lab.paths import REPO_ROOT

    source = REPO_ROOT / path
    nb = jupytext.read(source)
    nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(source.parent)}}).execute()
    if check:
        bad = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
               if o.get("name") == "stderr" or o.get("output_type") == "error"]
        assert not bad, bad
    return nb


def chapter_outputs(nb, *mimes: str) -> str:
    """The code cells' outputs, one line each: the first of ``mimes`` an output has."""
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    return "\n".join(str(next((o.get("data", {})[m] for m in mimes if m in o.get("data", {})), ""))
                     for o in outputs)


def say(request, line: str) -> None:
    """Print a line to the terminal even while pytest captures output."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capman = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capman is None:
        return
    with capman.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line(line)


def pytest_runtest_setup(item: pytest.Item) -> None:
    for name in LIVE_SUITES:
        if item.get_closest_marker(name) is None:
            continue
        reason = live_reason(name)
        if reason is None:
            item.user_properties.append(("live_suite", name))
        elif name in _required():
            pytest.fail(f"live suite '{name}' is required (LAB_REQUIRE_LIVE) but cannot run: {reason}")
        else:
            pytest.skip(f"live suite '{name}' cannot run here: {reason}")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # Runs in the main process for every test, also those a pytest-xdist worker ran.
    if report.when == "call":
        for key, value in report.user_properties:
            if key == "live_suite":
                _ran[value] += 1
            elif key == "summary_line":
                _lines.append(value)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    terminalreporter.section("live suites")
    for line in _lines:
        terminalreporter.write_line(line)
    for name in LIVE_SUITES:
        if _ran[name]:
            terminalreporter.write_line(f"{name}: ran ({_ran[name]} tests)")
            continue
        reason = live_reason(name)
        if reason is None:
            terminalreporter.write_line(f"{name}: did not run: no test of this suite was selected")
        else:
            terminalreporter.write_line(f"{name}: skipped: {reason}; to run it: {ENABLE[name]}")
