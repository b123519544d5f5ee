"""Published figures and dates: validated loaders and the numbers computed from them.

Everything here reads ``data/published/<source>/`` and ``data/timeline.csv``
through :func:`lab.datapackage.load_resource`, so a broken CSV is a
:class:`~lab.datapackage.DataError` at load time. Only numbers that the cited
source prints are stored; ratios and percentages the prose quotes are computed
here from those numbers. The figures and Japanese tables of these sources are
in :mod:`lab.book.published`.

Sources are keys of ``references.bib`` (column ``source`` of every resource).
"""

from __future__ import annotations

from datetime import date
from functools import cache
from pathlib import Path

import pandas as pd

from lab.datapackage import load_resource
from lab.paths import DATA_DIR, PUBLISHED_DIR

SOSP_DIR = PUBLISHED_DIR / "sosp2003"
ADAMS_DIR = PUBLISHED_DIR / "adams_agesen2006"
GREGG_DIR = PUBLISHED_DIR / "gregg2017"
ACQUISITIONS_DIR = PUBLISHED_DIR / "acquisitions"
VMEXIT_DIR = PUBLISHED_DIR / "vmexit"
TIMELINE_DIR = DATA_DIR


# --------------------------------------------------------------------------- loaders


@cache
def _load(package_dir: str, name: str) -> pd.DataFrame:
    return load_resource(package_dir, name)


def _fresh(package_dir: str | Path, name: str) -> pd.DataFrame:
    """A copy of a validated resource (cached per process: the data is read-only)."""
    return _load(str(package_dir), name).copy()


def sosp_figure3() -> pd.DataFrame:
    """SOSP 2003 Figure 3 (transcribed bar labels), one row per benchmark and system."""
    return _fresh(SOSP_DIR, "figure3")


def sosp_text_figures() -> pd.DataFrame:
    """Numbers printed in the text of the SOSP 2003 paper, indexed by ``key``."""
    return _fresh(SOSP_DIR, "text_figures").set_index("key")


def sosp_text(key: str) -> float:
    """One number printed in the SOSP 2003 text (see ``text_figures.csv``)."""
    table = sosp_text_figures()
    if key not in table.index:
        raise KeyError(f"no SOSP 2003 text figure {key!r}; known: {', '.join(table.index)}")
    return float(table.loc[key, "value"])


def vmexit_costs() -> pd.DataFrame:
    """KVM exit costs measured with kvm-unit-tests ``vmexit``: bare metal and nested (L2), one row per figure."""
    return _fresh(VMEXIT_DIR, "vmexit")


def adams_agesen() -> pd.DataFrame:
    """Adams & Agesen 2006 nanobenchmarks, one row per operation and mode."""
    return _fresh(ADAMS_DIR, "nanobench")


def gregg_matrix() -> pd.DataFrame:
    """Gregg 2017 matrix, one row per cell (transcribed from the post's figure)."""
    return _fresh(GREGG_DIR, "matrix")


def gregg_levels() -> pd.DataFrame:
    """The cost Gregg 2017 states for each kind of cell, indexed by level code."""
    return _fresh(GREGG_DIR, "levels").set_index("level")


def acquisitions() -> pd.DataFrame:
    """Announced acquisition prices (Citrix/XenSource, Red Hat/Qumranet), indexed by target."""
    return _fresh(ACQUISITIONS_DIR, "acquisitions").set_index("target")


def timeline() -> pd.DataFrame:
    """``data/timeline.csv`` with ``start``/``end`` dates for the period each row may mean.

    A day-precision event starts and ends on its day; a month- or year-precision
    event spans its whole month or year (the figure draws it as a bar).
    """
    frame = _fresh(TIMELINE_DIR, "timeline")
    spans = [date_span(d, p) for d, p in zip(frame["date"], frame["precision"], strict=True)]
    frame["start"] = [s for s, _ in spans]
    frame["end"] = [e for _, e in spans]
    return frame


def date_span(text: str, precision: str) -> tuple[date, date]:
    """First and last day that ``text`` (``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``) may mean.

    ``precision`` must agree with the number of parts, else ``ValueError``.
    """
    parts = text.split("-")
    expected = {"year": 1, "month": 2, "day": 3}[precision]
    if len(parts) != expected:
        raise ValueError(f"date {text!r} does not have {precision} precision")
    year = int(parts[0])
    if precision == "year":
        return date(year, 1, 1), date(year, 12, 31)
    month = int(parts[1])
    if precision == "month":
        last = (date(year + (month == 12), month % 12 + 1, 1) - date.resolution)
        return date(year, month, 1), last
    day = date.fromisoformat(text)
    return day, day



# --------------------------------------------------------------------------- SOSP 2003


def sosp_relative() -> pd.DataFrame:
    """Figure 3 normalised per benchmark: 1.0 = native Linux, larger = better.

    Higher-is-better scores are divided by the native score; for the build time
    (lower is better) the native time is divided by the system's time.
    """
    frame = sosp_figure3()
    native = frame[frame["system"] == "L"].set_index("benchmark")["value"]
    base = frame["benchmark"].map(native)
    hib = frame["higher_is_better"].astype(bool)
    frame["relative"] = (frame["value"] / base).where(hib, base / frame["value"])
    return frame


def sosp_value(benchmark: str, system: str) -> float:
    frame = sosp_figure3()
    row = frame[(frame["benchmark"] == benchmark) & (frame["system"] == system)]
    if len(row) != 1:
        raise KeyError(f"no Figure 3 value for benchmark={benchmark!r}, system={system!r}")
    return float(row["value"].iloc[0])


def sosp_overhead_pct(benchmark: str, system: str = "X") -> float:
    """How much worse than native, in percent (positive = slower / fewer).

    For the build time: ``(t_system / t_native - 1) * 100`` (271/263 gives
    Xen's "3% overhead"); for scores: ``(1 - s_system / s_native) * 100``.
    """
    frame = sosp_figure3()
    hib = bool(frame.loc[frame["benchmark"] == benchmark, "higher_is_better"].iloc[0])
    value, native = sosp_value(benchmark, system), sosp_value(benchmark, "L")
    return (1 - value / native) * 100 if hib else (value / native - 1) * 100


def sosp_fraction_of_native(benchmark: str, system: str) -> float:
    """The system's score as a fraction of native (higher-is-better benchmarks)."""
    return sosp_value(benchmark, system) / sosp_value(benchmark, "L")



def adams_cycles(operation: str, mode: str) -> int:
    frame = adams_agesen()
    row = frame[(frame["operation"] == operation) & (frame["mode"] == mode)]
    if len(row) != 1 or pd.isna(row["cycles"].iloc[0]):
        raise KeyError(f"no printed cycle count for operation={operation!r}, mode={mode!r}")
    return int(row["cycles"].iloc[0])



def gregg_rows() -> list[str]:
    frame = gregg_matrix().sort_values("type_order")
    return list(dict.fromkeys(frame["type"]))

