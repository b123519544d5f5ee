"""The closing chapter's table (lab.book.summary): same functions as the chapters, live or recorded."""

from __future__ import annotations

import pytest

from lab import datapackage
from lab.book import summary
from lab.paths import MEASURED_DIR


def test_table_has_one_row_per_topic_and_japanese_headings():
    rows = [summary.Row("a", "b", "c", "d"), summary.Row("e", "f", "g", "h")]
    frame = summary.reader_table(rows).data
    assert list(frame.columns) == ["項目", "この本で見たこと", "値の出どころ", "章"]
    assert frame["項目"].tolist() == ["a", "e"]


def test_recorded_rows_name_the_recorded_host(monkeypatch):
    monkeypatch.setenv("LAB_FORCE_RECORDED", "1")
    recorded = {pkg.name for pkg in datapackage.find_packages(MEASURED_DIR)}
    for row in (summary.exits_row(), summary.io_row()):
        assert row.source.startswith("記録済みのホスト ") and any(f" {h} " in row.source for h in recorded), row
    assert "サイクル" in summary.exits_row().result
    assert "エミュレーション 17 回" in summary.io_row().result  # 1 + 64/4 exits per 64-byte request


def test_libvirt_row_follows_the_uri_the_chapters_use(monkeypatch):
    pytest.importorskip("libvirt")
    monkeypatch.setenv("LAB_LIBVIRT_URI", "test:///default")
    row = summary.libvirt_row()
    assert row.result.startswith("test:///default") and "テスト用ドライバ" in row.result


def test_kvm_row_names_the_backend_in_japanese():
    row = summary.kvm_row()
    assert row.result.startswith(("使える", "使えない"))
    if row.result.startswith("使える"):
        assert any(text in row.result for text in summary.BACKENDS.values())


def test_kvm_row_says_why_not_in_japanese(monkeypatch):
    from lab import host

    real = host.probe

    def probe_without_kvm(**kw):
        return real(**kw).__class__(**{**vars(real(**kw)), "kvm": host.probe_kvm(device="/dev/kvm-does-not-exist")})

    monkeypatch.setattr(host, "probe", probe_without_kvm)
    row = summary.kvm_row()
    assert row.result.startswith("使えない(/dev/kvm-does-not-exist がありません")
