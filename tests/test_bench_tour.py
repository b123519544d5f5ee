"""The KVM chapter's misbehaving guests: recorded as machine values, put into words by the chapter module."""

from __future__ import annotations

import json
import re

import pytest

from lab.bench import harness
from lab.bench import tour as bench_tour
from lab.book.chapters import kvm as chapter

JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


def test_recorded_tour_holds_machine_values_only():
    rec = harness.load_measured("tour")
    for col in ("action", "ioctl", "outcome", "values", "message"):
        texts = [t for t in rec[col].dropna()]
        assert not [t for t in texts if JAPANESE.search(t)], f"Japanese text in tour.csv column {col}"
    for v in rec["values"]:
        assert isinstance(json.loads(v), dict)
    assert set(rec["action"]) <= set(bench_tour.HELLO_ACTIONS + bench_tour.ERROR_ACTIONS)


def test_the_book_puts_the_recording_into_words():
    rec = harness.load_measured("tour")
    errors = chapter.bad_guest_words(rec[rec["section"] == "errors"])
    spin = errors[errors["outcome"] == "RunTimeout"].iloc[0]
    assert spin["action"].startswith("spin: ") and spin["result"].endswith("[1.0 s]")


@pytest.mark.kvm
def test_live_bad_guests_end_in_typed_errors_and_their_words():
    steps = bench_tour.bad_guest_steps(timeout_s=1.0)
    assert [s.action for s in steps] == list(bench_tour.ERROR_ACTIONS)
    assert [s.outcome for s in steps][:3:2] == ["GuestShutdown", "RunTimeout"]
    frame = bench_tour.to_frame(steps, {"host_id": "intel-00000000", "recorded_at": "2026-11-27T00:00:00+00:00"})
    words = chapter.bad_guest_words(frame)
    assert words.iloc[0]["action"].startswith("triple_fault: ") and words.iloc[2]["result"].endswith(" s]")
