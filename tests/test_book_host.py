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


def test_recorded_hosts_say_a_pvm_host_in_a_vm_is_not_nested(synthetic_roots):
    """The forward synthetic host is kvm_pvm in a VM, the reversed one kvm_amd in a VM (nested)."""
    from lab.book.ja import backends as backend

    table = book_host.recorded_hosts(synthetic_roots["both"]).set_index("ホスト")
    assert list(table.columns) == list(book_host.recorded_hosts().columns)[1:]
    cells = table.iloc[:, 2].to_dict()  # the back-end column, whatever its heading
    from synthetic import FORWARD_ID, REVERSED_ID

    assert cells[FORWARD_ID].startswith(backend.backend_short("kvm_pvm", True)) and "kvm_pvm" in cells[FORWARD_ID]
    assert cells[REVERSED_ID].startswith(backend.backend_short("kvm_amd", True))
    assert backend.backend_short("kvm_pvm", True) == backend.backend_short("kvm_pvm", False)  # in a VM, not nested
