"""The status page's paragraph on the kvm_amd and kvm_intel runs comes from the recorded runs (lab.book.hwvirt)."""

from __future__ import annotations

from lab import backends, kit
from lab.bench import hwvirt as bench_hwvirt
from lab.book import hwvirt as book_hwvirt
from lab.paths import REPO_ROOT
from lab.qemu import hwvirt

KIT = kit.Kit(REPO_ROOT, {"kernel_release": "6.1.0-99-amd64"})


def _record(root, outcomes, backend="kvm_amd"):
    cases = tuple(hwvirt.Case(name, outcome) for name, outcome in outcomes.items())
    run = hwvirt.HwvirtRun(cases, 0, 12.0, backend, "")
    bench_hwvirt.record_run(run, KIT, root, emulator=f"an emulator of {backend}")


def test_the_recorded_runs_are_what_the_page_says():
    runs = book_hwvirt.runs()
    assert set(runs) == {"kvm_amd", "kvm_intel"}
    text = book_hwvirt.summary_ja()
    assert book_hwvirt.NO_TIMINGS_JA in text
    for backend, run in runs.items():
        assert len(run) >= 70 and set(run["backend"]) == {backend}
        assert f"`{backend}` では、記録された最新の実行({run['recorded_at'].iloc[0].date()}" in text
        assert f"{len(run)} 件のテストを実行し、すべて成功しました" in text
        native = backends.TABLE[backend].native_hypercall
        assert f"の `{native}`)もカーネルの中で完了しました" in text


def test_recording_one_back_end_keeps_the_other(tmp_path):
    hyper = sorted(hwvirt.hypercall_tests())
    _record(tmp_path, dict.fromkeys(hyper, "passed"))
    _record(tmp_path, dict.fromkeys([*hyper, "tests/test_kvm_vmm.py::test_system_queries"], "passed"), "kvm_intel")
    _record(tmp_path, {hyper[0]: "failed"}, "kvm_intel")  # replaces the older kvm_intel run only
    runs = book_hwvirt.runs(tmp_path)
    assert len(runs["kvm_amd"]) == 2 and len(runs["kvm_intel"]) == 1
    assert set(bench_hwvirt.load_recorded(tmp_path)["backend"]) == {"kvm_amd", "kvm_intel"}
    assert len(bench_hwvirt.load_recorded(tmp_path)) == 3
    note = book_hwvirt.hypercall_note_ja(tmp_path)
    assert "`kvm_amd`(`vmmcall`)では、カーネルの中で完了しました" in note
    assert "`kvm_intel`(`vmcall`)では、カーネルの中で完了しませんでした" in note
    files = book_hwvirt.files_frame(tmp_path).set_index("テストファイル")
    assert files.loc[hyper[0].split("::")[0], "kvm_intel: 成功 / 実行"] == "0 / 1"


def test_a_failed_hypercall_is_said(tmp_path):
    _record(tmp_path, {"tests/test_bench_exits.py::test_quick_run_measures_every_kind": "failed",
                       "tests/test_kvm_vmm.py::test_system_queries": "passed"})
    text = book_hwvirt.summary_ja(tmp_path)
    assert "2 件のテストを実行し、そのうち 1 件が成功しました" in text
    assert "ハイパーコールのテストは成功していません" in text
    assert "`kvm_intel` では、まだ記録された実行結果はありません" in text
    files = book_hwvirt.files_frame(tmp_path).set_index("テストファイル")["kvm_amd: 成功 / 実行"]
    assert files["tests/test_bench_exits.py"] == "0 / 1" and files["tests/test_kvm_vmm.py"] == "1 / 1"


def test_without_a_recording_the_page_says_so(tmp_path):
    assert "まだ記録された実行結果はありません" in book_hwvirt.summary_ja(tmp_path)
    assert "まだ記録された実行結果がありません" in book_hwvirt.hypercall_note_ja(tmp_path)


def test_the_vmexit_chapters_hypercall_sentence_follows_the_run(tmp_path):
    note = book_hwvirt.hypercall_note_ja()  # the committed runs
    assert note.count("カーネルの中で完了しました") == len(book_hwvirt.EMULATED), note
    _record(tmp_path, {"tests/test_bench_exits.py::test_quick_run_measures_every_kind": "failed"})
    note = book_hwvirt.hypercall_note_ja(tmp_path)
    assert "完了しませんでした" in note and "kvm_amd" in note


def test_the_backend_table_has_a_column_per_backend():
    frame = book_hwvirt.backends_frame()
    assert list(frame.columns) == ["項目", *backends.TABLE]
    table = frame.set_index("項目")
    assert table.loc["ハイパーコール命令", "kvm_amd"] == "vmmcall"
    assert table.loc["ハイパーコール命令", "kvm_intel"] == "vmcall"
    assert "Bochs" in table.loc["ここでのテスト", "kvm_intel"] and "QEMU" in table.loc["ここでのテスト", "kvm_amd"]


def test_the_status_page_shows_it():
    page = (REPO_ROOT / "chapters/appendix/status.md").read_text(encoding="utf-8")
    assert "book_hwvirt.summary_ja()" in page and "book_hwvirt.backends_frame()" in page
