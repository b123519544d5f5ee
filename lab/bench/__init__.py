"""Benchmarks of the book and their command line: ``python -m lab bench <kind>``.

Each benchmark registers a :class:`Bench` in :data:`BENCHES`: its
command-line arguments, how it runs, and how it becomes a recorded resource
of ``data/measured/<host-id>/`` (``python -m lab record`` records every
registered benchmark). The shared machinery (statistics, provenance,
progress, recording) is in :mod:`lab.bench.harness`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from lab.bench.harness import Result


@dataclass(frozen=True)
class Bench:
    """A registered benchmark.

    ``add_args(parser)`` adds its options (shared by ``bench`` and ``record``);
    ``measure(args, progress)`` returns its results; ``to_frame(results, prov)``
    and ``fields`` describe the recorded resource named ``name``.
    """

    name: str
    help: str
    add_args: Callable[[argparse.ArgumentParser], None]
    measure: Callable[[argparse.Namespace, Any], Sequence[Result]]
    to_frame: Callable[[Sequence[Result], dict], Any]
    fields: list[dict]
    description: str
    #: how many progress steps ``measure`` will take for ``args``
    steps: Callable[[argparse.Namespace], int] = lambda args: 0
    #: extra provenance (e.g. the TSC rate) taken from the results
    provenance: Callable[[Sequence[Result]], dict] = lambda results: {}
    #: print the results for a person (the default prints the exits-style table)
    show: Callable[[Sequence[Any]], None] | None = None
    #: the results as JSON-able objects (``--json``)
    as_json: Callable[[Sequence[Any]], list] = lambda results: [r.as_json() for r in results]
    #: False when a result is an error (the command then exits with status 1)
    ok: Callable[[Sequence[Any]], bool] = lambda results: all(r.status != "error" for r in results)
    #: exception types that mean "cannot measure here" (printed, exit status 1), besides KvmUnavailable
    unavailable: Callable[[], tuple[type[BaseException], ...]] = lambda: ()


BENCHES: dict[str, Bench] = {}


def register(bench: Bench) -> Bench:
    if bench.name in BENCHES:
        raise ValueError(f"benchmark {bench.name!r} is registered twice")
    BENCHES[bench.name] = bench
    return bench


# --------------------------------------------------------------------------- exits


def _exits_args(p: argparse.ArgumentParser) -> None:
    from lab.bench import exits

    p.add_argument("--repeat", type=int, default=exits.DEFAULT_REPEAT, metavar="N",
                   help=f"timed runs per kind (default {exits.DEFAULT_REPEAT})")
    p.add_argument("--iterations", type=int, default=exits.DEFAULT_ITERATIONS, metavar="N",
                   help=f"exits per run (default {exits.DEFAULT_ITERATIONS})")
    p.add_argument("--mode", choices=("protected32", "long64"), default=exits.DEFAULT_MODE,
                   help="guest CPU mode of the timing loop")
    p.add_argument("--kinds", default=",".join(exits.KINDS),
                   help=f"comma-separated subset of: {', '.join(exits.KINDS)}")


def _exits_measure(args: argparse.Namespace, progress) -> list[Result]:
    from lab.bench import exits

    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    return exits.run(kinds, repeat=args.repeat, iterations=args.iterations, mode=args.mode, progress=progress)


def _exits_frame(results, prov):
    from lab.bench import exits

    return exits.to_frame(results, prov)


def _exits_fields() -> list[dict]:
    from lab.bench import exits

    return exits.FIELDS


def _exits_prov(results) -> dict:
    ok = [r for r in results if r.status == "ok" and r.tsc_khz]
    if not ok:
        return {}
    return {"tsc_khz": ok[0].tsc_khz, "tsc_source": ok[0].extra.get("tsc_source", "")}


register(Bench(
    name="exits",
    help="cost of one VMExit per kind (cpuid, hypercall, pio, mmio, ioeventfd), timed in the guest",
    add_args=_exits_args,
    measure=_exits_measure,
    to_frame=_exits_frame,
    fields=_exits_fields(),
    description="guest-timed cost of one exit per kind (lab.bench.exits)",
    steps=lambda args: args.repeat * len([k for k in args.kinds.split(",") if k.strip()]),
    provenance=_exits_prov,
))


# --------------------------------------------------------------------------- tour (the KVM chapter's walk)

TOUR_FIELDS = [
    {"name": "host_id", "type": "string", "constraints": {"required": True},
     "description": "host of the recording (see provenance.csv)"},
    {"name": "recorded_at", "type": "datetime", "constraints": {"required": True},
     "description": "recording time (UTC); with host_id, the key into provenance.csv"},
    {"name": "section", "type": "string", "constraints": {"required": True, "enum": ["hello", "errors"]},
     "description": "hello = the step-by-step run of the hello guest; errors = how each misbehaving guest ended"},
    {"name": "step", "type": "integer", "constraints": {"required": True, "minimum": 1},
     "description": "order within the section"},
    {"name": "action", "type": "string", "constraints": {"required": True},
     "description": "what the VMM did (Japanese, as the chapter shows it)"},
    {"name": "ioctl", "type": "string", "constraints": {"required": True},
     "description": "the KVM ioctl(s) behind the step; for errors, the outcome (error type or status)"},
    {"name": "result", "type": "string", "description": "what came back"},
]


def _tour_args(p: argparse.ArgumentParser) -> None:
    pass


def _tour_measure(args, progress) -> list[dict]:
    from lab.kvm import tour

    rows = tour.hello_steps()
    if progress:
        progress.step("hello")
    rows += tour.bad_guest_rows()
    if progress:
        progress.step("errors")
    return rows


def _tour_frame(rows, prov):
    import pandas as pd

    frame = pd.DataFrame(rows)
    frame.insert(0, "recorded_at", prov["recorded_at"])
    frame.insert(0, "host_id", prov["host_id"])
    return frame[[f["name"] for f in TOUR_FIELDS]]


def _tour_show(rows) -> None:
    for r in rows:
        print(f"{r['section']:<7} {r['step']:>2}  {r['action']}  [{r['ioctl']}]  {r['result']}")


register(Bench(
    name="tour",
    help="the KVM chapter's walk: run the hello guest step by step, then the misbehaving guests",
    add_args=_tour_args,
    measure=_tour_measure,
    to_frame=_tour_frame,
    fields=TOUR_FIELDS,
    description="transcript of the KVM chapter's step-by-step run and of the misbehaving guests (lab.kvm.tour)",
    steps=lambda args: 2,
    show=_tour_show,
    as_json=lambda rows: list(rows),
    ok=lambda rows: True,
))
