"""Boot one trap-counting domain on libvirt, wait for the guest to finish, parse its trace.

Everything a run creates lives in one scratch folder under ``/var/tmp``
(``labqemuio-*``: disk image, trace, console log) and one transient libvirt
domain named ``labqemuio-<config>-<token>``. Both are removed on every path:
success, a guest error, the deadline (the domain is destroyed and the message
carries the tail of the guest's console), Ctrl-C (``stop`` is set by the
caller: the poll loop sees it within :data:`POLL_S`).

A process killed outright cannot clean up: its guest still powers itself off
at the end of its phases (the domain is transient and ``destroy`` on
power-off), and :func:`remove_stale` removes scratch folders whose domain is
gone and which are older than :data:`STALE_S` (each run calls it first).
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from lab.kit import Kit
from lab.qemu import domain, trace
from lab.virt import Connection, VirtError, libvirt_module

PREFIX = "labqemuio-"
SCRATCH = Path(os.environ.get("LAB_QEMU_SCRATCH", "/var/tmp"))
DISK_MIB = 16
DEFAULT_DEADLINE_S = 120.0
POLL_S = 0.2
STALE_S = 3600.0


class RunFailed(RuntimeError):
    """The guest did not finish its phases; the message says why and shows its console's tail."""


@dataclass(frozen=True)
class Run:
    """One finished run: its configuration, how it ran, and the parsed phases."""

    config: str
    domain_type: str
    counts: tuple[int, ...]
    trace: trace.Trace
    seconds: float
    trace_bytes: int
    xml: str


def console_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no console output)"
    text = "".join(ch for ch in text if ch == "\n" or ch.isprintable())
    return "\n".join(text.strip().splitlines()[-lines:]) or "(no console output)"


def _prepare(folder: Path) -> domain.RunFiles:
    files = domain.RunFiles(folder)
    folder.chmod(0o777)  # QEMU runs as libvirt's QEMU user and writes the trace and console here
    with open(files.disk, "wb") as f:
        f.truncate(DISK_MIB * 1024 * 1024)
    for p in (files.disk, files.trace, files.console):
        p.touch()
        p.chmod(0o666)
    return files


def _gone(conn: Connection, name: str) -> bool:
    libvirt = libvirt_module()
    try:
        dom = conn.raw.lookupByName(name)
        return not dom.isActive()
    except libvirt.libvirtError:
        return True


def _stop(conn: Connection, name: str) -> None:
    libvirt = libvirt_module()
    try:
        dom = conn.raw.lookupByName(name)
    except libvirt.libvirtError:
        return
    try:
        if dom.isActive():
            dom.destroy()
    except libvirt.libvirtError:
        pass
    try:
        dom.undefine()  # only if it became persistent somehow; transient domains vanish on destroy
    except libvirt.libvirtError:
        pass


def remove_stale(conn: Connection, max_age_s: float = STALE_S) -> list[str]:
    """Remove scratch folders of killed runs: their domain is gone and they are older than ``max_age_s``."""
    removed = []
    for folder in SCRATCH.glob(PREFIX + "*"):
        name = folder.name.rsplit("-", 1)[0]  # mkdtemp adds '-' and a random suffix to the domain name
        try:
            old = time.time() - folder.stat().st_mtime > max_age_s
        except OSError:
            continue
        if old and _gone(conn, name):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    return removed


def run(conn: Connection, kit: Kit, config: str, counts: tuple[int, ...], *, domain_type: str = "qemu",
        block_size: int = 4096, deadline_s: float = DEFAULT_DEADLINE_S,
        stop: threading.Event | None = None) -> Run:
    """Boot ``config`` (a key of :data:`lab.qemu.domain.CONFIGS`) and count its phases."""
    if config not in domain.CONFIGS:
        raise ValueError(f"unknown disk configuration {config!r}; known: {', '.join(domain.CONFIGS)}")
    if not counts or any(n < 1 or n * block_size > DISK_MIB * 1024 * 1024 for n in counts):
        raise ValueError(f"request counts {counts} must be 1..{DISK_MIB * 1024 * 1024 // block_size}")
    name = f"{PREFIX}{config}-{secrets.token_hex(3)}"
    remove_stale(conn)
    folder = Path(tempfile.mkdtemp(prefix=name + "-", dir=SCRATCH))
    try:
        files = _prepare(folder)
        spec = domain.exercise_spec(config, name, str(files.disk), domain_type)
        cmdline = f"{kit.cmdline} lab.counts={','.join(map(str, counts))} lab.bs={block_size}"
        xml = domain.run_xml(spec, config, kit.kernel, kit.initrd, cmdline, files)
        started = time.monotonic()
        try:
            conn.call("start", conn.raw.createXML, xml, 0, subject=name)
            while not _gone(conn, name):
                if stop is not None and stop.is_set():
                    raise RunFailed(f"{config}: stopped before the guest finished")
                if time.monotonic() - started > deadline_s:
                    _stop(conn, name)
                    raise RunFailed(f"{config}: the guest did not finish within {deadline_s:.0f} s and was "
                                    f"stopped; its console ends with:\n{console_tail(files.console)}")
                time.sleep(POLL_S)
        finally:
            _stop(conn, name)
        seconds = time.monotonic() - started
        parsed = _parse(files, config)
        return Run(config, domain_type, tuple(counts), parsed, seconds, files.trace.stat().st_size, xml)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _parse(files: domain.RunFiles, config: str) -> trace.Trace:
    try:
        parsed = trace.parse_file(files.trace)
    except trace.TraceError as exc:
        raise RunFailed(f"{config}: {exc}; the console ends with:\n{console_tail(files.console)}") from None
    if parsed.errors or not parsed.done:
        why = "; ".join(parsed.errors) or "the guest did not reach its last marker"
        raise RunFailed(f"{config}: {why}; the console ends with:\n{console_tail(files.console)}")
    return parsed


__all__ = ["Run", "RunFailed", "run", "console_tail", "PREFIX", "VirtError"]
