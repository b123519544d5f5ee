"""The virtio chapter's visible cells: the ring read from guest memory, the I/O paths the reader sets.

:func:`ring_view` reads a split virtqueue out of a guest memory (descriptor
table, available ring, used ring) and shows it as two small tables, so a
cell can show the queue after each step of the driver and the device.
:class:`Paths` is the measurement cell of the three I/O paths: live on a KVM
host (the reader's batch and request size), otherwise every recorded host's
rows nearest to those settings, saying so. :func:`sentences` words the
chapter's comparisons from whatever data the page shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from lab import host
from lab.analysis import io_paths
from lab.bench import harness
from lab.bench import io as bench_io
from lab.book.core import fallback, pages
from lab.book.io import MODE_NAMES, IoData, _ring_tables
from lab.book.ja.backends import backend_ja, backend_short
from lab.book.ja.comparisons import rate_ja, spaced
from lab.devices.memory import GuestMemory
from lab.devices.virtqueue import Layout


class RingView:
    """The descriptor table and both rings of one queue, as read from guest memory just now."""

    def __init__(self, tables: dict[str, pd.DataFrame], caption: str):
        self.tables, self.caption = tables, caption

    def _repr_html_(self) -> str:
        cap = f"<p><strong>{self.caption}</strong></p>" if self.caption else ""
        return (cap + "<p>記述子テーブル</p>" + self.tables["descriptors"].to_html()
                + "<p>利用可能リングと使用済みリング</p>" + self.tables["rings"].to_html(index=False))

    def __repr__(self) -> str:
        return f"{self.caption}\n{self.tables['descriptors']}\n{self.tables['rings'].to_string(index=False)}"


def ring_view(mem: GuestMemory, layout: Layout, caption: str = "", n_desc: int | None = None) -> RingView:
    """Read the queue at ``layout`` from ``mem`` (the first ``n_desc`` descriptors, default all)."""
    return RingView(_ring_tables(mem, layout, layout.size if n_desc is None else n_desc), caption)


# --------------------------------------------------------------------------- the three paths, measured


def _host_cell(row: Any, live: bool) -> str:
    when = "いま測定" if live else f"{pd.Timestamp(row['recorded_at']):%Y-%m-%d} 記録"
    return f"{row['host_id']}({backend_short(row['kvm_backend'], bool(row['runs_in_vm']))}、{when})"


class Paths:
    """HVM(エミュレーション), PV, virtio and virtio + ioeventfd at the reader's batch and request size."""

    def __init__(self, batch: int, size: int, root: str | None = None):
        self.batch, self.size, self._root = batch, size, root
        self.reason = fallback.live_reason()
        self.live = self.reason is None
        self._frame: pd.DataFrame | None = None

    def record(self, results: Sequence[harness.Result]) -> None:
        prov = harness.provenance(host.probe(libvirt_uris=()), command="chapters/io/virtio.md")
        frame = bench_io.to_frame(results, prov)
        self._frame = frame.assign(cpu_model=prov["cpu_model"], runs_in_vm=prov["runs_in_vm"],
                                   kvm_backend=prov["kvm_backend"])

    def _recorded(self) -> tuple[pd.DataFrame, str]:
        rec = pd.concat([ds.get("io", status="ok") for ds in pages.every_host("virtio", self._root) if ds.has("io")],
                        ignore_index=True)
        size = min(rec["size"].unique(), key=lambda s: abs(int(s) - self.size))
        batch = min(rec["batch"].unique(), key=lambda b: abs(int(b) - self.batch))
        said = "" if (size, batch) == (self.size, self.batch) else (
            f"記録にはバッチ {self.batch}、{self.size} バイトの組み合わせがないので、"
            f"いちばん近いバッチ {int(batch)}、{int(size)} バイトの行を示します。")
        return rec[(rec["size"] == size) & (rec["batch"].isin({1, batch}))], said

    def show(self) -> Any:
        if self.live and self._frame is not None:
            frame, said, live = self._frame, "", True
            note = fallback.live_note(host_id=str(frame["host_id"].iloc[0]))
        else:
            frame, said = self._recorded()
            live = False
            last = frame.sort_values("recorded_at").iloc[-1]
            note = fallback.recorded_from(last, str(self.reason or "このセルをまだ実行していない"))
        rows = [{"ホスト": _host_cell(r, live), "方式": MODE_NAMES[r["mode"]], "バッチ": int(r["batch"]),
                 "サイズ(バイト)": int(r["size"]), "件/秒": round(float(r["requests_per_s"])),
                 "exit/件": round(float(r["exits_per_request"]), 4)} for _, r in frame.iterrows()]
        table = pd.DataFrame(rows).sort_values(["ホスト", "バッチ"], kind="stable")
        if said:
            note = fallback.Note(note.title, note.body + " " + said, note.kind, note.css_class)
        return _Shown(note, table)


class _Shown:
    def __init__(self, note: fallback.Note, frame: pd.DataFrame):
        self.note, self.frame = note, frame

    def _repr_html_(self) -> str:
        return self.note._repr_html_() + self.frame.to_html(index=False)

    def __repr__(self) -> str:
        return f"{self.note}\n{self.frame.to_string(index=False)}"


# --------------------------------------------------------------------------- the prose, from the data


def source_sentence(data: IoData) -> str:
    """Whose numbers the paragraph quotes: this machine just now, or which recorded host."""
    backend = backend_ja(data.kvm_backend, data.runs_in_vm) if data.kvm_backend else "KVM"
    if data.live:
        return f"この段落の数字は、いまこの機械(ホスト {data.host_id}、{backend})で測った値です。"
    return (f"この段落の数字は、記録済みのホスト {data.host_id}"
            f"({data.cpu_model}、{backend}、{data.recorded_at} 記録)の値です。")


def sentences(data: IoData) -> dict[str, str]:
    """The chapter's comparisons of the I/O paths, worded from ``data`` (glue names without the io_ prefix)."""
    p = io_paths.paths(data.frame)
    small, large, rps = p.small, p.large, p.rps
    pv_hvm = rate_ja("要求一件を一回の通知で渡す PV", rps["pv"][small],
                     "HVM(エミュレーション)", rps["hvm"][small])
    v_large = rate_ja(f"バッチ {large} の virtio", rps["virtio"][large], f"バッチ {small} の PV", rps["pv"][small])
    v_small = rate_ja(f"バッチ {small} の virtio", rps["virtio"][small], "PV", rps["pv"][small])
    small_meaning = ("一件ずつ通知するなら、記述子とリングを書く手間がある分、"
                     "virtio が PV より有利になる理由はありません。"
                     "リングが効くのは、まとめて渡せるときです。"
                     if p.virtio_small_vs_pv.direction != "higher" else
                     "このデータでは、一件ずつ通知しても virtio が PV を上回りました。")
    efd = {b: p.ioeventfd_vs_kick(b).direction for b in (small, large)}
    efd_words = [rate_ja(f"バッチ {b} の virtio + ioeventfd", rps["virtio_ioeventfd"][b],
                         "通知のたびに exit する virtio", rps["virtio"][b]) for b in (small, large)]
    if set(efd.values()) == {"higher"}:
        efd_meaning = ("ユーザー空間への往復をなくした分だけ、速くなっています。"
                       "ただし差は exit の回数の差ほど大きくありません。"
                       "通知はホストの別のスレッドに渡り、そのスレッドが目を覚まし、"
                       "Python ではさらにインタプリタのロックを取ってからリングを処理するので、"
                       "exit がなくなっても仕事がなくなるわけではないからです。")
    elif set(efd.values()) == {"lower"}:
        efd_meaning = ("exit がなくなったのに遅くなりました。"
                       "通知はホストの別のスレッドに渡り、そのスレッドが目を覚まし、"
                       "Python ではさらにインタプリタのロックを取ってからリングを処理します。"
                       "そのあいだゲストは `used.idx` を見ながら待っています。"
                       "exit をなくしても、仕事がなくなるわけではありません。")
    else:
        efd_meaning = ("バッチによって速くも遅くもなり、はっきりした差はありません。exit をなくしても、"
                       "別のスレッドが目を覚ましてリングを処理する手間は残るからです。")
    out = {"source": source_sentence(data), "pv_vs_hvm": pv_hvm + "。", "virtio_large_vs_pv": v_large + "。",
           "virtio_small_vs_pv": v_small + "。", "small_meaning": small_meaning,
           "efd_sentence": "。".join(efd_words) + "。", "efd_meaning": efd_meaning,
           "backend": backend_ja(data.kvm_backend, data.runs_in_vm) if data.kvm_backend else "KVM"}
    return {k: spaced(v) for k, v in out.items()}
