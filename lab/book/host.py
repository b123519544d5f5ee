"""What the probe found, for the reader: the hands-on chapter's table and the recorded hosts (Japanese)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from pandas.io.formats.style import Styler

from lab import datapackage, paths
from lab.bench import harness
from lab.book.ja import reasons as words
from lab.book.ja.backends import backend_short
from lab.devnode import DeviceAccess
from lab.host import KVM_DEVICE, Probe

#: KVM's back ends, as the book explains them.
KVM_BACKENDS_JA = {
    "kvm_intel": "Intel VT-x を使うバックエンド",
    "kvm_amd": "AMD-V (SVM) を使うバックエンド",
    "kvm_pvm": (
        "PVM (Pagetable-based Virtual Machine): ハードウェア仮想化支援を使わず、"
        "ページテーブルの切り替えでゲストを動かすバックエンド。"
        "入れ子の仮想化を許さないクラウドの VM の中でも KVM が使える"
    ),
}



def _yes(value: bool) -> str:
    return "はい" if value else "いいえ"


def report_rows(p: Probe) -> list[tuple[str, str, str]]:
    """(item, value, meaning) rows in Japanese, for the hands-on chapter and the status page."""
    k, c, lv = p.kvm, p.cpu, p.libvirt
    rows = [
        ("CPU", f"{c.model or '?'} ({c.vendor or '?'})", c.reason or "/proc/cpuinfo の最初のプロセッサ"),
        ("vmx / svm フラグ", ", ".join(c.virt_flags) or "なし",
         "CPU が見せているハードウェア仮想化支援。入れ子の仮想マシンでは見えなくても KVM が動くことがある"),
        ("hypervisor ビット", _yes(c.hypervisor),
         "はい = このカーネル自身が仮想マシンの中で動いている(KVM は入れ子になる)"),
        (KVM_DEVICE, _yes(k.present), (k.reason or "") if not k.present else "デバイスファイルがある"),
        ("open できるか", _yes(k.openable), (k.reason or "") if k.present and not k.openable else "読み書きで開けた"),
        ("KVM API バージョン", str(k.api_version) if k.api_version is not None else "-",
         "KVM_GET_API_VERSION の答え。12 以外は想定外"),
        ("KVM_CREATE_VM", _yes(k.create_vm), "空の VM を作って閉じられたか"),
        *_access_rows(k.access),
        ("KVM の判定", "使える" if k.usable else "使えない", k.reason or "実際に開いて VM を作れた"),
    ]
    for m in k.modules:
        meaning = KVM_BACKENDS_JA.get(m.name, "")
        if m.nested is not None:
            meaning += ("。" if meaning else "") + "nested=Y/1 なら、この上のゲストの中でも KVM が使える"
        rows.append((f"モジュール {m.name}", f"nested={m.nested}" if m.nested is not None else "ロード済み",
                     meaning or m.nested_reason or ""))
    if not k.modules:
        rows.append(("kvm モジュール", "なし", k.modules_reason or ""))
    if not lv.python_module:
        rows.append(("libvirt-python", "なし", lv.reason or ""))
    else:
        rows.append(("libvirt-python", lv.library_version or "?", "libvirt ライブラリのバージョン"))
        for u in lv.uris:
            rows.append((f"libvirt {u.uri}", f"応答あり ({u.driver} {u.version})" if u.ok else "応答なし",
                         u.reason or "読み取り専用で接続できた"))
    # the probe's reasons are English (lab.host): every one in Japanese
    rows = [(item, value, words.probe_row_meaning(meaning)) for item, value, meaning in rows]
    if k.backend == "kvm_pvm":  # a PVM host is not nested KVM: say so on the hypervisor row
        rows = [(item, value, words.PVM_HYPERVISOR_ROW if item == "hypervisor ビット" and value == "はい" else meaning)
                for item, value, meaning in rows]
    return rows


def _access_rows(a: DeviceAccess | None) -> list[tuple[str, str, str]]:
    """The device's owner and mode, and whether libvirt's QEMU user can open it (with the fix)."""
    if a is None:
        return []
    rows = [(f"{a.device} の所有者とモード", f"{a.owner}:{a.group} {a.mode}",
             "Debian の udev 規則なら root:kvm crw-rw----(グループ kvm が開ける)")]
    if a.qemu_can_open is not None:
        meaning = ("libvirtd が QEMU を動かすユーザー。開けないと QEMU は "
                   "「Could not access KVM kernel module: Permission denied」で止まる")
        if a.fix:
            meaning += f"。直し方(root で、Debian の udev 規則を手で当てる): {a.fix}"
        rows.append((f"QEMU ({a.qemu_user}:{a.qemu_group}) が開けるか", _yes(a.qemu_can_open), meaning))
    return rows


def report_frame(p: Probe) -> pd.DataFrame:
    """The report as a table (item, value, meaning)."""
    return pd.DataFrame(report_rows(p), columns=["項目", "値", "意味"])


def report_table(p: Probe) -> Styler:
    """The report styled for a notebook: no index column, left-aligned text."""
    return (
        report_frame(p)
        .style.hide(axis="index")
        .set_properties(**{"text-align": "left"})
        .set_table_attributes('class="dataframe"')
    )


def recorded_hosts(root: str | Path | None = None) -> pd.DataFrame:
    """One row per host under ``data/measured``: what it is and when it was last recorded (Japanese headings)."""
    root = Path(root if root is not None else paths.MEASURED_DIR)
    rows = []
    for pkg in datapackage.find_packages(root):
        prov = harness.load_provenance(pkg).sort_values("recorded_at")
        last = prov.iloc[-1]
        in_vm = bool(last["runs_in_vm"])
        rows.append({
            "ホスト": last["host_id"], "CPU": last["cpu_model"], "カーネル": last["kernel"],
            "KVM のバックエンド": f"{backend_short(last['kvm_backend'], in_vm)}({last['kvm_backend']})",
            "カーネルが動く場所": "VM の中" if in_vm else "ベアメタル",
            "記録の回数": len(prov), "最後の記録 (UTC)": f"{last['recorded_at']:%Y-%m-%d %H:%M}",
        })
    if not rows:
        raise datapackage.DataError(f"no recording under {root}: run 'python -m lab record' on a KVM host")
    return pd.DataFrame(rows)
