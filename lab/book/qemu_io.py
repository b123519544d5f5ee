"""Register accesses per disk request in QEMU's real device models, for the book (Japanese).

The counts come from :mod:`lab.bench.qemu_io` (a real Linux guest, QEMU's
IDE, AHCI and virtio-blk). :func:`load` shows the page's recorded data set unless a
live run is possible *and* asked for: a live run boots four guests (about
40 s), so a chapter build never starts one unless ``LAB_LIVE_QEMU_IO=1`` is
set and the guest kit, root and ``qemu:///system`` are all there.
:func:`table`, :func:`figure` and :func:`switchable` (one tab per disk type,
synchronised with the book's HVM / virtio tabs) present the counts;
:func:`versus_toy` sets them beside the toy models of :mod:`lab.book.io`.
"""

from __future__ import annotations

import argparse
import os
import shutil
from dataclasses import dataclass
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from lab.bench import harness
from lab.bench import qemu_io as bench
from lab.book.core import fallback, pages, plots
from lab.book.core.widgets import Switchable
from lab.book.ja import reasons as words

#: Set to 1 to let a chapter cell boot the guests (about 40 s) when everything is there.
LIVE_ENV = "LAB_LIVE_QEMU_IO"
LIVE_COMMAND = "python -m lab bench qemu-io"

#: Disk configurations in display order: Japanese name and the sync id of their tab.
CONFIG_NAMES = {
    "ide": "IDE",
    "ahci": "AHCI(SATA)",
    "virtio": "virtio-blk",
    "virtio-noioeventfd": "virtio-blk(ioeventfd=off)",
}
#: IDE is the exercise's pattern A (emulation) and shares its tab with the book's HVM views.
SYNC_IDS = {"ide": "hvm", "ahci": "ahci", "virtio": "virtio", "virtio-noioeventfd": "virtio-noioeventfd"}
OP_NAMES = {"read": "読み", "write": "書き"}
_DIRECTIONS = {"read": "読み", "write": "書き"}
_USERSPACE_COLOR = plots.MODE_COLORS["hvm"]
_KERNEL_COLOR = plots.MODE_COLORS["virtio"]
_LEGEND = ("QEMU(ユーザー空間)まで戻る exit", "カーネルで終わる exit(ioeventfd)")


@dataclass
class QemuIoData:
    """One recording (or one live run) of the qemu-io benchmark and where it comes from."""

    frame: pd.DataFrame   #: rows of the qemu-io resource (status ok) joined with provenance
    live: bool
    host_id: str
    recorded_at: str
    detail: str           #: the host in words (CPU, kernel, its KVM back end)
    reason: str = ""      #: why the data is not live (empty when live)
    missing: fallback.Note | None = None  #: the page's host has no qemu-io recording: what to say instead

    def note(self) -> fallback.Note:
        """Where the counts come from, as the book's shared note."""
        if self.missing is not None:
            return self.missing
        how = (f"QEMU {self.first('qemu_version')}、{self.accelerator_ja()}、"
               f"ゲストのカーネル {self.first('guest_kernel')}。")
        if self.live:
            return fallback.live_note(host_id=self.host_id, detail=self.detail, text=how)
        note = fallback.recorded_note(reason=self.reason, host_id=self.host_id, recorded=self.recorded_at,
                                      detail=self.detail)
        return fallback.Note(note.title, f"{note.body}。{how}自分の機械で数えるには {LIVE_COMMAND} を実行します"
                             f"(ゲストのキットと libvirtd が要ります)。", note.kind, note.css_class)

    def first(self, column: str) -> Any:
        return self.frame[column].iloc[0]

    def accelerator_ja(self) -> str:
        return ("ハードウェアの KVM で実行" if self.first("accelerator") == "kvm"
                else "ソフトウェアのエミュレーション(TCG)で実行")

    def configs(self) -> list[str]:
        present = set(self.frame["config"])
        return [c for c in CONFIG_NAMES if c in present]

    def counts(self) -> list[int]:
        return sorted(int(n) for n in self.frame["requests"].unique())

    def row(self, config: str, op: str) -> pd.Series:
        """The row of ``config`` and ``op`` at the largest request count."""
        f = self.frame
        rows = f[(f["config"] == config) & (f["op"] == op) & (f["requests"] == self.counts()[-1])]
        if rows.empty:
            raise KeyError(f"no qemu-io row for config={config} op={op}")
        return rows.iloc[0]

    def per_request(self, config: str, op: str, column: str) -> float:
        r = self.row(config, op)
        return float(r[column]) / float(r["requests"])

    def to_kernel(self, config: str, op: str) -> float:
        """Per request, the exits KVM would finish in the kernel: irqchip accesses and ioeventfd kicks."""
        r = self.row(config, op)
        kicks = float(r["kicks"]) if bool(r["ioeventfd"]) else 0.0
        return (float(r["kernel"]) + kicks) / float(r["requests"])


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """``kernel`` is both a count (qemu-io) and the host's kernel (provenance, ``kernel_provenance``)."""
    return frame.rename(columns={"kernel_provenance": "host_kernel"})


def _data(frame: pd.DataFrame, live: bool, reason: str = "") -> QemuIoData:
    """One qemu-io recording (its rows joined with provenance) as the chapter's data."""
    frame = _normalise(frame)
    if frame.empty:
        raise ValueError("no qemu-io recording: run 'python -m lab bench qemu-io --record' with the guest kit")
    latest = frame["recorded_at"].iloc[0]
    rows = frame[frame["status"] == "ok"].reset_index(drop=True)
    if rows.empty:
        raise ValueError(f"the qemu-io recording of {latest} has no row with status ok")
    first = rows.iloc[0]
    return QemuIoData(rows, live=live, host_id=str(first["host_id"]),
                      recorded_at=f"{pd.Timestamp(latest):%Y-%m-%d %H:%M} UTC",
                      detail=fallback.host_detail({**first.to_dict(), "kernel": first["host_kernel"]}),
                      reason=reason)


def load_recorded(root: str | None = None, page: str = "virtio") -> QemuIoData:
    """The qemu-io recording of ``page``'s recorded data set (:func:`lab.book.core.pages.data`); when that host
    has none, data that says so (``missing``) wherever the page would show the counts."""
    ds = pages.data(page, root, live=False)
    if not ds.has("qemu-io"):
        return QemuIoData(pd.DataFrame(), live=False, host_id=ds.host_id, recorded_at="", detail="",
                          missing=fallback.missing_note(ds, "qemu-io"))
    return _data(ds.get("qemu-io"), live=False)


def live_reason() -> str | None:
    """None when a chapter may boot the guests now, else why not (Japanese)."""
    from lab import kit, virt

    if os.environ.get(fallback.FORCE_RECORDED_ENV):
        return f"環境変数 {fallback.FORCE_RECORDED_ENV} が設定されている"
    try:
        kit.find(bench.KIT_PROFILE)
    except kit.KitError:
        return (f"ゲストのキットがまだ作られていない(作るには {kit.build_command(bench.KIT_PROFILE)} を一度実行する。"
                "本のビルドはキットをダウンロードしない)")
    if shutil.which("qemu-system-x86_64") is None:
        return "QEMU(qemu-system-x86_64)が入っていない"
    if os.geteuid() != 0:
        return f"root ではない({bench.URI} のドメインを作り、QEMU のトレースを読むには root が要る)"
    try:
        virt.connect(bench.URI).close()
    except virt.VirtError as exc:
        return f"libvirtd({bench.URI})につながらない: {words.attempt(str(exc))}"
    if os.environ.get(LIVE_ENV) != "1":
        return (f"その場で数えるにはディスクの種類ごとにゲストを起動するので数十秒かかる。本のビルドでは既定で行わない"
                f"(環境変数 {LIVE_ENV}=1 を設定するか、{LIVE_COMMAND} を実行する)")
    return None


def measure() -> QemuIoData:
    """Boot the guests now (every disk configuration, the default request counts)."""
    from lab.qemu import io, run

    args = argparse.Namespace(configs=",".join(io.DEFAULT_CONFIGS), counts=",".join(map(str, io.DEFAULT_COUNTS)),
                              accel="auto", jobs=2, deadline=run.DEFAULT_DEADLINE_S)
    rows = bench.measure(args)
    prov = harness.provenance(command="lab.book.qemu_io.measure()")
    frame = bench.to_frame(rows, prov)
    bad = frame[frame["status"] != "ok"]
    if not bad.empty:
        raise RuntimeError(f"qemu-io: {bad.iloc[0]['config']} {bad.iloc[0]['op']}: {bad.iloc[0]['reason']}")
    extra = {k: v for k, v in prov.items() if k not in frame.columns}
    return _data(frame.assign(host_kernel=prov["kernel"], **extra), live=True)


def load(live: bool | None = None, root: str | None = None) -> QemuIoData:
    """Live counts when :func:`live_reason` allows it (and ``live`` is not False), else the page's recorded data set."""
    reason = "ライブの計測を切ってある(live=False)" if live is False else live_reason()
    if reason is None:
        errors: tuple[type[BaseException], ...] = (*bench.BENCH.unavailable(), RuntimeError)
        try:
            return measure()
        except errors as exc:  # shown to the reader, not hidden
            reason = f"その場の計測が失敗した: {type(exc).__name__}: {exc}"
    data = load_recorded(root)
    data.reason = reason
    return data


# --------------------------------------------------------------------------- tables and figures


def _num(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(float(value), 4)


def _constant(data: QemuIoData, config: str, op: str) -> bool:
    """The per-request counts are the same for every request count of the run."""
    f = data.frame
    rows = f[(f["config"] == config) & (f["op"] == op)]
    cols = ["accesses", "userspace", "kernel", "kicks", "interrupts"]
    per = rows[cols].div(rows["requests"], axis=0)
    return bool((per.nunique() == 1).all())


def table(data: QemuIoData) -> pd.DataFrame:
    """Per request, by disk and operation: accesses, where KVM would handle them, interrupts (Japanese)."""
    if data.missing is not None:
        return data.missing  # type: ignore[return-value]
    counts = "・".join(f"{n:,}" for n in data.counts())
    rows = []
    for c in data.configs():
        for op in OP_NAMES:
            rows.append({
                "ディスク": CONFIG_NAMES[c], "操作": OP_NAMES[op],
                "アクセス": _num(data.per_request(c, op, "accesses")),
                "I/O ポート": _num(data.per_request(c, op, "pio")),
                "MMIO": _num(data.per_request(c, op, "mmio")),
                "QEMU へ exit": _num(data.per_request(c, op, "userspace")),
                "カーネル内 exit": _num(data.to_kernel(c, op)),
                "割り込み": _num(data.per_request(c, op, "interrupts")),
                f"{counts} 件で一定": "はい" if _constant(data, c, op) else "いいえ",
            })
    return pd.DataFrame(rows).set_index(["ディスク", "操作"])


def regions_ja(data: QemuIoData, config: str, op: str) -> str:
    """One sentence: the accesses of one request by QEMU memory region and direction, and the kicks."""
    r = data.row(config, op)
    n = int(r["requests"])
    parts = []
    regions = r["regions"] if isinstance(r["regions"], str) else ""  # empty in the CSV reads as NaN
    for item in regions.split():
        region, count = item.split("=")
        name, direction = region.rsplit(":", 1)
        parts.append(f"{name} の{_DIRECTIONS[direction]} {_num(int(count) / n)} 回")
    text = ("レジスタへのアクセス: " + "、".join(parts)) if parts else "レジスタへのアクセスはありません"
    kicks = _num(int(r["kicks"]) / n)
    if kicks:
        text += (f"。通知(kick){kicks} 回は ioeventfd でカーネルが受けます" if bool(r["ioeventfd"])
                 else f"。通知(kick){kicks} 回は、上のレジスタへの書き込みそのものです")
    return text + f"。割り込み {_num(int(r['interrupts']) / n)} 回(1 件あたり)。"


def figure(data: QemuIoData, highlight: str, op: str = "write") -> Figure:
    """Exits per request under KVM, to QEMU and in the kernel, per disk; ``highlight`` in colour."""
    fig, ax = plots.figure(figsize=(7.2, 3.4))
    configs = data.configs()
    y = list(range(len(configs)))
    user = [data.per_request(c, op, "userspace") for c in configs]
    kern = [data.to_kernel(c, op) for c in configs]
    h = 0.38
    for i, c in enumerate(configs):
        on = c == highlight
        for dy, value, color in ((-h / 2, user[i], _USERSPACE_COLOR), (h / 2, kern[i], _KERNEL_COLOR)):
            ax.barh(i + dy, value, height=h, color=color if on else "#cccccc", zorder=3)
            ax.annotate(f"{_num(value)}", (value, i + dy), textcoords="offset points", xytext=(4, 0),
                        va="center", fontsize=8, color="black" if on else "#888888",
                        fontweight="bold" if on else "normal")
    ax.set_yticks(y)
    ax.set_yticklabels([CONFIG_NAMES[c] for c in configs])
    ax.invert_yaxis()
    ax.set_xlim(0, max(user + kern + [1.0]) * 1.15)
    ax.set_xlabel(f"{int(data.first('block_size'))} バイトの{OP_NAMES[op]}込み 1 件あたりの exit(KVM に置き換えた数)")
    ax.set_title(f"Linux のドライバと QEMU のデバイス(ホスト {data.host_id}、QEMU {data.first('qemu_version')})",
                 fontsize=10)
    ax.legend(handles=[Patch(color=_USERSPACE_COLOR, label=_LEGEND[0]), Patch(color=_KERNEL_COLOR, label=_LEGEND[1])],
              fontsize=8, loc="lower right", frameon=False)
    return fig


def switchable(data: QemuIoData, op: str = "write", caption: str = "") -> Switchable:
    """One tab per disk type (IDE shares the book's HVM tab, virtio-blk its virtio tab)."""
    if data.missing is not None:
        return data.missing  # type: ignore[return-value]
    configs = data.configs()
    views = {CONFIG_NAMES[c]: figure(data, c, op) for c in configs}
    ids = {CONFIG_NAMES[c]: SYNC_IDS[c] for c in configs}
    notes = {CONFIG_NAMES[c]: regions_ja(data, c, op) for c in configs}
    alt = {CONFIG_NAMES[c]: f"{caption}: {CONFIG_NAMES[c]} を強調" for c in configs}
    selected = CONFIG_NAMES["virtio"] if "virtio" in configs else None
    return Switchable(views, group="mode", ids=ids, notes=notes, alt=alt, caption=caption, selected=selected)


#: What a number the prose quotes reads when the page's host has no qemu-io recording.
NOT_RECORDED = "(記録なし)"
#: The glue names of :func:`summary` and :func:`versus_summary` (without prefix), for a host without the recording.
SUMMARY_KEYS = ("host", "recorded", "qemu", "kernel", "accel", "block", "counts", "wall", "trace_mb", "control",
                "read_write", "irq", "n_configs", "ide_over_ahci",
                *(f"{c.replace('-', '_')}_{k}" for c in CONFIG_NAMES for k in ("acc", "user", "kernel", "irq", "pio",
                                                                                "mmio")))
VERSUS_KEYS = ("toy_host", "real_host", "toy_size", "block", "toy_hvm", "toy_hvm_block", "toy_hvm_block_over_ide",
               "toy_small", "toy_large", "toy_virtio_small", "toy_virtio_large", "ide", "ahci", "virtio_user",
               "virtio_kernel", "noeventfd_user", "ide_regions", "ahci_regions")


def summary(data: QemuIoData, op: str = "write") -> dict[str, str]:
    """The numbers the pages' prose quotes, formatted (keys are glue names without prefix)."""
    if data.missing is not None:
        return dict.fromkeys(SUMMARY_KEYS, NOT_RECORDED)
    out = {
        "host": data.host_id, "recorded": data.recorded_at, "qemu": str(data.first("qemu_version")),
        "kernel": str(data.first("guest_kernel")), "accel": data.accelerator_ja(),
        "block": f"{int(data.first('block_size')):,}",
        "counts": " と ".join(f"{n:,}" for n in data.counts()),
        "wall": f"{float(data.first('wall_seconds')):.0f}",
        "trace_mb": f"{data.frame['trace_bytes'].max() / 1e6:.0f}",
        "control": f"{int(data.frame.loc[data.frame['op'] == 'control', 'accesses'].sum()):,}",
    }
    same = all(data.per_request(c, "read", "accesses") == data.per_request(c, "write", "accesses")
               for c in data.configs())
    out["read_write"] = "同じでした" if same else "違いました"
    irqs = sorted({_num(data.per_request(c, op, "interrupts")) for c in data.configs()})
    out["irq"] = "/".join(map(str, irqs))
    out["n_configs"] = f"{len(data.configs())}"
    for c in data.configs():
        key = c.replace("-", "_")
        out[f"{key}_acc"] = f"{_num(data.per_request(c, op, 'accesses'))}"
        out[f"{key}_user"] = f"{_num(data.per_request(c, op, 'userspace'))}"
        out[f"{key}_kernel"] = f"{_num(data.to_kernel(c, op))}"
        out[f"{key}_irq"] = f"{_num(data.per_request(c, op, 'interrupts'))}"
        out[f"{key}_pio"] = f"{_num(data.per_request(c, op, 'pio'))}"
        out[f"{key}_mmio"] = f"{_num(data.per_request(c, op, 'mmio'))}"
    if {"ide", "ahci"} <= set(data.configs()):
        ratio = data.per_request("ide", op, "userspace") / data.per_request("ahci", op, "userspace")
        out["ide_over_ahci"] = f"{ratio:.1f}"
    return out


def versus_toy(real: QemuIoData, toy: Any, op: str = "write") -> pd.DataFrame:
    """The real drivers' exits per request beside the toy models' (``toy``: :class:`lab.book.io.IoData`)."""
    if real.missing is not None:
        return real.missing  # type: ignore[return-value]
    f = toy.frame
    small, large = int(f["batch"].min()), int(f["batch"].max())
    size = f"{int(f['size'].iloc[0])} B"
    block = f"{int(real.first('block_size'))} B"

    def toy_kicks(mode: str, batch: int) -> float:
        row = f[(f["mode"] == mode) & (f["batch"] == batch)].iloc[0]
        return float(row["kicks_per_run"]) / float(row["count"])

    rows = [
        ("エミュレーション", "おもちゃの HVM", size, toy.value("hvm", small, "exits_per_request"), 0.0, toy.host_id),
        ("エミュレーション", "QEMU の IDE + Linux の ata_piix", block, real.per_request("ide", op, "userspace"),
         real.to_kernel("ide", op), real.host_id),
        ("エミュレーション", "QEMU の AHCI + Linux の ahci", block, real.per_request("ahci", op, "userspace"),
         real.to_kernel("ahci", op), real.host_id),
        ("準仮想化", "おもちゃの PV", size, toy.value("pv", small, "exits_per_request"), 0.0, toy.host_id),
        ("virtio", f"おもちゃの virtio(バッチ {small})", size, toy.value("virtio", small, "exits_per_request"),
         0.0, toy.host_id),
        ("virtio", f"おもちゃの virtio(バッチ {large})", size, toy.value("virtio", large, "exits_per_request"),
         0.0, toy.host_id),
        ("virtio", f"おもちゃの virtio + ioeventfd(バッチ {small})", size,
         toy.value("virtio_ioeventfd", small, "exits_per_request"), toy_kicks("virtio_ioeventfd", small), toy.host_id),
        ("virtio", "QEMU の virtio-blk + Linux の virtio_blk", block, real.per_request("virtio", op, "userspace"),
         real.to_kernel("virtio", op), real.host_id),
        ("virtio", "同じ、ioeventfd=off", block, real.per_request("virtio-noioeventfd", op, "userspace"),
         real.to_kernel("virtio-noioeventfd", op), real.host_id),
    ]
    cols = ["方式", "数えたもの", "要求", "QEMU へ exit", "カーネル内 exit", "ホスト"]
    frame = pd.DataFrame(rows, columns=cols)
    for c in cols[3:5]:
        frame[c] = pd.Series([_num(v) for v in frame[c]], index=frame.index, dtype=object)
    return frame.set_index(["方式", "数えたもの"])


def versus_summary(real: QemuIoData, toy: Any, op: str = "write") -> dict[str, str]:
    """The numbers the virtio chapter quotes when it sets the real drivers beside the toy models."""
    from lab.devices.guests import expected_exits

    if real.missing is not None:
        return {**dict.fromkeys(VERSUS_KEYS, NOT_RECORDED), "toy_host": toy.host_id, "real_host": real.host_id}
    f = toy.frame
    small, large = int(f["batch"].min()), int(f["batch"].max())
    block = int(real.first("block_size"))
    toy_hvm_block = expected_exits("hvm", 1, block, 1)  # the toy's way (data through a register) at this size
    ide = real.per_request("ide", op, "userspace")
    return {
        "toy_host": toy.host_id, "real_host": real.host_id,
        "toy_size": f"{int(f['size'].iloc[0])}", "block": f"{block:,}",
        "toy_hvm": f"{_num(toy.value('hvm', small, 'exits_per_request'))}",
        "toy_hvm_block": f"{toy_hvm_block:,}", "toy_hvm_block_over_ide": f"{toy_hvm_block / ide:.0f}",
        "toy_small": f"{small}", "toy_large": f"{large}",
        "toy_virtio_small": f"{_num(toy.value('virtio', small, 'exits_per_request'))}",
        "toy_virtio_large": f"{_num(toy.value('virtio', large, 'exits_per_request'))}",
        "ide": f"{_num(ide)}", "ahci": f"{_num(real.per_request('ahci', op, 'userspace'))}",
        "virtio_user": f"{_num(real.per_request('virtio', op, 'userspace'))}",
        "virtio_kernel": f"{_num(real.to_kernel('virtio', op))}",
        "noeventfd_user": f"{_num(real.per_request('virtio-noioeventfd', op, 'userspace'))}",
        "ide_regions": regions_ja(real, "ide", op), "ahci_regions": regions_ja(real, "ahci", op),
    }
