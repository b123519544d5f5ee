"""A page's data set: one host, and the newest recording of each resource on that host.

Every page of the book that shows measurements takes them from one
:class:`DataSet`, made by :func:`data_set` with the resources the page needs
(``exits``, ``native``, ``io``, ...). The rule, in order:

1. **Live.** On a KVM host (``/dev/kvm`` opens and makes a VM, see
   :func:`why_not_live`) the data set is the live measurement: it is empty
   until the page's cells :meth:`DataSet.put` what they measured. Set
   ``LAB_FORCE_RECORDED=1`` to use the recordings on a KVM host.
2. **Which recorded host.** Otherwise, the host named by ``LAB_RECORDED_HOST``
   when it is set (a :class:`DataError` if that host is not recorded).
   Without it, the *newest host that has every resource the page needs*: of
   the hosts under ``data/measured`` (or ``LAB_MEASURED_DIR``) that have all
   of them, the one whose newest recording of those resources is the newest
   (a tie goes to the host id that sorts last). When no host has them all, the
   host that has the most of them, newest first.
3. **Which recordings.** From that host, the newest recording of each
   resource (one ``recorded_at``). A resource whose recordings each cover one
   part of it (:data:`PARTS`: the exits benchmark is recorded once per guest
   mode, a transcript once per command, a page's ``%%kvm`` cells once per page) gives the newest recording of each part.
4. **What is missing.** A needed resource the host lacks is in
   :attr:`DataSet.missing`; :meth:`DataSet.get` raises :class:`MissingResource`
   for it, and the page says so where that resource would be shown.

Pages that compare the recorded hosts (one row or bar per host) use
:func:`every_host`: each host's data set by steps 3 and 4.
The data hold machine values; ``lab.book`` turns them into Japanese.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab import datapackage, host, paths
from lab.bench import harness

if TYPE_CHECKING:
    import pandas as pd

FORCE_RECORDED_ENV = "LAB_FORCE_RECORDED"
RECORDED_HOST_ENV = "LAB_RECORDED_HOST"

#: Why a data set is not live when ``LAB_FORCE_RECORDED`` is set, or when the page asked for recordings
#: (``live=False``) on a KVM host; any other reason is the probe's own.
FORCED = f"{FORCE_RECORDED_ENV} is set"
ASKED = "the page shows recorded data (live=False)"

#: Resources recorded one part at a time: the columns that name the part.
PARTS: dict[str, tuple[str, ...]] = {"exits": ("mode",), "transcripts": ("command",), "cells": ("page",),
                                     "hwvirt": ("backend",)}

#: How the host of a data set was chosen (machine values; the book words them).
LIVE, NAMED, NEWEST_COMPLETE, NEWEST_PARTIAL, EVERY_HOST = (
    "live", "named", "newest-complete", "newest-partial", "every-host")


class MissingResource(datapackage.DataError):
    """The data set's host has no recording of a resource the page asked for."""

    def __init__(self, resource: str, host_id: str, live: bool):
        self.resource, self.host_id, self.live = resource, host_id, live
        what = "was not measured in this run" if live else "has no recording of it"
        super().__init__(f"{resource!r}: host {host_id} {what} (run 'python -m lab record --only {resource}' "
                         f"on a KVM host to record it)")


@dataclass
class DataSet:
    """One host's data for a page: live (this machine, now) or its newest recordings.

    ``frames`` maps a resource to its rows joined with provenance; ``chosen_by``
    says how the host was chosen (:data:`LIVE`, :data:`NAMED`,
    :data:`NEWEST_COMPLETE`, :data:`NEWEST_PARTIAL`); ``reason`` why it is not
    live (None when it is).
    """

    host_id: str
    live: bool
    needs: tuple[str, ...]
    chosen_by: str
    reason: str | None = None
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def missing(self) -> tuple[str, ...]:
        """The needed resources this data set has no rows of."""
        return tuple(r for r in self.needs if r not in self.frames)

    def has(self, resource: str) -> bool:
        return resource in self.frames

    def get(self, resource: str, **where: Any) -> pd.DataFrame:
        """The rows of ``resource`` whose columns equal ``where`` (may be empty); MissingResource if absent."""
        if resource not in self.frames:
            raise MissingResource(resource, self.host_id, self.live)
        frame = self.frames[resource]
        for key, value in where.items():
            frame = frame[frame[key] == value]
        return frame.reset_index(drop=True)

    def put(self, resource: str, frame: pd.DataFrame) -> None:
        """Add what a cell measured live (the rows of one resource, as a recording would hold them)."""
        if not self.live:
            raise ValueError(f"data set of recorded host {self.host_id} is read-only: measure on a KVM host")
        self.frames[resource] = frame.reset_index(drop=True)


def why_not_live() -> str | None:
    """None when this machine measures live (KVM usable, not forced off), else why not (:data:`FORCED` or
    the probe's reason)."""
    if os.environ.get(FORCE_RECORDED_ENV):
        return FORCED
    info = host.probe_kvm()
    return None if info.usable else str(info.reason)


def measured_root(root: str | Path | None = None) -> Path:
    """The folder of recorded hosts: ``root``, else ``LAB_MEASURED_DIR``, else ``data/measured``."""
    return Path(root if root is not None else os.environ.get(harness.MEASURED_DIR_ENV) or paths.MEASURED_DIR)


#: Loaded resources, by (folder, resource) -> (the packages' fingerprint, frame or None): a page asks
#: for the same recordings from several cells, and validating them again each time is most of a build.
_CACHE: dict[tuple[str, str], tuple[tuple[Any, ...], pd.DataFrame | None]] = {}


def _fingerprint(root: Path) -> tuple[Any, ...]:
    """What changes when a package under ``root`` is written or one of its files edited."""
    out = []
    for pkg in datapackage.find_packages(root) if root.exists() else []:
        for f in sorted(pkg.iterdir()):
            st = f.stat()
            out.append((pkg.name, f.name, st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(out)


def _load(resources: Iterable[str], root: Path) -> dict[str, pd.DataFrame]:
    """Every host's rows of each resource that some host recorded (validated; cached while unchanged)."""
    out = {}
    stamp = _fingerprint(root)
    for resource in dict.fromkeys(resources):
        key = (str(root.resolve()), resource)
        cached = _CACHE.get(key)
        if cached is None or cached[0] != stamp:
            try:
                frame: pd.DataFrame | None = harness.load_measured(resource, root)
            except datapackage.DataError as exc:
                if "no recording of" not in str(exc):
                    raise
                frame = None
            _CACHE[key] = cached = (stamp, frame)
        if cached[1] is not None:
            out[resource] = cached[1]
    return out


def newest_of(frame: pd.DataFrame, resource: str) -> pd.DataFrame:
    """One host's rows of ``resource``: the newest recording (of each part, :data:`PARTS`)."""
    parts = [c for c in PARTS.get(resource, ()) if c in frame.columns]
    if frame.empty:
        return frame
    if not parts:
        return frame[frame["recorded_at"] == frame["recorded_at"].max()]
    newest = frame.groupby(parts, dropna=False)["recorded_at"].transform("max")
    return frame[frame["recorded_at"] == newest]


def _host_set(host_id: str, needs: tuple[str, ...], loaded: Mapping[str, pd.DataFrame], chosen_by: str,
              reason: str | None) -> DataSet:
    frames = {}
    for resource in needs:
        if resource in loaded:
            rows = loaded[resource][loaded[resource]["host_id"] == host_id]
            if not rows.empty:
                frames[resource] = newest_of(rows, resource).reset_index(drop=True)
    return DataSet(host_id, False, needs, chosen_by, reason, frames)


def recorded_hosts(root: str | Path | None = None) -> list[str]:
    """The host ids under the folder of recorded hosts (each a package with provenance)."""
    return sorted(p.name for p in datapackage.find_packages(measured_root(root)))


def choose_host(needs: Iterable[str], root: str | Path | None = None,
                loaded: Mapping[str, pd.DataFrame] | None = None) -> tuple[str, str]:
    """The recorded host a page uses (rule step 2) and how it was chosen (``loaded``: the resources,
    when the caller has read them already)."""
    needs = tuple(dict.fromkeys(needs))
    named = os.environ.get(RECORDED_HOST_ENV)
    if named:
        hosts = recorded_hosts(root)
        if named not in hosts:
            raise datapackage.DataError(f"{RECORDED_HOST_ENV}={named} is not a recorded host under "
                                        f"{measured_root(root)} (recorded: {', '.join(hosts) or 'none'})")
        return named, NAMED
    loaded = loaded if loaded is not None else _load(needs, measured_root(root))
    score: dict[str, tuple[int, Any, str]] = {}
    for frame in loaded.values():
        for hid, newest in frame.groupby("host_id")["recorded_at"].max().items():
            have, last, _ = score.get(hid, (0, newest, hid))
            score[hid] = (have + 1, max(last, newest), hid)
    if not score:
        raise datapackage.DataError(f"no recorded host has any of {list(needs)} under {measured_root(root)}: "
                                    f"run 'python -m lab record' on a KVM host")
    have, _, best = max(score.values())
    return best, NEWEST_COMPLETE if have == len(needs) else NEWEST_PARTIAL


def data_set(needs: Iterable[str], *, root: str | Path | None = None, live: bool | None = None) -> DataSet:
    """The data set of a page that needs ``needs`` (the module's rule). ``live=None`` decides by
    :func:`why_not_live`; ``live=False`` asks for the recorded host even on a KVM host (text that quotes
    a recording); ``live=True`` gives a live data set whatever the probe says (the caller measures)."""
    needs = tuple(dict.fromkeys(needs))
    if not needs:
        raise ValueError("a data set needs at least one resource")
    reason = None if live is True else why_not_live() if live is None else (why_not_live() or ASKED)
    if reason is None:
        return DataSet(host.host_id(host.read_cpuinfo()), True, needs, LIVE)
    loaded = _load(needs, measured_root(root))
    host_id, chosen_by = choose_host(needs, root, loaded)
    return _host_set(host_id, needs, loaded, chosen_by, reason)


def every_host(needs: Iterable[str], root: str | Path | None = None) -> list[DataSet]:
    """Each recorded host's data set (newest recording of each resource), for pages that compare hosts;
    hosts with none of ``needs`` are left out."""
    needs = tuple(dict.fromkeys(needs))
    loaded = _load(needs, measured_root(root))
    hosts = sorted({h for frame in loaded.values() for h in frame["host_id"]})
    reason = why_not_live() or ASKED
    return [_host_set(h, needs, loaded, EVERY_HOST, reason) for h in hosts]
