"""The note a hardware cell shows when it falls back to recorded data.

Where a chapter cannot measure (no ``/dev/kvm``, permission denied, no
libvirt daemon), it shows data recorded by the same code on a real host and
says so with :func:`recorded_note`: which host, when, and why the reader's
machine could not measure. Every such note carries the CSS class
``lab-fallback`` so that tests can find it in the built pages.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from lab.bench import dataset
from lab.book.ja.backends import backend_ja

if TYPE_CHECKING:
    import pandas as pd

#: Set this environment variable to see the recorded view on a KVM host.
FORCE_RECORDED_ENV = dataset.FORCE_RECORDED_ENV


@dataclass(frozen=True)
class Note:
    """An admonition rendered as HTML in both JupyterLab and the static book."""

    title: str
    body: str
    kind: str = "note"
    css_class: str = "lab-fallback"

    def _repr_html_(self) -> str:
        return (
            f'<div class="admonition {self.kind} {self.css_class}">'
            f'<p class="admonition-title">{html.escape(self.title)}</p>'
            f"<p>{html.escape(self.body)}</p></div>"
        )

    def __str__(self) -> str:
        return f"{self.title}: {self.body}"

    def __repr__(self) -> str:
        return str(self)


class NotedTable:
    """A table with the note above it that says where its rows come from (HTML in notebooks and the
    static book, text elsewhere); empty cells show as "-"."""

    def __init__(self, note: Note, frame: pd.DataFrame):
        self.note, self.frame = note, frame

    def _repr_html_(self) -> str:
        return self.note._repr_html_() + self.frame.to_html(index=False, na_rep="-")

    def __repr__(self) -> str:
        return f"{self.note}\n{self.frame.to_string(index=False)}"


def recorded_note(*, reason: str, host_id: str, recorded: str, detail: str = "") -> Note:
    """Say that the figures below are recorded data, from which host, and why.

    ``reason`` is the probe's own reason (e.g. ``host.probe_kvm().reason``),
    ``recorded`` the date or time of the recording, ``detail`` what the host was
    (CPU model, kernel, nested or not).
    """
    where = f"ホスト {host_id}" + (f"({detail})" if detail else "")
    return Note(
        title="記録済みのデータを表示しています",
        body=(
            f"この機械ではその場で測れないため、{where}で {recorded} に同じコードが記録した結果を示します。"
            f"測れなかった理由: {reason}"
        ),
    )


def live_note(*, host_id: str, detail: str = "", text: str = "") -> Note:
    """Say that the figures below were measured just now, on this machine (``text`` says more)."""
    return Note(
        title="この機械で測った結果です",
        body=f"ホスト {host_id}" + (f"({detail})" if detail else "") + " で、このセルを実行したときに測定しました。"
        + text,
        kind="tip",
        css_class="lab-live",
    )


def host_detail(row: Mapping[str, Any]) -> str:
    """A recorded host in words, from its provenance row (CPU, kernel, its KVM back end named correctly)."""
    return f"{row['cpu_model']}、カーネル {row['kernel']}、{backend_ja(row['kvm_backend'], bool(row['runs_in_vm']))}"


def recorded_from(row: Mapping[str, Any], reason: str) -> Note:
    """:func:`recorded_note` for a recording joined with its provenance row."""
    when = row["recorded_at"]
    recorded = f"{when:%Y-%m-%d %H:%M} UTC" if isinstance(when, datetime) else str(when)
    return recorded_note(reason=reason, host_id=str(row["host_id"]), recorded=recorded, detail=host_detail(row))


def reason_ja(reason: str) -> str:
    """Why a data set is not live (:func:`lab.bench.dataset.why_not_live`), in Japanese."""
    if reason == dataset.FORCED:
        return f"環境変数 {FORCE_RECORDED_ENV} が設定されている"
    if reason == dataset.ASKED:
        return "この表は記録済みの値を示すもの"
    return f"この機械では KVM が使えない({reason})"


def live_reason() -> str | None:
    """None when the chapters can use KVM here, else why not (in Japanese, with the probe's reason)."""
    why = dataset.why_not_live()
    return None if why is None else reason_ja(why)


_CHOSEN_JA = {
    dataset.NAMED: f"環境変数 {dataset.RECORDED_HOST_ENV} で選ばれたホストです",
    dataset.NEWEST_COMPLETE: "このページに要る記録がすべてそろうホストのうち、いちばん新しく記録したホストです",
    dataset.NEWEST_PARTIAL: "このページに要る記録がすべてそろうホストがないので、いちばん多くそろうホストを選びました",
}


def chosen_ja(ds: dataset.DataSet) -> str:
    """How the recorded host of ``ds`` was chosen, as a sentence (empty for a live data set)."""
    return _CHOSEN_JA.get(ds.chosen_by, "")


def missing_note(ds: dataset.DataSet, resource: str) -> Note:
    """Said where ``resource`` would be shown when the data set's host has no rows of it."""
    if ds.live:
        body = f"この機械(ホスト {ds.host_id})では、この実行で「{resource}」をまだ測っていません。"
    else:
        body = (f"このページのデータのホスト {ds.host_id} には「{resource}」の記録がないので、"
                "ここに示す値がありません。"
                f"KVM のある機械で `python -m lab record --only {resource}` を実行すると記録できます。")
    return Note(title="このデータはありません", body=body, kind="warning", css_class="lab-missing")


def data_set_note(ds: dataset.DataSet, resource: str, text: str = "") -> Note:
    """Where the rows of ``resource`` shown below come from: measured now, recorded (which host, when,
    why, how chosen), or missing."""
    if not ds.has(resource):
        return missing_note(ds, resource)
    if ds.live:
        return live_note(host_id=ds.host_id, text=text)
    row = ds.get(resource).sort_values("recorded_at").iloc[-1]
    note = recorded_from(row, reason_ja(str(ds.reason)))
    chosen = chosen_ja(ds)
    return Note(note.title, note.body + (f"。{chosen}。" if chosen else "") + text, note.kind, note.css_class)


# --------------------------------------------------------------------------- the %%kvm cells (lab.book.core.cells)

def cell_note(row: Mapping[str, Any], reason: str, short: bool = False) -> Note:
    """Above a ``%%kvm`` cell's recorded output: the same code's output on which host, when, and why not here
    (``short``: the host and the time only, for the page's later cells from the same recording)."""
    when = row["recorded_at"]
    recorded = f"{when:%Y-%m-%d %H:%M} UTC" if isinstance(when, datetime) else str(when)
    if short:
        return Note(title="記録済みの出力です",
                    body=f"ホスト {row['host_id']} で {recorded} に同じコードが出力したものです"
                         "(ここで実行しない理由は、このページで最初に示した注のとおりです)。")
    return Note(
        title="記録済みの出力です",
        body=(f"{reason}ため、このセルはここでは実行していません。以下は、ホスト {row['host_id']}"
              f"({host_detail(row)})で {recorded} にこのページを実行したとき、"
              "このセルと同じコードが出力したものです。"),
    )


def _record_hint(page: str) -> str:
    return f"KVM のある機械で `python -m lab record --only cells --page {page}` を実行すると記録し直せます。"


def cell_changed_note(row: Mapping[str, Any], page: str, reason: str) -> Note:
    """A ``%%kvm`` cell whose code has no recording: it was changed or added after the page was recorded."""
    return Note(
        title="このセルの記録はありません",
        body=(f"{reason}ため、このセルはここでは実行していません。ホスト {row['host_id']} がこのページを記録した後に"
              "このセルのコードが書き換えられた(または加えられた)ので、そのときの出力は今のコードの出力ではなく、"
              f"示しません。{_record_hint(page)}"),
        kind="warning",
        css_class="lab-fallback lab-stale",
    )


def cell_missing_note(host_id: str, page: str, reason: str) -> Note:
    """A ``%%kvm`` cell of a page that its recorded host never recorded."""
    return Note(
        title="このセルの記録はありません",
        body=(f"{reason}ため、このセルはここでは実行していません。このページのデータのホスト {host_id} には"
              f"このページのセルの記録がないので、示す出力がありません。{_record_hint(page)}"),
        kind="warning",
        css_class="lab-fallback lab-missing",
    )
