"""The note a hardware cell shows when it falls back to recorded data.

Where a chapter cannot measure (no ``/dev/kvm``, permission denied, no
libvirt daemon), it shows data recorded by the same code on a real host and
says so with :func:`recorded_note`: which host, when, and why the reader's
machine could not measure. Every such note carries the CSS class
``lab-fallback`` so that tests can find it in the built pages.
"""

from __future__ import annotations

import html
from dataclasses import dataclass


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


def live_note(*, host_id: str, detail: str = "") -> Note:
    """Say that the figures below were measured just now, on this machine."""
    return Note(
        title="この機械で測った結果です",
        body=f"ホスト {host_id}" + (f"({detail})" if detail else "") + " で、このセルを実行したときに測定しました。",
        kind="tip",
        css_class="lab-live",
    )
