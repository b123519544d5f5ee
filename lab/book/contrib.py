"""The contribution path for the reader (Japanese): the checks ``python -m lab add`` runs, as a table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lab import datapackage
from lab.bench import BENCHES, dataset
from lab.contrib import ranges
from lab.contrib.checks import CHECKS


def _tsc_range() -> str:
    low, high = (v * 1e3 for v in ranges.TSC_KHZ)  # kHz -> Hz
    return f"{low / 1e6:,.0f} MHz から {high / 1e9:,.0f} GHz"


#: What each check asks of a contribution, in the book's words (the keys are lab.contrib.checks.CHECKS).
CHECKS_JA: dict[str, str] = {
    "archive": "python -m lab pack が作ったファイルか"
               "(一つのホストのフォルダと目録だけで、リンクやフォルダ外へのパスがない)",
    "checksum": "ファイル全体と、その中の一つ一つのファイルが、SHA-256 チェックサムと一致するか",
    "resources": "どのリソースも python -m lab record が書くもので、そのファイルがあるか",
    "layout": "古い形式の記録を今の形式に移す(lab 0.1.0 の nested を runs_in_vm に、kvm_backend を "
              "kvm_modules から補う)。知らない形式なら断る",
    "schema": "どのリソースも、この本のスキーマどおりの列を持ち、どの値も型と制約に合うか",
    "host": "すべての行が一つのホスト ID で、それがフォルダの名前と、記録された CPU ベンダーに合うか",
    "provenance": "どの記録にも来歴(どの機械で、いつ、どう測ったか)の行がそろい、どの来歴の行にも記録があるか",
    "range": "値がハードウェアのとりうる範囲にあるか(サイクル数は正で、種類ごとの上限より小さい。"
             f"リクエストあたりの exit 数は 0 以上。TSC の周波数は {_tsc_range()})",
    "private": "パス、ユーザー名、ホスト名に見える文字列がないか",
    "duplicate": "data/measured/ にすでにある記録と同じもの(同じ時刻、または同じサイクル数)ではないか",
}


def checks_frame() -> pd.DataFrame:
    """The checks in the order they run: the name ``add`` prints, and what it checks."""
    missing = sorted(set(CHECKS) - set(CHECKS_JA))
    if missing:
        raise KeyError(f"no Japanese for the checks {missing}")
    return pd.DataFrame([{"検査": name, "確かめること": CHECKS_JA[name]} for name in CHECKS])


#: What a host's row says for a resource it has, and for one it lacks.
HAS, LACKS = "あり", "なし"


def resources_frame(root: str | Path | None = None) -> pd.DataFrame:
    """One row per recorded host, one column per resource ``python -m lab record`` writes: has it or not."""
    root = dataset.measured_root(root)
    rows = []
    for pkg in datapackage.find_packages(root):
        names = {r.get("name") for r in datapackage.read_descriptor(pkg)["resources"]}
        rows.append({"ホスト": pkg.name, **{name: HAS if name in names else LACKS for name in BENCHES}})
    if not rows:
        raise datapackage.DataError(f"no recording under {root}: run 'python -m lab record' on a KVM host")
    return pd.DataFrame(rows)
