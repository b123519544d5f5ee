"""The KVM chapter's visible cells: the reader runs the VMM, a recording answers where KVM is missing.

A chapter cell calls ``lab.kvm`` itself and hands what came back to a
:class:`Walk`::

    walk = Walk()
    if walk.live:
        system = kvm.open()
        walk.record("open", fd=system.fd, api_version=system.api_version())
    walk.show("open")

On a KVM host :meth:`Walk.show` shows the values of this run. Without KVM
(Binder, the static book, ``LAB_FORCE_RECORDED=1``) the ``if`` is skipped
and :meth:`Walk.show` shows what the same step answered on every recorded
host (``data/measured/*/tour.csv``, newest recording per host), with the
note of :mod:`lab.book.fallback` saying which host, when and why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

from lab.book import fallback, pages
from lab.book.vmm_words import say
from lab.kvm import Exit, KvmError

ACTIONS_JA = {
    "open": "/dev/kvm を開く", "check_extension": "機能を問い合わせる", "vcpu_mmap_size": "vCPU 共有領域の大きさ",
    "create_vm": "VM を作る", "set_memory": "ゲストのメモリを与える", "load": "プログラムを置く",
    "create_vcpu": "vCPU を作りレジスタを設定する", "run": "実行する(KVM_RUN)", "serial": "シリアルポートに届いた文字",
    "close": "すべて閉じる",
    "triple_fault": "IDT のない状態で未定義命令 (ud2)", "jump_unmapped": "メモリのない番地へジャンプ",
    "spin": "ずっと終わらない (sti; jmp .)", "hypercall_once": "ハイパーコールを 1 回",
}
MODES_JA = {"real": "リアルモード", "protected32": "32 ビット保護モード", "long64": "64 ビットモード"}
OUTCOMES_JA = {"GuestShutdown": "トリプルフォールト(GuestShutdown)", "InternalError": "KVM の内部エラー(InternalError)",
               "RunTimeout": "見張り役が停止(RunTimeout)", "unavailable": "完了せず", "ok": "正常"}


def exit_values(ex: Exit) -> dict[str, Any]:
    """An :class:`~lab.kvm.Exit` as the machine values a tour step records (data as hex)."""
    values = {k: v for k, v in ex.as_dict().items() if k not in ("resumed", "wall_ns")}
    if isinstance(values.get("data"), bytes):
        values["data"] = values["data"].hex()
    return values


def _exit_words(v: dict[str, Any]) -> str:
    # recordings made before the typed exits name no type: say it as lab.kvm.exits does today
    kind = v.get("exit") or {"out": "IoOut", "in": "IoIn"}.get(v.get("direction", ""), v["reason"].capitalize())
    if v["reason"] == "io":
        data = bytes.fromhex(v.get("data", ""))
        return f"{kind}: ポート {v['port']:#x} に {v['size']} バイト {data!r} (rip={v['rip']:#x})"
    return f"{kind} (rip={v['rip']:#x})"


def step_words(action: str, v: dict[str, Any]) -> str:
    """What one step answered, in Japanese (machine values from a live run or a recording)."""
    fd = f"fd {v['fd']}、" if "fd" in v else ""
    if action == "open":
        return f"{fd}API バージョン {v['api_version']}"
    if action == "check_extension":
        return ", ".join(f"{k}={n}" for k, n in v.items())
    if action == "vcpu_mmap_size":
        return f"{v['bytes']} バイト"
    if action == "create_vm":
        return f"VM の fd {v['fd']}" if "fd" in v else "VM の fd を得た"
    if action == "set_memory":
        where = f"、このプロセスの {v['host_addr']:#x} から" if "host_addr" in v else ""
        return f"ゲスト物理 {v['guest_addr']:#x}-{v['guest_addr'] + v['size'] - 1:#x} ({v['size'] // 1024} KiB){where}"
    if action == "load":
        head = f"、先頭 {v['head']}" if "head" in v else ""
        return f"{v['bytes']} バイトを {v['origin']:#x} へ{head}"
    if action == "create_vcpu":
        return f"{fd}{MODES_JA[v['mode']]}: CS.base={v['cs_base']:#x}, RIP={v['rip']:#x}"
    if action == "run":
        return _exit_words(v)
    if action == "serial":
        return repr(v["text"])
    if action == "close":
        return "fd とマッピングを解放した"
    return json.dumps(v, ensure_ascii=False)


@dataclass
class Step:
    """One shown step: which host, action, outcome, what came back (Japanese)."""

    host_id: str
    action: str
    outcome: str
    result: str


class Shown:
    """A note (live or recorded, which host) and the steps as a small table."""

    def __init__(self, note: fallback.Note, steps: list[Step], live: bool):
        self.note, self.steps, self.live = note, steps, live
        hosts = {s.host_id for s in steps}
        rows = [{"ホスト": s.host_id, "すること": ACTIONS_JA.get(s.action, s.action),
                 "結末": OUTCOMES_JA.get(s.outcome, s.outcome), "結果": s.result} for s in steps]
        self.frame = pd.DataFrame(rows, columns=["ホスト", "すること", "結末", "結果"])
        if len(hosts) <= 1:
            self.frame = self.frame.drop(columns="ホスト")
        if all(s.outcome == "ok" for s in steps):
            self.frame = self.frame.drop(columns="結末")

    def _repr_html_(self) -> str:
        return self.note._repr_html_() + self.frame.to_html(index=False)

    def __repr__(self) -> str:
        return f"{self.note}\n{self.frame.to_string(index=False)}"


class Walk:
    """Live values of the reader's own run, or the recorded hosts' answers to the same steps."""

    def __init__(self, root: str | None = None):
        self._data = pages.data("kvm", root)
        self.live = self._data.live
        self.reason = None if self.live else fallback.reason_ja(str(self._data.reason))
        self._root = root
        self._values: list[tuple[str, str, dict[str, Any], str]] = []  # action, outcome, values, message

    def record(self, action: str, **values: Any) -> None:
        """Keep what a step of the reader's run answered (machine values)."""
        self._values.append((action, "ok", values, ""))

    def record_exit(self, ex: Exit) -> None:
        self.record("run", **exit_values(ex))

    def record_error(self, action: str, exc: KvmError) -> None:
        """Keep how a misbehaving guest ended: the error type and the VMM's message."""
        self._values.append((action, type(exc).__name__, {}, str(exc)))

    def _recorded(self, action: str) -> tuple[list[Step], pd.Series]:
        rec = pd.concat([ds.get("tour", action=action) for ds in pages.every_host("kvm", self._root)],
                        ignore_index=True).sort_values(["host_id", "step"])
        if rec.empty:
            raise KeyError(f"no recorded tour step {action!r}: run 'python -m lab record --only tour' on a KVM host")
        steps = [_step(r.host_id, action, r.outcome, json.loads(r.values), r.message) for r in rec.itertuples()]
        return steps, rec.iloc[-1]

    def show(self, action: str, n: int | None = None) -> Shown:
        """The steps ``action`` of this run (the first ``n``), or of every recorded host."""
        if self.live:
            hid = self._data.host_id
            steps = [_step(hid, a, o, v, m) for a, o, v, m in self._values if a == action][:n]
            if not steps:
                raise KeyError(f"nothing recorded for {action!r} in this run: run the cell above first")
            return Shown(fallback.live_note(host_id=hid), steps, True)
        steps, last = self._recorded(action)
        if n is not None:
            hosts = dict.fromkeys(s.host_id for s in steps)
            steps = [x for h in hosts for x in [s for s in steps if s.host_id == h][:n]]
        return Shown(fallback.recorded_from(last, str(self.reason)), steps, False)


_BAD = ("triple_fault", "jump_unmapped", "spin", "hypercall_once")


def _step(host_id: str, action: str, outcome: str, values: dict[str, Any], message: Any) -> Step:
    text = "" if message is None or (isinstance(message, float) and pd.isna(message)) else str(message)
    if text or "error" in values:
        result = say(values.get("error"), text)
    elif action in _BAD:
        result = _exit_words(values) if "reason" in values else "完了した"
    else:
        result = step_words(action, values)
    return Step(host_id, action, outcome, result)


def hypercall_words(root: str | None = None) -> str:
    """How the single hypercall ended on each recorded host (newest recording each), as one sentence."""
    rec = pd.concat([ds.get("tour", action="hypercall_once") for ds in pages.every_host("kvm", root)],
                    ignore_index=True)
    parts = []
    for r in rec.sort_values("host_id").itertuples():
        insn = json.loads(r.values).get("insn", "ハイパーコール")
        where = f"記録済みのホスト {r.host_id}({fallback.host_detail(r._asdict())})"
        parts.append(f"{where}では、{insn} は一度も完了せず、見張り役が止めるまで KVM_RUN が戻りませんでした"
                     if r.outcome != "ok" else f"{where}では、{insn} は完了して戻ってきました")
    return "。".join(parts) + "。" if parts else "ハイパーコールの記録はまだありません。"
