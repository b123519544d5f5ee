"""The VMExit chapter's sentences about recorded hosts, worded from the data (glued into the prose).

Every comparison ("N 倍", "遅い", "同じ向き") is computed here from the
page's recorded data set (:func:`lab.book.pages.data`: one host, the newest
recording of each resource), and each sentence names the host it speaks of,
so that the text follows the data. A resource the host lacks is said to be
missing where its sentence would stand.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from lab.bench.dataset import DataSet
from lab.book import pages
from lab.book.backend import backend_ja, is_pvm
from lab.book.compare import cost_ja, pct_ja, spaced

USER_KINDS = ("pio_user", "mmio_user")
KERNEL_KINDS = ("loop", "cpuid", "pio_ioeventfd")
#: A guest loop this many times slower than the same loop run natively is not running on the CPU directly.
EMULATED_RATIO = 20.0


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


def _exits_p32(ds: DataSet) -> pd.DataFrame:
    return ds.get("exits", mode="protected32", status="ok").set_index("kind")


def _floor(ds: DataSet) -> tuple[Any, float, float, str]:
    """The native-loop row, the guest loop (the same session's reference run when recorded, else the exits
    recording), the native loop, and which."""
    nat = ds.get("native").iloc[0]
    ref = ds.get("reference", kind="loop") if ds.has("reference") else pd.DataFrame()
    if not ref.empty:
        guest, src = float(ref.iloc[0]["python_cycles"]), "同じ記録の"
    else:
        guest, src = float(ds.get("exits", kind="loop", mode="protected32", status="ok").iloc[0]["cycles_per_exit"]), \
            "別の日の記録の"
    return nat, guest, float(nat["cycles_per_iteration"]), src


def floor_words(root: str | None = None) -> dict[str, str]:
    """The empty loop in the guest against the same loop natively, and what that means for every other row."""
    ds = _data(root)
    if not ds.has("native"):
        return {"floor_sentence": missing_words(ds, "native"), "floor_meaning": ""}
    nat, guest, native, src = _floor(ds)
    ratio = guest / native
    head = (f"{host_sentence(nat)}では、{src}ゲストの空ループ 1 周が {guest:,.0f} サイクル、"
            f"同じ命令をホストのプロセスでそのまま走らせると {native:.2f} サイクルで、{ratio:,.0f} 倍でした。")
    if ratio >= EMULATED_RATIO:
        why = ("PVM 向けに書かれていないこの本のゲストは、"
               "命令を 1 つずつ KVM の命令エミュレータで処理されているためです。"
               if is_pvm(nat["kvm_backend"]) else "ゲストの命令が CPU でそのまま実行されていないことを示しています。")
        meaning = (f"このホストの表の値には、どの行にもこの床(1 周あたり約 {guest:,.0f} サイクル)が含まれます。"
                   "VT-x や AMD-V の KVM なら床はホストとほぼ同じ数サイクルなので、"
                   "表の値はほぼ exit そのものの値段になります。"
                   "このホストの値を公表値と比べるときは、空ループを引いた「正味」の列を使います。")
    else:
        why = "ゲストの命令は CPU でほぼそのまま実行されています(VT-x や AMD-V の KVM で期待されるとおりです)。"
        meaning = "このホストの表の値は、ほぼ exit そのものの値段です。"
    return {"floor_sentence": head + why, "floor_meaning": meaning}


def python_vs_c_words(root: str | None = None) -> dict[str, str]:
    """How much the VMM's language adds, from the data set's Python-vs-C recording."""
    ds = _data(root)
    if not ds.has("reference"):
        return {"py_vs_c": missing_words(ds, "reference"), "py_vs_c_meaning": ""}
    last = ds.get("reference")
    r = last.set_index("kind")
    user = [k for k in USER_KINDS if k in r.index]
    kernel = [k for k in KERNEL_KINDS if k in r.index]
    k = user[0]
    py, c = float(r.loc[k, "python_cycles"]), float(r.loc[k, "c_cycles"])
    diffs = [100 * (float(r.loc[x, "python_cycles"]) - float(r.loc[x, "c_cycles"])) / float(r.loc[x, "c_cycles"])
             for x in kernel]
    extra = py - c
    share = extra / py if py > 0 else 0.0
    first = (f"{host_sentence(last.iloc[0])}で同じゲストのバイト列を走らせると、ユーザー空間まで戻る `out` では"
             f"{pct_ja('Python の VMM', py, 'C の VMM', c)}"
             f"(1 回あたり {py:,.0f} サイクル対 {c:,.0f} サイクル)。")
    second = (f"カーネルの中で片づく種類(空ループ、cpuid、ioeventfd)では、VMM のコードが走らないので、"
              f"差は {min(diffs):+.0f} % から {max(diffs):+.0f} % でした。" if diffs else "")
    if extra > 0:
        third = (f"言語の違いで増えるのは、ユーザー空間まで戻る exit 1 回あたり {extra:,.0f} サイクル、"
                 f"その exit の値段の {100 * share:.0f} % です。")
    else:
        third = "このホストでは、Python の VMM で exit が高くなることはありませんでした。"
    return {"py_vs_c": first + second, "py_vs_c_meaning": third}


def exit_words(root: str | None = None) -> dict[str, str]:
    """Userspace vs kernel vs ioeventfd on the data set's exits recording (protected32)."""
    ds = _data(root)
    ex = _exits_p32(ds)
    row = ex.iloc[0]
    backend = backend_ja(row["kvm_backend"], bool(row["runs_in_vm"]))
    out: dict[str, str] = {"rec_host_sentence": host_sentence(row),
                           "rec_backend_words": (f"このホストの KVM は {backend} です。" if is_pvm(row["kvm_backend"])
                                                 else f"このホストの KVM は{backend}で、PVM ではありません。")}
    pu, cp, efd = (float(ex.loc[k, "cycles_per_exit"]) for k in ("pio_user", "cpuid", "pio_ioeventfd"))
    pu_net, cp_net = float(ex.loc["pio_user", "net_cycles_per_exit"]), float(ex.loc["cpuid", "net_cycles_per_exit"])
    out["user_vs_kernel"] = cost_ja("ユーザー空間まで戻る `out` の正味", pu_net,
                                    "カーネル内で片づく `cpuid` の正味", max(cp_net, 1.0)) + "。"
    out["user_vs_efd"] = cost_ja("ユーザー空間まで戻る `out` の 1 周", pu,
                                 "ioeventfd で終わる `out` の 1 周", efd) + "。"
    out["efd_direction"] = (
        "ユーザー空間への往復を省くことの効き目は、"
        "入れ子の公表値(`inl_from_qemu` と `inl_from_kernel`)と同じ向きに現れています。"
        if pu > efd else
        "これは公表値(`inl_from_qemu` と `inl_from_kernel`)とは逆の向きです。"
        "ユーザー空間への往復を省いても速くならなかったので、"
        "この記録には別の要因(測定のばらつきやホストの負荷)が効いていると考えられます。")
    out["user_vs_kernel_direction"] = (
        "exit の値段は、どこまで戻るかで大きく変わります。" if pu_net > cp_net else
        "このホストでは、カーネルの中で片づく exit のほうが高くつきました。公表値とは逆の向きです。")
    return out


def summary_words(root: str | None = None) -> dict[str, str]:
    """The part's closing bullets about costs and the back end, from the same recordings as the chapter."""
    ds = _data(root)
    ex = _exits_p32(ds)
    row = ex.iloc[0]
    net = {k: float(ex.loc[k, "net_cycles_per_exit"]) for k in ("pio_user", "cpuid", "pio_ioeventfd")}
    where = f"記録済みのホスト {row['host_id']} では、"
    costs = where + cost_ja("ユーザー空間の VMM まで戻るポート出力の正味", net["pio_user"],
                            "カーネルの中で片付く `cpuid` の正味", max(net["cpuid"], 1.0)) + "。"
    costs += (f"ioeventfd はその戻りをなくし、正味 {net['pio_ioeventfd']:,.0f} サイクルでした。"
              if net["pio_ioeventfd"] < net["pio_user"] else
              f"ioeventfd は、このホストでは正味 {net['pio_ioeventfd']:,.0f} サイクルで、"
              "戻りをなくしても安くなりませんでした。")
    if not ds.has("native"):
        return {"sum_costs": costs, "sum_backend": missing_words(ds, "native")}
    nat, guest, native, _ = _floor(ds)
    ratio = guest / native
    head = f"記録済みのホスト {nat['host_id']} の KVM は{backend_ja(nat['kvm_backend'], bool(nat['runs_in_vm']))}で、"
    floor = head + f"ゲストの空ループは同じ命令をホストでそのまま走らせたときの {ratio:,.0f} 倍かかりました。"
    floor += ("どの行にもこの床が含まれるので、ほかのホストや公表値とは空ループを引いた正味の値で比べます。"
              if ratio >= EMULATED_RATIO else "表の値は、ほぼ exit そのものの値段です。")
    return {"sum_costs": costs, "sum_backend": floor}


def sentences(root: str | None = None) -> dict[str, str]:
    """Every worded sentence of the chapter (glue names -> Japanese)."""
    words = {**exit_words(root), **floor_words(root), **python_vs_c_words(root), **summary_words(root)}
    return {k: spaced(v) for k, v in words.items()}
