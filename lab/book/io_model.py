"""The model that joins the VMExit and virtio chapters: requests/s from exits x cost per exit + work.

For every I/O path and batch size of an io measurement (:class:`lab.book.io.IoData`)::

    cycles per request = user-space exits per request x cost of a user-space exit
                       + in-kernel exits per request  x cost of an in-kernel exit
                       + work per request
    requests per second = TSC rate / cycles per request

Exits per request come from the io data itself (counted by the VMM, or the
kicks an ioeventfd took). The work per request (everything that is not an
exit: the guest's instructions, the device model, the copy) is calibrated once,
on the point with the fewest exits (virtio + ioeventfd at the largest batch),
with the io host's own exit costs, and then used for every path. The exit
costs are the reader's second choice (:class:`ExitCosts`): each recorded host,
this machine measured just now, or the published bare-metal figures. Where the
prediction misses the measurement, :func:`words` says by how much and what the
exit benchmark's empty exit does not contain.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
from matplotlib.figure import Figure

from lab.bench.harness import Result
from lab.book import fallback, pages, plots, published_exits
from lab.book.backend import backend_short
from lab.book.compare import spaced
from lab.book.io import MODE_NAMES, TABS, IoData
from lab.book.widgets import SwitchGrid
from lab.datapackage import DataError

#: The modes whose notifications KVM completes in the kernel (an ioeventfd), not in the VMM.
KERNEL_KICKS = ("virtio_ioeventfd",)
#: The calibration point of the work per request: the path and batch with the fewest exits.
CALIBRATION_MODE = "virtio_ioeventfd"
#: Measured / predicted within this band reads as "the model holds".
AGREE = 0.15


@dataclass(frozen=True)
class ExitCosts:
    """Net cycles of one user-space exit and one in-kernel exit, and where they come from."""

    label: str    #: the tab (Japanese), e.g. "intel-8712aea8(PVM、2026-11-26 記録)"
    sync_id: str  #: the tab's sync id across the page
    user: float   #: an ``out`` that returns to the VMM (pio_user, empty loop subtracted)
    kernel: float  #: an ``out`` that an ioeventfd completes in the kernel (pio_ioeventfd, net)
    origin: str   #: one sentence: where the two numbers come from
    host_id: str = ""  #: the host they were measured on (empty for published figures)
    short: str = ""    #: a few characters for a table heading (defaults to the label)

    @property
    def heading(self) -> str:
        return self.short or self.label


def recorded_costs(root: str | None = None, mode: str = "protected32") -> list[ExitCosts]:
    """One :class:`ExitCosts` per recorded host (its newest exits recording)."""
    frames = [ds.get("exits", mode=mode, status="ok") for ds in pages.every_host("virtio", root) if ds.has("exits")]
    ex = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["host_id"])
    out = []
    for host_id, g in ex.groupby("host_id", sort=True):
        net = g.set_index("kind")["net_cycles_per_exit"].astype(float)
        if not {"pio_user", "pio_ioeventfd"} <= set(net.index):
            continue
        r = g.iloc[0]
        when = pd.Timestamp(r["recorded_at"]).strftime("%Y-%m-%d")
        backend = backend_short(r["kvm_backend"], bool(r["runs_in_vm"]))
        out.append(ExitCosts(f"{host_id}({backend}、{when} 記録)", f"costs-{host_id}", float(net["pio_user"]),
                             float(net["pio_ioeventfd"]),
                             f"ホスト {host_id}({r['cpu_model']}、{backend})で {when} に記録した exit の値段",
                             str(host_id), f"{host_id} の記録"))
    return out


def measured_costs(results: Sequence[Result], host_id: str) -> ExitCosts:
    """This machine's costs from ``loop``, ``pio_user`` and ``pio_ioeventfd`` measured just now."""
    failed = [f"{r.kind}: {r.reason}" for r in results if r.status != "ok" or r.cycles_per_exit is None]
    if failed:
        raise ValueError(f"measured_costs needs measured kinds, not {failed}")
    by_kind = {r.kind: float(r.cycles_per_exit or 0.0) for r in results}
    missing = {"loop", "pio_user", "pio_ioeventfd"} - set(by_kind)
    if missing:
        raise ValueError(f"measured_costs needs the kinds {sorted(missing)} as well")
    floor = by_kind["loop"]
    return ExitCosts(f"この機械({host_id}、いま測定)", "costs-live", by_kind["pio_user"] - floor,
                     by_kind["pio_ioeventfd"] - floor, f"いまこの機械(ホスト {host_id})で測った exit の値段", host_id,
                     "この機械")


def published_costs(own: ExitCosts) -> ExitCosts:
    """Bare-metal KVM's published ``cpuid`` exit for the in-kernel exit, plus ``own``'s round trip to the VMM.

    No bare-metal figure for an exit to user space is published in ``data/published``; the part
    a user-space exit adds (back to the VMM process and in again) runs natively on any host, so the
    user-space cost is the published in-kernel exit plus ``own.user - own.kernel``.
    """
    pub = published_exits.load()
    bare = pub[(pub["level"] == "bare_metal") & (pub["test"] == "cpuid")]
    values = list(bare["cycles"].astype(float)) + [float(v) for v in bare["cycles_high"] if pd.notna(v)]
    kernel = (min(values) + max(values)) / 2
    return ExitCosts("ベアメタルの公表値", "costs-published", kernel + max(own.user - own.kernel, 0.0), kernel,
                     f"ベアメタルの KVM の cpuid の公表値({', '.join(sorted(set(bare['source'])))})の"
                     f"中ほど {kernel:,.0f} サイクルを"
                     f"カーネル内の exit に、それにホスト {own.host_id} で測ったユーザー空間への往復"
                     f" {max(own.user - own.kernel, 0.0):,.0f} サイクルを足したものをユーザー空間への exit に使います",
                     short="公表値")


class Model:
    """The model over one io measurement; ``sources`` are the exit costs the reader chooses from."""

    def __init__(self, data: IoData, root: str | None = None):
        self.data = data
        self.live = data.live
        self.reason = "" if data.live else (data.reason or "記録済みのデータを表示している")
        try:
            self.sources = recorded_costs(root)
        except DataError:
            self.sources = []
        own = [s for s in self.sources if s.host_id == data.host_id]
        if not own and not data.live:
            raise DataError(f"no exits recording of host {data.host_id}: run 'python -m lab record' there")
        self.own = own[0] if own else None
        if self.own is not None:
            self.sources.append(published_costs(self.own))

    def add_measured(self, results: Sequence[Result]) -> ExitCosts:
        """This machine's costs (measured in the cell): first in the choice, and the calibration's own."""
        costs = measured_costs(results, self.data.host_id)
        self.own = costs
        self.sources = [costs] + [s for s in self.sources if s.sync_id != "costs-published"]
        self.sources.append(published_costs(costs))
        return costs

    # ------------------------------------------------------------------ the arithmetic

    def exits(self) -> pd.DataFrame:
        """Per mode and batch: user-space and in-kernel exits per request, measured cycles per request."""
        f = self.data.frame
        hz = f["tsc_khz"].astype(float) * 1000.0
        kicks = f["kicks_per_run"].astype(float) / f["count"].astype(float)
        in_kernel = f["mode"].isin(KERNEL_KICKS)
        return pd.DataFrame({
            "mode": f["mode"], "batch": f["batch"].astype(int), "tsc_hz": hz,
            "user_epr": f["exits_per_request"].astype(float),
            "kernel_epr": kicks.where(in_kernel, 0.0),
            "measured_rps": f["requests_per_s"].astype(float),
            "measured_cycles": hz / f["requests_per_s"].astype(float),
        }).sort_values(["mode", "batch"]).reset_index(drop=True)

    def work(self) -> float:
        """Cycles per request that are not exits, from the calibration point and the io host's own costs."""
        if self.own is None:
            raise DataError("the model needs the io host's own exit costs (add_measured, or a recording)")
        e = self.exits()
        cal = e[e["mode"] == CALIBRATION_MODE].sort_values("batch").iloc[-1]
        return float(cal["measured_cycles"] - cal["user_epr"] * self.own.user - cal["kernel_epr"] * self.own.kernel)

    def predict(self, costs: ExitCosts) -> pd.DataFrame:
        """:meth:`exits` plus the predicted cycles and requests/s with ``costs``, and measured / predicted."""
        e = self.exits()
        w = self.work()
        e["exit_cycles"] = e["user_epr"] * costs.user + e["kernel_epr"] * costs.kernel
        e["predicted_cycles"] = e["exit_cycles"] + w
        e["predicted_rps"] = e["tsc_hz"] / e["predicted_cycles"]
        e["measured_over_predicted"] = e["measured_rps"] / e["predicted_rps"]
        return e

    # ------------------------------------------------------------------ what the reader sees

    def note(self) -> fallback.Note:
        d = self.data
        if d.live:
            return fallback.live_note(host_id=d.host_id, detail=d.detail(),
                                      text="I/O の件/秒と exit の数はこのページの上の測定、"
                                           "exit の値段は選んだホストのものです。")
        return fallback.recorded_note(reason=self.reason, host_id=d.host_id, recorded=d.recorded_at,
                                      detail=d.detail())

    def table(self) -> pd.DataFrame:
        """Every path and batch: exits, measured requests/s, and the prediction with each source's costs."""
        base = self.exits()
        out = pd.DataFrame({
            "経路": base["mode"].map(MODE_NAMES), "バッチ": base["batch"],
            "ユーザー空間への exit/件": [f"{v:.4g}" for v in base["user_epr"]],
            "カーネル内の exit/件": [f"{v:.4g}" for v in base["kernel_epr"]],
            "測定 件/秒": base["measured_rps"].round(0).astype(int),
        })
        for s in self.sources:
            out[f"予測 件/秒({s.heading})"] = self.predict(s)["predicted_rps"].round(0).astype(int)
        order = {m: i for i, m in enumerate(MODE_NAMES)}
        return out.iloc[base["mode"].map(order).argsort(kind="stable")].reset_index(drop=True)

    def figure(self, costs: ExitCosts, modes: Sequence[str]) -> Figure:
        p = self.predict(costs)
        fig, ax = plots.figure(figsize=(7.2, 3.8))
        for m in modes:
            rows = p[p["mode"] == m]
            color = plots.MODE_COLORS["virtio" if m.startswith("virtio") else m]
            style = "--" if m in KERNEL_KICKS else "-"
            ax.plot(rows["batch"], rows["measured_rps"], style, marker="o", lw=2.2, color=color,
                    label=f"{MODE_NAMES[m]}:測定")
            ax.plot(rows["batch"], rows["predicted_rps"], style, marker="x", lw=1, color="#555555",
                    label=f"{MODE_NAMES[m]}:予測")
            for b, pr, r in zip(rows["batch"], rows["predicted_rps"], rows["measured_over_predicted"], strict=True):
                below = m in KERNEL_KICKS  # the two virtio lines share the tab: their labels go on either side
                ax.annotate(f"×{r:.2f}", (b, pr), textcoords="offset points", xytext=(0, -13 if below else 6),
                            ha="center", fontsize=8, color=color)
        batches = sorted(p["batch"].unique())
        ax.set_xscale("log", base=2)
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.set_xlabel("バッチの大きさ")
        ax.set_yscale("log")
        ax.set_ylabel("1 秒あたりのリクエスト数")
        ax.set_title(f"exit の値段: {costs.label}(×は 測定 ÷ 予測)", fontsize=9)
        ax.legend(fontsize=8, frameon=False, loc="best")
        return fig

    def switchable(self) -> SwitchGrid:
        """Tabs of exit-cost sources, each with the page's HVM / PV / virtio switch."""
        views = {(s.label, tab): self.figure(s, modes) for s in self.sources for tab, modes in TABS.items()}
        return SwitchGrid(views, groups=("costs", "mode"), ids={s.label: s.sync_id for s in self.sources},
                          caption="モデルの予測(exit の数 × exit の値段 + 仕事)と測定", selected=(None, "virtio"))

    def _repr_html_(self) -> str:
        return self.note()._repr_html_() + self.table().to_html(index=False)

    def __repr__(self) -> str:
        return f"{self.note()}\n{self.table().to_string(index=False)}"


def words(model: Model) -> dict[str, str]:
    """The section's sentences (glue names without the ``model_`` prefix), worded from the model's data."""
    if model.own is None:
        raise DataError("no exit costs for the io host")
    own, w = model.own, model.work()
    p = model.predict(own)
    small = int(p["batch"].min())
    first = p[p["batch"] == small].set_index("mode")
    with_user = first[first["user_epr"] > 0]
    worst_mode = str((with_user["measured_over_predicted"] - 1).abs().idxmax())
    how = (f"ホスト {model.data.host_id} の I/O の測定に、{own.origin}"
           f"(ユーザー空間への exit 1 回 {own.user:,.0f} サイクル、"
           f"カーネル内の exit 1 回 {own.kernel:,.0f} サイクル)を当てはめます。"
           f"exit 以外の仕事は、exit がいちばん少ない {MODE_NAMES[CALIBRATION_MODE]} のバッチ "
           f"{int(p[p['mode'] == CALIBRATION_MODE]['batch'].max())} の測定から、"
           f"1 件あたり {w:,.0f} サイクルと見積もりました。")
    out = {"how": how, "ratios": _ratios(p),
           "disagree": _disagree(worst_mode, with_user.loc[worst_mode], own, small) + _waiting(p),
           "published": _published(model, own)}
    return {k: spaced(v) for k, v in out.items()}


def _disagree(mode: str, row: pd.Series, own: ExitCosts, batch: int) -> str:
    """The path with user-space exits that the model misses most, by how much, and what the model leaves out."""
    r = float(row["measured_over_predicted"])
    name = f"ユーザー空間への exit がある経路でいちばん外れたバッチ {batch} の {MODE_NAMES[mode]}"
    if abs(r - 1) <= AGREE:
        return f"{name}でも、測定は予測の {r:.2f} 倍で、モデルはおおむね当たっています。"
    if r > 1:
        return (f"{name}は、測定が予測の {r:.2f} 倍も速く出ました。"
                f"exit 以外の仕事を {MODE_NAMES[CALIBRATION_MODE]} の一点から見積もったので、"
                "この経路ではその見積もりが実際の仕事より大きすぎたことになります。")
    extra = float(row["measured_cycles"]) - float(row["predicted_cycles"])
    per_exit = extra / float(row["user_epr"])
    return (f"{name}は、測定が予測の {r:.2f} 倍しか出ませんでした。"
            f"1 件あたり {extra:,.0f} サイクルが、モデルのどこにも入っていない計算です。"
            f"ユーザー空間への exit 1 回あたりにすると {per_exit:,.0f} サイクルで、"
            f"exit の測定で見た空の exit({own.user:,.0f} サイクル)の {per_exit / own.user:.1f} 倍です。"
            "exit の測定では VMM は何もせずにゲストへ戻りますが、I/O の経路では exit のたびに"
            "デバイスモデル(Python)がレジスタやリングを処理してから `KVM_RUN` を呼び直します。"
            "モデルの「exit の値段」には、その仕事が入っていません。")


def _published(model: Model, own: ExitCosts) -> str:
    pub = next(s for s in model.sources if s.sync_id == "costs-published")
    p_own, p_pub = model.predict(own), model.predict(pub)
    ratio = p_pub["predicted_rps"] / p_own["predicted_rps"]
    i = int((ratio.apply(math.log).abs()).idxmax())
    best, gain = str(p_own.loc[i, "mode"]), float(ratio.loc[i])
    share = float((p_own["exit_cycles"] / p_own["predicted_cycles"]).max())
    trip = own.user - own.kernel
    head = (f"exit の値段をベアメタルの公表値に替えると(カーネル内の exit {pub.kernel:,.0f} サイクル)、"
            f"予測がいちばん変わるのは {MODE_NAMES[best]} で、予測の件/秒が {gain:.2f} 倍になります。")
    if abs(gain - 1) >= AGREE:
        return head + "exit の多い経路ほど、exit の値段の違いがそのまま速さの違いになります。"
    if share < 0.5:
        return head + ("このデータでは、exit がいちばん多い経路でも、"
                       f"予測の中で exit が占めるのは {100 * share:.0f} % で、残りの仕事のほうが大きいからです。")
    return head + (f"このホストでは、ユーザー空間への exit の値段 {own.user:,.0f} サイクルのうち"
                   f" {trip:,.0f} サイクルが、ハードウェアの切り替えではなく VMM のプロセスまでの往復で、"
                   "公表値に替えても変わらない部分だからです。"
                   f"予測の中で exit が占める割合は、いちばん多い経路で {100 * share:.0f} % です。")


def _ratios(p: pd.DataFrame) -> str:
    """Measured / predicted per path at the smallest batch, and virtio at the largest."""
    small, large = int(p["batch"].min()), int(p["batch"].max())
    first = p[p["batch"] == small].set_index("mode")["measured_over_predicted"]
    parts = "、".join(f"{MODE_NAMES[m]} {first[m]:.2f}" for m in MODE_NAMES if m in first.index)
    last = p[(p["batch"] == large) & (p["mode"] == "virtio")]["measured_over_predicted"]
    tail = f"、バッチ {large} の virtio で {float(last.iloc[0]):.2f}" if len(last) else ""
    return f"測定 ÷ 予測は、バッチ {small} で {parts}{tail} でした。"


def _waiting(p: pd.DataFrame) -> str:
    """Why the ioeventfd path at the smallest batch misses, when it does: no user exit left to blame."""
    small = int(p["batch"].min())
    row = p[(p["batch"] == small) & (p["mode"] == "virtio_ioeventfd")]
    if row.empty or float(row["measured_over_predicted"].iloc[0]) >= 1 - AGREE:
        return ""
    return (f"バッチ {small} の virtio + ioeventfd が予測に届かないのは exit のせいではありません。"
            "この経路にはユーザー空間への exit がなく、足りない分は、通知を受けた別のスレッドが目を覚まして"
            "リングを処理し終えるのを、ゲストが一件ごとに待つ時間です。")
