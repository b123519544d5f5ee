"""lab.transcripts (run, record, load) and lab.book.core.transcripts (what a %%shell cell shows)."""

from __future__ import annotations

import html
import os
import time

import pytest
import synthetic

from lab import host, transcripts
from lab.book.core import transcripts as shown

#: The host a transcript recorded by this test run carries: this machine's.
HERE = host.host_id(host.read_cpuinfo())


def test_run_captures_stdout_stderr_and_exit_code():
    t = transcripts.run("echo out; echo err >&2; exit 3")
    assert (t.stdout, t.stderr, t.exit_code, t.ok, t.timed_out) == ("out\n", "err\n", 3, False, False)


def test_run_uses_a_real_shell_pipeline():
    t = transcripts.run("printf 'a\\nkvm1\\nb\\nkvm2\\n' | grep -c kvm")
    assert t.stdout == "2\n" and t.ok


def test_missing_program_is_exit_127_not_an_exception():
    t = transcripts.run("labex-no-such-program-xyz")
    assert t.exit_code == 127 and "not found" in t.stderr


def test_timeout_kills_the_whole_process_group(tmp_path):
    marker = tmp_path / "still-running"
    start = time.monotonic()
    t = transcripts.run(f"(sleep 3; touch {marker}) & sleep 30", timeout_s=0.5)
    assert t.timed_out and t.exit_code == 124
    assert time.monotonic() - start < 5
    time.sleep(3.5)
    assert not marker.exists(), "a child of the timed-out command survived the timeout"


def test_empty_command_is_refused():
    with pytest.raises(transcripts.TranscriptError, match="empty command"):
        transcripts.run("   ")


def test_unknown_need_is_refused():
    with pytest.raises(ValueError, match="unknown need 'gpu'"):
        transcripts.unmet(["gpu"])


def test_root_need_follows_the_effective_user():
    assert transcripts.unmet(["root"]) == ([] if os.geteuid() == 0 else ["root"])


@pytest.fixture
def measured(tmp_path):
    """Recorded hosts to write into: one synthetic host with transcripts, recorded long ago."""
    root = tmp_path / "measured"
    synthetic.make_host(root, synthetic.FORWARD_ID, resources=("transcripts",))
    return root


def test_record_then_load_the_newest_recording(measured):
    before = len(transcripts.load_all(measured))
    transcripts.record([transcripts.run("echo one")], root=measured)
    time.sleep(1.1)  # recordings are keyed by the second
    transcripts.record([transcripts.run("echo one; echo two >&2")], root=measured)
    transcripts.record([transcripts.Transcript("echo one", 0, "new\nlines\n", "", 0.01, "someone")], root=measured)
    assert len(transcripts.load_all(measured)) == before + 3
    rec = transcripts.recorded("echo one", root=measured)
    assert rec.transcript.stdout == "new\nlines\n" and rec.host_id == HERE  # the newest host: this one
    assert rec.kernel and rec.kvm_backend


def test_timed_out_transcripts_are_not_recorded(measured):
    t = transcripts.Transcript("sleep 99", 124, "", "", 1.0, "root", timed_out=True)
    with pytest.raises(transcripts.TranscriptError, match="timeout"):
        transcripts.record([t], root=measured)


def test_missing_recording_says_how_to_make_one(measured):
    with pytest.raises(transcripts.TranscriptError, match="LAB_RECORD_TRANSCRIPTS=1"):
        transcripts.recorded("labex never recorded", root=measured)


def test_no_recordings_at_all_is_an_empty_list(tmp_path):
    assert transcripts.load_all(tmp_path) == []


def test_the_book_recorded_the_hands_on_commands():
    """The fallback of the hands-on pages needs these recordings in the repository."""
    for command in ("virsh -c qemu:///system version", "virsh -c qemu:///system list --all",
                    "qemu-img create -f qcow2 /var/lib/libvirt/images/labex-vm.qcow2 16M"):
        rec = transcripts.recorded(command)
        assert rec.transcript.ok, (command, rec.transcript.stderr)


# --------------------------------------------------------------------------- book layer

def test_live_cell_shows_the_real_output():
    s = shown.shell("echo live-output")
    assert s.live and "live-output" in s._repr_html_() and "lab-fallback" not in s._repr_html_()
    assert "終了コード 0" in repr(s)


def test_unmet_need_shows_the_recording_with_host_and_reason(monkeypatch, measured):
    transcripts.record([transcripts.Transcript("virsh -c qemu:///system version", 0, "Using library: x\n", "",
                                               0.1, "root")], root=measured)
    monkeypatch.setitem(transcripts.CHECKS, "libvirtd", lambda: False)
    s = shown.shell("virsh -c qemu:///system version", needs=("libvirtd",), root=measured)
    page = s._repr_html_()
    assert not s.live and "lab-fallback" in page and "Using library: x" in page
    assert HERE in page and html.escape(shown.NEED_REASONS["libvirtd"]) in page


def test_unmet_need_without_recording_says_so(monkeypatch, measured):
    monkeypatch.setitem(transcripts.CHECKS, "kvm", lambda: False)
    s = shown.shell("labex never recorded", needs=("kvm",), root=measured)
    assert s.recording is None and not s.live and s.reasons == ("kvm",)


def test_output_is_escaped():
    assert "<b>" not in shown.shell("echo '<b>'")._repr_html_()


def test_magic_parses_its_options(monkeypatch):
    calls = []
    monkeypatch.setattr(shown, "shell", lambda cmd, **kw: calls.append((cmd, kw)))
    shown.shell_magic("--needs libvirtd,root --timeout 5", "virsh list\n")
    assert calls == [("virsh list", {"needs": ("libvirtd", "root"), "timeout_s": 5.0})]


def test_forced_recorded_runs_nothing_that_needs_something(monkeypatch, tmp_path):
    monkeypatch.setenv("LAB_FORCE_RECORDED", "1")
    assert transcripts.unmet(["root"]) == ["forced"]
    assert transcripts.unmet([]) == []
    s = shown.shell(f"touch {tmp_path / 'ran'}", needs=("root",))
    assert not (tmp_path / "ran").exists() and "LAB_FORCE_RECORDED" in s.note()


def test_missing_program_falls_back_to_the_recording(measured):
    command = "labex-no-such-program --version"
    transcripts.record([transcripts.Transcript(command, 0, "labex 1.0\n", "", 0.1, "root")], root=measured)
    s = shown.shell(command, root=measured)
    assert not s.live and "labex 1.0" in s._repr_html_() and "終了コード 127" in s.note()


def test_missing_program_without_recording_shows_the_failure(measured):
    s = shown.shell("labex-no-such-program-either", root=measured)
    assert s.live and s.transcript.exit_code == 127
