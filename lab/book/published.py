"""The published figures as the history chapters show them: Japanese labels, figures, tables.

The numbers come from :mod:`lab.published` (validated loaders); this module
only presents them. The loaders are re-exported so that a chapter needs one
import (``from lab.book import published as pub``).
"""

from __future__ import annotations

import html
from datetime import date

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from lab.book.core import plots
from lab.book.core.widgets import Switchable
from lab.published import (  # noqa: F401  (re-exported for the chapters)
    acquisitions,
    adams_agesen,
    adams_cycles,
    date_span,
    gregg_levels,
    gregg_matrix,
    gregg_rows,
    sosp_figure3,
    sosp_fraction_of_native,
    sosp_overhead_pct,
    sosp_relative,
    sosp_text,
    sosp_text_figures,
    sosp_value,
    timeline,
)

#: The four systems of SOSP 2003 Figure 3, in the paper's order.
SOSP_SYSTEMS = {
    "L": "Linux(ネイティブ)",
    "X": "Xen(XenoLinux)",
    "V": "VMware Workstation 3.2",
    "U": "User-Mode Linux",
}
SOSP_COLORS = {
    "L": plots.MODE_COLORS["native"],
    "X": plots.MODE_COLORS["pv"],
    "V": "#e6ab02",
    "U": "#a6761d",
}

ADAMS_MODES = {
    "native": "ネイティブ",
    "bt": "ソフトウェア VMM(バイナリ変換)",
    "vtx": "ハードウェア VMM(初代 VT-x)",
}
ADAMS_COLORS = {
    "native": plots.MODE_COLORS["native"],
    "bt": "#1f78b4",
    "vtx": plots.MODE_COLORS["hvm"],
}

GREGG_DIMENSIONS_JA = {
    "CPU & memory": "CPU とメモリ",
    "network": "ネットワーク",
    "storage": "ストレージ",
    "interrupts & timers": "割り込みとタイマー",
    "motherboard & boot": "マザーボードと起動",
}
GREGG_LEVELS_JA = {
    "VS": "ソフトウェアで仮想化",
    "P": "準仮想化",
    "VH": "ハードウェアで仮想化",
    "H": "ハードウェアそのもの",
}
GREGG_COLORS = {"VS": "#d73027", "P": "#fdae61", "VH": "#a6d96a", "H": "#1a9850"}

TIMELINE_CATEGORIES = {
    "xen": ("Xen", plots.MODE_COLORS["pv"]),
    "kvm": ("KVM", plots.MODE_COLORS["hvm"]),
    "hardware": ("CPU の仮想化支援", "#e7298a"),
    "cloud": ("クラウド", "#1f78b4"),
    "business": ("企業", "#666666"),
    "io": ("I/O(virtio)", plots.MODE_COLORS["virtio"]),
    "tooling": ("ツール", "#a6761d"),
}
PRECISION_JA = {"day": "", "month": "(月のみ判明)", "year": "(年のみ判明)"}


# --------------------------------------------------------------------------- chapters


def glue_figure(name: str, fig: Figure) -> None:
    """Glue ``fig`` for a ``glue:figure`` directive and close it, so the inline
    backend does not show it a second time in the cell's output."""
    from myst_nb import glue

    glue(name, fig, display=False)
    plt.close(fig)



def sosp_figure() -> Figure:
    """Grouped bars of Figure 3, normalised per benchmark (native = 1)."""
    rel = sosp_relative()
    benchmarks = list(dict.fromkeys(rel["benchmark"]))
    fig, ax = plots.figure(figsize=(8, 4.2))
    width = 0.2
    for i, (code, label) in enumerate(SOSP_SYSTEMS.items()):
        sub = rel[rel["system"] == code].set_index("benchmark").loc[benchmarks]
        xs = [b + (i - 1.5) * width for b in range(len(benchmarks))]
        ax.bar(xs, sub["relative"], width, label=label, color=SOSP_COLORS[code])
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(benchmarks)))
    ax.set_xticklabels([b + ("\n(時間、逆数で比較)" if b == "Linux build" else "") for b in benchmarks], fontsize=9)
    ax.set_ylabel("ネイティブ Linux を 1 とした相対性能")
    ax.set_ylim(0, 1.1)
    ax.legend(fontsize=8, ncols=2, loc="lower left")
    ax.set_title("SOSP 2003 論文 図 3 の棒ラベルから(転記値)", fontsize=10)
    return fig


# --------------------------------------------------------------------------- Adams & Agesen 2006


def adams_agesen_table() -> pd.DataFrame:
    """Operations x modes, each cell the printed cycles or the paper's statement."""
    frame = adams_agesen()
    frame["shown"] = [
        f"{int(c):,}" if pd.notna(c) else (s or "—") for c, s in zip(frame["cycles"], frame["stated"], strict=True)
    ]
    table = frame.pivot(index="operation", columns="mode", values="shown")
    order = list(dict.fromkeys(frame["operation"]))
    table = table.reindex(index=order, columns=list(ADAMS_MODES)).fillna("—")
    table.columns = [ADAMS_MODES[m] for m in table.columns]
    table.index.name = "操作"
    return table



def adams_agesen_figure() -> Figure:
    """Horizontal grouped bars on a log scale; cells without a printed number are labelled."""
    frame = adams_agesen()
    ops = list(dict.fromkeys(frame["operation"]))
    fig, ax = plots.figure(figsize=(8, 5.6))
    height = 0.28
    for i, mode in enumerate(ADAMS_MODES):
        sub = frame[frame["mode"] == mode].set_index("operation")
        for j, op in enumerate(ops):
            y = j + (i - 1) * height
            if op in sub.index and pd.notna(sub.loc[op, "cycles"]):
                ax.barh(y, int(sub.loc[op, "cycles"]), height, color=ADAMS_COLORS[mode])
            else:
                ax.text(1.1, y, "(数値なし: 表を参照)", va="center", fontsize=7, color=ADAMS_COLORS[mode])
    handles = [Patch(color=ADAMS_COLORS[m], label=label) for m, label in ADAMS_MODES.items()]
    ax.legend(handles=handles, fontsize=8, loc="lower right")
    ax.set_xscale("log")
    ax.set_xlim(1, 50_000)
    ax.set_yticks(range(len(ops)))
    ax.set_yticklabels(ops)
    ax.invert_yaxis()
    ax.set_xlabel("1 回あたりの CPU サイクル(対数目盛)")
    ax.set_title("Adams & Agesen 2006 のナノベンチマーク(Pentium 4)", fontsize=10)
    return fig


# --------------------------------------------------------------------------- Gregg 2017



def gregg_figure(highlight: str | None = None) -> Figure:
    """The matrix as a coloured grid; ``highlight`` (a row label) fades the other rows.

    The least certain cell of the transcription is drawn with a dashed edge and
    a question mark.
    """
    frame = gregg_matrix()
    rows = gregg_rows()
    if highlight is not None and highlight not in rows:
        raise ValueError(f"{highlight!r} is not a row of the matrix: {rows}")
    dims = list(GREGG_DIMENSIONS_JA)
    fig, ax = plots.figure(figsize=(8, 4.4))
    ax.grid(False)
    for _, cell in frame.iterrows():
        r, c = rows.index(cell["type"]), dims.index(cell["dimension"])
        faded = highlight is not None and cell["type"] != highlight
        certain = bool(cell["certain"])
        ax.add_patch(Rectangle((c, r), 1, 1, facecolor=GREGG_COLORS[cell["level"]],
                               alpha=0.25 if faded else 1.0, edgecolor="white" if certain else "black",
                               linewidth=1.5, linestyle="-" if certain else "--"))
        ax.text(c + 0.5, r + 0.5, cell["level"] + ("?" if not certain else ""), ha="center", va="center",
                fontsize=10, color="#999999" if faded else "black")
    if highlight is not None:
        r = rows.index(highlight)
        ax.add_patch(Rectangle((0, r), len(dims), 1, fill=False, edgecolor="black", linewidth=2.5))
    ax.set_xlim(0, len(dims))
    ax.set_ylim(len(rows), 0)
    ax.set_xticks([c + 0.5 for c in range(len(dims))])
    ax.set_xticklabels([GREGG_DIMENSIONS_JA[d] for d in dims], fontsize=9)
    ax.xaxis.tick_top()
    ax.set_yticks([r + 0.5 for r in range(len(rows))])
    ax.set_yticklabels(rows, fontsize=9)
    ax.tick_params(length=0)
    for side in ("top", "right", "left", "bottom"):
        ax.spines[side].set_visible(False)
    handles = [Patch(color=GREGG_COLORS[k], label=f"{k}: {v}") for k, v in GREGG_LEVELS_JA.items()]
    ax.legend(handles=handles, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.02), ncols=4, frameon=False)
    return fig


def gregg_row_note(row: str) -> str:
    """A short Japanese HTML note for one row, written from the data of that row."""
    frame = gregg_matrix()
    cells = frame[frame["type"] == row].sort_values("dimension_order")
    if cells.empty:
        raise ValueError(f"{row!r} is not a row of the matrix")
    levels = gregg_levels()
    items = []
    for _, cell in cells.iterrows():
        dim = GREGG_DIMENSIONS_JA[cell["dimension"]]
        lvl = cell["level"]
        text = f"{html.escape(dim)}: <b>{html.escape(GREGG_LEVELS_JA[lvl])}</b>({lvl})"
        if not bool(cell["certain"]):
            text += " ※図からの転記で最も不確かなセル"
        items.append(f"<li>{text}</li>")
    counts = cells["level"].value_counts()
    summary = "、".join(f"{GREGG_LEVELS_JA[k]} {counts[k]} 列" for k in GREGG_LEVELS_JA if k in counts)
    stated = []
    for k in GREGG_LEVELS_JA:
        if k in counts and pd.notna(levels.loc[k, "low"]):
            lo, hi = _fmt_number(levels.loc[k, "low"]), _fmt_number(levels.loc[k, "high"])
            unit = "倍遅い" if levels.loc[k, "unit"] == "times" else "% のオーバーヘッド"
            if "or worse" in str(levels.loc[k, "stated"]):
                unit += "(あるいはそれ以上)"
            stated.append(f"{GREGG_LEVELS_JA[k]}は {lo}〜{hi}{unit}")
    expect = f" Gregg の見積もりでは{'、'.join(stated)}。" if stated else ""
    return (f"<p><b>{html.escape(row)}</b>: {summary}。{expect}</p>"
            f"<ul>{''.join(items)}</ul>")


def gregg_switchable():
    """One tab (or toggle button) per row of the matrix, each with its note."""
    rows = gregg_rows()
    views = {row: gregg_figure(highlight=row) for row in rows}
    return Switchable(
        views,
        group="gregg-row",
        alt={row: f"Gregg 2017 の仮想化方式の表で、行「{row}」を強調した色付きの格子" for row in rows},
        notes={row: gregg_row_note(row) for row in rows},
        caption="行を選ぶと、その方式の各列がどう仮想化されているかを示します",
        selected="Xen HVM 4.0.1",
    )


def usd_ja(million_usd: float) -> str:
    """A price in millions of US dollars written the Japanese way: 500 -> '5 億ドル',
    107 -> '1 億 700 万ドル'."""
    man_total = round(million_usd * 100)  # 1 million = 100 man (10^4)
    oku, man = divmod(man_total, 10_000)
    parts = ([f"{oku:,} 億"] if oku else []) + ([f"{man:,} 万"] if man else [])
    return " ".join(parts) + "ドル" if parts else "0 ドル"


def _fmt_number(x: float) -> str:
    return f"{x:g}"

# --------------------------------------------------------------------------- timeline


def timeline_figure(first_year: int = 2003, last_year: int = 2017, label_left_from: int = 2012) -> Figure:
    """One row per event; day-precise events are dots, year/month-precise ones are bars
    over the whole period they may mean, and their labels say so."""
    frame = timeline()
    frame = frame[(frame["start"] >= date(first_year, 1, 1)) & (frame["start"] <= date(last_year, 12, 31))]
    frame = frame.reset_index(drop=True)
    fig, ax = plots.figure(figsize=(8.5, 0.36 * len(frame) + 1.2))
    ax.grid(True, axis="x")
    ax.grid(False, axis="y")
    for i, ev in frame.iterrows():
        _, color = TIMELINE_CATEGORIES[ev["category"]]
        if ev["precision"] == "day":
            ax.plot([ev["start"]], [i], "o", color=color, markersize=7)
        else:
            ax.barh(i, (ev["end"] - ev["start"]).days + 1, left=ev["start"], height=0.5,
                    color=color, alpha=0.45, edgecolor=color, hatch="//")
        label = ev["label_ja"] + PRECISION_JA[ev["precision"]]
        if ev["start"].year >= label_left_from:
            ax.text(ev["start"], i, label + "  ", va="center", ha="right", fontsize=8)
        else:
            ax.text(ev["end"], i, "  " + label, va="center", ha="left", fontsize=8)
    ax.set_yticks([])
    ax.set_ylim(len(frame) - 0.5, -0.5)
    ax.set_xlim(date(first_year, 1, 1), date(last_year + 1, 6, 30))
    ax.xaxis.set_major_locator(mdates.YearLocator(2))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y"))
    ax.spines["left"].set_visible(False)
    handles = [Patch(color=color, label=label) for k, (label, color) in TIMELINE_CATEGORIES.items()
               if k in set(frame["category"])]
    handles.append(Patch(facecolor="white", edgecolor="black", hatch="//",
                         label="日付が年(月)までしか分からない出来事"))
    ax.legend(handles=handles, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.06), ncols=4, frameon=False)
    return fig
