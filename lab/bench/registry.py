"""The registry of benchmarks: what ``python -m lab bench <kind>`` and ``record`` can run.

Each benchmark module registers a :class:`Bench` in :data:`BENCHES` when it
is imported (:mod:`lab.bench` imports them all).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Bench:
    """A registered benchmark (its results are :class:`lab.bench.harness.Result` objects, or its own rows).

    ``add_args(parser)`` adds its options (shared by ``bench`` and ``record``);
    ``measure(args, progress)`` returns its results; ``to_frame(results, prov)``
    and ``fields`` describe the recorded resource named ``name``.
    """

    name: str
    help: str
    add_args: Callable[[argparse.ArgumentParser], None]
    measure: Callable[[argparse.Namespace, Any], Sequence[Any]]
    to_frame: Callable[[Sequence[Any], dict[str, Any]], Any]
    fields: list[dict[str, Any]]
    description: str
    #: how many progress steps ``measure`` will take for ``args``
    steps: Callable[[argparse.Namespace], int] = lambda args: 0
    #: extra provenance (e.g. the TSC rate) taken from the results
    provenance: Callable[[Sequence[Any]], dict[str, Any]] = lambda results: {}
    #: print the results for a person (the default prints the exits-style table)
    show: Callable[[Sequence[Any]], None] | None = None
    #: the results as JSON-able objects (``--json``)
    as_json: Callable[[Sequence[Any]], list[Any]] = lambda results: [r.as_json() for r in results]
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
