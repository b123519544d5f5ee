"""One place for the look of every figure: Japanese text, sizes, colours.

Call :func:`setup` (chapters do it through ``lab.book.core.plots``) before drawing. It
selects Noto Sans CJK JP, which Debian ships in ``fonts-noto-cjk``; without it
matplotlib would draw Japanese as empty boxes and print "Glyph ... missing",
so a missing font is an error that says which package to install.
"""

from __future__ import annotations

import functools

import matplotlib
import matplotlib.pyplot as plt
from matplotlib import font_manager

JAPANESE_FONT = "Noto Sans CJK JP"

#: One colour per virtualization style, shared by every chapter.
MODE_COLORS = {
    "native": "#4d4d4d",
    "pv": "#1b9e77",
    "hvm": "#d95f02",
    "virtio": "#7570b3",
}


class FontMissing(RuntimeError):
    pass


@functools.cache
def setup() -> str:
    """Configure matplotlib for Japanese once per process; returns the font file used."""
    try:
        path = font_manager.findfont(
            font_manager.FontProperties(family=JAPANESE_FONT), fallback_to_default=False
        )
    except ValueError:
        raise FontMissing(
            f"matplotlib cannot find the font {JAPANESE_FONT!r}: install Debian's fonts-noto-cjk "
            f"(sudo apt-get install fonts-noto-cjk), then remove matplotlib's font cache "
            f"(rm -rf ~/.cache/matplotlib) and restart the kernel"
        ) from None
    matplotlib.rcParams.update({
        "font.family": "sans-serif",
        "font.sans-serif": [JAPANESE_FONT, "DejaVu Sans"],
        "axes.unicode_minus": False,
        "figure.dpi": 100,
        "savefig.dpi": 150,
        "figure.figsize": (7.5, 4.2),
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.alpha": 0.3,
    })
    return path


def figure(*args, **kwargs):
    """``plt.subplots`` after :func:`setup`."""
    setup()
    return plt.subplots(*args, **kwargs)
