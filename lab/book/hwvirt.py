"""The kvm_amd test run in CI, for the reader (Japanese): what ran, when, where, and why no timings.

The words come from the recorded run (``data/measured/<host>/hwvirt.csv``,
:mod:`lab.bench.hwvirt`) and the back-end table (:data:`lab.backends.TABLE`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lab import backends
from lab.bench import dataset
from lab.bench import hwvirt as bench_hwvirt
from lab.book.host import KVM_BACKENDS_JA
from lab.datapackage import DataError

#: What each test file checks, in the reader's words.
FILES_JA = {
    "tests/test_kvm_vmm.py": "VMM の基本: 各 VMExit、壊れたゲスト(トリプルフォールト、未マップ領域へのジャンプ、"
                             "終わらないゲストとウォッチドッグ)、後始末",
    "tests/test_kvm_interrupt.py": "SIGINT とキックで KVM_RUN を止める、何も残さない",
    "tests/test_devices_live.py": "デバイスモデル(レジスタ単位のエミュレーション、PV、virtio、ioeventfd)",
    "tests/test_bench_exits.py": "VMExit ベンチマークの全種類(ハイパーコールを含む)",
    "tests/test_host.py": "プローブ(python -m lab probe)が KVM を使えると判定すること",
    "tests/test_backends.py": "バックエンドの違い(下の表)",
}

#: The recorded tests that show the hypercall completing on kvm_amd.
HYPERCALL_TESTS = {"tests/test_bench_exits.py::test_quick_run_measures_every_kind",
                   "tests/test_backends.py::test_the_hypercall_completes_where_the_table_says"}

NO_TIMINGS_JA = ("この環境では AMD-V そのものを QEMU がソフトウェアでエミュレートしている(ゲストの命令を"
                 "一つずつ翻訳して実行する)ため、かかった時間は実機のハードウェア仮想化とは無関係です。"
                 "ここで得た時間はこの本のどこにも示していません。確かめているのは「動くかどうか」だけです。")


def latest(root: str | Path | None = None) -> pd.DataFrame:
    """The rows of the newest recorded run (any host); empty when none is recorded."""
    try:
        return dataset.data_set([bench_hwvirt.RESOURCE], root=root, live=False).get(bench_hwvirt.RESOURCE)
    except (DataError, FileNotFoundError):
        return pd.DataFrame(columns=[f["name"] for f in bench_hwvirt.FIELDS])


def summary_ja(root: str | Path | None = None) -> str:
    """One paragraph (Markdown): the hardware-virtualization path is tested on kvm_amd, and how it went."""
    run = latest(root)
    lead = ("この本の VMM(`lab.kvm`)は、ここで使っている機械では PVM(`kvm_pvm`)の上でしか動かせません。"
            "読者の多くが使う VT-x / AMD-V の経路を確かめるため、CI では QEMU の TCG(ソフトウェア"
            "エミュレーション)が AMD-V を再現した仮想マシンの中で Linux を起動し、`kvm_amd` を読み込んで、"
            "そこで同じ KVM のテストを実行しています(`make test-hwvirt`)。")
    if run.empty:
        return lead + "まだ記録された実行結果はありません。"
    passed = int((run["outcome"] == "passed").sum())
    when = pd.Timestamp(run["recorded_at"].iloc[0]).strftime("%Y-%m-%d")
    row = run.iloc[0]
    verdict = "すべて成功しました" if passed == len(run) else f"そのうち {passed} 件が成功しました"
    ok = set(run.loc[run["outcome"] == "passed", "test"])
    hypercall = ("ハイパーコール(AMD の `vmmcall`)もカーネルの中で完了しました。" if HYPERCALL_TESTS <= ok
                 else "ただしハイパーコールのテストは成功していません。")
    return (lead + f"記録された最新の実行({when}、ホスト `{row['host_id']}`、ゲストのカーネル "
            f"{row['guest_kernel']}、{row['emulator']})では、`{row['backend']}` に対して "
            f"{len(run)} 件のテストを実行し、{verdict}。" + hypercall + NO_TIMINGS_JA)


def hypercall_note_ja(root: str | Path | None = None) -> str:
    """One sentence (Markdown) for the VMExit chapter: did the hypercall complete on kvm_amd in the recorded run?"""
    run = latest(root)
    if run.empty:
        return ("ハードウェアの仮想化支援を使う KVM(`kvm_intel` / `kvm_amd`)でハイパーコールが完了するかは、"
                "まだ記録された実行結果がありません。")
    ok = set(run.loc[run["outcome"] == "passed", "test"])
    when = pd.Timestamp(run["recorded_at"].iloc[0]).strftime("%Y-%m-%d")
    done = "完了しました" if HYPERCALL_TESTS <= ok else "完了しませんでした"
    return (f"一方、QEMU がソフトウェアで再現した AMD-V の上の `kvm_amd` では、同じハイパーコールのテストが"
            f"カーネルの中で{done}(CI の記録、{when}、ホスト `{run['host_id'].iloc[0]}`。"
            "エミュレーションが時間をゆがめるので、そこでの値段は示しません)。")


def files_frame(root: str | Path | None = None) -> pd.DataFrame:
    """Per test file: what it checks and how many of its tests passed in the recorded run."""
    run = latest(root)
    files = run["test"].str.split("::").str[0] if not run.empty else pd.Series(dtype=str)
    rows = []
    for name, what in FILES_JA.items():
        mine = run[files == name]
        rows.append({"テストファイル": name, "確かめること": what,
                     "成功 / 実行": f"{int((mine['outcome'] == 'passed').sum())} / {len(mine)}"})
    return pd.DataFrame(rows)


def _yes(value: bool) -> str:
    return "返る" if value else "返らない(ウォッチドッグが止める)"


def backends_frame() -> pd.DataFrame:
    """The back-end table (lab.backends.TABLE) in Japanese, one column per back end."""
    enosys = (f"-1000 (-KVM_ENOSYS)。32 ビットのゲストでは下位 32 ビット "
              f"{backends.enosys_rax('protected32'):#x}")
    rows = {}
    for b in backends.TABLE.values():
        rows[b.name] = {
            "バックエンド": KVM_BACKENDS_JA[b.name],
            "ハイパーコール命令": b.native_hypercall or "なし",
            "ハイパーコールから KVM_RUN が": _yes(b.hypercall_completes),
            "未定義のハイパーコールで rax に入る値": enosys if b.unknown_hypercall_rax is not None else "-",
            "他社の命令(vmcall / vmmcall)": "KVM がゲストのメモリ上で自社の命令に書き換える"
            if b.foreign_hypercall == "rewritten" else "-",
            "KVM_GET_SUPPORTED_CPUID の入れ子フラグ": b.nested_flag or "なし",
            "VMM のプロセスまで戻る VMExit": ", ".join(b.userspace_exits),
            "ここでのテスト": {"kvm_amd": "CI: QEMU TCG の中(make test-hwvirt)",
                         "kvm_intel": "できない(TCG は VMX をエミュレートしない)",
                         "kvm_pvm": "この機械そのもの(make test)"}[b.name],
        }
    return pd.DataFrame(rows).rename_axis("項目").reset_index()
