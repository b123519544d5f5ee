"""The guest's empty loop run natively: a few TSC ticks per iteration, measured without a compiler."""

from __future__ import annotations

import platform

import pytest

from lab.bench import native
from lab.bench.harness import load_measured

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64", reason="the native loop is x86-64 code")


def test_the_native_loop_takes_a_few_ticks_per_iteration():
    samples = native.loop_cycles(iterations=200_000, repeat=3)
    assert len(samples) == 3
    # dec/jnz retires about one iteration per core cycle; a busy shared machine may be several times slower
    assert all(0.05 < s < 50 for s in samples), samples


def test_more_iterations_take_more_ticks_in_total():
    short = min(native.loop_cycles(iterations=10_000, repeat=3)) * 10_000
    long = min(native.loop_cycles(iterations=1_000_000, repeat=3)) * 1_000_000
    assert long > 20 * short


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        native.loop_cycles(iterations=0)


def test_the_committed_recordings_have_the_floor_and_the_reference():
    nat = load_measured("native")
    ref = load_measured("reference")
    assert (nat["cycles_per_iteration"] > 0).all()
    assert {"loop", "cpuid", "pio_user"} <= set(ref["kind"])
