"""The published KVM exit costs (kvm-unit-tests ``vmexit``): bare metal against nested, as a table and a figure.

The figures live in ``data/published/vmexit`` with their sources; the ratios
come from :func:`lab.analysis.vmexit.published_costs`.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure
from pandas.io.formats.style import Styler

from lab import published
from lab.analysis import vmexit
from lab.book.core import plots

LEVEL_LABELS = {"bare_metal": "ベアメタル上の KVM", "nested_l2": "入れ子(L2 ゲスト)"}


def load() -> pd.DataFrame:
    return published.vmexit_costs()


_LEVELS = {"bare_metal": "ベアメタル", "nested_l2": "入れ子(L2)"}
_VARIANTS = {"before_patch": "変更前", "after_patch": "変更後", "range": "範囲", "approx": "およそ"}


def table() -> Styler:
    """The published vmexit figures for reading: one row per figure, Japanese headings, no index."""
    pub = load()
    cycles = [f"{int(lo):,}" if pd.isna(hi) else f"{int(lo):,}–{int(hi):,}"
              for lo, hi in zip(pub["cycles"], pub["cycles_high"], strict=True)]
    table = pd.DataFrame({
        "環境": pub["level"].map(_LEVELS).fillna(pub["level"]),
        "テスト": pub["test"],
        "CPU": pub["cpu"].replace({"not named": "記載なし"}),
        "サイクル": cycles,
        "区別": pub["variant"].map(_VARIANTS).fillna(pub["variant"]),
        "出典": pub["source"],
    })
    return table.style.hide(axis="index")


def plot() -> Figure:
    """Bars: published bare-metal vs nested cycles per exit."""
    p = vmexit.published_costs()
    tests = ("cpuid", "vmcall")
    bare = (p.cpuid_bare_mean, p.vmcall_bare_mean)
    nested = (p.cpuid_nested, p.vmcall_nested)
    ratios = (p.ratio_cpuid, p.ratio_vmcall)
    fig, ax = plots.figure()
    x = range(len(tests))
    ax.bar([i - 0.2 for i in x], bare, width=0.4, label=LEVEL_LABELS["bare_metal"], color="#4d4d4d")
    ax.bar([i + 0.2 for i in x], nested, width=0.4, label=LEVEL_LABELS["nested_l2"], color="#d95f02")
    for i, (n, r) in enumerate(zip(nested, ratios, strict=True)):
        ax.text(i + 0.2, n, f"×{r:.1f}", ha="center", va="bottom")
    ax.set_xticks(list(x), list(tests))
    ax.set_ylabel("1 回の exit のサイクル数")
    ax.set_title("kvm-unit-tests vmexit の公表値:ベアメタルと入れ子")
    ax.set_ylim(0, max(nested) * 1.25)
    ax.legend(loc="upper center", ncols=2)
    fig.tight_layout()
    return fig
