"""The probe and the recorded hosts as the hands-on chapter shows them (Japanese)."""

from __future__ import annotations

from lab import datapackage, host, paths
from lab.book import host as book_host


def test_report_has_a_meaning_for_every_row():
    rows = book_host.report_rows(host.probe())
    assert rows and all(meaning for _, _, meaning in rows)


def test_report_explains_the_backend_in_japanese(tmp_path):
    (tmp_path / "kvm_pvm").mkdir()
    probe = host.probe(libvirt_uris=())
    modules, _ = host.read_kvm_modules(tmp_path)
    probe = probe.__class__(**{**probe.__dict__, "kvm": probe.kvm.__class__(
        **{**probe.kvm.__dict__, "modules": modules})})
    meanings = {item: meaning for item, _, meaning in book_host.report_rows(probe)}
    assert "ページテーブル" in meanings["モジュール kvm_pvm"]


def test_recorded_hosts_lists_every_recording_host():
    table = book_host.recorded_hosts()
    hosts = {p.name for p in datapackage.find_packages(paths.MEASURED_DIR)}
    assert set(table["ホスト"]) == hosts
    assert (table["記録の回数"] >= 1).all()
