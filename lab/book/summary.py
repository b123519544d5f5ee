"""The closing chapter's table: what the reader saw on their own machine, in one place.

Each row comes from the same function the chapter of that topic calls, so it
is measured here when this machine allows it and recorded data (with the host
named) when it does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from lab import host, virt
from lab.book import io as book_io
from lab.book import kvm as book_kvm
from lab.book.ja import reasons as words

BACKENDS = {
    "kvm_intel": "Intel VT-x を使う普通の KVM",
    "kvm_amd": "AMD-V を使う普通の KVM",
    "kvm_pvm": "PVM(仮想化支援命令を使わない KVM)",
}


@dataclass(frozen=True)
class Row:
    topic: str
    result: str
    source: str
    chapter: str


def kvm_row() -> Row:
    p = host.probe(libvirt_uris=())
    backend = BACKENDS.get(p.kvm.backend or "", p.kvm.backend or "不明")
    result = (f"使える(API {p.kvm.api_version}、{backend})" if p.kvm.usable
              else f"使えない({words.kvm_reason(p.kvm.reason)})")
    return Row("KVM の判定", result, f"この機械({p.host_id})でいま調べた結果", "演習 1")


def exits_row(repeat: int = 3, iterations: int = 300) -> Row:
    shown = book_kvm.exits(repeat=repeat, iterations=iterations)
    raw = shown.meta["raw"].set_index("kind")
    parts = []
    for kind, label in (("cpuid", "cpuid(カーネル内)"), ("pio_user", "ポート出力(ユーザー空間まで)")):
        if kind in raw.index and raw.loc[kind, "status"] == "ok":
            parts.append(f"{label} {raw.loc[kind, 'net_cycles_per_exit']:,.0f} サイクル")
    source = (f"この機械({shown.host_id})でいま測った値(短い測定なので揺れます)" if shown.live
              else f"記録済みのホスト {shown.host_id} の値(この機械では測れないため)")
    return Row("VMExit 一回の値段(正味)", "、".join(parts) or "測れなかった", source, "VMExit の解剖")


def io_row() -> Row:
    data = book_io.load()
    f = data.frame
    epr = {mode: f.loc[f["mode"] == mode, "exits_per_request"] for mode in ("hvm", "pv", "virtio")}
    virtio = f[f["mode"] == "virtio"]
    big = virtio.loc[virtio["batch"].idxmax()] if not virtio.empty else None
    virtio_text = (f"virtio(バッチ {int(big['batch'])}){big['exits_per_request']:.2g} 回" if big is not None
                   else "virtio なし")
    result = (f"要求 1 件あたりの exit: エミュレーション {epr['hvm'].median():g} 回、PV {epr['pv'].median():g} 回、"
              + virtio_text)
    source = (f"この機械({data.host_id})でいま測った値" if data.live
              else f"記録済みのホスト {data.host_id} の値(この機械では測れないため)")
    return Row("I/O の方式と exit の数", result, source, "I/O の仮想化と virtio")


def libvirt_row() -> Row:
    try:
        conn = virt.connect(prefer=["qemu:///system"])
    except virt.VirtError as exc:
        return Row("libvirt の接続先", "つながらない", f"libvirt-python が使えない({type(exc).__name__})",
                   "演習 2 と 3")
    try:
        kind = "テスト用ドライバ(偽のハイパーバイザ)" if conn.is_test else f"本物の {conn.driver} ドライバ"
        return Row("libvirt の接続先", f"{conn.uri}({kind})", "この機械でいま接続した結果", "演習 2 と 3")
    finally:
        conn.close()


def reader_table(rows: list[Row] | None = None) -> Any:
    """One table: topic, what this machine showed, where the value comes from, which chapter."""
    rows = rows if rows is not None else [kvm_row(), exits_row(), io_row(), libvirt_row()]
    frame = pd.DataFrame([{"項目": r.topic, "この本で見たこと": r.result, "値の出どころ": r.source, "章": r.chapter}
                          for r in rows])
    return frame.style.hide(axis="index")
