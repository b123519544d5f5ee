"""The KVM chapter (``chapters/kvm/kvm.md``): its ``%%kvm`` cells, its tables and its glued words.

The page's hidden setup cell loads this module as an IPython extension
(``%load_ext lab.book.chapters.kvm``), which registers the ``%%kvm`` cell
magic of :mod:`lab.book.core.cells` for this page: the walk's cells are the
reader's calls to :mod:`lab.kvm` and nothing else, live on a KVM host and
recorded elsewhere. What is left here is presentation: the ioctl table, the
misbehaving guests on every recorded host (the ``tour`` recordings of
:mod:`lab.bench.tour`), and the few words the prose takes from the data.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
from IPython.display import Markdown

from lab import guests
from lab.book.core import cells, fallback, pages
from lab.book.ja.messages import say
from lab.kvm import ioctl_numbers, vcpu

PAGE = "kvm"

BAD_GUESTS_JA = {
    "triple_fault": "IDT のない状態で未定義命令 (ud2) を実行",
    "jump_unmapped": "メモリのないアドレスへジャンプ",
    "spin": "ずっと終わらない (jmp . で回り続ける)",
    "hypercall_once": "保護モードで {insn} を 1 回",
}


class Text(str):
    """A string that ``glue`` shows without quotes (its repr is itself)."""

    def __repr__(self) -> str:
        return str(self)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext lab.book.chapters.kvm``: the ``%%kvm`` cells of this page."""
    cells.register(ipython, PAGE)


def ioctl_table() -> pd.DataFrame:
    """Every ioctl the mini VMM uses: level, direction, argument size, the number _IOC builds."""
    n = ioctl_numbers
    system_nrs = {0x00, 0x01, 0x03, 0x04, 0x05}
    dirs = {0: "_IO", 1: "_IOW", 2: "_IOR", 3: "_IOWR"}
    rows = []
    for name, value in n.ALL.items():
        nr = value & 0xFF
        level = "system" if nr in system_nrs else "vm" if nr < 0x80 else "vcpu"
        rows.append({"ioctl": name, "fd": level, "マクロ": dirs[value >> n._IOC_DIRSHIFT],
                     "番号 nr": f"{nr:#04x}", "引数の大きさ": (value >> n._IOC_SIZESHIFT) & 0x3FFF,
                     "できあがる値": f"{value:#010x}"})
    return pd.DataFrame(rows)


def _text(value: Any) -> str:
    """A string cell of a loaded resource: an empty cell comes back missing (None or NaN)."""
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def bad_guest_words(steps: pd.DataFrame) -> pd.DataFrame:
    """Rows of the ``tour`` resource's ``errors`` section (machine values) in words: guest, outcome, message."""
    rows = []
    for r in steps.itertuples(index=False):
        v = json.loads(r.values)
        result = say(v.get("error"), _text(r.message)) or "ハイパーコールは完了した"
        if pd.notna(r.seconds):
            result += f" [{r.seconds:.1f} s]"
        rows.append({"action": f"{r.action}: {BAD_GUESTS_JA[r.action].format(**v)}", "outcome": r.outcome,
                     "result": result})
    return pd.DataFrame(rows, columns=["action", "outcome", "result"])


def _errors(datasets: list[Any]) -> pd.DataFrame:
    frames = [ds.get("tour", section="errors") for ds in datasets if ds.has("tour")]
    if not frames:
        raise KeyError("no recorded tour: run 'python -m lab record --only tour' on a KVM host")
    return pd.concat(frames, ignore_index=True).sort_values(["host_id", "step"]).reset_index(drop=True)


def _page_host(root: str | None) -> list[Any]:
    """The page's recorded host (the tour is a recording, even where the cells run live)."""
    return [pages.data(PAGE, root, live=False)]


def _table(rec: pd.DataFrame, title: str, with_host: bool) -> fallback.NotedTable:
    frame = bad_guest_words(rec)
    columns = ["ゲスト", "結末", "VMM のメッセージ"]
    if with_host:
        frame.insert(0, "host_id", list(rec["host_id"]))
        columns.insert(0, "ホスト")
    frame.columns = columns
    note = fallback.Note(title, "; ".join(f"ホスト {h}({fallback.host_detail(g.iloc[-1])})、"
                                          f"{pd.Timestamp(g.iloc[-1]['recorded_at']):%Y-%m-%d %H:%M} UTC 記録"
                                          for h, g in rec.groupby("host_id")))
    return fallback.NotedTable(note, frame)


def bad_guests(root: str | None = None) -> fallback.NotedTable:
    """How each misbehaving guest ended on the page's recorded host: a typed error, never a hang."""
    return _table(_errors(_page_host(root)), "記録済みのデータを表示しています", with_host=False)


def bad_guests_every_host(root: str | None = None) -> fallback.NotedTable:
    """The same on every recorded host (newest recording each), for the page's comparison section."""
    return _table(_errors(pages.every_host(PAGE, root)), "記録済みのデータを表示しています(記録済みのすべてのホスト)",
                  with_host=True)


def _hypercall_words(rec: pd.DataFrame) -> str:
    parts = []
    for r in rec[rec["action"] == "hypercall_once"].itertuples():
        insn = json.loads(r.values).get("insn", "ハイパーコール")
        where = f"記録済みのホスト {r.host_id}({fallback.host_detail(r._asdict())})"
        parts.append(f"{where}では、{insn} は一度も完了せず、見張り役が止めるまで KVM_RUN が戻りませんでした"
                     if r.outcome != "ok" else f"{where}では、{insn} は完了して戻ってきました")
    return "。".join(parts) + "。" if parts else "ハイパーコールの記録はまだありません。"


def hypercall_words(root: str | None = None) -> str:
    """How the single hypercall ended on the page's recorded host, as one sentence."""
    return _hypercall_words(_errors(_page_host(root)))


def hypercall_words_every_host(root: str | None = None) -> str:
    """How the single hypercall ended on each recorded host (newest recording each), one sentence per host."""
    return _hypercall_words(_errors(pages.every_host(PAGE, root)))


def live_words(root: str | None = None) -> str:
    """One sentence: does this build run the ``%%kvm`` cells, or show a recorded host's outputs (and why)."""
    ds = pages.data(PAGE, root)
    if ds.live:
        return (f"このページを組み立てた(または実行している)機械(ホスト {ds.host_id})では KVM が使えたので、"
                "以下の `%%kvm` のセルはその場で実行され、出力はこの機械のものです。")
    return (f"このページを組み立てた(または実行している)機械では、{fallback.reason_ja(str(ds.reason))}ため、"
            f"以下の `%%kvm` のセルは実行せず、記録済みのホスト {ds.host_id} で同じセルが出力したものを示します。")


def glued(root: str | None = None) -> dict[str, Any]:
    """Every value the page's prose takes from the code and the data, by glue name."""
    hello = guests.HELLO
    return {
        "hypercall_words": Markdown(hypercall_words(root)),
        "hypercall_words_every_host": Markdown(hypercall_words_every_host(root)),
        "kvm_live_words": Markdown(live_words(root)),
        "hello_nbytes": len(hello.code),
        "hello_nout": sum(1 for *_, text, _c in hello.listing if text.startswith("out")),
        # as Markdown: glue:text would read "0x3f8" as a number and print 1016
        "hello_origin": Markdown(f"`{hello.origin:#x}`"),
        "serial_port": Markdown(f"`{guests.SERIAL_PORT:#x}`"),
        "n_ioctls": len(ioctl_numbers.ALL),
        "watchdog_signal": Text(vcpu.WATCHDOG_SIGNAL_NAME),
    }
