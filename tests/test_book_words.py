"""Japanese for lab.host and lab.virt's English (lab.book.ja.reasons, lab.book.virt_tables)."""

from __future__ import annotations

import dataclasses
import re

import pytest

from lab import host
from lab.book import host as book_host
from lab.book.ja import reasons as words

JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


def test_missing_device_reason_is_japanese_and_keeps_the_path():
    reason = host.probe_kvm(device="/dev/kvm-does-not-exist").reason
    ja = words.kvm_reason(reason)
    assert JAPANESE.search(ja) and "/dev/kvm-does-not-exist がありません" in ja
    assert "ライブラリの原文" not in ja


def test_permission_denied_says_what_to_do():
    ja = words.kvm_reason("cannot open /dev/kvm: Permission denied (errno 13)")
    assert "権限がありません" in ja and "usermod -aG kvm" in ja


def test_unknown_text_is_shown_as_the_library_wrote_it():
    assert words.kvm_reason("something new") == "ライブラリの原文:something new"
    assert words.attempt("weird") == "ライブラリの原文:weird"


def test_every_way_of_choosing_a_uri_has_japanese():
    for text in (*words.CHOSEN_BY, "environment variable LAB_LIBVIRT_URI"):
        assert JAPANESE.search(words.chosen_by(text)), text


def test_attempt_reasons():
    assert "libvirtd が応答しません" in words.attempt(
        "connect failed on qemu:///system: Failed to connect socket to '/var/run/libvirt/libvirt-sock': "
        "No such file or directory -> start libvirtd")
    ja = words.attempt("KVM is not usable here, so a type='kvm' domain cannot run: /dev/kvm does not exist: x")
    assert "KVM が使えない" in ja and "/dev/kvm がありません" in ja
    assert words.attempt(None) == "応答あり"


def test_probe_table_has_no_english_sentence():
    sentence = re.compile(r"[A-Za-z]+ [A-Za-z]+ [A-Za-z]+ [A-Za-z]+")
    frame = book_host.report_table(host.probe()).data
    for meaning in frame["意味"]:
        stripped = re.sub(r"「[^」]*」|\([^)]*\)|（[^）]*）", "", meaning)
        assert not sentence.search(stripped), meaning


def test_pvm_host_is_not_called_nested():
    # This machine's probe, with the back end and the hypervisor bit set as on a PVM host in a VM.
    p = host.probe(libvirt_uris=())
    pvm = dataclasses.replace(p, cpu=dataclasses.replace(p.cpu, hypervisor=True),
                              kvm=dataclasses.replace(p.kvm, modules=[host.KvmModule("kvm_pvm", None)]))
    row = book_host.report_table(pvm).data.set_index("項目").loc["hypervisor ビット", "意味"]
    assert "入れ子仮想化ではない" in row
    amd = dataclasses.replace(pvm, kvm=dataclasses.replace(p.kvm, modules=[host.KvmModule("kvm_amd", "1")]))
    row = book_host.report_table(amd).data.set_index("項目").loc["hypervisor ビット", "意味"]
    assert "入れ子仮想化ではない" not in row


def test_virt_tables_in_japanese():
    pytest.importorskip("libvirt")
    from lab import virt
    from lab.book import virt_tables

    conn = virt.connect("test:///default")
    try:
        assert list(virt_tables.domains(conn).columns) == ["ID", "名前", "状態", "CPU 時間(秒)"]
        assert "(テスト用ドライバにはない)" in virt_tables.domains(conn)["CPU 時間(秒)"].tolist()
        assert virt_tables.describe(conn).loc["選ばれ方", "値"] == "引数で指定された URI"
        with virt.session("test:///default", prefix="labex-") as s:
            spec, _ = s.machine("words")
            dom = s.define(spec)
            assert virt_tables.info(dom).loc["定義が残るか", "値"] == "はい"
            dom.undefine()
            assert virt_tables.trace(s)["直後の状態"].tolist()[-1] == "(定義なし)"
        assert all(not line.startswith("ライブラリの原文") for line in virt_tables.cleaned(s)["片付けたもの"])
        fam = virt_tables.families(spec.replace(nic="virtio"))
        assert list(fam.columns) == ["エミュレーション", "virtio"] and "NIC" in fam.index
    finally:
        conn.close()


def test_validation_in_japanese(tmp_path, monkeypatch):
    from lab.virt import validate_xml

    good = "<domain type='test'><name>x</name><memory>1024</memory><os><type>hvm</type></os></domain>"
    assert words.validation(validate_xml(good)).startswith("合格")
    assert words.validation(validate_xml("<domain/>")).startswith("不合格")
    monkeypatch.setenv("PATH", str(tmp_path))  # no virt-xml-validate, no xmllint
    missing = words.validation(validate_xml(good))
    assert missing.startswith("検査できなかった") and "libvirt-clients" in missing
