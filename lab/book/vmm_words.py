"""The mini VMM's English messages in Japanese, for what the book shows.

``lab.kvm`` and ``lab.bench`` speak English (code and exceptions stay
English); a reader of the book reads Japanese. :func:`message_ja` matches
each message the VMM and the benchmarks produce and says it again in
Japanese with the same machine values (rip, seconds, suberror, ...). A
message nobody wrote a pattern for is shown as the English original, marked
as such, rather than lost.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_SUBERRORS_JA = {
    "1": "命令のエミュレーションに失敗(KVM がその命令をエミュレートできなかった)",
    "2": "例外が同時に起きた",
    "3": "イベントの配送中に exit が起きた",
    "4": "予期しないハードウェアの exit 理由",
}


def _shutdown(m: re.Match[str]) -> str:
    return (f"ゲストが rip={m['rip']} でトリプルフォールトした。"
            "例外を届けられず、二重フォールトとしても届けられなかった(このゲストには IDT がない)。"
            "KVM は KVM_EXIT_SHUTDOWN を返した。ゲストのコードを確かめること。")


def _internal(m: re.Match[str]) -> str:
    what = _SUBERRORS_JA.get(m["sub"], "不明")
    return (f"KVM の内部エラー(rip={m['rip']}、サブエラー {m['sub']}: {what})。"
            "ゲストがメモリのないアドレスから命令を実行したか、KVM がエミュレートできない命令を実行したと考えられる。")


def _timeout(m: re.Match[str]) -> str:
    return (f"ゲストが {m['s']} 秒以内に exit しなかった(rip={m['rip']}、途中で処理した exit {m['n']} 回)。"
            "見張り役(watchdog)が KVM_RUN を止めた。ゲストは hlt で終わっているか?")


def _hypercall(m: re.Match[str]) -> str:
    return (f"rip={m['rip']} の {m['insn']} は完了しなかった。KVM_RUN が {m['s']} 秒以内に戻らず、"
            "見張り役(watchdog)が止めた。")


def _kicked(m: re.Match[str]) -> str:
    return f"vCPU {m['cpu']} は別のスレッドに KVM_RUN から蹴り出された(途中で処理した exit {m['n']} 回)。"


def _outside(m: re.Match[str]) -> str:
    return f"記述子 {m['d']} がゲストのメモリの外を指している: {m['a']} は {m['b']} に収まらない"


def _index(m: re.Match[str]) -> str:
    return (f"avail.idx が {m['a']} から {m['b']} に進んだ: 大きさ {m['q']} のキューに {m['n']} 件の新しい要求"
            "(リングの番号が範囲外)")


def _loop(m: re.Match[str]) -> str:
    return f"先頭 {m['h']} からの記述子の連鎖がループしている({m['path']})"


_PATTERNS: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (re.compile(r"triple-faulted at rip=(?P<rip>0x[0-9a-f]+)"), _shutdown),
    (re.compile(r"KVM internal error at rip=(?P<rip>0x[0-9a-f]+), suberror (?P<sub>\d+)"), _internal),
    (re.compile(r"did not exit within (?P<s>[\d.]+) s \(rip=(?P<rip>0x[0-9a-f]+), (?P<n>\d+) exits"), _timeout),
    (re.compile(r"(?P<insn>\w+) at rip=(?P<rip>0x[0-9a-f]+) never completed: KVM_RUN did not return within "
                r"(?P<s>[\d.]+) s"), _hypercall),
    (re.compile(r"descriptor (?P<d>\d+) points outside guest memory: (?P<a>\[\S+ \S+\)) is not inside "
                r"(?P<b>\[\S+ \S+\))"), _outside),
    (re.compile(r"avail.idx moved from (?P<a>\d+) to (?P<b>\d+): (?P<n>\d+) new entries in a queue of (?P<q>\d+)"),
     _index),
    (re.compile(r"descriptor chain from head (?P<h>\d+) loops \((?P<path>[^)]*)\)"), _loop),
    (re.compile(r"vCPU (?P<cpu>\d+) was kicked out of KVM_RUN by another thread \((?P<n>\d+) exits"), _kicked),
]


_RESET = "virtqueue error, device needs reset: "


def message_ja(message: str) -> str:
    """``message`` (from lab.kvm, lab.devices or lab.bench) in Japanese; unknown ones as the marked original."""
    if message.startswith(_RESET):
        return "virtqueue のエラー、デバイスはリセットが必要: " + message_ja(message[len(_RESET):])
    for pattern, say in _PATTERNS:
        m = pattern.search(message)
        if m:
            return say(m)
    return f"VMM のメッセージ(原文のまま): {message}" if message else ""
