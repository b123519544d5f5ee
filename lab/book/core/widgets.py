"""Switchable views (PV / HVM / virtio, or any set of labels) for both kinds of reader.

One object, two renderings:

* in a live kernel (JupyterLab) it is an ``ipywidgets.ToggleButtons`` above
  the chosen figure;
* in the static HTML book it is a ``sphinx-design`` tab set, written as plain
  HTML with the figures embedded as PNG, so it switches with no kernel and no
  internet. Tabs share a ``data-sync-group``: choosing "virtio" in one tab set
  switches every tab set of the same group on the page.

Both renderings travel in one display bundle: JupyterLab picks the widget
view, the book (``nb_mime_priority_overrides`` in ``_config.yml`` drops the
widget view for HTML) picks ``text/html``.

Example::

    views = {label: plots_for(mode) for label, mode in ...}   # matplotlib figures
    Switchable(views, group="mode", ids={"PV": "pv", ...}, caption="...")
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

#: The sync ids the book uses for the three styles of virtualization.
MODE_IDS = {"PV": "pv", "HVM": "hvm", "virtio": "virtio"}


@dataclass(frozen=True)
class View:
    """One tab: a rendered PNG, its alt text and an optional HTML note under it."""

    label: str
    sync_id: str
    png: bytes
    alt: str
    note_html: str = ""


def figure_png(fig: Figure) -> bytes:
    """Render ``fig`` to PNG and close it, so the inline backend does not show it again."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _slug(text: str) -> str:
    keep = "".join(c if c.isalnum() and c.isascii() else "-" for c in text.lower()).strip("-")
    return keep or hashlib.sha1(text.encode()).hexdigest()[:8]


def _tab_set(group: str, uid: str, items: list[tuple[str, str, str]], selected: str, caption: str = "") -> str:
    """One sphinx-design tab set of (label, sync id, content HTML); tabs of one ``group`` switch together."""
    parts = [f'<div class="lab-switchable" data-lab-group="{html.escape(group)}">']
    if caption:
        parts.append(f'<p class="lab-switchable-caption">{html.escape(caption)}</p>')
    parts.append('<div class="sd-tab-set docutils">')
    for i, (label, sync_id, content) in enumerate(items):
        input_id = f"lab-tab-{uid}-{i}"
        checked = ' checked="checked"' if label == selected else ""
        parts.append(f'<input{checked} id="{input_id}" name="lab-tab-set-{uid}" type="radio">')
        parts.append(
            f'<label class="sd-tab-label" data-sync-group="{html.escape(group)}" '
            f'data-sync-id="{html.escape(sync_id)}" for="{input_id}" '
            f'aria-controls="{input_id}-content">{html.escape(label)}</label>'
        )
        parts.append(f'<div class="sd-tab-content docutils" id="{input_id}-content">{content}</div>')
    parts.append("</div></div>")
    return "\n".join(parts)


def _boxed(children: list[Any], caption: str) -> Any:
    """The live view: ``children`` under a bold caption (if any), in one VBox."""
    import ipywidgets as w

    if caption:
        children = [w.HTML(value=f"<b>{html.escape(caption)}</b>"), *children]
    return w.VBox(children)


def _bundle(plain: str, static_html: str, widget: Callable[[], Any]) -> dict[str, Any]:
    """One display bundle for both readers: the static tabs, plus the widget view when ipywidgets is there."""
    bundle: dict[str, Any] = {"text/plain": plain, "text/html": static_html}
    try:
        widget_bundle = widget()._repr_mimebundle_()
    except ImportError:
        widget_bundle = None
    if widget_bundle:
        bundle.update({k: v for k, v in widget_bundle.items() if k != "text/plain"})
    return bundle


class Switchable:
    """A set of figures the reader switches between; see the module docstring.

    ``views`` maps a label to a matplotlib figure (closed after rendering) or to
    PNG bytes. ``ids`` maps labels to sync ids (default: :data:`MODE_IDS`, then
    a slug of the label); ``alt`` and ``notes`` map labels to alt text and to a
    short HTML note shown under the figure.
    """

    def __init__(
        self,
        views: Mapping[str, Figure | bytes],
        *,
        group: str = "mode",
        ids: Mapping[str, str] | None = None,
        alt: Mapping[str, str] | None = None,
        notes: Mapping[str, str] | None = None,
        caption: str = "",
        selected: str | None = None,
    ) -> None:
        if not views:
            raise ValueError("Switchable needs at least one view")
        ids = {**MODE_IDS, **(ids or {})}
        alt, notes = dict(alt or {}), dict(notes or {})
        unknown = (set(alt) | set(notes)) - set(views)
        if unknown:
            raise ValueError(f"alt/notes name labels that are not views: {sorted(unknown)}")
        self.group = group
        self.caption = caption
        self.views = [
            View(
                label=label,
                sync_id=ids.get(label, _slug(label)),
                png=value if isinstance(value, bytes) else figure_png(value),
                alt=alt.get(label, f"{caption} ({label})" if caption else label),
                note_html=notes.get(label, ""),
            )
            for label, value in views.items()
        ]
        labels = [v.label for v in self.views]
        if selected is not None and selected not in labels:
            raise ValueError(f"selected={selected!r} is not one of {labels}")
        self.selected = selected or labels[0]

    # ------------------------------------------------------------------ static HTML

    def _uid(self) -> str:
        """Stable across rebuilds (so the execution cache and links do not churn)."""
        h = hashlib.sha1(self.group.encode())
        for v in self.views:
            h.update(v.label.encode())
            h.update(v.png)
        return h.hexdigest()[:10]

    def to_html(self) -> str:
        """sphinx-design's tab-set markup (same classes and data attributes)."""
        items = []
        for v in self.views:
            data = base64.b64encode(v.png).decode("ascii")
            items.append((v.label, v.sync_id,
                          f'<img class="lab-switchable-figure" src="data:image/png;base64,{data}" '
                          f'alt="{html.escape(v.alt)}" style="max-width:100%">'
                          + (f'<div class="lab-switchable-note">{v.note_html}</div>' if v.note_html else "")))
        return _tab_set(self.group, self._uid(), items, self.selected, self.caption)

    # ------------------------------------------------------------------ live widget

    def widget(self):
        """ToggleButtons above an image; needs a kernel with ipywidgets."""
        import ipywidgets as w

        by_label = {v.label: v for v in self.views}
        buttons = w.ToggleButtons(options=list(by_label), value=self.selected)
        image = w.Image(value=by_label[self.selected].png, format="png", layout=w.Layout(max_width="100%"))
        note = w.HTML(value=by_label[self.selected].note_html)

        def show(change: dict[str, Any]) -> None:
            view = by_label[change["new"]]
            image.value = view.png
            note.value = view.note_html

        buttons.observe(show, names="value")
        return _boxed([buttons, image, note], self.caption)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return _bundle(f"<Switchable {self.group}: {', '.join(v.label for v in self.views)}>",
                       self.to_html(), self.widget)


class SwitchGrid:
    """Two switches over one set of figures: an outer choice, and inside each, an inner one.

    ``views`` maps (outer label, inner label) to a figure. The static book nests
    one tab set per outer label inside the outer tab set; the inner tab sets
    share ``groups[1]`` with every other switch of that group on the page (the
    page's PV / HVM / virtio choice). A live kernel shows two rows of buttons.
    """

    def __init__(
        self,
        views: Mapping[tuple[str, str], Figure | bytes],
        *,
        groups: tuple[str, str],
        ids: Mapping[str, str] | None = None,
        caption: str = "",
        selected: tuple[str | None, str | None] = (None, None),
    ) -> None:
        if not views:
            raise ValueError("SwitchGrid needs at least one view")
        outer = list(dict.fromkeys(o for o, _ in views))
        self.groups, self.caption, self.ids = groups, caption, {**MODE_IDS, **(ids or {})}
        self.inner = {o: Switchable({i: f for (oo, i), f in views.items() if oo == o}, group=groups[1],
                                    ids=self.ids, selected=selected[1]) for o in outer}
        if selected[0] is not None and selected[0] not in outer:
            raise ValueError(f"selected={selected[0]!r} is not one of {outer}")
        self.selected = selected[0] or outer[0]

    def to_html(self) -> str:
        h = hashlib.sha1(self.groups[0].encode())
        for o, sw in self.inner.items():
            h.update(o.encode() + sw._uid().encode())
        items = [(o, self.ids.get(o, _slug(o)), sw.to_html()) for o, sw in self.inner.items()]
        return _tab_set(self.groups[0], h.hexdigest()[:10], items, self.selected, self.caption)

    def widget(self):
        """Two rows of ToggleButtons above an image; needs a kernel with ipywidgets."""
        import ipywidgets as w

        pngs = {(o, v.label): v.png for o, sw in self.inner.items() for v in sw.views}
        first = self.inner[self.selected]
        auto = {"button_width": "auto"}  # the sources' labels are long: show them whole
        outer = w.ToggleButtons(options=list(self.inner), value=self.selected, style=auto)
        inner = w.ToggleButtons(options=[v.label for v in first.views], value=first.selected, style=auto)
        image = w.Image(value=pngs[(outer.value, inner.value)], format="png", layout=w.Layout(max_width="100%"))

        def show(change: dict[str, Any]) -> None:
            image.value = pngs.get((outer.value, inner.value), image.value)

        outer.observe(show, names="value")
        inner.observe(show, names="value")
        return _boxed([outer, inner, image], self.caption)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return _bundle(f"<SwitchGrid {'/'.join(self.groups)}: {', '.join(self.inner)}>", self.to_html(), self.widget)
