"""Python harness vs a C loop, side by side, on the same guest code in the same run.

``python -m lab.bench.reference [--repeat N] [--iterations N] [--mode M] [--kinds ...]``
compiles ``lab/bench/exit_loop.c`` (package data, installed with
the package) with gcc, then for each kind runs
the C loop and the Python harness alternately (C, Python, C, Python, ...) so
that both see the same moments of a shared machine, and prints the medians
next to each other. The guest bytes are those of :func:`lab.guests.exit_loop`.
"""

from __future__ import annotations

import argparse
import importlib.resources
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab import guests, kvm
from lab.bench import exits
from lab.bench.harness import RECORDING_KEY, summarize
from lab.bench.registry import Bench, register

if TYPE_CHECKING:  # pandas is imported where a table is built: measuring needs only the stdlib
    import pandas as pd

#: The C VMM's source, shipped inside the package (``[tool.setuptools.package-data]``): found wherever
#: ``lab`` is installed, not only in a checkout with the tests beside it.
C_SOURCE = importlib.resources.files("lab.bench") / "exit_loop.c"
#: The kinds a C loop can measure the same way (the hypercall is not measurable on every host).
KINDS = ("loop", "cpuid", "pio_user", "mmio_user", "pio_ioeventfd")


class ReferenceUnavailable(RuntimeError):
    pass


def build(workdir: Path) -> Path:
    """Compile the C reference loop; raises :class:`ReferenceUnavailable` without gcc or headers."""
    if shutil.which("gcc") is None:
        raise ReferenceUnavailable("gcc is not installed (Debian: apt-get install gcc linux-libc-dev)")
    exe = workdir / "exit_loop"
    if not C_SOURCE.is_file():
        raise ReferenceUnavailable(f"the C source {C_SOURCE} is not installed with the lab package: "
                                   f"reinstall it (pip install .) from a checkout of the book")
    with importlib.resources.as_file(C_SOURCE) as source:  # a real file even from a zipped install
        proc = subprocess.run(["gcc", "-O2", "-Wall", "-o", str(exe), str(source)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ReferenceUnavailable(f"gcc failed: {proc.stderr.strip()[-500:]}")
    return exe


def run_c(exe: Path, workdir: Path, kind: str, iterations: int, repeat: int, mode: str, vendor: str) -> list[float]:
    program = guests.exit_loop(kind, iterations, vendor=vendor, mode=mode)
    code = workdir / f"{kind}.bin"
    code.write_bytes(program.code)
    proc = subprocess.run([str(exe), mode, str(code), kind, str(iterations), str(repeat)],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"C loop failed for {kind}: {proc.stderr.strip()}")
    return [float(line.split()[0]) for line in proc.stdout.splitlines() if line.strip()]


def compare(kinds=KINDS, *, iterations: int = exits.DEFAULT_ITERATIONS, repeat: int = exits.DEFAULT_REPEAT,
            rounds: int = 3, mode: str = exits.DEFAULT_MODE) -> list[dict]:
    """For each kind, ``rounds`` alternations of C and Python, each ``repeat`` runs; medians over all runs."""
    vendor = exits.cpu_vendor()
    rows = []
    with tempfile.TemporaryDirectory(prefix="lab-ref-") as tmp, kvm.open() as system:
        workdir = Path(tmp)
        exe = build(workdir)
        for kind in kinds:
            c_samples: list[float] = []
            py_samples: list[float] = []
            for _ in range(rounds):
                c_samples += run_c(exe, workdir, kind, iterations, repeat, mode, vendor)
                py_samples += exits.measure_kind(system, kind, repeat=repeat, iterations=iterations,
                                                 mode=mode, vendor=vendor).samples
            c, py = summarize(c_samples), summarize(py_samples)
            rows.append({"kind": kind, "mode": mode, "iterations": iterations,
                         "python": py["median"], "python_q1": py["q1"], "python_q3": py["q3"],
                         "c": c["median"], "c_q1": c["q1"], "c_q3": c["q3"],
                         "diff_pct": 100.0 * (py["median"] - c["median"]) / c["median"],
                         "runs": len(c_samples)})
    return rows


FIELDS: list[dict[str, Any]] = [
    *RECORDING_KEY,
    {"name": "kind", "type": "string", "constraints": {"required": True, "enum": list(KINDS)},
     "description": "what the guest's timing loop does (lab.guests.exit_loop)"},
    {"name": "mode", "type": "string", "constraints": {"required": True, "enum": ["protected32", "long64"]},
     "description": "CPU mode of the guest"},
    {"name": "iterations", "type": "integer", "constraints": {"required": True, "minimum": 1},
     "description": "loop iterations per timed run"},
    {"name": "runs", "type": "integer", "constraints": {"required": True, "minimum": 1},
     "description": "timed runs per side (rounds x repeat)"},
    {"name": "python_cycles", "type": "number", "constraints": {"required": True},
     "description": "median guest-timed cycles per iteration, lab.kvm (Python) as the VMM"},
    {"name": "python_q1", "type": "number", "description": "first quartile, Python"},
    {"name": "python_q3", "type": "number", "description": "third quartile, Python"},
    {"name": "c_cycles", "type": "number", "constraints": {"required": True},
     "description": "median guest-timed cycles per iteration, lab/bench/exit_loop.c (C) as the VMM"},
    {"name": "c_q1", "type": "number", "description": "first quartile, C"},
    {"name": "c_q3", "type": "number", "description": "third quartile, C"},
]


def to_frame(rows: Sequence[dict[str, Any]], prov: dict[str, Any]) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame([{**r, "python_cycles": r["python"], "c_cycles": r["c"]} for r in rows])
    frame.insert(0, "recorded_at", prov["recorded_at"])
    frame.insert(0, "host_id", prov["host_id"])
    return frame[[f["name"] for f in FIELDS]]


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rounds", type=int, default=3, help="C/Python alternations per kind (default 3)")


def _all_args(p: argparse.ArgumentParser) -> None:
    exits._args(p)
    _args(p)


def _measure(args: argparse.Namespace, progress: Any) -> list[dict[str, Any]]:
    return compare(KINDS, iterations=args.iterations, repeat=args.repeat, rounds=args.rounds, mode=args.mode)


def _show(rows: Sequence[dict[str, Any]]) -> None:
    for r in rows:
        print(f"{r['kind']:<15} {r['mode']:<12} Python {r['python']:>9.0f}  C {r['c']:>9.0f}  {r['diff_pct']:+.1f}%")


BENCH = register(Bench(
    name="reference",
    help="the same guest bytes under the Python VMM and a C VMM, alternating (needs gcc and KVM)",
    add_args=_all_args,
    measure=_measure,
    to_frame=to_frame,
    fields=FIELDS,
    description="guest-timed cycles per iteration, lab.kvm vs a C loop on the same guest bytes (lab.bench.reference)",
    show=_show,
    as_json=lambda rows: list(rows),
    ok=lambda rows: True,
    unavailable=lambda: (ReferenceUnavailable,),
))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab.bench.reference", description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=exits.DEFAULT_ITERATIONS)
    p.add_argument("--repeat", type=int, default=7, help="runs per round and side (default 7)")
    p.add_argument("--rounds", type=int, default=3, help="C/Python alternations per kind (default 3)")
    p.add_argument("--mode", choices=("protected32", "long64"), default=exits.DEFAULT_MODE)
    p.add_argument("--kinds", default=",".join(KINDS))
    args = p.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    try:
        rows = compare(kinds, iterations=args.iterations, repeat=args.repeat, rounds=args.rounds, mode=args.mode)
    except (ReferenceUnavailable, kvm.KvmUnavailable) as exc:
        print(f"cannot compare: {exc}", file=sys.stderr)
        return 1
    print(f"guest-timed cycles per iteration, median (IQR); {args.iterations} iterations, "
          f"{args.rounds} x {args.repeat} runs per side, mode {args.mode}, C and Python alternating")
    print(f"{'kind':<15} {'Python':>22} {'C':>22} {'Python vs C':>12}")
    for r in rows:
        py = f"{r['python']:.0f} ({r['python_q1']:.0f}-{r['python_q3']:.0f})"
        c = f"{r['c']:.0f} ({r['c_q1']:.0f}-{r['c_q3']:.0f})"
        print(f"{r['kind']:<15} {py:>22} {c:>22} {r['diff_pct']:>+11.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
