"""What the virtio chapter shows: the I/O comparison, live or recorded, as switchable figures.

:func:`load` measures on this host when KVM is usable (a short run of the
:mod:`lab.bench.io` benchmark) and otherwise falls back to the page's recorded
data set (:func:`lab.book.core.pages.data`), saying from which host and why.
:func:`switchable` turns the result into one figure per style (HVM, PV,
virtio) in a :class:`lab.book.core.widgets.Switchable`: toggle buttons in a live
kernel, synchronised tabs in the static book.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator

from lab import host, kvm
from lab.analysis import io_paths, measures
from lab.analysis.compare import Comparison
from lab.bench import harness
from lab.bench import io as bench_io
from lab.book.core import fallback, pages, plots
from lab.book.core.widgets import Switchable
from lab.book.ja.backends import backend_ja, backend_short
from lab.book.ja.messages import say
from lab.datapackage import DataError
from lab.devices.driver import DriverQueue
from lab.devices.memory import DeviceError, GuestMemory
from lab.devices.models import VirtioDevice
from lab.devices.sim import simulate
from lab.devices.virtqueue import VIRTQ_DESC_F_NEXT, Layout, read_descriptor, read_used_elem
from lab.kvm.errors import Coded

#: Display names of the benchmark modes (Japanese figures) and the tab each belongs to.
MODE_NAMES = {
    "hvm": "HVM(エミュレーション)",
    "pv": "PV",
    "virtio": "virtio",
    "virtio_ioeventfd": "virtio + ioeventfd",
}
TABS = {"HVM(エミュレーション)": ("hvm",), "PV": ("pv",), "virtio": ("virtio", "virtio_ioeventfd")}
_COLORS = {"hvm": plots.MODE_COLORS["hvm"], "pv": plots.MODE_COLORS["pv"],
           "virtio": plots.MODE_COLORS["virtio"], "virtio_ioeventfd": plots.MODE_COLORS["virtio"]}
_STYLES = {"virtio_ioeventfd": "--"}

#: Settings of the short live run a chapter makes (a few seconds).
QUICK = {"count": 256, "repeat": 3, "batches": (1, 8, 64, 256), "sizes": (64,)}


@dataclass
class IoData:
    """One host's io measurements and where they come from."""

    frame: pd.DataFrame      #: rows of the io resource (status ok), one recording
    live: bool               #: measured just now on this host
    host_id: str
    cpu_model: str
    runs_in_vm: bool
    recorded_at: str
    reason: str = ""         #: why the data is not live (empty when live)
    kvm_backend: str = ""    #: the recorded KVM back end (kvm_pvm, kvm_intel, ...)

    def detail(self) -> str:
        return f"{self.cpu_model}、{backend_ja(self.kvm_backend, self.runs_in_vm)}"

    def note(self) -> fallback.Note:
        """Where the numbers come from, as the book's shared note (:mod:`lab.book.core.fallback`)."""
        if self.live:
            return fallback.live_note(host_id=self.host_id, detail=self.detail())
        return fallback.recorded_note(reason=self.reason, host_id=self.host_id, recorded=self.recorded_at,
                                      detail=self.detail())

    def source_ja(self) -> str:
        """The note as one plain sentence (Japanese)."""
        return self.note().body

    def value(self, mode: str, batch: int, column: str, size: int | None = None) -> float:
        f = self.frame
        sel = (f["mode"] == mode) & (f["batch"] == batch)
        if size is not None:
            sel &= f["size"] == size
        values = f.loc[sel, column]
        if values.empty:
            raise KeyError(f"no {column} for mode={mode} batch={batch} in this data")
        return float(values.iloc[0])


def load_recorded(root: str | None = None, page: str = "virtio") -> IoData:
    """The io recording of ``page``'s recorded data set (:func:`lab.book.core.pages.data`)."""
    ds = pages.data(page, root, live=False)
    rows = ds.get("io", status="ok")
    if rows.empty:
        raise DataError(f"the io recording of host {ds.host_id} has no row with status ok: record it again")
    first = rows.iloc[0]
    return IoData(rows, live=False, host_id=ds.host_id, cpu_model=str(first["cpu_model"]),
                  runs_in_vm=bool(first["runs_in_vm"]), kvm_backend=str(first["kvm_backend"]),
                  recorded_at=pd.Timestamp(first["recorded_at"]).strftime("%Y-%m-%d"))


def measure(**settings: Any) -> IoData:
    """A short live run on this host (``QUICK`` settings unless overridden)."""
    opts = {**QUICK, **settings}
    results = bench_io.run(count=opts["count"], repeat=opts["repeat"], batches=opts["batches"],
                           sizes=opts["sizes"])
    probe = host.probe(libvirt_uris=())
    prov = harness.provenance(probe, command="lab.book.io.measure()")
    frame = bench_io.to_frame(results, prov)
    bad = frame[frame["status"] != "ok"]
    if not bad.empty:
        raise RuntimeError(f"io benchmark failed: {bad.iloc[0]['mode']}: {bad.iloc[0]['reason']}")
    return IoData(frame, live=True, host_id=prov["host_id"], cpu_model=prov["cpu_model"],
                  runs_in_vm=bool(prov["runs_in_vm"]), recorded_at=prov["recorded_at"][:10],
                  kvm_backend=str(prov["kvm_backend"]))


def load(live: bool | None = None, root: str | None = None) -> IoData:
    """Live data when KVM is usable (and ``live`` is not False), else the page's recorded data set."""
    reason = fallback.live_reason()
    if live is False:
        reason = "ライブの測定を切ってある(live=False)"
    elif reason is None:
        try:
            return measure()
        except (kvm.KvmError, DeviceError, RuntimeError) as exc:  # shown to the reader, not hidden
            said = say(exc.record()) if isinstance(exc, Coded) else f"{type(exc).__name__}: {exc}"
            reason = f"その場の測定が失敗した: {said}"
    data = load_recorded(root)
    data.reason = reason
    return data


# --------------------------------------------------------------------------- figures


def _axes_batch(ax: Any, batches: Sequence[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(batches))
    ax.set_xticklabels([str(b) for b in batches])
    ax.set_xlabel("バッチの大きさ(1 回の通知で渡すリクエスト数)")


_ZERO_FLOOR = 3e-5  # where a zero is drawn on the log axis of exits per request (labelled "0")


def figure(data: IoData, highlight: tuple[str, ...], metric: str) -> Figure:
    """Requests/s or exits per request against the batch size; ``highlight`` in colour, the rest grey."""
    fig, ax = plots.figure(figsize=(7.2, 3.8))
    f = data.frame.sort_values("batch")
    batches = sorted(f["batch"].unique())
    modes = [m for m in MODE_NAMES if m in set(f["mode"])]
    lines = {}
    for m in sorted(modes, key=lambda m: m in highlight):  # highlighted ones drawn last (on top)
        rows = f[f["mode"] == m]
        raw = rows[metric].astype(float)
        y = raw.where(raw > 0, _ZERO_FLOOR) if metric == "exits_per_request" else raw
        on = m in highlight
        (lines[m],) = ax.plot(rows["batch"], y, _STYLES.get(m, "-"), marker="o", lw=2.4 if on else 1,
                              ms=6 if on else 3, color=_COLORS[m] if on else "#bbbbbb", label=MODE_NAMES[m],
                              zorder=3 if on else 2)
        if on:
            for b, v, r in zip(rows["batch"], y, raw, strict=True):
                text = f"{r:,.0f}" if metric == "requests_per_s" else "0" if r == 0 else f"{r:.3g}"
                ax.annotate(text, (b, v), textcoords="offset points", xytext=(0, 7), ha="center",
                            fontsize=8, color=_COLORS[m])
    _axes_batch(ax, batches)
    ax.set_yscale("log")
    if metric == "requests_per_s":
        ax.set_ylabel("1 秒あたりのリクエスト数")
    else:
        ax.set_ylabel("リクエスト 1 件あたりの exit 数")
        top = max(float(f[metric].max()), 1.0) * 3
        ticks = [_ZERO_FLOOR] + [10.0 ** k for k in range(-3, 3) if 10.0 ** k <= top]
        ax.yaxis.set_major_locator(FixedLocator(ticks))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.set_yticklabels(["0"] + [f"{t:g}" for t in ticks[1:]])
        ax.set_ylim(_ZERO_FLOOR / 2, top)
    size = int(f["size"].iloc[0])
    ax.set_title(f"{size} バイトのリクエスト(ホスト {data.host_id})", fontsize=10)
    ax.legend([lines[m] for m in modes], [MODE_NAMES[m] for m in modes], fontsize=8, loc="best", frameon=False)
    return fig


def backend_caution(data: IoData) -> str:
    """Why the ratios of ``data`` are host-specific and the exit counts are not, for its back end."""
    caps = measures.capabilities(data.kvm_backend)
    if caps.exit_costs:
        why = "1 回の exit のコストは CPU やホストによって変わるので、"
    elif caps.emulated:
        why = ("このホストの KVM は PVM で、1 回あたりのコストには命令のエミュレーションが含まれ、"
               "ハードウェアの exit のコストとは別物なので、")
    else:
        why = "このホストの KVM のバックエンドでは 1 回あたりのコストに何が含まれるか分からないので、"
    return why + ("速さの倍率そのものより「exit の回数が桁で違う」ことに注目してください"
                  "(回数はどのバックエンドでも正確です)。")


def summary(data: IoData) -> dict[str, str]:
    """The numbers the chapter's prose quotes, formatted (keys are glue names without prefix)."""
    p = io_paths.paths(data.frame)
    small, large, rps = p.small, p.large, p.rps
    efd_small, efd_large = p.ioeventfd_vs_kick(small), p.ioeventfd_vs_kick(large)

    def word(c: Comparison) -> str:
        return {"same": "ほぼ同じ", "higher": "速い", "lower": "遅い"}[c.direction]

    return {
        "size": f"{p.size}",
        "small": f"{small}",
        "large": f"{large}",
        "hvm_epr": f"{p.exits['hvm'][small]:.0f}",
        "hvm_rps": f"{rps['hvm'][small]:,.0f}",
        "pv_rps": f"{rps['pv'][small]:,.0f}",
        "virtio_small_rps": f"{rps['virtio'][small]:,.0f}",
        "virtio_large_rps": f"{rps['virtio'][large]:,.0f}",
        "pv_over_hvm": f"{p.pv_vs_hvm.ratio:.1f}",
        "virtio_over_hvm": f"{p.virtio_large_vs_hvm.ratio:.1f}",
        "virtio_over_pv": f"{p.virtio_large_vs_pv.ratio:.1f}",
        "virtio_small_over_pv": f"{p.virtio_small_vs_pv.ratio:.2f}",
        "virtio_large_epr": f"{p.exits['virtio'][large]:.4f}",
        "efd_small_word": word(efd_small),
        "efd_large_word": word(efd_large),
        "efd_small_ratio": f"{efd_small.ratio:.2f}",
        "efd_large_ratio": f"{efd_large.ratio:.2f}",
        "host": data.host_id,
    }


def switchable(data: IoData, metric: str = "requests_per_s", caption: str = "") -> Switchable:
    """One figure per style (HVM, PV, virtio), synchronised with every other switch on the page."""
    views = {label: figure(data, modes, metric) for label, modes in TABS.items()}
    alt = {label: f"{caption}: {'、'.join(MODE_NAMES[m] for m in modes)} を強調" for label, modes in TABS.items()}
    return Switchable(views, group="mode", caption=caption, alt=alt, selected="virtio")


def table(data: IoData) -> pd.DataFrame:
    """Requests/s and exits per request per batch size, the modes side by side (Japanese headings)."""
    f = data.frame
    wide = f.pivot_table(index="batch", columns="mode", values=["requests_per_s", "exits_per_request"],
                         aggfunc="median")
    order = [m for m in MODE_NAMES if m in set(f["mode"])]
    out = pd.DataFrame(index=wide.index)
    for m in order:
        out[f"{MODE_NAMES[m]} 件/秒"] = wide[("requests_per_s", m)].round(0).astype(int)
    for m in order:
        out[f"{MODE_NAMES[m]} exit/件"] = wide[("exits_per_request", m)].round(4)
    out.index.name = "バッチ"
    return out


def exit_model(count: int = 256, size: int = 64, batches: Sequence[int] = (1, 8, 64, 256)) -> pd.DataFrame:
    """Exits per request by :func:`lab.devices.sim.simulate` (no KVM): the model, checked on the bytes."""
    rows = []
    for b in batches:
        row: dict[str, float] = {"バッチ": b}
        for m in MODE_NAMES:
            r = simulate(m, count, size, b)
            if not r.ok:
                raise RuntimeError(f"simulation of {m} failed: {r.errors}")
            row[MODE_NAMES[m]] = round(r.exits_per_request, 4)
        rows.append(row)
    return pd.DataFrame(rows).set_index("バッチ")


# --------------------------------------------------------------------------- the ring, step by step (no KVM)


@dataclass
class RingDemo:
    """A small virtqueue in a bytearray "guest memory", before and after the device's turn."""

    layout: Layout
    before: dict[str, pd.DataFrame]
    after: dict[str, pd.DataFrame]
    received: list[bytes]


def _ring_tables(mem: GuestMemory, layout: Layout, n_desc: int) -> dict[str, pd.DataFrame]:
    desc = []
    for i in range(n_desc):
        d = read_descriptor(mem, layout, i)
        names = [n for bit, n in ((1, "NEXT"), (2, "WRITE"), (4, "INDIRECT")) if d.flags & bit]
        desc.append({"番号": i, "addr": f"{d.addr:#x}", "len": d.len, "flags": "|".join(names) or "0",
                     "next": d.next})
    avail_idx, used_idx = mem.u16(layout.avail + 2), mem.u16(layout.used + 2)
    avail = [mem.u16(layout.avail + 4 + 2 * i) for i in range(layout.size)]
    used = [read_used_elem(mem, layout, i) for i in range(layout.size)]
    return {
        "descriptors": pd.DataFrame(desc).set_index("番号"),
        "rings": pd.DataFrame({
            "avail.idx": [avail_idx], "avail.ring": [" ".join(map(str, avail))],
            "used.idx": [used_idx], "used.ring (id,len)": [" ".join(f"({a},{b})" for a, b in used)],
        }),
    }


def ring_demo(messages: Sequence[bytes] = (b"hello, ", b"virtio ", b"ring")) -> RingDemo:
    """Queue ``messages`` as one batch (the first two chained), then let the device take them."""
    mem = GuestMemory(bytearray(0x4000))
    layout = Layout.contiguous(0x1000, 4)
    driver = DriverQueue(mem, layout)
    device = VirtioDevice(mem, layout)
    addrs = [0x3000 + 0x100 * i for i in range(len(messages))]
    for a, m in zip(addrs, messages, strict=True):
        mem.write(a, m)
    driver.add([(addrs[0], len(messages[0]), False), (addrs[1], len(messages[1]), False)])
    for a, m in zip(addrs[2:], messages[2:], strict=True):
        driver.add([(a, len(m), False)])
    driver.publish()
    before = _ring_tables(mem, layout, len(messages))
    received: list[bytes] = []
    sink_consume = device.sink.consume

    def consume(data: bytes | memoryview) -> None:  # the sink, and a copy for the table
        received.append(bytes(data))
        sink_consume(data)

    device.sink.consume = consume  # type: ignore[method-assign]
    device.notify()
    after = _ring_tables(mem, layout, len(messages))
    device.close()
    return RingDemo(layout, before, after, received)


def malformed_cases() -> pd.DataFrame:
    """What the virtio device answers to broken rings: the check and its message (no KVM)."""

    def case(build: Callable[[GuestMemory, Layout, DriverQueue], None]) -> str:
        mem = GuestMemory(bytearray(0x4000))
        layout = Layout.contiguous(0x1000, 4)
        driver = DriverQueue(mem, layout)
        device = VirtioDevice(mem, layout)
        build(mem, layout, driver)
        device.notify()
        device.close()
        return say(device.errors[0]) if device.errors else "(受け付けた)"

    def outside(mem, layout, drv):
        drv.add([(0x3FF0, 0x40, False)])
        drv.publish()

    def index(mem, layout, drv):
        mem.set_u16(layout.avail + 2, 9)

    def loop(mem, layout, drv):
        drv.add([(0x3000, 4, False)])
        drv.write_descriptor(0, 0x3000, 4, VIRTQ_DESC_F_NEXT, 1)
        drv.write_descriptor(1, 0x3004, 4, VIRTQ_DESC_F_NEXT, 0)
        drv.publish()

    rows = [
        ("ゲストのメモリの外を指す記述子", case(outside)),
        ("範囲外のリング番号(avail.idx が一度に 9 件進む)", case(index)),
        ("記述子の連鎖がループしている(0 → 1 → 0)", case(loop)),
    ]
    return pd.DataFrame(rows, columns=["ゲストが渡したもの", "デバイスモデルの答え"])


def recorded_hosts(root: str | None = None) -> pd.DataFrame:
    """One row per recorded host (its newest io recording): the headline numbers."""
    data = pd.concat([ds.get("io", status="ok") for ds in pages.every_host("virtio", root) if ds.has("io")],
                     ignore_index=True)
    rows = []
    for (host_id, recorded_at), g in data.groupby(["host_id", "recorded_at"], sort=True):
        small, large = int(g["batch"].min()), int(g["batch"].max())

        def rate(mode: str, batch: int, g: pd.DataFrame = g) -> float:
            v = g.loc[(g["mode"] == mode) & (g["batch"] == batch), "requests_per_s"]
            return float(v.iloc[0]) if not v.empty else float("nan")

        first = g.iloc[0]
        rows.append({
            "ホスト": host_id, "CPU": first["cpu_model"],
            "KVM のバックエンド": backend_short(first["kvm_backend"], bool(first["runs_in_vm"])),
            "記録日": pd.Timestamp(recorded_at).strftime("%Y-%m-%d"),
            f"HVM(エミュレーション) 件/秒 (バッチ {small})": round(rate("hvm", small)),
            f"PV 件/秒 (バッチ {small})": round(rate("pv", small)),
            f"virtio 件/秒 (バッチ {large})": round(rate("virtio", large)),
            f"virtio + ioeventfd 件/秒 (バッチ {large})": round(rate("virtio_ioeventfd", large)),
        })
    return pd.DataFrame(rows)
