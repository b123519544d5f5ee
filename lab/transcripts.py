"""Shell commands of the hands-on pages: run them for real, record them, load the recordings.

A hands-on page shows the commands a reader would type (``ls -l /dev/kvm``,
``virsh -c qemu:///system define ...``). Where the machine allows it, the page
runs each command for real with :func:`run` and shows its output. Where it
cannot (no ``/dev/kvm``, no libvirt daemon, not root: see :func:`unmet`), it
shows the output recorded by the same command on a real host, loaded with
:func:`recorded`.

Recordings live in ``data/measured/<host-id>/`` as the resource
``transcripts`` of that host's data package, with a provenance row like every
other measurement (:func:`record`). :func:`recorded` follows the book's data-set rule
(:mod:`lab.bench.dataset`): one host, its newest recording of the command.

This module holds machine values only; the book layer
(:mod:`lab.book.core.transcripts`) turns them into words.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

RESOURCE = "transcripts"
RECORD_ENV = "LAB_RECORD_TRANSCRIPTS"
DEFAULT_TIMEOUT_S = 60.0
SHELL = "/bin/bash"

# What a command may need; unmet() says which of them this machine lacks.
NEEDS = ("kvm", "libvirtd", "root")
SYSTEM_URI = "qemu:///system"

FIELDS: list[dict[str, Any]] = [
    {"name": "host_id", "type": "string", "constraints": {"required": True},
     "description": "host of the recording (see provenance.csv)"},
    {"name": "recorded_at", "type": "datetime", "constraints": {"required": True},
     "description": "recording time (UTC); with host_id, the key into provenance.csv"},
    {"name": "command", "type": "string", "constraints": {"required": True},
     "description": "the shell command as the page shows it (run by bash -c)"},
    {"name": "exit_code", "type": "integer", "constraints": {"required": True},
     "description": "exit status of the command (124 if it was stopped by the timeout)"},
    {"name": "stdout", "type": "string", "description": "everything the command wrote to stdout"},
    {"name": "stderr", "type": "string", "description": "everything the command wrote to stderr"},
    {"name": "duration_s", "type": "number", "constraints": {"required": True, "minimum": 0},
     "description": "wall time of the command in seconds"},
    {"name": "user", "type": "string", "constraints": {"required": True},
     "description": "user name the command ran as"},
]


class TranscriptError(RuntimeError):
    """A command could not be started at all, or a recording is missing or broken."""


@dataclass(frozen=True)
class Transcript:
    """One command and what it did."""

    command: str
    exit_code: int
    stdout: str
    stderr: str
    duration_s: float
    user: str
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True)
class Recording:
    """A transcript recorded on some host, with where and when."""

    transcript: Transcript
    host_id: str
    recorded_at: datetime
    cpu_model: str
    kernel: str
    kvm_backend: str
    runs_in_vm: bool


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (KeyError, ImportError):
        return str(os.geteuid())


def run(command: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, env: dict[str, str] | None = None) -> Transcript:
    """Run ``command`` with bash, for real; capture stdout, stderr and the exit code.

    The command runs in its own process group with stdin closed; when it
    outlives ``timeout_s`` the whole group is killed and the transcript says
    ``timed_out`` (exit code 124, as coreutils' ``timeout`` reports).
    """
    if not command.strip():
        raise TranscriptError("empty command: nothing to run")
    if not os.path.exists(SHELL):
        raise TranscriptError(f"{SHELL} is missing: install Debian's bash package")
    start = time.monotonic()
    proc = subprocess.Popen([SHELL, "-c", command], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, **(env or {})})
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout_s)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        code = 124
    except BaseException:  # e.g. KeyboardInterrupt: never leave the command running
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    return Transcript(command=command, exit_code=code, stdout=out, stderr=err,
                      duration_s=round(time.monotonic() - start, 3), user=_user(), timed_out=timed_out)


# --------------------------------------------------------------------------- what the machine lacks

def _kvm_usable() -> bool:
    from lab import host

    return bool(host.probe_kvm().usable)


def _system_libvirt_answers() -> bool:
    from lab import virt

    try:
        libvirt = virt.libvirt_module()
    except virt.LibvirtMissing:
        return False
    try:
        conn = libvirt.open(SYSTEM_URI)
    except libvirt.libvirtError:
        return False
    conn.close()
    return True


def _root() -> bool:
    return os.geteuid() == 0


CHECKS: dict[str, Callable[[], bool]] = {"kvm": _kvm_usable, "libvirtd": _system_libvirt_answers, "root": _root}


FORCE_ENV = "LAB_FORCE_RECORDED"


def unmet(needs: Iterable[str]) -> list[str]:
    """The items of ``needs`` (from :data:`NEEDS`) this machine does not offer, in order.

    With ``LAB_FORCE_RECORDED`` set (the Binder simulation), a command that needs
    anything is not run: the answer is ``["forced"]``.
    """
    needs = list(needs)
    missing = []
    for need in needs:
        if need not in CHECKS:
            raise ValueError(f"unknown need {need!r}: choose from {', '.join(NEEDS)}")
    if needs and os.environ.get(FORCE_ENV):
        return ["forced"]
    for need in needs:
        if not CHECKS[need]():
            missing.append(need)
    return missing


# --------------------------------------------------------------------------- recording and loading

def _frame(transcripts: list[Transcript], prov: dict[str, Any]) -> Any:
    import pandas as pd

    return pd.DataFrame([{
        "host_id": prov["host_id"], "recorded_at": prov["recorded_at"], "command": t.command,
        "exit_code": t.exit_code, "stdout": t.stdout, "stderr": t.stderr, "duration_s": t.duration_s,
        "user": t.user,
    } for t in transcripts])


def record(transcripts: Iterable[Transcript], *, root: str | Path | None = None, probe: Any = None) -> Path:
    """Add ``transcripts`` to this host's data package (older recordings stay; the newest wins on load)."""
    from lab.bench import harness

    items = list(transcripts)
    if not items:
        raise TranscriptError("no transcript to record")
    timed_out = [t.command for t in items if t.timed_out]
    if timed_out:
        raise TranscriptError(f"not recording commands stopped by the timeout: {timed_out}")
    prov = harness.provenance(probe, command=f"{RECORD_ENV}=1 (hands-on pages)")
    return harness.record(RESOURCE, _frame(items, prov), FIELDS, prov, root=root,
                          description="shell commands of the hands-on pages and what they printed (lab.transcripts)")


def should_record() -> bool:
    """True when the environment asks the pages to record what they run (``LAB_RECORD_TRANSCRIPTS=1``)."""
    return os.environ.get(RECORD_ENV, "") not in ("", "0")


def load_all(root: str | Path | None = None) -> list[Recording]:
    """Every recorded transcript of every host, oldest first (validated against the schema)."""
    from lab import datapackage, paths
    from lab.bench import harness

    root = Path(root if root is not None else paths.MEASURED_DIR)
    rows = []
    for pkg in datapackage.find_packages(root) if root.exists() else []:
        names = [r.get("name") for r in datapackage.read_descriptor(pkg)["resources"]]
        if RESOURCE not in names:
            continue
        harness.check_links(pkg)
        prov = {(p.host_id, p.recorded_at): p for p in
                harness.load_provenance(pkg).itertuples(index=False)}
        for row in datapackage.load_resource(pkg, RESOURCE).itertuples(index=False):
            rows.append((row, prov[(row.host_id, row.recorded_at)]))
    rows.sort(key=lambda pair: pair[0].recorded_at)

    return [_recording(row, p) for row, p in rows]


def _text(value: Any) -> str:
    missing = value is None or (isinstance(value, float) and value != value) or str(value) == "<NA>"
    return "" if missing else str(value)


def _recording(row: Any, p: Any) -> Recording:
    """A transcript row and its provenance (two records, or one joined record for both)."""
    return Recording(
        transcript=Transcript(command=row.command, exit_code=int(row.exit_code), stdout=_text(row.stdout),
                              stderr=_text(row.stderr), duration_s=float(row.duration_s), user=row.user),
        host_id=row.host_id, recorded_at=row.recorded_at, cpu_model=_text(p.cpu_model),
        kernel=_text(p.kernel), kvm_backend=_text(p.kvm_backend), runs_in_vm=bool(p.runs_in_vm))


def recorded(command: str, *, root: str | Path | None = None) -> Recording:
    """The recording of exactly ``command`` in the hands-on pages' data set (:mod:`lab.bench.dataset`:
    the newest host with transcripts, or ``LAB_RECORDED_HOST``; its newest recording of the command)."""
    from lab import datapackage
    from lab.bench import dataset

    hint = f"run the hands-on pages on a KVM host with libvirtd as root with {RECORD_ENV}=1 to record it"
    try:
        ds = dataset.data_set([RESOURCE], root=root, live=False)
        rows = ds.get(RESOURCE, command=command)
    except datapackage.DataError as exc:
        raise TranscriptError(f"no recording of {command!r} ({exc}): {hint}") from None
    if rows.empty:
        raise TranscriptError(f"no recording of {command!r} from host {ds.host_id}: {hint}")
    row = rows.sort_values("recorded_at").iloc[-1]
    return _recording(row, row)
