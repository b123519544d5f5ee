"""How two measured figures compare: one definition of "about the same", and a direction.

Pages word a comparison from a :class:`Comparison`, so the words turn around
when the numbers do; nothing else in the project decides what "about the same"
means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: Two figures whose ratio is within this much of 1 are "about the same".
SAME = 0.05

Direction = Literal["same", "higher", "lower"]


@dataclass(frozen=True)
class Comparison:
    """``a`` against ``b``: their ratio and which way it goes."""

    a: float
    b: float
    ratio: float
    direction: Direction

    @property
    def percent(self) -> float:
        """``a`` relative to ``b`` in percent (+19 means 19 % more)."""
        return 100.0 * (self.ratio - 1.0)


def compare(a: float, b: float) -> Comparison:
    """``a / b`` and whether ``a`` is about the same as, higher or lower than ``b`` (``b`` must be positive)."""
    if not b > 0:
        raise ValueError(f"cannot compare with a non-positive figure {b!r}")
    if a < 0:
        raise ValueError(f"cannot compare a negative figure {a!r}")
    r = a / b
    if abs(r - 1.0) < SAME:
        return Comparison(a, b, r, "same")
    return Comparison(a, b, r, "higher" if r > 1 else "lower")
