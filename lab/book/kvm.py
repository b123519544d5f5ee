"""What the VMExit chapter shows: live on a KVM host, recorded otherwise (the KVM chapter: lab.book.chapters.kvm).

Every function returns a :class:`Shown`: a table plus a sentence (in
Japanese) that says where the numbers come from. With a usable ``/dev/kvm``
the VMM really runs; without one (Binder, a laptop, the build of the static
book) the table comes from ``data/measured/<host-id>/``, and the sentence
names that host and says why nothing was measured here. Set
``LAB_FORCE_RECORDED=1`` to see the recorded view on a KVM host.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from lab import datapackage, published
from lab.analysis import vmexit as analysis_vmexit
from lab.bench import exits as bench_exits
from lab.book.core import fallback, pages, plots
from lab.book.core.fallback import live_reason  # noqa: F401  (the VMExit chapter asks it)
from lab.book.ja.backends import backend_short
from lab.book.ja.messages import say

KIND_LABELS = {
    "loop": "空ループ(exit なし)",
    "cpuid": "cpuid(カーネル内で処理)",
    "hypercall": "ハイパーコール(vmcall / vmmcall)",
    "pio_user": "ポート出力 → ユーザー空間(QEMU の経路)",
    "mmio_user": "MMIO 書き込み → ユーザー空間",
    "pio_ioeventfd": "ポート出力 → ioeventfd(カーネル内で完結)",
}
STATUS_JA = {"ok": "測定済み", "unavailable": "測定不能", "error": "エラー"}


class Text(str):
    """A string that ``glue`` shows without quotes (its repr is itself)."""

    def __repr__(self) -> str:
        return str(self)


@dataclass
class Shown:
    """A table and where it comes from (``live`` or a recorded host)."""

    frame: pd.DataFrame
    live: bool
    host_id: str
    note: fallback.Note
    meta: dict[str, Any] = field(default_factory=dict)

    def _repr_html_(self) -> str:
        return self.note._repr_html_() + self.frame.to_html(index=False, na_rep="-")

    def __repr__(self) -> str:
        return f"{self.note}\n{self.frame.to_string(index=False)}"


def _missing(ds: Any, resource: str) -> Shown:
    """What a cell shows when its data set has no rows of ``resource``: the note, and an empty table."""
    return Shown(pd.DataFrame(), ds.live, ds.host_id, fallback.missing_note(ds, resource))


MODES_JA = {"real": "リアルモード", "protected32": "32 ビット保護モード", "long64": "64 ビットモード"}


def _error(cell: Any) -> dict[str, Any] | None:
    """The ``error`` cell of an exits recording (JSON ``{code, params}``); None when empty or older than it."""
    text = _text(cell)
    return json.loads(text) if text else None


def _text(value: Any) -> str:
    """A string cell of a loaded resource: an empty cell comes back missing (None or NaN)."""
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def _when(row: Any) -> str:
    return f"{pd.Timestamp(row['recorded_at']):%Y-%m-%d %H:%M} UTC"


def live_words(why: str | None) -> str:
    """One sentence: does this build run the VMM live, or show recordings (and why)."""
    if why is None:
        return ("このページを組み立てた(または実行している)機械では KVM が使えたので、"
                "以下の表はその場で実行した値です。")
    return (f"このページを組み立てた(または実行している)機械では KVM を使わなかったので({why})、"
            "以下の表は記録済みのホストの値です。")


# --------------------------------------------------------------------------- the VMExit chapter


def _count(values: pd.Series) -> list[str]:
    """Whole numbers with thousands separators ("-" where there is none), as the prose writes them."""
    return ["-" if pd.isna(v) else f"{float(v):,.0f}" for v in values]


def _exits_display(frame: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame({
        "種類": frame["kind"].map(KIND_LABELS).fillna(frame["kind"]),
        "状態": frame["status"].map(STATUS_JA).fillna(frame["status"]),
        "サイクル/回(中央値)": _count(frame["cycles_per_exit"]),
        "正味(空ループを引く)": _count(frame["net_cycles_per_exit"]),
        "ns/回": _count(frame["ns_per_exit"]),
        "四分位範囲": [("-" if pd.isna(a) else f"{a:.0f}–{b:.0f}")
                      for a, b in zip(frame["cycles_q1"], frame["cycles_q3"], strict=True)],
        "理由": [say(_error(e), r if isinstance(r, str) else "")
                 for r, e in zip(frame["reason"], frame.get("error", pd.Series([None] * len(frame))), strict=True)],
    })
    return out.reset_index(drop=True)


def exits(repeat: int = 5, iterations: int = 1000, mode: str = "protected32", root: str | None = None,
          live: bool = True) -> Shown:
    """The exits benchmark: measured here (quick settings), else the page's recorded host (``live=False``: every
    recorded host)."""
    if not live:
        return _all_hosts_exits(root, mode)
    ds = pages.data("vmexit", root)
    if ds.live:
        results = bench_exits.run(repeat=repeat, iterations=iterations, mode=mode, hypercall_timeout_s=1.0)
        prov = {"host_id": ds.host_id, "recorded_at": pd.Timestamp.now(tz="UTC")}
        raw = bench_exits.to_frame(results, prov)
        for col in ("cycles_per_exit", "net_cycles_per_exit", "ns_per_exit", "cycles_q1", "cycles_q3",
                    "host_ns_per_exit", "tsc_khz"):
            raw[col] = pd.to_numeric(raw[col])
        raw["reason"] = raw["reason"].replace("", None)
        text = (f"この表は、いまこの機械で測った値です(各 {iterations} 回 × {repeat} 回の繰り返し、{mode})。"
                "`python -m lab bench exits` で既定の回数で測り直せます。")
        return Shown(_exits_display(raw), True, prov["host_id"],
                     fallback.live_note(host_id=prov["host_id"], text=text), {"raw": raw})
    if not ds.has("exits"):
        return _missing(ds, "exits")
    rec = ds.get("exits", mode=mode)
    return Shown(_exits_display(rec), False, ds.host_id, fallback.data_set_note(ds, "exits"), {"raw": rec})


def _recorded_exits(root: str | None, mode: str | None = None) -> pd.DataFrame:
    """Every recorded host's newest exits rows (of ``mode``, or of every mode), one block per host."""
    where = {} if mode is None else {"mode": mode}
    frames = [ds.get("exits", **where) for ds in pages.every_host("vmexit", root) if ds.has("exits")]
    if not frames:
        raise datapackage.DataError("no recording of 'exits': run 'python -m lab record --only exits' on a KVM host")
    return pd.concat(frames, ignore_index=True)


def _all_hosts_exits(root: str | None, mode: str) -> Shown:
    """The newest exits recording of every recorded host, one block of rows per host."""
    rec = _recorded_exits(root, mode).sort_values(["host_id", "recorded_at"], kind="stable").reset_index(drop=True)
    frame = _exits_display(rec)
    frame.insert(0, "ホスト", [f"{r['host_id']}({backend_short(r['kvm_backend'], bool(r['runs_in_vm']))})"
                             for _, r in rec.iterrows()])
    hosts = rec.groupby("host_id", sort=True).tail(1)
    note = fallback.Note("記録済みのデータを表示しています(記録済みのすべてのホスト)",
                         "; ".join(f"ホスト {r['host_id']}({fallback.host_detail(r)})、{_when(r)} 記録"
                                   for _, r in hosts.iterrows()) + "。この表はこの機械では測っていません。")
    return Shown(frame, False, ", ".join(hosts["host_id"]), note, {"raw": rec})


def plot_recorded(root: str | None = None) -> Figure:
    """Bars: recorded cycles per exit per kind, one bar per host and mode (log scale)."""
    rec = _recorded_exits(root)
    rec = rec[rec["status"] == "ok"]
    groups = list(rec.groupby(["host_id", "mode"]))
    kinds = [k for k in KIND_LABELS if k in set(rec["kind"])]
    fig, ax = plots.figure(figsize=(8, 5.6))
    width = 0.8 / max(len(groups), 1)
    for gi, ((host_id, mode), g) in enumerate(groups):
        vals = [g.loc[g["kind"] == k, "cycles_per_exit"].median() for k in kinds]
        lo = [v - g.loc[g["kind"] == k, "cycles_q1"].median() for k, v in zip(kinds, vals, strict=True)]
        hi = [g.loc[g["kind"] == k, "cycles_q3"].median() - v for k, v in zip(kinds, vals, strict=True)]
        r = g.iloc[0]
        who = (f"{host_id}({r['cpu_model']}、{backend_short(r['kvm_backend'], bool(r['runs_in_vm']))}、"
               f"{pd.Timestamp(r['recorded_at']):%Y-%m-%d} 記録、{MODES_JA.get(mode, mode)})")
        ax.bar([i + gi * width for i in range(len(kinds))], vals, width=width, yerr=[lo, hi],
               capsize=2, label=who)
    ax.set_yscale("log")
    ax.set_xticks([i + width * (len(groups) - 1) / 2 for i in range(len(kinds))],
                  [KIND_LABELS[k].split("(")[0] for k in kinds], rotation=20, ha="right")
    ax.set_ylabel("サイクル/回(中央値、誤差棒は四分位)")
    ax.set_title("記録済みホストでの exit 1 回のコスト")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.62), frameon=False)
    fig.tight_layout()
    return fig


def vmexit_facts(root: str | None = None) -> dict[str, Any]:
    """Every number the VMExit chapter's prose quotes (glued into the text): the published figures and the
    recorded host's exits recording, as :mod:`lab.analysis.vmexit` computes them."""
    pub = analysis_vmexit.published_costs()
    facts: dict[str, Any] = {
        "pub_cpuid_bare_min": int(pub.cpuid_bare_min), "pub_cpuid_bare_max": int(pub.cpuid_bare_max),
        "pub_vmcall_bare": int(pub.vmcall_bare),
        "pub_cpuid_nested": int(pub.cpuid_nested), "pub_vmcall_nested": int(pub.vmcall_nested),
        "ratio_cpuid": pub.ratio_cpuid, "ratio_vmcall": pub.ratio_vmcall,
        "ratio_min": min(pub.ratio_cpuid, pub.ratio_vmcall), "ratio_max": max(pub.ratio_cpuid, pub.ratio_vmcall),
        "pub_inl_qemu_nested": int(pub.inl_qemu_nested), "pub_inl_kernel_nested": int(pub.inl_kernel_nested),
        "ratio_qemu_kernel": pub.ratio_qemu_kernel,
        "pub_cpuid_nested_before": int(pub.cpuid_nested_before), "bonzini_cpuid_gain_pct": pub.nested_gain_pct,
        "adams_in_native": published.adams_cycles("in", "native"), "adams_in_vtx": published.adams_cycles("in", "vtx"),
    }
    ds = pages.data("vmexit", root, live=False)
    rec = ds.get("exits", mode="protected32").set_index("kind")
    if rec.empty:
        raise datapackage.DataError(f"host {ds.host_id} has no exits recording in protected32 mode: "
                                    f"run 'python -m lab record --only exits' there")
    facts["rec_host"] = Text(ds.host_id)
    hc = rec.loc["hypercall"] if "hypercall" in rec.index else None
    status = hc["status"] if hc is not None else "not recorded"
    facts["rec_hypercall_status"] = Text({"ok": "測定できた", "unavailable": "測定不能(unavailable)",
                                          "not recorded": "記録なし"}.get(status, status))
    facts["rec_hypercall_reason"] = Text(say(_error(hc.get("error")), str(hc["reason"] or ""))
                                         if hc is not None else "")
    facts["rec_hypercall_meaning"] = Text(
        "このホストの KVM ではハイパーコールの命令が完了せず、見張り役が KVM_RUN を止めています。"
        "表に値の代わりに理由が書かれているのはそのためです。" if status == "unavailable" else
        "このホストではハイパーコールも完了し、値が記録されています。")
    return facts
