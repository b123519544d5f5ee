"""Run the VMM's live tests against ``kvm_amd``: a Linux guest on AMD-V as QEMU's TCG emulates it.

The machines here offer ``/dev/kvm`` from PVM only. QEMU's software
emulation (``-accel tcg -cpu max``) emulates AMD-V (SVM) with nested paging,
so a Debian kernel booted there can load ``kvm_amd`` and offer a
``/dev/kvm`` backed by (emulated) hardware virtualization. Inside that
guest, pytest runs the project's own KVM live tests.

One run:

1. the ``hwvirt-amd`` guest kit (:mod:`lab.kit`: kernel, ``kvm_amd`` and its
   modules, Python 3.11 from Debian with precompiled ``.pyc``) is found in
   its cache (:func:`lab.kit.find`; never built here);
2. a *payload* is packed fresh from this checkout: ``lab`` (without the book
   layer), the test files, pytest and its pure-Python dependencies, all
   byte-compiled, and ``/payload/run``; it is a second gzip'd cpio archive
   appended to the kit's initramfs (the kernel unpacks both, in order;
   :func:`initrd_with_payload`, which :mod:`lab.qemu.bochs` uses too);
3. ``qemu-system-x86_64`` boots it with no network and no display, always
   under a deadline (``subprocess.run(timeout=...)`` kills QEMU when it passes);
   the guest's console goes to one file, pytest's JUnit XML comes back on
   the second serial port (``/dev/ttyS1``) to another;
4. the XML becomes :class:`Case` rows (name, outcome, message). A guest that
   does not finish within the deadline, or sends no results, is a
   :class:`HwvirtFailed` carrying the tail of its console.

pandas is not in the guest (about 150 MB with numpy): ``lab.bench`` and
``lab.datapackage`` import it only where a table is built or read, so the
measurements run on the standard library, and a test that records a table
is not run there (``GUEST_DESELECT``).
Timings from this guest mean nothing for hardware (every instruction is
emulated), so nothing here records them; the one test with a latency limit
(Ctrl-C within 100 ms) gets 1 s there (``LAB_SIGINT_LIMIT_S``), and child processes get 4 times longer
(``LAB_TIMEOUT_SCALE``).
"""

from __future__ import annotations

import ast
import compileall
import importlib.util
import py_compile
import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from lab import backends
from lab.kit import Kit, cpio
from lab.paths import REPO_ROOT

EMULATOR = "qemu-tcg"
#: The back end this guest offers (``kvm_amd``), as :data:`lab.backends.TABLE` says.
BACKEND = backends.emulated_by(EMULATOR).name
PROFILE = "hwvirt-amd"
QEMU = "qemu-system-x86_64"
#: 40-55 s on an idle 2-core machine; over 150 s beside the Bochs run (make test-hwvirt) and other jobs.
DEFAULT_DEADLINE_S = 600.0
MEMORY_MIB = 768
#: Test files run in the guest, against kvm_amd (only their tests marked ``kvm``).
GUEST_TESTS = ("tests/test_kvm_vmm.py", "tests/test_kvm_interrupt.py", "tests/test_devices_live.py",
               "tests/test_bench_exits.py", "tests/test_host.py", "tests/test_backends.py")
#: Tests that write recorded tables (pandas, not in the guest): not run there.
GUEST_DESELECT = ("tests/test_bench_exits.py::test_record_to_a_temporary_root",)
#: Pure-Python packages pytest needs, copied from this interpreter's site-packages.
PYTEST_PACKAGES = ("pytest", "_pytest", "pluggy", "iniconfig", "packaging", "pygments", "py")
BEGIN, END = "@lab-junit-begin", "@lab-junit-end"

RUN_SCRIPT = """#!/bin/sh
export PATH=/bin:/usr/bin PYTHONPATH=/payload/site:/payload/repo PYTHONDONTWRITEBYTECODE=1 LAB_REQUIRE_LIVE=kvm
export LAB_SIGINT_LIMIT_S=1.0  # every instruction is emulated: "at once" is slower than on hardware
export LAB_TIMEOUT_SCALE=4  # and a test's child processes may take that much longer
cd /payload/repo
stty -F /dev/ttyS1 raw -echo 2>/dev/null
echo "lab-payload: $(python3.11 -c 'import sys; print(sys.version.split()[0])'), running pytest"
python3.11 -m pytest -q -rfE --color=no -m kvm {deselect} --junitxml=/tmp/junit.xml {args} {tests}
rc=$?
{{ echo "{begin}"; cat /tmp/junit.xml; echo; echo "{end} rc=$rc"; }} > /dev/ttyS1
"""

PYTEST_INI = """[pytest]
addopts = -p no:cacheprovider
markers =
    kvm: needs a usable /dev/kvm
    libvirtd: needs libvirtd
    root: needs root
    kit: needs the guest kit
    bochs: needs Bochs
    hypercall: its passing shows a hypercall completing in the kernel
    book: builds or reads the built book
    full: too long for make test
"""


#: The mark of the guest tests whose passing shows a hypercall completing in the kernel.
HYPERCALL_MARK = "hypercall"


def marked_tests(mark: str, files: tuple[str, ...] = GUEST_TESTS) -> frozenset[str]:
    """Node ids (``file::function``) of the test functions in ``files`` marked ``@pytest.mark.<mark>``.

    Read from the tests' source, so nothing else types their names: a renamed test keeps its mark.
    """
    found = set()
    for name in files:
        tree = ast.parse((REPO_ROOT / name).read_text(encoding="utf-8"), name)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                marks = {ast.unparse(d.func if isinstance(d, ast.Call) else d) for d in node.decorator_list}
                if f"pytest.mark.{mark}" in marks:
                    found.add(f"{name}::{node.name}")
    return frozenset(found)


def hypercall_tests() -> frozenset[str]:
    """The guest tests whose passing shows the hypercall completing (the book says so per back end)."""
    return marked_tests(HYPERCALL_MARK)


class HwvirtFailed(RuntimeError):
    """The guest did not bring back results; the message says why and ends with its console's tail."""


@dataclass(frozen=True)
class Case:
    """One test that ran in the guest."""

    name: str  # file::test as pytest names it
    outcome: str  # passed, failed, error, skipped
    message: str = ""


@dataclass(frozen=True)
class HwvirtRun:
    cases: tuple[Case, ...]
    pytest_status: int
    seconds: float
    backend: str  # the kvm module the guest's /init found loaded
    console: str

    @property
    def failed(self) -> list[Case]:
        return [c for c in self.cases if c.outcome in ("failed", "error")]

    def count(self, outcome: str) -> int:
        return sum(c.outcome == outcome for c in self.cases)

    def summary(self) -> str:
        return (f"{len(self.cases)} tests ran in the guest against {self.backend} in {self.seconds:.0f} s: "
                f"{self.count('passed')} passed, {len(self.failed)} failed, {self.count('skipped')} skipped")


# --------------------------------------------------------------------------- the payload


def _copy_tree(src: Path, dst: Path) -> None:
    if src.is_file():
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        return
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "book"))


def _site_package(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise HwvirtFailed(f"{name} is not installed in this Python: run 'make setup' (the guest runs pytest)")
    origin = Path(spec.origin)
    return origin.parent if origin.name == "__init__.py" else origin


def payload_tree(folder: Path, tests: tuple[str, ...], pytest_args: str = "") -> Path:
    """Lay out ``/payload`` under ``folder``: the repository's mechanism, the tests, pytest, ``run``."""
    root = folder / "payload"
    repo, site = root / "repo", root / "site"
    _copy_tree(REPO_ROOT / "lab", repo / "lab")
    for name in (*tests, "tests/conftest.py"):
        _copy_tree(REPO_ROOT / name, repo / name)
    (repo / "pytest.ini").write_text(PYTEST_INI, encoding="utf-8")
    for name in PYTEST_PACKAGES:
        src = _site_package(name)
        _copy_tree(src, site / src.name)
    deselect = " ".join(f"--deselect {t}" for t in GUEST_DESELECT)
    script = RUN_SCRIPT.format(args=pytest_args, tests=" ".join(tests), deselect=deselect, begin=BEGIN, end=END)
    (root / "run").write_text(script, encoding="utf-8")
    (root / "run").chmod(0o755)
    compileall.compile_dir(root, ddir="/payload", quiet=2, workers=0,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    return root


def pack_payload(root: Path) -> bytes:
    """``root`` (a folder named ``payload``) as a gzip'd newc archive rooted at ``/``."""
    entries = [cpio.directory("payload")]
    for path in sorted(root.rglob("*")):
        name = "payload/" + str(path.relative_to(root))
        if path.is_dir():
            entries.append(cpio.directory(name))
        else:
            entries.append(cpio.file(name, path.read_bytes(), executable=path.stat().st_mode & 0o111 != 0))
    return cpio.pack_gzip(entries)


# --------------------------------------------------------------------------- booting


def first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.splitlines()[0].strip() if out.strip() else "unknown"


def emulator() -> str:
    """QEMU's version and the CPU options: the AMD-V ``kvm_amd`` ran on is QEMU TCG's emulation."""
    version = first_line([QEMU, "--version"]).replace("QEMU emulator version ", "QEMU ")
    return f"{version}, -accel tcg -cpu max"


def qemu_argv(kit: Kit, initrd: Path, console: Path, results: Path) -> list[str]:
    """The QEMU command line: TCG with every feature it emulates (SVM + NPT), no network, no display."""
    return [QEMU, "-accel", "tcg", "-cpu", "max", "-m", str(MEMORY_MIB), "-smp", "1",
            "-nodefaults", "-display", "none", "-nic", "none", "-no-reboot", "-monitor", "none",
            "-kernel", str(kit.kernel), "-initrd", str(initrd), "-append", kit.cmdline,
            "-serial", f"file:{console}", "-serial", f"file:{results}"]


def console_tail(text: str, lines: int = 25) -> str:
    text = "".join(ch for ch in text if ch == "\n" or ch.isprintable())
    return "\n".join(text.strip().splitlines()[-lines:]) or "(no console output)"


def parse_results(text: str, console: str) -> tuple[list[Case], int]:
    """The JUnit XML between the markers on the result port; :class:`HwvirtFailed` without it."""
    text = text.replace("\r", "")
    if BEGIN not in text or END not in text:
        raise HwvirtFailed("the guest sent no test results (did pytest start?); its console ends with:\n"
                           + console_tail(console))
    body = text.split(BEGIN, 1)[1].split(END, 1)[0]
    status = int(text.split(END, 1)[1].split("rc=", 1)[1].split()[0])
    try:
        tree = ET.fromstring(body.strip())
    except ET.ParseError as exc:
        raise HwvirtFailed(f"the guest's JUnit XML is unreadable ({exc}); pytest exit status {status}; "
                           f"its console ends with:\n{console_tail(console)}") from None
    cases = []
    for tc in tree.iter("testcase"):
        module = tc.get("classname", "").replace(".", "/")
        name = f"{module}.py::{tc.get('name')}"
        outcome, message = "passed", ""
        for kind in ("failure", "error", "skipped"):
            el = tc.find(kind)
            if el is not None:
                outcome = {"failure": "failed"}.get(kind, kind)
                message = (el.get("message") or "").strip()
                break
        cases.append(Case(name, outcome, message))
    return cases, status


def _backend(console: str) -> str:
    for line in console.splitlines():
        if "kvm back end:" in line:
            return line.split("kvm back end:", 1)[1].strip()
    return "unknown"


def initrd_with_payload(kit: Kit, folder: Path, tests: tuple[str, ...], pytest_args: str = "") -> Path:
    """``folder/initrd.img``: the kit's initramfs with a payload packed fresh from this checkout appended."""
    initrd = folder / "initrd.img"
    payload = pack_payload(payload_tree(folder, tests, pytest_args))
    with open(initrd, "wb") as f:
        f.write(kit.initrd.read_bytes())
        f.write(b"\0" * (-f.tell() % 512))  # the kernel skips NUL padding between archives
        f.write(payload)
    return initrd


def read_file(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def collect(console: Path, results: Path, seconds: float) -> HwvirtRun:
    """What a finished guest left in its two serial files; :class:`HwvirtFailed` when no results came back."""
    text = read_file(console)
    cases, status = parse_results(read_file(results), text)
    return HwvirtRun(tuple(cases), status, seconds, _backend(text), text)


def run(kit: Kit, tests: tuple[str, ...] = GUEST_TESTS, *, deadline_s: float = DEFAULT_DEADLINE_S,
        pytest_args: str = "") -> HwvirtRun:
    """Boot ``kit`` with a fresh payload, run ``tests`` in the guest, return what ran there."""
    if shutil.which(QEMU) is None:
        raise HwvirtFailed(f"{QEMU} is not installed: install Debian's qemu-system-x86 (tools/setup.sh system)")
    with tempfile.TemporaryDirectory(prefix="labhwvirt-") as tmp:
        folder = Path(tmp)
        console, results = folder / "console.log", folder / "results.txt"
        initrd = initrd_with_payload(kit, folder, tests, pytest_args)
        started = time.monotonic()
        try:
            subprocess.run(qemu_argv(kit, initrd, console, results), stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=deadline_s, check=False)
        except subprocess.TimeoutExpired:
            raise HwvirtFailed(f"the guest did not finish within {deadline_s:.0f} s and QEMU was killed; "
                               f"its console ends with:\n{console_tail(read_file(console))}") from None
        return collect(console, results, time.monotonic() - started)
