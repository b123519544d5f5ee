"""A guest program as the chapters show it: its listing as a table, in Japanese.

The listings of :mod:`lab.guests` and :mod:`lab.devices.guests` carry English
comments (the code's language); :data:`COMMENTS_JA` says each again in
Japanese. A comment with no translation is shown as written.
"""

from __future__ import annotations

import pandas as pd

from lab.guests import Program

COLUMNS_JA = ["番地", "バイト列", "ラベル", "アセンブリ", "説明"]

COMMENTS_JA = {
    "#UD, no IDT -> #DF -> triple fault": "#UD、IDT がない → #DF → トリプルフォールト",
    "COM1 data port": "COM1 のデータポート",
    "address with no memory": "メモリのない番地",
    "avail.ring[slot] = descriptor slot": "avail.ring[slot] = 記述子の番号",
    "command register": "コマンドレジスタ",
    "completed in the kernel by ioeventfd": "ioeventfd によりカーネルの中で完了",
    "count an error": "エラーを数える",
    "data register": "データレジスタ",
    "desc.addr = this request's data": "desc.addr = この要求のデータ",
    "desc.addr, upper half": "desc.addr の上位半分",
    "desc.flags = 0, desc.next = 0": "desc.flags = 0、desc.next = 0",
    "desc.len = size": "desc.len = 大きさ",
    "did the device say done?": "デバイスは完了を返したか?",
    "eax = slot * 16 (descriptor offset)": "eax = slot × 16(記述子の位置)",
    "ebp = avail.idx (free-running)": "ebp = avail.idx(剰余をとらずに増える)",
    "ebx -> request record": "ebx → 要求の記録",
    "ecx = batch size": "ecx = バッチの大きさ",
    "ecx = dwords to send": "ecx = 送る 4 バイト語の数",
    "ecx = request size in bytes": "ecx = 要求の大きさ(バイト)",
    "edi = requests left": "edi = 残りの要求数",
    "end": "終わり",
    "end time": "終了時刻",
    "esi -> next request's data": "esi → 次の要求のデータ",
    "esi -> payload": "esi → 送るデータ",
    "exit (or eventfd): one kick per batch": "exit(または eventfd): バッチごとに 1 回の通知",
    "exit to KVM": "KVM への exit",
    "exit to the VMM process and back": "VMM のプロセスまで exit して戻る",
    "exit, handled in the kernel": "exit、カーネルの中で処理",
    "exit: 'a request of eax bytes follows'": "exit:「eax バイトの要求が続く」",
    "exit: 'handle the record at eax'": "exit:「eax の記録を処理せよ」",
    "exit: KVM_EXIT_HLT": "exit: KVM_EXIT_HLT",
    "exit: KVM_EXIT_IO": "exit: KVM_EXIT_IO",
    "exit: KVM_EXIT_MMIO": "exit: KVM_EXIT_MMIO",
    "exit: one dword to the device": "exit: デバイスへ 4 バイトを 1 つ",
    "exit: the run is over": "exit: 実行の終わり",
    "handled inside KVM": "KVM の中で処理",
    "hypercall number 0": "ハイパーコール番号 0",
    "leaf 0": "リーフ 0",
    "loop counter": "ループの回数",
    "never exits": "exit しない",
    "no memory there": "そこにメモリはない",
    "no: spin, reading memory (no exit)": "いいえ: メモリを読みながら待つ(exit なし)",
    "notify port": "通知ポート",
    "one more request done": "要求を 1 件終えた",
    "port for out (after rdtsc, which sets edx)": "out のポート(edx を書き換える rdtsc の後で)",
    "publish the batch: avail.idx (one store)": "バッチを公開: avail.idx(1 回の書き込み)",
    "queue 0": "キュー 0",
    "record.addr = this request's data": "record.addr = この要求のデータ",
    "record.addr, upper half": "record.addr の上位半分",
    "record.len = size": "record.len = 大きさ",
    "record.status = pending": "record.status = 処理待ち",
    "requests done": "終えた要求の数",
    "results for the host": "ホストへの結果",
    "slot = idx % queue size": "slot = idx % キューの大きさ",
    "start time": "開始時刻",
    "start: edx:eax = TSC": "開始: edx:eax = TSC",
    "store to unmapped memory: MMIO exit": "メモリのない番地への書き込み: MMIO の exit",
    "the PV request port": "PV の要求ポート",
    "the last batch may be shorter": "最後のバッチは短いことがある",
    "the next 4 bytes of payload": "データの次の 4 バイト",
    "used.idx caught up with avail.idx?": "used.idx は avail.idx に追いついたか?",
}


def listing(program: Program) -> pd.DataFrame:
    """The listing as a table: 番地, バイト列, ラベル, アセンブリ, 説明 (comments in Japanese)."""
    rows = [(a, b, label, text, COMMENTS_JA.get(c, c)) for a, b, label, text, c in program.rows()]
    return pd.DataFrame(rows, columns=COLUMNS_JA)
