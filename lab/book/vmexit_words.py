"""The VMExit chapter's sentences about its recorded host, worded from :mod:`lab.analysis.vmexit`.

The page's recorded data set (:func:`lab.book.core.pages.data`: one host, the
newest recording of each resource) goes through the analysis layer, which
says what is sound on the host's back end; this module only words it. On
VT-x / AMD-V a row net of the empty loop is called an exit cost and set
against the published bare-metal figures; on PVM no value is called an exit
cost, and the sentences use the user-space round trip instead. A resource
the host lacks is said to be missing where its sentence would stand.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from pandas.io.formats.style import Styler

from lab.analysis import vmexit
from lab.analysis.compare import Comparison
from lab.bench.dataset import DataSet
from lab.book.core import pages
from lab.book.ja.backends import backend_ja, is_pvm
from lab.book.ja.comparisons import cost_ja, pct_ja, spaced
from lab.book.measures import contents_table


def host_sentence(row: Any) -> str:
    when = pd.Timestamp(row["recorded_at"]).strftime("%Y-%m-%d")
    return (f"記録済みのホスト {row['host_id']}({row['cpu_model']}、"
            f"{backend_ja(row['kvm_backend'], bool(row['runs_in_vm']))}、{when} 記録)")


def _data(root: str | None) -> DataSet:
    return pages.data("vmexit", root, live=False)


def missing_words(ds: DataSet, resource: str) -> str:
    """The sentence that stands where a missing resource's sentence would."""
    return (f"このページのデータのホスト {ds.host_id} には「{resource}」の記録がないので、"
            f"ここで比べる値がありません。")


def exits_rows(ds: DataSet) -> pd.DataFrame:
    """The data set's exits recording in 32-bit protected mode (every kind, measured or not)."""
    return ds.get("exits", mode="protected32")


def facts(ds: DataSet) -> vmexit.ExitFacts:
    rows = exits_rows(ds)
    return vmexit.exit_facts(rows, str(rows.iloc[0]["kvm_backend"]))


def _floor(ds: DataSet, f: vmexit.ExitFacts) -> vmexit.Floor:
    nat = ds.get("native").iloc[0]
    other = ds.get("reference", kind="loop") if ds.has("reference") else pd.DataFrame()
    return vmexit.floor(f, float(nat["cycles_per_iteration"]),
                        float(other.iloc[0]["python_cycles"]) if not other.empty else None)


def _ratio_ja(c: Comparison) -> str:
    return "ほぼ同じ" if c.direction == "same" else f"{c.ratio:.2f} 倍"


# --------------------------------------------------------------------------- what the rows are


def rows_meaning(f: vmexit.ExitFacts) -> str:
    """What one row of the exits table is on the host's back end, and what may be compared."""
    if f.backend.exit_costs:
        return ("この KVM(VT-x や AMD-V)では、ゲストの命令は CPU がそのまま実行し、exit のたびにハードウェアが"
                "ホストに制御を戻します。空ループを引いた「正味」は、ハードウェアの exit と KVM の処理、"
                "つまり exit そのもののコストで、ベアメタルの公表値と同じ物差しで比べられます。")
    if f.backend.emulated:
        return ("PVM では、この本の小さなゲストの命令を KVM の命令エミュレータが 1 つずつ実行します。"
                "ハードウェアの exit は一度も起きません。どの行にも空ループのエミュレーションが含まれ、"
                "空ループを引いた「正味」にも、exit を起こす命令のエミュレーションと KVM の処理が残ります。"
                "ですから、このホストの値は exit のコストではなく、ベアメタルの公表値とも比べられません。"
                "比べられるのは、同じゲストのバイト列で戻り先だけが違う 2 つの行の差、"
                "ユーザー空間までの往復(`pio_user` − `pio_ioeventfd`)と、exit の回数です。")
    return ("このホストの KVM のバックエンドはこの本の表にないので、値に何が含まれるかは言えません。"
            "比べられるのは、ユーザー空間までの往復(`pio_user` − `pio_ioeventfd`)と、exit の回数だけです。")


def cpuid_words(f: vmexit.ExitFacts) -> str:
    """The cpuid row against the published bare-metal range, where that comparison is sound."""
    if "cpuid" not in f.cycles or f.floor is None:
        return "この記録には `cpuid` の値がありません。"
    head = (f"exit を含まない空ループが 1 周あたり {f.floor:,.0f} サイクル、`cpuid` は 1 周 {f.cycles['cpuid']:,.0f}"
            f" サイクル(空ループを引いて {f.net['cpuid']:,.0f} サイクル)でした。")
    if f.cpuid_vs_bare is not None:
        pub = vmexit.published_costs()
        return head + (f"正味の値をベアメタルの公表値の中ほど({pub.cpuid_bare_mid:,.0f} サイクル)と比べると"
                       f"{_ratio_ja(f.cpuid_vs_bare)}です。")
    return head + "この値はエミュレーションの時間を含むので、ベアメタルの公表値とは比べません。"


def user_words(f: vmexit.ExitFacts) -> dict[str, str]:
    """The user-space exit against the in-kernel ones: the round trip everywhere, exit costs where sound."""
    out = {"user_vs_kernel": "", "user_vs_efd": "", "efd_direction": "", "round_trip": ""}
    if f.user_vs_ioeventfd is None or f.round_trip is None:
        out["round_trip"] = "この記録には `pio_user` と `pio_ioeventfd` の両方はそろっていません。"
        return out
    pu, efd = f.cycles["pio_user"], f.cycles["pio_ioeventfd"]
    out["round_trip"] = (f"ユーザー空間まで戻る `out`(`pio_user`)は 1 周 {pu:,.0f} サイクル、"
                         f"同じ `out` に ioeventfd を登録した `pio_ioeventfd` は 1 周 {efd:,.0f} サイクルで、"
                         f"その差、ユーザー空間までの往復は {f.round_trip:,.0f} サイクルでした。")
    out["user_vs_efd"] = cost_ja("ユーザー空間まで戻る `out` の 1 周", pu,
                                 "ioeventfd で終わる `out` の 1 周", efd) + "。"
    out["efd_direction"] = (
        "ユーザー空間への往復を省くことの効き目は、入れ子の公表値(`inl_from_qemu` と `inl_from_kernel`)と"
        "同じ向きに現れています。" if f.user_vs_ioeventfd.direction == "higher" else
        "これは公表値(`inl_from_qemu` と `inl_from_kernel`)とは逆の向きです。"
        "ユーザー空間への往復を省いても速くならなかったので、"
        "この記録には別の要因(測定のばらつきやホストの負荷)が効いていると考えられます。")
    if f.user_vs_kernel is not None:
        out["user_vs_kernel"] = cost_ja("ユーザー空間まで戻る `out` の exit のコスト(正味)", f.net["pio_user"],
                                        "カーネル内で片づく `cpuid` の exit のコスト(正味)", f.net["cpuid"]) + "。"
    return out


def rows_table(root: str | None = None) -> Styler:
    """What one row of each kind contains on the recorded host's back end (:mod:`lab.book.measures`)."""
    return contents_table(facts(_data(root)).backend.backend)


# --------------------------------------------------------------------------- the floor


def floor_words(root: str | None = None) -> dict[str, str]:
    """The exits recording's empty loop against the same loop natively, and which loop each net value uses."""
    ds = _data(root)
    if not ds.has("native"):
        return {"floor_sentence": missing_words(ds, "native"), "floor_meaning": ""}
    f = facts(ds)
    fl = _floor(ds, f)
    nat = ds.get("native").iloc[0]
    head = (f"{host_sentence(nat)}では、exit の測定と同じ記録のゲストの空ループ 1 周が {fl.guest:,.0f} サイクル、"
            f"同じ命令をホストのプロセスでそのまま走らせると {fl.native:.2f} サイクルで、{fl.ratio:,.0f} 倍でした。")
    if fl.emulated:
        why = ("PVM 向けに書かれていないこの本のゲストは、命令を 1 つずつ KVM の命令エミュレータで"
               "処理されているためです。" if is_pvm(str(nat["kvm_backend"])) else
               "ゲストの命令が CPU でそのまま実行されていないことを示しています。")
        meaning = (f"このホストの表の値には、どの行にもこの下限(1 周あたり約 {fl.guest:,.0f} サイクル)が含まれます。"
                   "VT-x や AMD-V の KVM なら下限はホストとほぼ同じ数サイクルなので、正味の値はほぼ exit そのものの"
                   "コストになりますが、このホストでは空ループを引いてもエミュレーションの時間が残ります。")
    else:
        why = "ゲストの命令は CPU でほぼそのまま実行されています(VT-x や AMD-V の KVM で期待されるとおりです)。"
        meaning = "このホストの正味の値は、ほぼ exit そのもののコストです。"
    meaning += "表の「正味」は、どれも同じ記録の空ループを引いた値です。"
    other = fl.other_vs_guest
    if other is not None and fl.other is not None:
        meaning += (f"Python と C を比べた記録(別の時刻の測定)の空ループは 1 周 {fl.other:,.0f} サイクルで、"
                    f"この記録の{_ratio_ja(other)}でした。")
        if other.direction != "same":
            meaning += ("同じゲストのバイト列でも、測った時刻が違えば下限も違います。"
                        + ("PVM では空ループそのものがエミュレーションなので、"
                           "その速さがホストの負荷や時刻で変わります。" if fl.emulated else "")
                        + "そのため、このページでは正味の値に、いつも同じ記録の空ループを使います。")
    return {"floor_sentence": head + why, "floor_meaning": meaning}


# --------------------------------------------------------------------------- Python against C


def python_vs_c_words(root: str | None = None) -> dict[str, str]:
    """How much the VMM's language adds, from the data set's Python-vs-C recording."""
    ds = _data(root)
    if not ds.has("reference"):
        return {"py_vs_c": missing_words(ds, "reference"), "py_vs_c_meaning": ""}
    rows = ds.get("reference")
    r = vmexit.python_vs_c(rows)
    first = (f"{host_sentence(rows.iloc[0])}で同じゲストのバイト列を走らせると、ユーザー空間まで戻る `out` では"
             f"{pct_ja('Python の VMM', r.python, 'C の VMM', r.c)}"
             f"(1 回あたり {r.python:,.0f} サイクル対 {r.c:,.0f} サイクル)。")
    second = ("カーネルの中で片づく種類(空ループ、cpuid、ioeventfd)では、VMM のコードが走らないので、"
              f"差は {r.kernel_pct[0]:+.0f} % から {r.kernel_pct[1]:+.0f} % でした。" if r.kernel_pct else "")
    if r.python_adds:
        third = (f"言語の違いで増えるのは、ユーザー空間まで戻る `out` 1 回あたり {r.extra:,.0f} サイクル、"
                 f"その 1 周の {100 * r.share:.0f} % です。")
    else:
        third = "このホストでは、Python の VMM でユーザー空間まで戻る `out` が高くなることはありませんでした。"
    return {"py_vs_c": first + second, "py_vs_c_meaning": third}


# --------------------------------------------------------------------------- the recorded host


def exit_words(root: str | None = None) -> dict[str, str]:
    """The recorded host, what its rows are, and its user-space and in-kernel exits (protected32)."""
    ds = _data(root)
    rows = exits_rows(ds)
    row = rows.iloc[0]
    f = facts(ds)
    backend = backend_ja(row["kvm_backend"], bool(row["runs_in_vm"]))
    out = {"rec_host_sentence": host_sentence(row),
           "rec_backend_words": (f"このホストの KVM は {backend} です。" if is_pvm(row["kvm_backend"])
                                 else f"このホストの KVM は{backend}で、PVM ではありません。"),
           "rec_rows_meaning": rows_meaning(f), "rec_cpuid_words": cpuid_words(f)}
    out.update(user_words(f))
    return out


def summary_words(root: str | None = None) -> dict[str, str]:
    """The part's closing bullets about costs and the back end, from the same data set as the chapter."""
    ds = _data(root)
    f = facts(ds)
    where = f"記録済みのホスト {f.host_id} では、"
    if f.user_vs_kernel is not None:
        costs = where + cost_ja("ユーザー空間の VMM まで戻るポート出力の exit のコスト", f.net["pio_user"],
                                "カーネルの中で片付く `cpuid` の exit のコスト", f.net["cpuid"]) + "。"
        costs += (f"ioeventfd はその戻りをなくし、正味 {f.net['pio_ioeventfd']:,.0f} サイクルでした。"
                  if f.net["pio_ioeventfd"] < f.net["pio_user"] else
                  f"ioeventfd は、このホストでは正味 {f.net['pio_ioeventfd']:,.0f} サイクルで、"
                  "戻りをなくしても安くなりませんでした。")
    elif f.round_trip is not None:
        costs = where + (f"exit のコストそのものは測れません(値にエミュレーションが含まれます)。"
                         f"測れるのはユーザー空間までの往復で、{f.round_trip:,.0f} サイクルでした。"
                         "ioeventfd は、この往復をなくす仕組みです。")
    else:
        costs = where + "ユーザー空間までの往復を比べる記録がそろっていません。"
    if not ds.has("native"):
        return {"sum_costs": costs, "sum_backend": missing_words(ds, "native")}
    fl = _floor(ds, f)
    nat = ds.get("native").iloc[0]
    head = f"記録済みのホスト {f.host_id} の KVM は{backend_ja(nat['kvm_backend'], bool(nat['runs_in_vm']))}で、"
    floor = head + f"ゲストの空ループは同じ命令をホストでそのまま走らせたときの {fl.ratio:,.0f} 倍かかりました。"
    floor += ("どの行にもエミュレーションの時間が含まれるので、ほかのホストや公表値とは、"
              "exit のコストではなく、ユーザー空間までの往復と exit の回数で比べます。"
              if fl.emulated or not f.backend.exit_costs else "表の正味の値は、ほぼ exit そのもののコストです。")
    return {"sum_costs": costs, "sum_backend": floor}


def sentences(root: str | None = None) -> dict[str, str]:
    """Every worded sentence of the chapter (glue names -> Japanese)."""
    words = {**exit_words(root), **floor_words(root), **python_vs_c_words(root), **summary_words(root)}
    return {k: spaced(v) for k, v in words.items()}
