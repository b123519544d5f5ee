"""libvirt as the two libvirt chapters show it: which URI answered and why (Japanese)."""

from __future__ import annotations

import pandas as pd

from lab.virt import Connection

#: The items of :meth:`lab.virt.Connection.describe_rows` in Japanese (the URIs stay as they are).
ITEMS_JA = {"driver": "ドライバ", "hypervisor version": "ハイパーバイザのバージョン", "chosen by": "選ばれ方"}


def describe(conn: Connection) -> pd.DataFrame:
    """Which URI answered and why, as a two-column table."""
    rows = []
    for item, value in conn.describe_rows():
        if item.startswith("tried "):
            item, value = f"試した {item.removeprefix('tried ')}", "応答あり" if value == "answered" else value
        rows.append((ITEMS_JA.get(item, item), value))
    return pd.DataFrame(rows, columns=["項目", "値"]).set_index("項目")
