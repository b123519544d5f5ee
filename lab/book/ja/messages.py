"""The mini VMM's errors in Japanese, for what the book shows: one table keyed by error code.

``lab.kvm``, ``lab.devices`` and ``lab.bench`` raise typed errors, each a
stable code with its parameters (:class:`lab.kvm.errors.Coded`); recordings
keep the two (``{"code": ..., "params": {...}}``). :data:`MESSAGES_JA` says
each code in Japanese with the same machine values (rip, seconds, indices);
:func:`say` is the one way to use it. Nothing here reads English, except
:func:`legacy_record`, which gives a code to the English message of a
recording made before the codes existed (older recordings keep loading).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from lab.kvm.errors import Coded

Params = Mapping[str, Any]

_SUBERRORS_JA = {
    1: "命令のエミュレーションに失敗(KVM がその命令をエミュレートできなかった)",
    2: "例外が同時に起きた",
    3: "イベントの配送中に exit が起きた",
    4: "予期しないハードウェアの exit 理由",
}
_PARTS_JA = {"descriptor table": "記述子テーブル", "available ring": "available リング", "used ring": "used リング"}


def _hex(value: Any) -> str:
    return f"{int(value):#x}"


def _range(p: Params, start: str = "start", end: str = "end") -> str:
    return f"[{_hex(p[start])}, {_hex(p[end])})"


def _detail(heading: str) -> Callable[[Params], str]:
    """A code whose values are only an English detail: the Japanese heading, then the original marked as such."""
    return lambda p: f"{heading}(原文: {p['detail']})" if p.get("detail") else heading


def _internal(p: Params) -> str:
    sub = int(p["suberror"])
    hint = ("ゲストがメモリのないアドレスから命令を実行したか、"
            "KVM がエミュレートできない命令を実行したと考えられる。" if sub == 1 else "")
    return f"KVM の内部エラー(rip={_hex(p['rip'])}、サブエラー {sub}: {_SUBERRORS_JA.get(sub, '不明')})。{hint}"


def _unknown_exit(p: Params) -> str:
    what = f"{p['number']}({p['name']})" if p.get("number") is not None else "intr(誰も処理しなかったシグナル)"
    return f"この VMM が扱わない exit {what} が rip={_hex(p['rip'])} で起きた。わからない exit は無視せず止める。"


def _cause(p: Params) -> str:
    return say(p["cause"])


MESSAGES_JA: dict[str, Callable[[Params], str]] = {
    # lab.kvm: system calls and set-up
    "kvm.error": _detail("VMM のエラー"),
    "kvm.syscall": lambda p: f"システムコール {p['call']} が失敗した({p['error']}、errno {p['errno']})。",
    "kvm.ioctl": lambda p: f"ioctl {p['call']} が失敗した({p['error']}、errno {p['errno']})。",
    "kvm.unavailable": _detail("KVM を使えない"),
    "kvm.device_missing": lambda p: (
        f"{p['device']} がない。この機械(Binder、--device {p['device']} なしのコンテナ、入れ子仮想化のない VM)"
        "には KVM がない。章は記録済みのデータを示す。測るには KVM のあるホストで実行する。"),
    "kvm.permission": lambda p: (
        f"{p['device']} を開く権限がない(uid {p['uid']}"
        + (f"、{p['mode']}、所有者 uid {p['owner_uid']}、グループ gid {p['owner_gid']}" if p.get("mode") else "")
        + ")。デバイスのグループ(ふつうは kvm)に入る(sudo usermod -aG kvm $USER のあとログインし直す)か、"
        "root で実行する。"),
    "kvm.no_driver": lambda p: (
        f"{p['device']} はあるが、KVM のドライバが応答しない({p['error']})。kvm_intel か kvm_amd を読み込む"
        "(modprobe)か、ファームウェアで仮想化支援を有効にする。"),
    "kvm.cannot_open": lambda p: f"{p['device']} を開けない({p['error']}、errno {p['errno']})。",
    "kvm.not_kvm": lambda p: f"{p['device']} は KVM のデバイスではない(KVM_GET_API_VERSION が {p['error']})。",
    "kvm.api_version": lambda p: (
        f"{p['device']} の KVM API は {p['api']} で、この VMM が話す {p['expected']} と違う。"),
    "kvm.closed": _detail("閉じたあとのオブジェクトを使った"),
    "kvm.invalid_setup": _detail("ioctl の前に引数を断った"),
    "kvm.memory_layout": _detail("ゲストのメモリの配置が正しくない"),
    "kvm.guest_memory": _detail("ゲストのメモリの外の範囲"),
    "kvm.memory_in_use": _detail("ゲストのメモリを指すビューが残っていて、解放できない"),
    # lab.kvm: how a guest ended
    "guest.error": _detail("ゲストが正常でない形で止まった"),
    "guest.shutdown": lambda p: (
        f"ゲストが rip={_hex(p['rip'])} でトリプルフォールトした。"
        "例外を届けられず、二重フォールトとしても届けられなかった(このゲストには IDT がない)。"
        "KVM は KVM_EXIT_SHUTDOWN を返した。ゲストのコードを確かめること。"),
    "guest.entry_failed": lambda p: (
        f"CPU がゲストに入るのを拒んだ(KVM_EXIT_FAIL_ENTRY、ハードウェアの理由 {_hex(p['hardware_reason'])})。"
        "選んだモードに対して、セグメントか制御レジスタの状態が正しくない。"),
    "guest.internal_error": _internal,
    "guest.unknown_exit": _unknown_exit,
    "run.timeout": lambda p: (
        f"ゲストが {p['timeout_s']:g} 秒以内に exit しなかった(rip={_hex(p['rip'])}、途中で処理した exit "
        f"{p['handled']} 回)。見張り役(watchdog)が KVM_RUN を止めた。ゲストは hlt で終わっているか?"),
    "run.kicked": lambda p: (
        f"vCPU {p['vcpu']} は別のスレッドに KVM_RUN から蹴り出された(途中で処理した exit {p['handled']} 回)。"),
    # lab.devices: the ring's memory fences
    "ordering.no_libatomic": lambda p: (
        f"virtqueue のメモリバリアに使う GCC の libatomic を読み込めない({p['library']}: {p['error']})。"
        "apt-get install libatomic1 で入れる。"),
    # lab.devices: the virtqueue rules
    "virtqueue.error": _detail("virtqueue の規則に反している"),
    "virtqueue.size": lambda p: f"キューの大きさ {p['size']} が、1 から {p['max']} までの 2 のべき乗ではない",
    "virtqueue.misaligned": lambda p: (
        f"{_PARTS_JA.get(p['part'], p['part'])}の位置 {_hex(p['addr'])} が {p['alignment']} バイト境界にない"),
    "virtqueue.part_outside_memory": lambda p: (
        f"{_PARTS_JA.get(p['part'], p['part'])} {_range(p)} がゲストのメモリ {_range(p, 'mem_start', 'mem_end')} "
        "の外にある"),
    "virtqueue.parts_overlap": lambda p: (
        f"{_PARTS_JA.get(p['first'], p['first'])}と{_PARTS_JA.get(p['second'], p['second'])}が重なっている"),
    "virtqueue.avail_index": lambda p: (
        f"avail.idx が {p['last']} から {p['avail']} に進んだ: 大きさ {p['size']} のキューに {p['new']} 件の新しい要求"
        "(リングの番号が範囲外)"),
    "virtqueue.descriptor_index": lambda p: f"記述子の番号 {p['index']} が、大きさ {p['size']} のキューの範囲外",
    "virtqueue.avail_entry": lambda p: (
        f"avail.ring[{p['slot']}] = {p['head']} が、大きさ {p['size']} のキューの範囲外"),
    "virtqueue.chain_loop": lambda p: (
        f"先頭 {p['head']} からの記述子の連鎖がループしている({' → '.join(map(str, p['path']))})"),
    "virtqueue.indirect": lambda p: f"記述子 {p['index']} は間接記述子だが、このデバイスはその機能を提示していない",
    "virtqueue.unknown_flags": lambda p: f"記述子 {p['index']} に知らないフラグ {_hex(p['flags'])} が立っている",
    "virtqueue.descriptor_outside_memory": lambda p: (
        f"記述子 {p['index']} がゲストのメモリの外を指している: {_range(p)} は "
        f"{_range(p, 'mem_start', 'mem_end')} に収まらない"),
    "virtqueue.readable_after_writable": lambda p: (
        f"連鎖 {p['head']} で、デバイスが書く記述子のあとに、デバイスが読む記述子 {p['index']} が来ている"),
    # lab.devices: the device models
    "device.error": _detail("デバイスモデルのエラー"),
    "device.request_length": lambda p: (
        (f"アドレス {_hex(p['record'])} の PV 要求: " if p.get("record") is not None else "要求の")
        + f"長さ {p['length']} が 1 から {p['max']} の範囲にない"),
    "device.no_register": lambda p: f"{p['device']} にはポート {_hex(p['port'])} のレジスタがない",
    "device.worker_failed": lambda p: f"vhost ワーカーのスレッドが失敗した({p['failure']})",
    "hvm.request_incomplete": lambda p: f"前の要求の {p['missing']} バイトが届かないうちにコマンドレジスタが書かれた",
    "hvm.no_request": lambda p: "要求が始まっていないのにデータレジスタが書かれた(先にコマンドレジスタを書く)",
    "hvm.read_only": lambda p: f"ポート {_hex(p['port'])} の状態レジスタは読み出し専用",
    "pv.record_outside_memory": lambda p: f"PV 要求のレコード {_hex(p['record'])} がゲストのメモリの外にある",
    "pv.data_outside_memory": lambda p: (
        f"アドレス {_hex(p['record'])} の PV 要求: データ {_range(p)} がゲストのメモリの外にある"),
    "virtio.no_such_queue": lambda p: f"キュー {p['queue']} への通知。このデバイスにはキュー 0 しかない",
    "virtio.needs_reset": lambda p: f"virtqueue のエラー、デバイスはリセットが必要: {_cause(p)}",
    # lab.devices.live and lab.bench: runs
    "io.run": _detail("I/O の実行を終えられなかった"),
    "io.device_refused": lambda p: (
        f"ゲストが {p['timeout_s']:g} 秒以内に hlt しなかった。要求を断ったデバイスを待っている"
        f"({_cause(p)})。ゲストのキューかパラメータを確かめること。"),
    "io.unexpected_exit": lambda p: (
        f"ゲストが hlt ではなく {p['exit']}(rip={_hex(p['rip'])})で止まった。この実行のどのデバイスも扱わない"),
    "bench.unexpected_exit": lambda p: f"{p['kind']}: 計測のループが予期しない {p['reason']} の exit で止まった",
    "bench.exit_count": lambda p: (
        f"{p['kind']}: {'VMM に届いた exit' if p['counter'] == 'vmm' else 'eventfd が数えた書き込み'}が "
        f"{p['counted']} 回(期待は {p['expected']} 回)"),
    "bench.hypercall_timeout": lambda p: (
        f"rip={_hex(p['rip'])} の {p['insn']} は完了しなかった。KVM_RUN が {p['timeout_s']:g} 秒以内に戻らず、"
        "見張り役(watchdog)が止めた。"),
}


def say(record: Mapping[str, Any] | Coded | None, message: str = "") -> str:
    """An error record ``{"code", "params"}``, or the error itself (a :class:`~lab.kvm.errors.Coded`), in Japanese.

    Without a record (a recording older than the codes), ``message`` is the
    English of that recording: :func:`legacy_record` gives it its code; one
    it cannot is shown as the original, marked as such, rather than lost.
    """
    if isinstance(record, Coded):
        record = record.record()
    if record is None and message:
        record = legacy_record(message)
        if record is None:
            return f"VMM のメッセージ(原文のまま): {message}"
    if not record:
        return ""
    words = MESSAGES_JA.get(str(record.get("code")))
    if words is None:
        return f"VMM のエラー {record.get('code')}(日本語の文がまだない): {record.get('params')}"
    return words(record.get("params") or {})


# --------------------------------------------------------------------------- older recordings

_LEGACY: list[tuple[str, re.Pattern[str]]] = [
    ("guest.shutdown", re.compile(r"triple-faulted at rip=(?P<rip>0x[0-9a-f]+)")),
    ("guest.internal_error", re.compile(r"KVM internal error at rip=(?P<rip>0x[0-9a-f]+), suberror (?P<suberror>\d+)")),
    ("run.timeout", re.compile(r"did not exit within (?P<timeout_s>[\d.]+) s \(rip=(?P<rip>0x[0-9a-f]+), "
                               r"(?P<handled>\d+) exits")),
    ("bench.hypercall_timeout", re.compile(r"(?P<insn>\w+) at rip=(?P<rip>0x[0-9a-f]+) never completed: KVM_RUN did "
                                           r"not return within (?P<timeout_s>[\d.]+) s")),
    ("run.kicked", re.compile(r"vCPU (?P<vcpu>\d+) was kicked out of KVM_RUN by another thread \((?P<handled>\d+) "
                              r"exits")),
]


def _number(text: str) -> int | float:
    if text.startswith("0x"):
        return int(text, 16)
    return float(text) if "." in text else int(text)


def legacy_record(message: str) -> dict[str, Any] | None:
    """The code and values of an English message from a recording made before the codes, or None.

    Only the messages older recordings hold (the tour's bad guests, the
    hypercall probe) are known here; everything newer carries its record.
    """
    for code, pattern in _LEGACY:
        m = pattern.search(message)
        if m:
            params: dict[str, Any] = {k: (v if k == "insn" else _number(v)) for k, v in m.groupdict().items()}
            if code == "guest.internal_error":
                params["data"] = []
            return {"code": code, "params": params}
    return None
