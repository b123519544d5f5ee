"""The book's view of the qemu-io recording: the table, the figure, the tabs, the fallback note."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from lab import paths
from lab.book import io as toy_report
from lab.book import qemu_io as report


def _recording() -> Path:
    """The CSV of the host the virtio page's data set uses (whichever host that is)."""
    return Path(paths.MEASURED_DIR) / report.load_recorded().host_id / "qemu-io.csv"


def _csv_per_request(config: str, op: str, column: str) -> float:
    """Straight from the committed CSV, at the largest request count."""
    rows = [r for r in csv.DictReader(_recording().open()) if r["config"] == config and r["op"] == op]
    top = max(rows, key=lambda r: int(r["requests"]))
    return int(top[column]) / int(top["requests"])


@pytest.fixture(scope="module")
def data() -> report.QemuIoData:
    return report.load_recorded()


def test_table_gives_the_recorded_counts_per_request(data):
    table = report.table(data)
    for config, name in report.CONFIG_NAMES.items():
        for op, op_name in report.OP_NAMES.items():
            row = table.loc[(name, op_name)]
            assert row["アクセス"] == _csv_per_request(config, op, "accesses")
            assert row["QEMU へ exit"] == _csv_per_request(config, op, "userspace")
            assert row["割り込み"] == _csv_per_request(config, op, "interrupts")
            assert row.iloc[-1] == "はい"  # same per request for both request counts
    # the emulated controllers exit to QEMU on every request, virtio-blk with ioeventfd never does
    assert table.loc[("IDE", "書き"), "QEMU へ exit"] > table.loc[
        ("AHCI(SATA)", "書き"), "QEMU へ exit"] > 0
    assert table.loc[("virtio-blk", "書き"), "QEMU へ exit"] == 0
    assert table.loc[("virtio-blk", "書き"), "カーネル内 exit"] == _csv_per_request(
        "virtio", "write", "kicks")
    assert table.loc[("virtio-blk(ioeventfd=off)", "書き"), "カーネル内 exit"] == 0


def test_a_count_that_changes_with_the_request_count_says_so(data):
    frame = data.frame.copy()
    sel = (frame["config"] == "ide") & (frame["op"] == "read") & (frame["requests"] == frame["requests"].min())
    frame.loc[sel, "accesses"] += 1
    data2 = report.QemuIoData(frame, live=False, host_id=data.host_id, recorded_at=data.recorded_at,
                              detail=data.detail)
    table = report.table(data2)
    assert table.loc[("IDE", "読み")].iloc[-1] == "いいえ"
    assert table.loc[("IDE", "書き")].iloc[-1] == "はい"


def test_figure_bars_are_the_recorded_exits_and_the_chosen_disk_is_coloured(data):
    fig = report.figure(data, "ahci", "write")
    ax = fig.axes[0]
    bars = [p for p in ax.patches if p.get_height() > 0]
    widths = sorted(round(b.get_width(), 6) for b in bars)
    expected = sorted([_csv_per_request(c, "write", "userspace") for c in report.CONFIG_NAMES]
                      + [data.to_kernel(c, "write") for c in report.CONFIG_NAMES])
    assert widths == expected
    grey = (0.8, 0.8, 0.8, 1.0)
    coloured = [b for b in bars if b.get_width() > 0 and tuple(round(v, 3) for v in b.get_facecolor()) != grey]
    assert [round(b.get_width(), 6) for b in coloured] == [_csv_per_request("ahci", "write", "userspace")]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(report.CONFIG_NAMES.values())
    assert data.host_id in ax.get_title()


def test_switchable_has_one_tab_per_disk_type_synced_with_the_book(data):
    view = report.switchable(data, caption="exit")
    assert [v.label for v in view.views] == [report.CONFIG_NAMES[c] for c in data.configs()]
    assert len(view.views) == len(set(data.frame["config"])) == 4
    ids = {v.label: v.sync_id for v in view.views}
    assert ids["IDE"] == "hvm" and ids["virtio-blk"] == "virtio"  # the same tabs as the HVM / virtio views
    assert view.selected == "virtio-blk" and view.group == "mode"
    html = view.to_html()
    assert html.count('class="sd-tab-label"') == 4 and 'data-sync-id="hvm"' in html
    notes = {v.label: v.note_html for v in view.views}
    assert "ioeventfd でカーネル" in notes["virtio-blk"]
    assert "ide の書き 8 回" in notes["IDE"]


def test_forced_recorded_shows_the_host_and_why(monkeypatch):
    monkeypatch.setenv("LAB_FORCE_RECORDED", "1")
    monkeypatch.setenv(report.LIVE_ENV, "1")
    monkeypatch.setattr(report, "measure", lambda: pytest.fail("measured although recorded data was forced"))
    data = report.load()
    assert not data.live
    note = data.note()
    assert note.css_class == "lab-fallback"
    assert "LAB_FORCE_RECORDED" in note.body and data.host_id in note.body
    assert "python -m lab bench qemu-io" in note.body
    assert 'class="admonition note lab-fallback"' in note._repr_html_()


def test_no_live_run_unless_asked(monkeypatch):
    monkeypatch.delenv("LAB_FORCE_RECORDED", raising=False)
    monkeypatch.delenv(report.LIVE_ENV, raising=False)
    monkeypatch.setattr(report, "measure", lambda: pytest.fail("a book build must not boot guests by default"))
    data = report.load()
    assert not data.live and data.reason


def test_missing_kit_names_the_command_that_builds_it(monkeypatch, tmp_path):
    monkeypatch.delenv("LAB_FORCE_RECORDED", raising=False)
    monkeypatch.setenv(report.LIVE_ENV, "1")
    monkeypatch.setenv("LAB_GUEST_KIT_DIR", str(tmp_path))
    reason = report.live_reason()
    assert reason is not None and "python -m lab kit build" in reason


def test_summary_compares_from_the_data(data):
    s = report.summary(data)
    ide, ahci = _csv_per_request("ide", "write", "userspace"), _csv_per_request("ahci", "write", "userspace")
    assert s["ide_over_ahci"] == f"{ide / ahci:.1f}"
    assert s["host"] == data.host_id and s["control"] == "0"
    assert s["read_write"] == "同じでした" and s["irq"] == "1" and s["n_configs"] == "4"


def test_versus_toy_sets_both_side_by_side(data):
    toy = toy_report.load_recorded()
    table = report.versus_toy(data, toy)
    assert table.loc[("エミュレーション", "おもちゃの HVM"), "QEMU へ exit"] == toy.value(
        "hvm", 1, "exits_per_request")
    assert table.loc[("エミュレーション", "QEMU の IDE + Linux の ata_piix"), "QEMU へ exit"] == \
        _csv_per_request("ide", "write", "userspace")
    assert table.loc[("virtio", "QEMU の virtio-blk + Linux の virtio_blk"), "カーネル内 exit"] == 1
    assert set(table["ホスト"]) == {toy.host_id, data.host_id}


def test_versus_summary_scales_the_toy_emulation_to_the_real_block_size(data):
    toy = toy_report.load_recorded()
    s = report.versus_summary(data, toy)
    block = int(data.first("block_size"))
    assert s["toy_hvm_block"] == f"{1 + block // 4:,}"  # the toy's 1 + S/4, at the real request size
    assert s["toy_hvm_block_over_ide"] == f"{(1 + block // 4) / _csv_per_request('ide', 'write', 'userspace'):.0f}"
    assert s["virtio_user"] == "0" and s["virtio_kernel"] == "1"


@pytest.mark.libvirtd
@pytest.mark.kit
@pytest.mark.root
@pytest.mark.full
def test_live_when_asked_gives_the_recorded_counts(monkeypatch, data):
    """With LAB_LIVE_QEMU_IO=1 the page boots the guests (about 40 s) and counts the same per request."""
    monkeypatch.delenv("LAB_FORCE_RECORDED", raising=False)
    monkeypatch.setenv(report.LIVE_ENV, "1")
    live = report.load()
    assert live.live, live.reason
    assert live.note().css_class == "lab-live"
    same_build = all(live.first(k) == data.first(k) for k in ("qemu_version", "guest_kernel"))
    if not same_build:
        pytest.skip("another QEMU or guest kernel than the recording: counts may differ legitimately")
    columns = ["アクセス", "QEMU へ exit", "カーネル内 exit", "割り込み"]
    assert report.table(live)[columns].equals(report.table(data)[columns])
