"""The I/O benchmark: the same payload through the emulated, PV and virtio devices.

For each mode (:data:`lab.devices.live.MODES`), batch size and request size,
a fresh VM runs the mode's guest program (:mod:`lab.devices.guests`) which
hands ``count`` requests to its device model. Per run we get the exits to the
VMM's userspace, the guest-timed cycles (``rdtsc`` around the whole run), the
host wall time and the checksum of what the device received. The modes are
interleaved inside each repetition, so that a slow moment of a shared host
hits all of them alike.

Each configuration becomes one :class:`~lab.bench.harness.Result` whose
``kind`` is the mode; ``cycles_per_exit``/``ns_per_exit`` hold the guest
cycles/ns **per request** (the harness's field names), and ``extra`` carries
``batch``, ``size``, ``exits_per_request``, ``requests_per_s``,
``bytes_per_s`` (``extra["mode"]`` is the guest CPU mode, as in the exits
benchmark). A run whose bytes or exit count do not match the model is an
``error`` result with the reason: the numbers are only shown when the device
really received every byte.

Two benchmarks are registered here, the same measurement over two sets of
modes, each its own recorded resource: ``io`` (:data:`IO_MODES`, the four
paths the virtio chapter compares) and ``notify`` (:data:`NOTIFY_MODES`:
``virtio_ioeventfd`` beside the two paths whose device suppresses kicks while
it polls). On every ioeventfd path the exits to userspace are 0; what
suppression changes is ``kicks_per_run``, each kick an exit that KVM
finishes in the kernel, counted exactly by the guest on every back end. The
suppressing paths' guest does not wait for each batch (it must add while the
device is busy for suppression to matter), so their requests/s differ from
``virtio_ioeventfd`` for that reason too.
"""

from __future__ import annotations

import argparse
import functools
import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lab import kvm
from lab.bench.harness import RECORDING_KEY, Result, load_measured, summarize, tsc_provenance, tsc_rate
from lab.bench.registry import Bench, register
from lab.devices import guests as io_guests
from lab.devices import live
from lab.kvm.system import System  # the type (lab.kvm re-exports it)

if TYPE_CHECKING:  # pandas is imported where a table is built: measuring needs only the stdlib
    import pandas as pd

MODES = live.MODES
IO_MODES = ("hvm", "pv", "virtio", "virtio_ioeventfd")
NOTIFY_MODES = ("virtio_ioeventfd", "virtio_no_notify", "virtio_event_idx")
DEFAULT_REPEAT = 5
DEFAULT_COUNT = 256
DEFAULT_SIZES = (64,)
DEFAULT_BATCHES = (1, 8, 64, 256)

DESCRIPTIONS = {
    "hvm": "emulated device: length, then the payload a dword at a time, each an exit",
    "pv": "PV: one port write per request with the address of {addr, len}",
    "virtio": "virtio split queue: one notification exit per batch",
    "virtio_ioeventfd": "virtio, notification through KVM_IOEVENTFD to a host thread: no exit",
    "virtio_no_notify": "virtio + ioeventfd, the device sets VIRTQ_USED_F_NO_NOTIFY while it polls",
    "virtio_event_idx": "virtio + ioeventfd, VIRTIO_F_EVENT_IDX: the driver kicks when avail_event is passed",
}


def _ints(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--{what} takes comma-separated integers, not {text!r}") from None
    if not values:
        raise ValueError(f"--{what} is empty")
    return values


Config = tuple[int, int, str]  #: (size, batch, mode)


def run(modes: Sequence[str] = IO_MODES, *, batches: Sequence[int] = DEFAULT_BATCHES,
        sizes: Sequence[int] = DEFAULT_SIZES, count: int = DEFAULT_COUNT, repeat: int = DEFAULT_REPEAT,
        progress: Any = None, system: System | None = None) -> list[Result]:
    """Measure every (size, batch, mode); one :class:`Result` each, in that order.

    Raises :class:`lab.kvm.KvmUnavailable` without a usable KVM and
    :class:`ValueError` for bad parameters (before anything runs).
    """
    if repeat < 1:
        raise ValueError("repeat must be at least 1")
    configs = [(s, b, m) for s in sizes for b in batches for m in modes]
    for s, b, m in configs:
        live.check_params(m, count, s, b)
    if system is None:
        with kvm.open() as own:
            return run(modes, batches=batches, sizes=sizes, count=count, repeat=repeat,
                       progress=progress, system=own)

    for m in modes:  # warm-up: first VM, first page faults, imports; dropped
        live.run_io(m, min(count, 16), sizes[0], 1, system=system)
    samples: dict[Config, list[live.IoRun]] = {c: [] for c in configs}
    failures: dict[Config, str] = {}
    for _ in range(repeat):  # the configurations interleaved inside each repetition
        for config in configs:
            if config in failures:
                continue
            try:
                samples[config].append(_checked_run(config, count, system))
            except (kvm.GuestError, live.IoRunError, _ModelMismatch) as exc:
                failures[config] = str(exc) if isinstance(exc, _ModelMismatch) else f"{type(exc).__name__}: {exc}"
            finally:
                if progress:
                    progress.step(f"{config[2]} b={config[1]}")
    return [_result(c, count, repeat, samples[c], failures.get(c)) for c in configs]


class _ModelMismatch(Exception):
    """A run whose bytes or exit count do not match the model."""


def _checked_run(config: Config, count: int, system: System) -> live.IoRun:
    """One run of ``config``; :class:`_ModelMismatch` when the device or the exit count disagree with the model."""
    s, b, m = config
    r = live.run_io(m, count, s, b, system=system)
    expected = io_guests.expected_exits(m, count, s, b)
    if not r.ok:
        raise _ModelMismatch(f"the device received {r.requests} requests / checksum {r.checksum}, "
                             f"expected {count} / {r.expected}; errors: {r.errors[:3]}")
    if r.exits != expected:
        raise _ModelMismatch(f"{r.exits} exits to userspace, the model says {expected}")
    if live.PATHS[m].ioeventfd and r.eventfd_kicks != r.kicks:
        raise _ModelMismatch(f"the guest kicked {r.kicks} times, the eventfd counted {r.eventfd_kicks}")
    if live.PATHS[m].device == "virtio" and r.kicks > -(-count // b):
        raise _ModelMismatch(f"{r.kicks} kicks, more than the {-(-count // b)} batches")
    return r


def _result(config: Config, count: int, repeat: int, runs: list[live.IoRun], failure: str | None) -> Result:
    """The :class:`Result` of one configuration from its runs (or its failure)."""
    s, b, m = config
    extra: dict[str, Any] = {"mode": "protected32", "batch": b, "size": s, "what": DESCRIPTIONS[m],
                             "expected_exits_per_request": io_guests.expected_exits(m, count, s, b) / count}
    if failure is not None:
        return Result(m, "error", repeat, count, reason=failure, extra=extra)
    reported = next((r.tsc_khz for r in runs if r.tsc_khz), None)
    tsc, tsc_source = tsc_rate(reported, [(r.guest_cycles, r.wall_ns) for r in runs])
    rps = summarize([r.requests_per_s for r in runs])
    extra.update(
        exits_per_request=statistics.median(r.exits_per_request for r in runs),
        kicks_per_run=statistics.median(max(r.kicks, r.eventfd_kicks) for r in runs),
        requests_per_s=rps["median"], requests_per_s_q1=rps["q1"], requests_per_s_q3=rps["q3"],
        bytes_per_s=rps["median"] * s, checksum_ok=True, tsc_source=tsc_source,
    )
    kicks = f" {extra['kicks_per_run'] / count:>6.3f} kicks/req" if live.PATHS[m].device == "virtio" else ""
    extra["what"] = f"b={b:<3} S={s}: {rps['median']:>9,.0f} req/s {extra['exits_per_request']:>7.3f} exits/req{kicks}"
    return Result.from_samples(m, [r.cycles_per_request for r in runs], [r.wall_ns / r.count for r in runs],
                               iterations=count, tsc_khz=tsc, **extra)


def wide_table(results: Sequence[Result] | pd.DataFrame) -> pd.DataFrame:
    """Requests/s and exits per request, one row per (size, batch), the modes side by side."""
    import pandas as pd

    frame = results if isinstance(results, pd.DataFrame) else to_frame(results, {"host_id": "", "recorded_at": ""})
    frame = frame[frame["status"] == "ok"]
    wide = frame.pivot_table(index=["size", "batch"], columns="mode",
                             values=["requests_per_s", "exits_per_request"], aggfunc="median")
    order = [m for m in MODES if m in set(frame["mode"])]
    wide = wide.reindex(columns=pd.MultiIndex.from_product([["requests_per_s", "exits_per_request"], order]))
    return wide


# --------------------------------------------------------------------------- recording

FIELDS: list[dict[str, Any]] = [
    *RECORDING_KEY,
    {"name": "mode", "type": "string", "constraints": {"required": True, "enum": list(MODES)},
     "description": "how the guest hands requests to the device (lab.bench.io.DESCRIPTIONS)"},
    {"name": "batch", "type": "integer", "constraints": {"required": True, "minimum": 1},
     "description": "requests per notification (virtio; the other modes ignore it)"},
    {"name": "size", "type": "integer", "constraints": {"required": True, "minimum": 4},
     "description": "bytes per request"},
    {"name": "count", "type": "integer", "constraints": {"required": True, "minimum": 1},
     "description": "requests per timed run"},
    {"name": "repeat", "type": "integer", "constraints": {"required": True, "minimum": 1},
     "description": "timed runs (after one dropped warm-up run per mode)"},
    {"name": "status", "type": "string", "constraints": {"required": True, "enum": ["ok", "unavailable", "error"]},
     "description": "ok (every byte arrived, exits as the model says); error (see reason)"},
    {"name": "exits_per_request", "type": "number", "constraints": {"minimum": 0},
     "description": "exits to the VMM's userspace per request (median over runs; the final hlt not counted)"},
    {"name": "expected_exits_per_request", "type": "number", "constraints": {"required": True, "minimum": 0},
     "description": "what the model predicts: 1+size/4 (hvm), 1 (pv), 1/batch (virtio), 0 (the ioeventfd paths)"},
    {"name": "requests_per_s", "type": "number", "constraints": {"minimum": 0},
     "description": "requests per second of host wall time (median over runs)"},
    {"name": "requests_per_s_q1", "type": "number", "description": "first quartile of requests_per_s over runs"},
    {"name": "requests_per_s_q3", "type": "number", "description": "third quartile of requests_per_s over runs"},
    {"name": "bytes_per_s", "type": "number", "constraints": {"minimum": 0},
     "description": "requests_per_s times size"},
    {"name": "cycles_per_request", "type": "number", "constraints": {"minimum": 0},
     "description": "guest-timed TSC cycles per request (rdtsc around the whole run; median over runs)"},
    {"name": "cycles_q1", "type": "number", "description": "first quartile of cycles_per_request"},
    {"name": "cycles_q3", "type": "number", "description": "third quartile of cycles_per_request"},
    {"name": "ns_per_request", "type": "number", "constraints": {"minimum": 0},
     "description": "cycles_per_request converted at tsc_khz"},
    {"name": "host_ns_per_request", "type": "number", "constraints": {"minimum": 0},
     "description": "host wall time of a run per request (median)"},
    {"name": "kicks_per_run", "type": "number", "constraints": {"minimum": 0},
     "description": "virtio notifications per run (by exit or by eventfd; median); 0 for hvm and pv"},
    {"name": "tsc_khz", "type": "number", "constraints": {"minimum": 0},
     "description": "TSC rate used for the conversion, kHz"},
    {"name": "reason", "type": "string", "description": "why the configuration failed; empty when ok"},
]


def to_frame(results: Sequence[Result], prov: dict) -> pd.DataFrame:
    import pandas as pd

    rows = []
    for r in results:
        e, sp = r.extra, r.spread or {}
        rows.append({
            "host_id": prov["host_id"], "recorded_at": prov["recorded_at"], "mode": r.kind,
            "batch": e["batch"], "size": e["size"], "count": r.iterations, "repeat": r.repeat,
            "status": r.status, "exits_per_request": e.get("exits_per_request"),
            "expected_exits_per_request": e["expected_exits_per_request"],
            "requests_per_s": e.get("requests_per_s"), "requests_per_s_q1": e.get("requests_per_s_q1"),
            "requests_per_s_q3": e.get("requests_per_s_q3"), "bytes_per_s": e.get("bytes_per_s"),
            "cycles_per_request": r.cycles_per_exit, "cycles_q1": sp.get("q1"), "cycles_q3": sp.get("q3"),
            "ns_per_request": r.ns_per_exit, "host_ns_per_request": r.host_ns_per_exit,
            "kicks_per_run": e.get("kicks_per_run"), "tsc_khz": r.tsc_khz, "reason": r.reason or "",
        })
    return pd.DataFrame(rows, columns=[f["name"] for f in FIELDS])


def load_recorded(root: str | None = None) -> pd.DataFrame:
    """Every recorded io measurement (all hosts), validated and joined with its provenance."""
    return load_measured("io", root)


# --------------------------------------------------------------------------- command line


def _args(p: argparse.ArgumentParser, modes: Sequence[str]) -> None:
    """The options of a benchmark of this module whose default modes are ``modes``."""
    p.add_argument("--repeat", type=int, default=DEFAULT_REPEAT, metavar="N",
                   help=f"timed runs per configuration (default {DEFAULT_REPEAT})")
    p.add_argument("--count", type=int, default=DEFAULT_COUNT, metavar="N",
                   help=f"requests per run (default {DEFAULT_COUNT})")
    p.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), metavar="S,...",
                   help=f"bytes per request, multiples of 4 (default {','.join(map(str, DEFAULT_SIZES))})")
    p.add_argument("--batches", default=",".join(map(str, DEFAULT_BATCHES)), metavar="B,...",
                   help=f"requests per virtio notification (default {','.join(map(str, DEFAULT_BATCHES))})")
    p.add_argument("--modes", default=",".join(modes), metavar="M,...",
                   help=f"default {','.join(modes)}; any of: {', '.join(MODES)}")


def _measure(args: argparse.Namespace, progress) -> list[Result]:
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    return run(modes, batches=_ints(args.batches, "batches"), sizes=_ints(args.sizes, "sizes"),
               count=args.count, repeat=args.repeat, progress=progress)


def _steps(args: argparse.Namespace) -> int:
    try:
        n = len(_ints(args.batches, "batches")) * len(_ints(args.sizes, "sizes"))
    except ValueError:
        return 0
    return args.repeat * n * len([m for m in args.modes.split(",") if m.strip()])


def _register(name: str, modes: Sequence[str], help: str, description: str) -> Bench:
    """This module's measurement, recorded as resource ``name``, over ``modes`` unless told otherwise."""
    return register(Bench(name=name, help=help, add_args=functools.partial(_args, modes=modes), measure=_measure,
                          to_frame=to_frame, fields=FIELDS, description=description, steps=_steps,
                          provenance=tsc_provenance))


BENCH = _register("io", IO_MODES,
                  "the same requests through an emulated, a PV and a virtio device: exits and requests/s",
                  "N requests of S bytes through the emulated, PV and virtio toy devices (lab.bench.io)")
NOTIFY_BENCH = _register(
    "notify", NOTIFY_MODES,
    "virtio over ioeventfd with and without kick suppression (NO_NOTIFY, EVENT_IDX): kicks per request",
    "N requests of S bytes through the virtio device over ioeventfd, with and without notification suppression "
    "(lab.bench.io, NOTIFY_MODES)")
