"""The guest's empty loop run natively on the host: the floor a guest is compared with.

The exits benchmark's ``loop`` kind times ``dec ebp; jnz`` inside the guest
with ``rdtsc``. :func:`loop_cycles` runs the same two instructions (as
``dec rdi; jnz``) in this host process, between the same two ``rdtsc``: the
bytes below are copied into an executable page with ``mmap`` and called
through ``ctypes``, so no compiler is needed. On VT-x / AMD-V the guest's
loop runs at about this speed; on a KVM back end that emulates the guest's
instructions (PVM with a guest not written for it) it does not.

``python -m lab bench native`` prints it; ``python -m lab record --only native``
records it (resource ``native``).
"""

from __future__ import annotations

import argparse
import ctypes
import mmap
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from lab.bench.harness import RECORDING_KEY, summarize
from lab.bench.registry import Bench, register

if TYPE_CHECKING:  # pandas is imported where a table is built: measuring needs only the stdlib
    import pandas as pd

#: x86-64 System V: rdi = iterations; returns TSC ticks for the loop.
LOOP_CODE = bytes.fromhex(
    "0f31"        # rdtsc
    "48c1e220"    # shl rdx, 32
    "4809d0"      # or rax, rdx
    "4889c6"      # mov rsi, rax           (start)
    "48ffcf"      # loop: dec rdi
    "75fb"        # jnz loop
    "0f31"        # rdtsc
    "48c1e220"    # shl rdx, 32
    "4809d0"      # or rax, rdx
    "4829f0"      # sub rax, rsi           (end - start)
    "c3"          # ret
)
DEFAULT_ITERATIONS = 1_000_000
DEFAULT_REPEAT = 21


class NativeUnavailable(RuntimeError):
    pass


def loop_cycles(iterations: int = DEFAULT_ITERATIONS, repeat: int = DEFAULT_REPEAT) -> list[float]:
    """TSC ticks per iteration of ``dec; jnz`` run natively, one value per timed run (after a warm-up)."""
    if platform.machine() not in ("x86_64", "AMD64"):
        raise NativeUnavailable(f"the native loop is x86-64 code; this machine is {platform.machine()}")
    if iterations < 1 or repeat < 1:
        raise ValueError("iterations and repeat must be positive")
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    try:
        page.write(LOOP_CODE)
        buf = ctypes.c_char.from_buffer(page)
        func = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_uint64)(ctypes.addressof(buf))
        func(iterations)  # warm-up
        samples = [func(iterations) / iterations for _ in range(repeat)]
        del func, buf
    finally:
        page.close()
    return samples


@dataclass(frozen=True)
class NativeLoop:
    """The native loop's median and quartiles, TSC ticks per iteration."""

    iterations: int
    repeat: int
    median: float
    q1: float
    q3: float

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def run(iterations: int = DEFAULT_ITERATIONS, repeat: int = DEFAULT_REPEAT) -> NativeLoop:
    s = summarize(loop_cycles(iterations, repeat))
    return NativeLoop(iterations, repeat, s["median"], s["q1"], s["q3"])


FIELDS: list[dict[str, Any]] = [
    *RECORDING_KEY,
    {"name": "iterations", "type": "integer", "constraints": {"required": True, "minimum": 1},
     "description": "loop iterations per timed run"},
    {"name": "repeat", "type": "integer", "constraints": {"required": True, "minimum": 1},
     "description": "timed runs (after one warm-up)"},
    {"name": "cycles_per_iteration", "type": "number", "constraints": {"required": True, "minimum": 0},
     "description": "median TSC ticks per iteration of dec/jnz run natively in a host process"},
    {"name": "cycles_q1", "type": "number", "description": "first quartile over the runs"},
    {"name": "cycles_q3", "type": "number", "description": "third quartile over the runs"},
]


def to_frame(results: Sequence[NativeLoop], prov: dict[str, Any]) -> pd.DataFrame:
    import pandas as pd

    rows = [{"host_id": prov["host_id"], "recorded_at": prov["recorded_at"], "iterations": r.iterations,
             "repeat": r.repeat, "cycles_per_iteration": r.median, "cycles_q1": r.q1, "cycles_q3": r.q3}
            for r in results]
    return pd.DataFrame(rows)[[f["name"] for f in FIELDS]]


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--native-iterations", type=int, default=DEFAULT_ITERATIONS, metavar="N",
                   help=f"native loop iterations per run (default {DEFAULT_ITERATIONS})")


def _show(results: Sequence[NativeLoop]) -> None:
    for r in results:
        print(f"native dec/jnz loop: {r.median:.2f} TSC ticks per iteration "
              f"(IQR {r.q1:.2f}-{r.q3:.2f}; {r.repeat} runs of {r.iterations})")


BENCH = register(Bench(
    name="native",
    help="the guest's empty loop (dec/jnz) run natively on the host, TSC ticks per iteration",
    add_args=_args,
    measure=lambda args, progress: [run(args.native_iterations)],
    to_frame=to_frame,
    fields=FIELDS,
    description="the exits benchmark's empty loop run natively in a host process (lab.bench.native)",
    show=_show,
    ok=lambda results: True,
    unavailable=lambda: (NativeUnavailable,),
))
