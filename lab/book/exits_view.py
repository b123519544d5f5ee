"""The VMExit chapter's visible cells: a measurement the reader sets, Python vs C, the native floor.

Each cell calls the measuring code itself and
hands the result to an object from here, which shows it next to what every
recorded host answered (newest recording per host) and says which row is
live and which is recorded. Without KVM (or with ``LAB_FORCE_RECORDED=1``)
only the recorded rows are shown, with the note of :mod:`lab.book.core.fallback`.
"""

from __future__ import annotations

import platform
import shutil
import statistics
from typing import Any

import pandas as pd

from lab import host
from lab.bench.harness import Result
from lab.book.core import fallback, pages
from lab.book.ja.backends import backend_short

KIND_JA = {"loop": "空ループ", "cpuid": "cpuid", "hypercall": "ハイパーコール", "pio_user": "ポート出力 → ユーザー空間",
           "mmio_user": "MMIO 書き込み → ユーザー空間", "pio_ioeventfd": "ポート出力 → ioeventfd"}


def host_words(row: Any) -> str:
    """A recorded host as a table cell: id, CPU, back end, date."""
    when = pd.Timestamp(row["recorded_at"]).strftime("%Y-%m-%d")
    backend = backend_short(row["kvm_backend"], bool(row["runs_in_vm"]))
    return f"{row['host_id']}({row['cpu_model']}、{backend}、{when} 記録)"


def lacking_words(ds: Any) -> str:
    """A recorded host that has no recording of a resource, as a table cell: id, CPU, back end."""
    rows = next((f for f in ds.frames.values() if len(f)), None)
    if rows is None:
        return ds.host_id
    r = rows.iloc[-1]
    return f"{ds.host_id}({r['cpu_model']}、{backend_short(r['kvm_backend'], bool(r['runs_in_vm']))})"


#: What a comparison table says in the cells of a host that has no recording of its resource.
NOT_RECORDED = "記録なし"


def _this_host() -> str:
    p = host.probe(libvirt_uris=())
    return f"{p.host_id}(この機械、{backend_short(p.kvm.backend, p.runs_in_vm)}、いま測定)"


class _Cell:
    """Live (``record`` the result, ``show`` it beside the recordings) or recorded only."""

    resource = ""

    def __init__(self, root: str | None = None, needs: str | None = None):
        ds = pages.data("vmexit", root)
        self.reason = None if ds.live else fallback.reason_ja(str(ds.reason))
        if self.reason is None and needs and shutil.which(needs) is None:
            self.reason = f"この機械には {needs} がない(C の VMM をコンパイルできない)"
        self.live = self.reason is None
        self._root = root
        self._live_rows: list[dict[str, Any]] = []

    def recorded(self, **where: Any) -> pd.DataFrame:
        """Every recorded host's newest rows of this cell's resource (``where``: column values)."""
        return self.recorded_of(self.resource, **where)

    def recorded_of(self, resource: str, **where: Any) -> pd.DataFrame:
        frames = [ds.get(resource, **where) for ds in pages.every_host("vmexit", self._root) if ds.has(resource)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["host_id", "recorded_at"])

    def lacking(self, resource: str | None = None) -> list[str]:
        """The recorded hosts with no recording of ``resource`` (default this cell's), as table cells."""
        resource = resource or self.resource
        return [lacking_words(ds) for ds in pages.every_host("vmexit", self._root) if not ds.has(resource)]

    def _with_lacking(self, frame: pd.DataFrame, keep: tuple[str, ...] = ()) -> pd.DataFrame:
        """``frame`` with one row per recorded host that lacks this cell's resource, saying so in every cell
        but the host's (and those named in ``keep``, copied from the first row)."""
        hosts = self.lacking()
        if not hosts:
            return frame
        first = frame.iloc[0] if len(frame) else None
        rows = [{c: (h if c == "ホスト" else first[c] if c in keep and first is not None else NOT_RECORDED)
                 for c in frame.columns} for h in hosts]
        return pd.concat([frame.astype(object), pd.DataFrame(rows, columns=frame.columns)], ignore_index=True)

    def _note(self, recorded: pd.DataFrame) -> fallback.Note:
        if self.live:
            return fallback.live_note(host_id=host.host_id(host.read_cpuinfo()),
                                      text="「いま測定」の行がこのセルの結果で、ほかの行は記録済みのホストの値です。")
        if recorded.empty:
            return fallback.missing_note(pages.data("vmexit", self._root, live=False), self.resource)
        return fallback.recorded_from(recorded.sort_values("recorded_at").iloc[-1], str(self.reason))


class Measurement(_Cell):
    """One kind of exit measured with the reader's settings (``lab.bench.exits.measure_kind``)."""

    resource = "exits"

    def __init__(self, kind: str, mode: str = "protected32", root: str | None = None):
        super().__init__(root)
        self.kind, self.mode = kind, mode

    def record(self, result: Result) -> None:
        s = result.spread or {}
        self._live_rows.append({"ホスト": _this_host(), "サイクル/回(中央値)": round(result.cycles_per_exit or 0),
                                "四分位範囲": f"{s.get('q1', 0):.0f}–{s.get('q3', 0):.0f}",
                                "回数 × 繰り返し": f"{result.iterations} × {result.repeat}"})

    def show(self) -> fallback.NotedTable:
        rec = self.recorded(kind=self.kind, mode=self.mode, status="ok")
        rows = list(self._live_rows) + [
            {"ホスト": host_words(r), "サイクル/回(中央値)": round(r["cycles_per_exit"]),
             "四分位範囲": f"{r['cycles_q1']:.0f}–{r['cycles_q3']:.0f}",
             "回数 × 繰り返し": f"{int(r['iterations'])} × {int(r['repeat'])}"} for _, r in rec.iterrows()]
        frame = pd.DataFrame(rows, columns=["ホスト", "サイクル/回(中央値)", "四分位範囲", "回数 × 繰り返し"])
        frame = self._with_lacking(frame)
        frame.insert(0, "種類", KIND_JA.get(self.kind, self.kind))
        return fallback.NotedTable(self._note(rec), frame)


class SideBySide(_Cell):
    """The same guest bytes under the Python VMM and the C VMM (``lab.bench.reference.compare``)."""

    resource = "reference"

    def __init__(self, root: str | None = None):
        super().__init__(root, needs="gcc")

    def record(self, rows: list[dict[str, Any]]) -> None:
        here = _this_host()
        self._live_rows += [{**r, "ホスト": here} for r in rows]

    def show(self) -> fallback.NotedTable:
        rec = self.recorded()
        rows = [{"ホスト": r["ホスト"], "kind": r["kind"], "python": r["python"], "c": r["c"]} for r in self._live_rows]
        rows += [{"ホスト": host_words(r), "kind": r["kind"], "python": r["python_cycles"], "c": r["c_cycles"]}
                 for _, r in rec.iterrows()]
        f = pd.DataFrame(rows)
        frame = pd.DataFrame({"ホスト": f["ホスト"], "種類": f["kind"].map(KIND_JA),
                              "Python の VMM(サイクル/回)": f["python"].round(0).astype(int),
                              "C の VMM(サイクル/回)": f["c"].round(0).astype(int),
                              "Python − C": [f"{100 * (p - c) / c:+.0f} %"
                                             for p, c in zip(f["python"], f["c"], strict=True)]})
        return fallback.NotedTable(self._note(rec), self._with_lacking(frame))


class Floor(_Cell):
    """The guest's empty loop next to the same loop run natively in a host process."""

    resource = "native"

    def __init__(self, root: str | None = None):
        super().__init__(root)
        self.native_ok = self.live and platform.machine() in ("x86_64", "AMD64")
        self._native: float | None = None
        self._guest: float | None = None

    def record_native(self, samples: list[float]) -> None:
        self._native = float(statistics.median(samples))

    def record_guest(self, result: Result) -> None:
        self._guest = result.cycles_per_exit

    def recorded_rows(self) -> list[dict[str, Any]]:
        """Per recorded host: the newest native loop, and the guest loop of the same session when there is one."""
        nat = self.recorded()
        ref = self.recorded_of("reference", kind="loop", mode="protected32")
        loops = self.recorded_of("exits", kind="loop", mode="protected32", status="ok")
        rows = []
        for _, r in nat.iterrows():
            same = ref[ref["host_id"] == r["host_id"]].get("python_cycles", pd.Series(dtype=float))
            other = loops[loops["host_id"] == r["host_id"]].get("cycles_per_exit", pd.Series(dtype=float))
            guest = float(same.iloc[0]) if len(same) else float(other.iloc[0]) if len(other) else None
            rows.append({"host": host_words(r), "guest": guest, "native": float(r["cycles_per_iteration"])})
        return rows

    def show(self) -> fallback.NotedTable:
        rows = self.recorded_rows()
        if self._native is not None:
            rows.insert(0, {"host": _this_host(), "guest": self._guest, "native": self._native})
        f = pd.DataFrame(rows)
        frame = pd.DataFrame({
            "ホスト": f["host"],
            "ゲストの中(サイクル/周)": ["-" if pd.isna(g) else f"{g:,.0f}" for g in f["guest"]],
            "ホストでそのまま(サイクル/周)": f["native"].round(2),
            "比(ゲスト ÷ ホスト)": ["-" if pd.isna(g) else f"{g / n:,.0f} 倍"
                                   for g, n in zip(f["guest"], f["native"], strict=True)],
        })
        return fallback.NotedTable(self._note(self.recorded()), self._with_lacking(frame))
