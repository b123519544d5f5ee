"""Comparisons worded from the numbers: which is larger, by how much, in Japanese.

The chapters never write "faster" or "N 倍" by hand next to measured data:
they glue sentences built here from :func:`lab.analysis.compare.compare`
(the one definition of "about the same"), so that the words turn around
when the numbers do (a recording from another host, a test fixture with the
orderings reversed).
"""

from __future__ import annotations

import re

from lab.analysis.compare import compare

_ASCII_JA = re.compile(r"([A-Za-z0-9`%])([ぁ-んァ-ヶ一-龠])")
_JA_ASCII = re.compile(r"([ぁ-んァ-ヶ一-龠])([A-Za-z0-9`])")


def spaced(text: str) -> str:
    """A space between a Latin word (or code) and Japanese, as the book writes "Python の VMM は C の"."""
    return _JA_ASCII.sub(r"\1 \2", _ASCII_JA.sub(r"\1 \2", text))

def cost_ja(a_name: str, a: float, b_name: str, b: float) -> str:
    """Two costs (smaller is better): "A は B の 3.2 倍かかった", "A は B より安く ..." or about the same."""
    c = compare(a, b)
    if c.direction == "same":
        return spaced(f"{a_name}と{b_name}はほぼ同じでした(比 {c.ratio:.2f})")
    if c.direction == "higher":
        return spaced(f"{a_name}は{b_name}の {c.ratio:.1f} 倍かかりました")
    return spaced(f"{a_name}は{b_name}より安く、{b_name}の {c.ratio:.2f} 倍でした")


def rate_ja(a_name: str, a: float, b_name: str, b: float) -> str:
    """Two rates (larger is better): "A は B の 1.4 倍速かった" / "A は B より遅く、0.7 倍だった" / about the same."""
    c = compare(a, b)
    if c.direction == "same":
        return spaced(f"{a_name}と{b_name}はほぼ同じ速さでした(比 {c.ratio:.2f})")
    if c.direction == "higher":
        return spaced(f"{a_name}は{b_name}の {c.ratio:.2f} 倍速く処理しました")
    return spaced(f"{a_name}は{b_name}より遅く、{b_name}の {c.ratio:.2f} 倍しか処理できませんでした")


def pct_ja(a_name: str, a: float, b_name: str, b: float) -> str:
    """A difference in percent: "A は B より 19 % 遅かった" (costs: larger is slower)."""
    c = compare(a, b)
    if c.direction == "same":
        return spaced(f"{a_name}と{b_name}の差は {c.percent:+.0f} % で、ほとんどありませんでした")
    return spaced(f"{a_name}は{b_name}より {abs(c.percent):.0f} % {'遅く' if c.percent > 0 else '速く'}なりました")
