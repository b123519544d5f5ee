"""The virtio chapter's model section: :mod:`lab.analysis.io_model` as tabs, tables and sentences.

The arithmetic (exits per request x cost per exit + work) and what it may be
compared with live in :mod:`lab.analysis.io_model`; this module only names
the cost sources, lays out the figures and words the results. The sources are
the page's own host (its exits recording, or this machine measured in the
cell) and, where the host's back end makes its costs exit costs (VT-x,
AMD-V), the published bare-metal figures. On PVM the bare-metal comparison is
the exit overhead one request would carry there (:meth:`Model.bare_metal`),
never a throughput built on PVM's emulation work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
from matplotlib.figure import Figure

from lab.analysis import io_model as analysis
from lab.analysis import vmexit
from lab.bench.dataset import MissingResource
from lab.bench.harness import Result
from lab.book.core import fallback, pages, plots
from lab.book.core.widgets import SwitchGrid
from lab.book.io import MODE_NAMES, TABS, IoData
from lab.book.ja.backends import backend_short
from lab.book.ja.comparisons import spaced
from lab.datapackage import DataError

KERNEL_KICKS = analysis.KERNEL_KICKS


@dataclass(frozen=True)
class CostSource:
    """One choice of costs per exit, as the reader sees it (a tab)."""

    label: str    #: the tab (Japanese)
    sync_id: str  #: the tab's sync id across the page
    short: str    #: a few characters for a table heading
    origin: str   #: one sentence: where the two numbers come from and what they are
    costs: analysis.ExitCosts


def _own_source(costs: analysis.ExitCosts, label: str, sync_id: str, short: str, where: str) -> CostSource:
    what = ("exit のコスト" if costs.exit_costs else
            "exit を起こす操作 1 回のコスト(命令のエミュレーションを含み、exit のコストではありません)")
    return CostSource(label, sync_id, short, f"{where}{what}", costs)


def _published_source(own: analysis.ExitCosts) -> CostSource:
    pub = analysis.published_exit_costs(own)
    figures = vmexit.published_costs()
    return CostSource("ベアメタルの公表値", "costs-published", "公表値",
                      f"ベアメタルの KVM の cpuid の公表値の中ほど {pub.kernel:,.0f} サイクルをカーネル内の exit に、"
                      f"それにホスト {own.host_id} で測ったユーザー空間までの往復 {pub.round_trip:,.0f} サイクルを"
                      f"足したものをユーザー空間への exit に使います({', '.join(figures.sources)})", pub)


def measured_exit_rows(results: Sequence[Result], host_id: str) -> pd.DataFrame:
    """This machine's ``loop``, ``pio_user`` and ``pio_ioeventfd`` measured just now, as exits rows."""
    failed = [f"{r.kind}: {r.reason}" for r in results if r.status != "ok" or r.cycles_per_exit is None]
    if failed:
        raise ValueError(f"the model needs measured kinds, not {failed}")
    missing = {"loop", "pio_user", "pio_ioeventfd"} - {r.kind for r in results}
    if missing:
        raise ValueError(f"the model needs the kinds {sorted(missing)} as well")
    return pd.DataFrame([{"host_id": host_id, "recorded_at": "now", "mode": "protected32", "kind": r.kind,
                          "status": r.status, "cycles_per_exit": r.cycles_per_exit, "reason": ""} for r in results])


class Model:
    """The model over the page's io data with the same host's costs."""

    def __init__(self, data: IoData, root: str | None = None):
        self.data = data
        self.live = data.live
        self.reason = "" if data.live else (data.reason or "記録済みのデータを表示している")
        self.missing = ""
        self.sources: list[CostSource] = []
        self._model: analysis.Model | None = None
        if data.live:
            return
        ds = pages.data("virtio", root, live=False)
        if ds.host_id != data.host_id:
            raise DataError(f"the io data of {data.host_id} and the page's data set of {ds.host_id} differ")
        try:
            rows = ds.get("exits", mode="protected32")
        except MissingResource:
            self.missing = (f"ホスト {ds.host_id} には exit の記録(exits)がないので、"
                            "このホストのコストでモデルを組み立てられません。")
            return
        first = rows.iloc[0]
        when = pd.Timestamp(first["recorded_at"]).strftime("%Y-%m-%d")
        costs = analysis.costs_of(vmexit.exit_facts(rows, data.kvm_backend))
        short = backend_short(data.kvm_backend, data.runs_in_vm)
        self._use(_own_source(costs, f"{ds.host_id}({short}、{when} 記録)", f"costs-{ds.host_id}",
                              f"{ds.host_id} の記録", f"ホスト {ds.host_id}({first['cpu_model']}、{short})で {when} に"
                              "記録した"))

    def _use(self, own: CostSource) -> None:
        self._model = analysis.Model(self.data.frame, own.costs, self.data.kvm_backend)
        self.sources = [own]
        if self._model.published_prediction_sound:
            self.sources.append(_published_source(own.costs))

    def add_measured(self, results: Sequence[Result]) -> CostSource:
        """This machine's costs, measured in the cell: the model's own."""
        rows = measured_exit_rows(results, self.data.host_id)
        costs = analysis.costs_of(vmexit.exit_facts(rows, self.data.kvm_backend), source="live")
        own = _own_source(costs, f"この機械({self.data.host_id}、いま測定)", "costs-live", "この機械",
                          f"いまこの機械(ホスト {self.data.host_id})で測った")
        self._use(own)
        return own

    @property
    def model(self) -> analysis.Model:
        if self._model is None:
            raise DataError(self.missing or "the model needs this host's costs: call add_measured(...) first")
        return self._model

    @property
    def own(self) -> CostSource:
        self.model  # noqa: B018  (raises the missing reason)
        return self.sources[0]

    # ------------------------------------------------------------------ what the reader sees

    def note(self) -> fallback.Note:
        d = self.data
        if d.live:
            return fallback.live_note(host_id=d.host_id, detail=d.detail(),
                                      text="I/O の件/秒と exit の数はこのページの上の測定、"
                                           "1 回あたりのコストはこのセルでいま測ったものです。")
        return fallback.recorded_note(reason=self.reason, host_id=d.host_id, recorded=d.recorded_at,
                                      detail=d.detail())

    def table(self) -> pd.DataFrame:
        """Every path and batch: exits, measured requests/s, and the prediction with each source's costs."""
        base = self.model.table
        out = pd.DataFrame({
            "経路": base["mode"].map(MODE_NAMES), "バッチ": base["batch"],
            "ユーザー空間への exit/件": [f"{v:.4g}" for v in base["user_epr"]],
            "カーネル内の exit/件": [f"{v:.4g}" for v in base["kernel_epr"]],
            "測定 件/秒": base["measured_rps"].round(0).astype(int),
        })
        for s in self.sources:
            out[f"予測 件/秒({s.short})"] = self.model.predict(s.costs)["predicted_rps"].round(0).astype(int)
        order = {m: i for i, m in enumerate(MODE_NAMES)}
        return out.iloc[base["mode"].map(order).argsort(kind="stable")].reset_index(drop=True)

    def bare_metal(self) -> pd.DataFrame:
        """Per path and batch: the exit cycles one request would carry on bare metal, beside its cycles here."""
        pub = analysis.published_exit_costs(self.own.costs)
        rows = [{"経路": MODE_NAMES[o.mode], "バッチ": o.batch,
                 "ベアメタルなら exit に払うサイクル/件": f"{o.exit_cycles:,.0f}",
                 f"{self.data.host_id} で 1 件にかかったサイクル": f"{o.measured_cycles:,.0f}",
                 "割合": f"{100 * o.share:.1f} %"} for o in self.model.bare_metal_overhead(pub)]
        order = {m: i for i, m in enumerate(MODE_NAMES.values())}
        return pd.DataFrame(rows).sort_values(["経路", "バッチ"], key=lambda c: c.map(order) if c.name == "経路"
                                              else c, kind="stable").reset_index(drop=True)

    def figure(self, source: CostSource, modes: Sequence[str]) -> Figure:
        p = self.model.predict(source.costs)
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
        ax.set_title(f"1 回あたりのコスト: {source.label}(×は 測定 ÷ 予測)", fontsize=9)
        ax.legend(fontsize=8, frameon=False, loc="best")
        return fig

    def switchable(self) -> SwitchGrid | fallback.Note:
        """Tabs of cost sources, each with the page's HVM / PV / virtio switch (a note when costs are missing)."""
        if self._model is None:
            return fallback.Note("このホストではモデルを組み立てられません", self.missing or
                                 "この機械のコストがまだ測られていません。", kind="warning")
        views = {(s.label, tab): self.figure(s, modes) for s in self.sources for tab, modes in TABS.items()}
        return SwitchGrid(views, groups=("costs", "mode"), ids={s.label: s.sync_id for s in self.sources},
                          caption="モデルの予測(exit の数 × 1 回あたりのコスト + 仕事)と測定",
                          selected=(None, "virtio"))

    def _repr_html_(self) -> str:
        if self._model is None:
            missing = fallback.Note("表はありません", self.missing, kind="warning")
            return self.note()._repr_html_() + missing._repr_html_()
        return self.note()._repr_html_() + self.table().to_html(index=False)

    def __repr__(self) -> str:
        if self._model is None:
            return f"{self.note()}\n{self.missing}"
        return f"{self.note()}\n{self.table().to_string(index=False)}"


# --------------------------------------------------------------------------- the section's sentences


def words(model: Model) -> dict[str, str]:
    """The section's sentences (glue names without the ``model_`` prefix), worded from the analysis."""
    if model._model is None:
        return {k: model.missing for k in ("how", "ratios", "disagree", "published", "costs_meaning")}
    m, own = model.model, model.own
    exit_costs = own.costs.exit_costs
    user, kernel = ("ユーザー空間への exit 1 回", "カーネル内の exit 1 回") if exit_costs else \
        ("ユーザー空間まで戻る `out` 1 回", "ioeventfd で終わる `out` 1 回")
    how = (f"ホスト {m.host_id} の I/O の測定に、{own.origin}({user} {own.costs.user:,.0f} サイクル、"
           f"{kernel} {own.costs.kernel:,.0f} サイクル)を当てはめます。"
           f"exit 以外の仕事は、exit がいちばん少ない {MODE_NAMES[analysis.CALIBRATION_MODE]} のバッチ "
           f"{m.calibration_batch} の測定から、1 件あたり {m.work():,.0f} サイクルと見積もりました。")
    costs_meaning = (
        "このホストの KVM はハードウェアの仮想化支援(VT-x や AMD-V)を使うので、1 回あたりのコストは exit のコストです。"
        if exit_costs else
        "このホストの KVM では、1 回あたりのコストに命令のエミュレーションが含まれます。"
        "ですから、ここでの「exit の数 × 1 回あたりのコスト」は、このホストで exit の数がどれだけ速さを決めるかを"
        "見るためのもので、exit そのもののコストを表すものではありません。")
    out = {"how": how, "ratios": _ratios(m), "disagree": _disagree(m, exit_costs) + _waiting(m),
           "published": _published(model), "costs_meaning": costs_meaning}
    return {k: spaced(v) for k, v in out.items()}


def _ratios(m: analysis.Model) -> str:
    small, first, large, last = m.ratios()
    parts = "、".join(f"{MODE_NAMES[k]} {first[k]:.2f}" for k in MODE_NAMES if k in first)
    tail = f"、バッチ {large} の virtio で {last:.2f}" if last is not None else ""
    return f"測定 ÷ 予測は、バッチ {small} で {parts}{tail} でした。"


def _disagree(m: analysis.Model, exit_costs: bool) -> str:
    miss = m.worst_miss()
    if miss is None:
        return ""
    name = f"ユーザー空間への exit がある経路でいちばん外れたバッチ {miss.batch} の {MODE_NAMES[miss.mode]}"
    if miss.holds:
        return f"{name}でも、測定は予測の {miss.ratio:.2f} 倍で、モデルはおおむね当たっています。"
    if miss.ratio > 1:
        return (f"{name}は、測定が予測の {miss.ratio:.2f} 倍も速く出ました。"
                f"exit 以外の仕事を {MODE_NAMES[analysis.CALIBRATION_MODE]} の一点から見積もったので、"
                "この経路ではその見積もりが実際の仕事より大きすぎたことになります。")
    unit = "空の exit" if exit_costs else "`pio_user` の正味"
    return (f"{name}は、測定が予測の {miss.ratio:.2f} 倍しか出ませんでした。"
            f"1 件あたり {miss.extra_cycles:,.0f} サイクルが、モデルのどこにも入っていない計算です。"
            f"ユーザー空間への exit 1 回あたりにすると {miss.per_user_exit:,.0f} サイクルで、"
            f"exit の測定で見た{unit}({m.own.user:,.0f} サイクル)の {miss.over_exit:.1f} 倍です。"
            "exit の測定では VMM は何もせずにゲストへ戻りますが、I/O の経路では exit のたびに"
            "デバイスモデル(Python)がレジスタやリングを処理してから `KVM_RUN` を呼び直します。"
            "モデルの「1 回あたりのコスト」には、その仕事が入っていません。")


def _waiting(m: analysis.Model) -> str:
    if not m.ioeventfd_waits():
        return ""
    small = int(m.table["batch"].min())
    return (f"バッチ {small} の virtio + ioeventfd が予測に届かないのは exit のせいではありません。"
            "この経路にはユーザー空間への exit がなく、足りない分は、通知を受けた別のスレッドが目を覚まして"
            "リングを処理し終えるのを、ゲストが一件ごとに待つ時間です。")


def _published(model: Model) -> str:
    """Bare metal: a prediction where the work runs natively, otherwise the exit overhead per request."""
    m, own = model.model, model.own.costs
    pub = analysis.published_exit_costs(own)
    over = max(m.bare_metal_overhead(pub), key=lambda o: o.share)
    overhead = (f"ベアメタルの KVM の公表値で数えると、exit が要求 1 件に上乗せするサイクルは、いちばん割合の大きい"
                f"バッチ {over.batch} の {MODE_NAMES[over.mode]} で {over.exit_cycles:,.0f} サイクル、"
                f"このホストで 1 件にかかった {over.measured_cycles:,.0f} サイクルの {100 * over.share:.1f} % です"
                "(下の表)。")
    if not m.published_prediction_sound:
        return ("このホストでは exit 以外の仕事のほとんどが命令のエミュレーションなので、"
                "その上にベアメタルの exit のコストを載せて速さを予想しても意味がありません。"
                "ベアメタルと比べられるのは exit の数で、" + overhead)
    mode, gain, share = m.published_effect(pub)
    head = (f"exit のコストをベアメタルの公表値に替えると(カーネル内の exit {pub.kernel:,.0f} サイクル)、"
            f"予測がいちばん変わるのは {MODE_NAMES[mode]} で、予測の件/秒が {gain:.2f} 倍になります。")
    if abs(gain - 1) >= analysis.AGREE:
        why = "exit の多い経路ほど、exit のコストの違いがそのまま速さの違いになります。"
    elif share < 0.5:
        why = ("このデータでは、exit がいちばん多い経路でも、"
               f"予測の中で exit が占めるのは {100 * share:.0f} % で、残りの仕事のほうが大きいからです。")
    else:
        why = (f"このホストでは、ユーザー空間への exit のコスト {own.user:,.0f} サイクルのうち"
               f" {pub.round_trip:,.0f} サイクルが、ハードウェアの切り替えではなく VMM のプロセスまでの往復で、"
               "公表値に替えても変わらない部分だからです。"
               f"予測の中で exit が占める割合は、いちばん多い経路で {100 * share:.0f} % です。")
    return head + why + overhead
