"""What one measured number contains on the page's back end, in Japanese (:mod:`lab.analysis.measures`).

The VMExit chapter shows :func:`contents_table` beside its exits table, so
that a reader of a PVM recording sees that no row is an exit cost there, and
a reader of a VT-x / AMD-V recording sees which rows are.
"""

from __future__ import annotations

import pandas as pd
from pandas.io.formats.style import Styler

from lab.analysis import measures

#: Japanese for :data:`lab.analysis.measures.PARTS`.
PARTS_JA = {
    "loop_on_cpu": "空ループ(CPU がそのまま実行)",
    "loop_emulated": "空ループ(KVM の命令エミュレータが実行)",
    "hardware_exit": "ハードウェアの VM exit と VM entry",
    "instruction_emulated": "exit を起こす命令のエミュレーション",
    "kvm_handler": "KVM の処理",
    "eventfd_signal": "eventfd への通知",
    "userspace_round_trip": "VMM のプロセスまでの往復(KVM_RUN から戻り、処理して、また呼ぶ)",
}

#: Japanese for :data:`lab.analysis.measures.QUANTITIES`.
QUANTITIES_JA = {
    "exits_per_request": "要求 1 件あたりの exit の数",
    "userspace_round_trip": "ユーザー空間までの往復(pio_user − pio_ioeventfd)",
    "in_kernel_exit": "カーネル内で片づく exit のコスト",
    "hardware_exit_cost": "ハードウェアの exit のコスト",
    "emulated_instruction_cost": "命令エミュレーションのコスト",
    "native_loop": "ホストでそのまま走らせた空ループ",
}

KINDS_JA = {
    "loop": "空ループ",
    "cpuid": "cpuid",
    "hypercall": "ハイパーコール",
    "pio_user": "ポート出力 → ユーザー空間",
    "mmio_user": "MMIO 書き込み → ユーザー空間",
    "pio_ioeventfd": "ポート出力 → ioeventfd",
}


def contents_table(kvm_backend: str | None) -> Styler:
    """One row per kind of the exits benchmark: what its number contains on ``kvm_backend``."""
    rows = []
    for kind in measures.KINDS:
        parts = measures.contents(kind, kvm_backend)
        rows.append({"種類": KINDS_JA[kind],
                     "1 回の値に含まれるもの": "不明(このバックエンドは表にありません)" if parts is None
                     else " + ".join(PARTS_JA[p] for p in parts)})
    return pd.DataFrame(rows).style.hide(axis="index")


def measurable_ja(kvm_backend: str | None) -> str:
    """The quantities the benchmarks measure soundly on ``kvm_backend``, as a Japanese list."""
    caps = measures.capabilities(kvm_backend)
    return "、".join(QUANTITIES_JA[q] for q in caps.measurable)
