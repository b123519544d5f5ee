"""The I/O paths side by side: requests per second and exits per request, compared (one io recording).

Exits per request are exact on every back end; requests per second depend on
the host (on PVM they include the emulation of every guest instruction), so
the comparisons here are between paths measured in the same recording, never
across hosts.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from lab.analysis.compare import Comparison, compare

MODES = ("hvm", "pv", "virtio", "virtio_ioeventfd")


@dataclass(frozen=True)
class Paths:
    """One io recording at its smallest and largest batch (one request size)."""

    small: int
    large: int
    size: int
    rps: dict[str, dict[int, float]]      #: mode -> batch -> requests per second
    exits: dict[str, dict[int, float]]    #: mode -> batch -> user-space exits per request

    def vs(self, a: tuple[str, int], b: tuple[str, int]) -> Comparison:
        """Requests per second of (mode, batch) ``a`` against ``b``."""
        return compare(self.rps[a[0]][a[1]], self.rps[b[0]][b[1]])

    @property
    def pv_vs_hvm(self) -> Comparison:
        return self.vs(("pv", self.small), ("hvm", self.small))

    @property
    def virtio_large_vs_hvm(self) -> Comparison:
        return self.vs(("virtio", self.large), ("hvm", self.small))

    @property
    def virtio_large_vs_pv(self) -> Comparison:
        return self.vs(("virtio", self.large), ("pv", self.small))

    @property
    def virtio_small_vs_pv(self) -> Comparison:
        return self.vs(("virtio", self.small), ("pv", self.small))

    def ioeventfd_vs_kick(self, batch: int) -> Comparison:
        """virtio + ioeventfd against virtio that exits on every kick, at ``batch``."""
        return self.vs(("virtio_ioeventfd", batch), ("virtio", batch))


def paths(io_rows: pd.DataFrame, size: int | None = None) -> Paths:
    """From the rows of one io recording (status ok); ``size`` picks a request size (default: the first)."""
    f = io_rows
    if f.empty:
        raise ValueError("no io rows")
    size = int(f["size"].iloc[0]) if size is None else size
    f = f[f["size"].astype(int) == size]
    missing = set(MODES) - set(f["mode"])
    if missing:
        raise ValueError(f"the io recording lacks the paths {sorted(missing)}")
    small, large = int(f["batch"].min()), int(f["batch"].max())

    def table(column: str) -> dict[str, dict[int, float]]:
        out: dict[str, dict[int, float]] = {}
        for m in MODES:
            for b in (small, large):
                v = f[(f["mode"] == m) & (f["batch"].astype(int) == b)][column]
                if v.empty:
                    raise ValueError(f"no {column} for {m} at batch {b}")
                out.setdefault(m, {})[b] = float(v.iloc[0])
        return out

    return Paths(small, large, size, table("requests_per_s"), table("exits_per_request"))
