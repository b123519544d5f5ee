"""The published KVM exit costs (kvm-unit-tests ``vmexit``): bare metal against nested, as a table and a figure.

The figures live in ``data/published/vmexit`` with their sources; the VMExit
chapter shows them and words its comparisons from :func:`summary`.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure
from pandas.io.formats.style import Styler

from lab import published
from lab.book import plots

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


def summary() -> pd.DataFrame:
    """Bare metal vs nested for cpuid and vmcall, from the published figures (after-patch / ranges)."""
    pub = load()
    rows = []
    for test in ("cpuid", "vmcall"):
        bare = pub[(pub["level"] == "bare_metal") & (pub["test"] == test) & (pub["variant"] != "before_patch")]
        nested = pub[(pub["level"] == "nested_l2") & (pub["test"] == test) & (pub["variant"] == "after_patch")]
        bare_vals = list(bare["cycles"]) + [v for v in bare["cycles_high"] if pd.notna(v)]
        b = sum(bare_vals) / len(bare_vals)
        nv = float(nested["cycles"].iloc[0])
        rows.append({"test": test, "bare_metal": b, "bare_min": min(bare_vals), "bare_max": max(bare_vals),
                     "nested": nv, "ratio": nv / b,
                     "sources": ", ".join(sorted(set(bare["source"]) | set(nested["source"])))})
    return pd.DataFrame(rows)


def plot() -> Figure:
    """Bars: published bare-metal vs nested cycles per exit."""
    s = summary()
    fig, ax = plots.figure()
    x = range(len(s))
    ax.bar([i - 0.2 for i in x], s["bare_metal"], width=0.4, label=LEVEL_LABELS["bare_metal"], color="#4d4d4d")
    ax.bar([i + 0.2 for i in x], s["nested"], width=0.4, label=LEVEL_LABELS["nested_l2"], color="#d95f02")
    for i, r in s.iterrows():
        ax.text(i + 0.2, r["nested"], f"×{r['ratio']:.1f}", ha="center", va="bottom")
    ax.set_xticks(list(x), list(s["test"]))
    ax.set_ylabel("1 回の exit のサイクル数")
    ax.set_title("kvm-unit-tests vmexit の公表値:ベアメタルと入れ子")
    ax.set_ylim(0, s["nested"].max() * 1.25)
    ax.legend(loc="upper center", ncols=2)
    fig.tight_layout()
    return fig
