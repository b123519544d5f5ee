"""The kvm_amd and kvm_intel test runs in CI, for the reader (Japanese): what ran, when, where, why no timings.

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
from lab.qemu import hwvirt

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

#: How each emulator here is named in the text (keys of lab.backends.EMULATORS).
EMULATOR_JA = {"qemu-tcg": "QEMU の TCG", "bochs": "Bochs"}
#: The hardware each back end's emulator recreates, in the reader's words.
HARDWARE_JA = {"kvm_amd": "AMD-V", "kvm_intel": "VT-x"}
VENDOR_JA = {"intel": "Intel", "amd": "AMD"}
#: The back ends an emulator here provides, in the order of lab.backends.TABLE.
EMULATED = tuple(b for b in backends.TABLE.values() if b.emulator)

NO_TIMINGS_JA = ("どちらの環境でも、AMD-V や VT-x そのものをソフトウェア(QEMU の TCG、Bochs)がエミュレートしている"
                 "(ゲストの命令を一つずつ実行する)ため、かかった時間は実機のハードウェア仮想化とは無関係です。"
                 "ここで得た時間はこの本のどこにも示していません。確かめているのは「動くかどうか」だけです。")


def latest(root: str | Path | None = None) -> pd.DataFrame:
    """The newest recorded run of each emulated back end (whichever host recorded it), one frame;
    empty when none is recorded."""
    try:
        sets = dataset.every_host([bench_hwvirt.RESOURCE], root=root)
    except (DataError, FileNotFoundError):
        sets = []
    frames = [d.frames[bench_hwvirt.RESOURCE] for d in sets if bench_hwvirt.RESOURCE in d.frames]
    if not frames:
        return pd.DataFrame(columns=[f["name"] for f in bench_hwvirt.FIELDS])
    rows = pd.concat(frames, ignore_index=True)
    newest = rows.groupby("backend")["recorded_at"].transform("max")
    return rows[rows["recorded_at"] == newest].reset_index(drop=True)


def runs(root: str | Path | None = None) -> dict[str, pd.DataFrame]:
    """Per emulated back end (every one, recorded or not), the rows of its newest recorded run."""
    rows = latest(root)
    return {b.name: rows[rows["backend"] == b.name].reset_index(drop=True) for b in EMULATED}


def _base(name: str) -> str:
    return name.split("[", 1)[0]  # a parametrized test counts by its function


def hypercall_completed(run: pd.DataFrame) -> bool:
    """Whether every test that shows the hypercall completing (lab.qemu.hwvirt.hypercall_tests) passed."""
    passed = {_base(t) for t in run.loc[run["outcome"] == "passed", "test"]}
    return bool(run.size) and hwvirt.hypercall_tests() <= passed


def _emulator(b: backends.Backend) -> str:
    return EMULATOR_JA[b.emulator or ""]  # EMULATED holds only back ends with an emulator


def _where(b: backends.Backend) -> str:
    return f"{_emulator(b)} が再現した {HARDWARE_JA[b.name]} の上の `{b.name}`"


def _when(run: pd.DataFrame) -> str:
    return pd.Timestamp(run["recorded_at"].iloc[0]).strftime("%Y-%m-%d")


def _instruction(b: backends.Backend) -> str:
    insn = b.native_hypercall or ""  # every emulated back end is VT-x or AMD-V, which have one
    return f"{VENDOR_JA[backends.VENDOR_OF[insn]]} の `{insn}`"


def summary_ja(root: str | Path | None = None) -> str:
    """One paragraph (Markdown): the hardware-virtualization paths are tested on kvm_amd and kvm_intel,
    and how each went."""
    lead = ("この本の VMM(`lab.kvm`)は、ここで使っている機械では PVM(`kvm_pvm`)の上でしか動かせません。"
            "読者の多くが使う VT-x / AMD-V の経路を確かめるため、CI ではソフトウェアでエミュレートした"
            "仮想化支援の上で Linux を起動し、そこで同じ KVM のテストを実行しています(`make test-hwvirt`)。"
            + "、".join(f"{HARDWARE_JA[b.name]} は {_emulator(b)} が" for b in EMULATED)
            + "エミュレートし、その中でそれぞれ " + "、".join(f"`{b.name}`" for b in EMULATED) + " を読み込みます。")
    parts = []
    recorded = runs(root)
    for b in EMULATED:
        run = recorded[b.name]
        if run.empty:
            parts.append(f"{_where(b)} では、まだ記録された実行結果はありません。")
            continue
        passed = int((run["outcome"] == "passed").sum())
        row = run.iloc[0]
        verdict = "すべて成功しました" if passed == len(run) else f"そのうち {passed} 件が成功しました"
        hypercall = (f"ハイパーコール({_instruction(b)})もカーネルの中で完了しました。" if hypercall_completed(run)
                     else "ただしハイパーコールのテストは成功していません。")
        parts.append(f"{_where(b)} では、記録された最新の実行({_when(run)}、ホスト `{row['host_id']}`、"
                     f"ゲストのカーネル {row['guest_kernel']}、{row['emulator']})で {len(run)} 件のテストを"
                     f"実行し、{verdict}。" + hypercall)
    return lead + "".join(parts) + NO_TIMINGS_JA


def hypercall_note_ja(root: str | Path | None = None) -> str:
    """One sentence (Markdown) for the VMExit chapter: did the hypercall complete on each emulated back end?"""
    clauses = []
    recorded = runs(root)
    for b in EMULATED:
        run = recorded[b.name]
        if run.empty:
            clauses.append(f"{_where(b)} では、まだ記録された実行結果がありません")
            continue
        done = "完了しました" if hypercall_completed(run) else "完了しませんでした"
        clauses.append(f"{_where(b)}(`{b.native_hypercall}`)では、カーネルの中で{done}"
                       f"(記録、{_when(run)}、ホスト `{run['host_id'].iloc[0]}`)")
    return ("一方、ハードウェアの仮想化支援をソフトウェアで再現した上の KVM でも、同じハイパーコールのテストを "
            "CI で実行しています。" + "".join(c + "。" for c in clauses)
            + "エミュレーションが時間をゆがめるので、そこでの値段は示しません。")


def files_frame(root: str | Path | None = None) -> pd.DataFrame:
    """Per test file: what it checks and, per emulated back end, how many of its tests passed in the
    recorded run."""
    rows = [{"テストファイル": name, "確かめること": what} for name, what in FILES_JA.items()]
    for backend, run in runs(root).items():
        files = run["test"].str.split("::").str[0] if not run.empty else pd.Series(dtype=str)
        for row in rows:
            mine = run[files == row["テストファイル"]]
            row[f"{backend}: 成功 / 実行"] = f"{int((mine['outcome'] == 'passed').sum())} / {len(mine)}"
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
            "ここでのテスト": f"CI: {_emulator(b)} の中(make test-hwvirt)" if b.emulator
            else "この機械そのもの(make test)",
        }
    return pd.DataFrame(rows).rename_axis("項目").reset_index()
