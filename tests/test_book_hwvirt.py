"""The status page's paragraph on the kvm_amd run comes from the recorded run (lab.book.hwvirt)."""

from __future__ import annotations

from lab import backends, kit
from lab.bench import hwvirt as bench_hwvirt
from lab.book import hwvirt as book_hwvirt
from lab.paths import REPO_ROOT
from lab.qemu import hwvirt

KIT = kit.Kit(REPO_ROOT, {"kernel_release": "6.1.0-99-amd64"})


def _record(root, outcomes):
    cases = tuple(hwvirt.Case(name, outcome) for name, outcome in outcomes.items())
    run = hwvirt.HwvirtRun(cases, 0, 12.0, "kvm_amd", "")
    bench_hwvirt.record_run(run, KIT, root)


def test_the_recorded_run_is_what_the_page_says():
    run = book_hwvirt.latest()
    assert len(run) >= 70 and set(run["backend"]) == {"kvm_amd"}
    text = book_hwvirt.summary_ja()
    assert f"{len(run)} 件のテストを実行し、すべて成功しました" in text
    assert "カーネルの中で完了しました" in text and book_hwvirt.NO_TIMINGS_JA in text
    assert str(run["recorded_at"].iloc[0].date()) in text


def test_a_failed_hypercall_is_said(tmp_path):
    _record(tmp_path, {"tests/test_bench_exits.py::test_quick_run_measures_every_kind": "failed",
                       "tests/test_kvm_vmm.py::test_system_queries": "passed"})
    text = book_hwvirt.summary_ja(tmp_path)
    assert "2 件のテストを実行し、そのうち 1 件が成功しました" in text
    assert "ハイパーコールのテストは成功していません" in text
    files = book_hwvirt.files_frame(tmp_path).set_index("テストファイル")["成功 / 実行"]
    assert files["tests/test_bench_exits.py"] == "0 / 1" and files["tests/test_kvm_vmm.py"] == "1 / 1"


def test_without_a_recording_the_page_says_so(tmp_path):
    assert "まだ記録された実行結果はありません" in book_hwvirt.summary_ja(tmp_path)
    assert "まだ記録された実行結果がありません" in book_hwvirt.hypercall_note_ja(tmp_path)


def test_the_vmexit_chapters_hypercall_sentence_follows_the_run(tmp_path):
    assert "カーネルの中で完了しました" in book_hwvirt.hypercall_note_ja()   # the committed run
    _record(tmp_path, {"tests/test_bench_exits.py::test_quick_run_measures_every_kind": "failed"})
    note = book_hwvirt.hypercall_note_ja(tmp_path)
    assert "完了しませんでした" in note and "kvm_amd" in note


def test_the_backend_table_has_a_column_per_backend():
    frame = book_hwvirt.backends_frame()
    assert list(frame.columns) == ["項目", *backends.TABLE]
    assert frame.set_index("項目").loc["ハイパーコール命令", "kvm_amd"] == "vmmcall"


def test_the_status_page_shows_it():
    page = (REPO_ROOT / "chapters/appendix/status.md").read_text(encoding="utf-8")
    assert "book_hwvirt.summary_ja()" in page and "book_hwvirt.backends_frame()" in page
