"""lab.virt's tables with Japanese headings and notes (values from libvirt stay as libvirt says them)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pandas as pd

from lab.book.ja import reasons as words

if TYPE_CHECKING:
    from lab.virt import Connection, Domain, DomainSpec, Session

TEST_DRIVER_CPU = "(test driver: none)"
NO_CPU = "(テスト用ドライバにはない)"


def _cpu(value: object) -> object:
    return NO_CPU if value == TEST_DRIVER_CPU else value


def describe(conn: Connection) -> pd.DataFrame:
    """Which URI answered and why (``conn.describe()`` in Japanese)."""
    rows = [("URI", conn.uri), ("ドライバ", conn.driver), ("libvirt のバージョン", conn.library_version),
            ("ハイパーバイザのバージョン", conn.hypervisor_version or "-"),
            ("選ばれ方", words.chosen_by(conn.chosen_by))]
    rows += [(f"試した {a.uri}", words.attempt(a.reason)) for a in conn.tried
             if a.uri != conn.requested_uri or a.reason]
    return pd.DataFrame(rows, columns=["項目", "値"]).set_index("項目")


def domains(conn: Connection, which: str = "all", prefix: str | None = None) -> pd.DataFrame:
    """``virsh list`` as a table (``conn.domain_table()`` in Japanese)."""
    frame = conn.domain_table(which, prefix=prefix)
    frame["CPU time (s)"] = frame["CPU time (s)"].map(_cpu)
    return frame.rename(columns={"Id": "ID", "Name": "名前", "State": "状態", "CPU time (s)": "CPU 時間(秒)"})


INFO_FIELDS = {"Name": "名前", "Id": "ID", "State": "状態", "CPU(s)": "仮想 CPU の数", "CPU time (s)": "CPU 時間(秒)",
               "Max memory (KiB)": "最大メモリ(KiB)", "Used memory (KiB)": "使用中のメモリ(KiB)",
               "Persistent": "定義が残るか"}


def info(dom: Domain) -> pd.DataFrame:
    """``virsh dominfo`` as a table (``dom.info().frame()`` in Japanese)."""
    rows = [(INFO_FIELDS.get(k, k), {"yes": "はい", "no": "いいえ"}.get(v, _cpu(v)) if isinstance(v, str) else v)
            for k, v in dom.info().rows()]
    return pd.DataFrame(rows, columns=["項目", "値"]).set_index("項目")


def trace(session: Session) -> pd.DataFrame:
    """The operations a session made (``session.trace_frame()`` in Japanese)."""
    frame = session.trace_frame()
    frame["CPU time (s)"] = frame["CPU time (s)"].map(_cpu)
    frame["state"] = frame["state"].replace({"(undefined)": "(定義なし)"})
    return frame.rename(columns={"virsh": "virsh のコマンド", "libvirt API": "libvirt の API",
                                 "state": "直後の状態", "CPU time (s)": "CPU 時間(秒)"})


CLEANED = [
    (r"domain (\S+): already gone", "ドメイン {0}:すでに消えていた"),
    (r"domain (\S+): destroyed", "ドメイン {0}:強制停止した"),
    (r"domain (\S+): undefined", "ドメイン {0}:定義を消した"),
    (r"volume (\S+): deleted", "ボリューム {0}:削除した"),
    (r"volume (\S+): already gone", "ボリューム {0}:すでに消えていた"),
    (r"pool (\S+): destroyed \(it was created by this session\)", "プール {0}:停止した(このセッションが作ったもの)"),
]


def cleaned(session: Session) -> pd.DataFrame:
    """What closing the session removed (``session.cleaned_frame()`` in Japanese)."""
    def ja(line: str) -> str:
        for pattern, template in CLEANED:
            m = re.fullmatch(pattern, line)
            if m:
                return template.format(*m.groups())
        return f"ライブラリの原文:{line}"

    return pd.DataFrame({"片付けたもの": [ja(line) for line in session.cleaned]})


def families(spec: DomainSpec) -> pd.DataFrame:
    """Each device as emulated and as virtio (``virt.compare_families()`` in Japanese)."""
    from lab import virt

    frame = virt.compare_families(spec)
    frame.index = [("NIC" if i == "nic" else i.replace("disk ", "ディスク ")) for i in frame.index]
    frame.index.name = "デバイス"
    return frame.rename(columns={"emulated": "エミュレーション", "virtio": "virtio"})
