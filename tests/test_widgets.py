"""Switchable views: static tabs in sphinx-design markup, and a live widget."""

from __future__ import annotations

import re

import pytest

from lab.book.core import plots
from lab.book.core.widgets import MODE_IDS, Switchable, SwitchGrid


def three_figures():
    views = {}
    for label in MODE_IDS:
        fig, ax = plots.figure()
        ax.bar([label], [len(label)])
        views[label] = fig
    return views


def test_static_tabs_have_one_image_per_mode_and_sync_ids():
    s = Switchable(three_figures(), caption="例", alt={"PV": "PV の図"})
    html = s.to_html()
    assert html.count('<img class="lab-switchable-figure" src="data:image/png;base64,') == 3
    assert re.findall(r'data-sync-id="([^"]+)"', html) == ["pv", "hvm", "virtio"]
    assert set(re.findall(r'data-sync-group="([^"]+)"', html)) == {"mode"}
    assert html.count('checked="checked"') == 1
    assert 'alt="PV の図"' in html and 'alt="例 (HVM)"' in html
    # ids are stable across renderings (execution cache, links)
    assert Switchable({k: v.png for k, v in zip(MODE_IDS, s.views, strict=True)}).to_html().count("lab-tab-") > 0


def test_figures_are_closed_after_rendering():
    import matplotlib.pyplot as plt

    plt.close("all")
    Switchable(three_figures())
    assert plt.get_fignums() == []


def test_mimebundle_offers_html_and_widget():
    bundle = Switchable(three_figures())._repr_mimebundle_()
    assert "text/html" in bundle and "text/plain" in bundle
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_widget_switches_the_image():
    s = Switchable(three_figures(), selected="virtio")
    box = s.widget()
    buttons, image = box.children[0], box.children[1]
    assert image.value == s.views[2].png
    buttons.value = "PV"
    assert image.value == s.views[0].png


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least one view"):
        Switchable({})
    with pytest.raises(ValueError, match="not views"):
        Switchable({"PV": b"x"}, alt={"HVM": "?"})
    with pytest.raises(ValueError, match="selected"):
        Switchable({"PV": b"x"}, selected="virtio")


def _grid(selected=(None, "virtio")):
    views = {(outer, label): fig for outer in ("この機械", "公表値") for label, fig in three_figures().items()}
    return SwitchGrid(views, groups=("costs", "mode"), ids={"この機械": "costs-here", "公表値": "costs-pub"},
                      caption="二段", selected=selected)


def test_grid_nests_one_synced_mode_switch_in_each_outer_tab():
    html = _grid().to_html()
    assert re.findall(r'data-sync-group="costs" data-sync-id="([^"]+)"', html) == ["costs-here", "costs-pub"]
    assert re.findall(r'data-sync-group="mode" data-sync-id="([^"]+)"', html) == ["pv", "hvm", "virtio"] * 2
    # one outer choice and one inner choice per outer tab are checked: the first source, virtio in both
    assert html.count('checked="checked"') == 3
    assert html.count("data:image/png;base64,") == 6


def test_grid_widget_switches_on_both_rows():
    g = _grid()
    box = g.widget()
    outer, inner, image = box.children[1], box.children[2], box.children[3]
    pngs = {(o, v.label): v.png for o, sw in g.inner.items() for v in sw.views}
    assert image.value == pngs[("この機械", "virtio")]
    inner.value = "PV"
    assert image.value == pngs[("この機械", "PV")]
    outer.value = "公表値"
    assert image.value == pngs[("公表値", "PV")]
    with pytest.raises(ValueError, match="selected"):
        _grid(selected=("どこか", None))
